"""The synthetic FLAIR cohort: deterministic, plaques bright and outlined by
polygons, and the files on disk (DICOM, RTSTRUCT, SEG, NIfTI) say the same
and are valid DICOM (dciodvfy)."""

import hashlib
import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest

import dciodvfy
from plaquenet import phantom
from plaquenet.errors import InputError
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.masks import read_seg
from plaquenet.io.orientation import to_cohort
from plaquenet.io.polygons import rasterise_polygons

SEED, SLICES = 3, 4
H, W = phantom.SHAPE_HW


@pytest.fixture(scope="module")
def scans():
    return [phantom.phantom_patient(SEED, SLICES, patient=i) for i in range(2)]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom") / "cohort"
    phantom.write_phantom(out, n_patients=2, n_slices=SLICES, seed=SEED)
    return out


def _folder(patient):
    return phantom.fake_patients(SEED, 2)[patient].folder


def _series(cohort, patient):
    """MR datasets of one patient, in slice order (by ImagePositionPatient z)."""
    paths = sorted((cohort / "dicom" / _folder(patient) / "flair").glob("*.dcm"))
    return paths, sorted((pydicom.dcmread(p) for p in paths), key=lambda ds: float(ds.ImagePositionPatient[2]))


def test_same_seed_same_pixels_other_seed_other_pixels(scans):
    again = phantom.phantom_patient(SEED, SLICES, patient=0)
    assert np.array_equal(again.flair_shw, scans[0].flair_shw)
    assert np.array_equal(again.mask_shw, scans[0].mask_shw)
    assert not np.array_equal(scans[1].flair_shw, scans[0].flair_shw)
    assert not np.array_equal(phantom.phantom_patient(SEED + 1, SLICES).flair_shw, scans[0].flair_shw)


def test_geometry_of_the_paper(scans):
    for scan in scans:
        assert scan.flair_shw.shape == (SLICES, 448, 512) and scan.flair_shw.dtype == np.float32
        assert 3.0 <= scan.slice_thickness_mm <= 5.0  # §2
        assert abs(scan.voxel_mm[1] - 0.45) <= 0.03 and scan.voxel_mm[1] == scan.voxel_mm[2]
        # skull base to vertex: cerebellum and sinuses at the bottom, broad calvaria at the top (§5)
        tissues = [set(np.unique(t)) for t in scan.tissue_shw]
        assert {phantom.TISSUE["cerebellum"], phantom.TISSUE["mucosa"]} <= tissues[0]
        assert phantom.TISSUE["ventricle"] not in tissues[-1]
        marrow = (scan.tissue_shw == phantom.TISSUE["marrow"]).sum(axis=(1, 2))
        assert marrow[-1] > marrow[1]


def test_plaques_are_brighter_than_white_matter_and_inside_the_mask(scans):
    for scan in scans:
        assert scan.mask_shw.any()
        assert set(np.unique(scan.mask_shw)) == {0, 1}
        white = (scan.tissue_shw == phantom.TISSUE["white"]) & (scan.plaque_shw == 0)
        assert scan.flair_shw[scan.mask_shw > 0].mean() > 1.2 * scan.flair_shw[white].mean()
        plaque = scan.plaque_shw > 0.5
        assert (scan.mask_shw[plaque] > 0).mean() > 0.9  # outlines are generous, hardly miss plaque pixels


def test_mask_is_the_rasterised_polygons_not_the_plaque(scans):
    for scan in scans:
        for k in range(SLICES):
            assert np.array_equal(scan.mask_shw[k], rasterise_polygons(scan.polygons_cr[k], (H, W)))
            for poly in scan.polygons_cr[k]:
                assert 5 <= len(poly) <= 12  # "approximate polygons" (§6), a few vertices
                assert np.array_equal(poly * 16, np.round(poly * 16))  # on the 1/16-pixel grid
        plaque, mask = scan.plaque_shw > 0.5, scan.mask_shw > 0
        dice = 2 * (plaque & mask).sum() / (plaque.sum() + mask.sum())
        assert 0.5 < dice < 0.95


def test_layout_and_file_names_in_no_slice_order(cohort):
    assert sorted(p.name for p in (cohort / "dicom").iterdir()) == sorted(_folder(i) for i in range(2))
    assert not list(cohort.parent.glob(".*partial"))
    for i in range(2):
        paths, series = _series(cohort, i)
        assert len(paths) == SLICES
        by_name = [pydicom.dcmread(p).ImagePositionPatient[2] for p in paths]
        assert by_name != sorted(by_name)
        assert (cohort / "dicom" / _folder(i) / "outlines.dcm").is_file()
        assert {p.name for p in (cohort / "nifti" / _folder(i)).iterdir()} == {"flair.nii.gz", "mask.nii.gz"}


def test_dicom_headers_carry_fake_phi_and_the_geometry(cohort, scans):
    who = phantom.fake_patients(SEED, 1)[0]
    _, series = _series(cohort, 0)
    scan = scans[0]
    for k, ds in enumerate(series):
        assert str(ds.PatientName) == who.name and ds.PatientID == who.patient_id
        assert ds.PatientBirthDate == who.birth_date and ds.InstitutionName == who.institution
        assert ds.AccessionNumber == who.accession and str(ds.ReferringPhysicianName) == who.referring_physician
        assert ds.Modality == "MR" and ds.SeriesDescription == "AX FLAIR" and ds.BitsStored == 12
        assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
        assert ds.FrameOfReferenceUID == series[0].FrameOfReferenceUID and ds.PositionReferenceIndicator == ""
        assert [float(v) for v in ds.ImagePositionPatient] == [*scan.origin_lps[:2], scan.slice_z_mm(k)]
        assert float(ds.PixelSpacing[0]) == scan.voxel_mm[1] and float(ds.SpacingBetweenSlices) == scan.voxel_mm[0]
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        assert (slope, intercept) != (1, 0)
        values = ds.pixel_array.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        assert np.array_equal(values, scan.flair_shw[k])
    assert len({ds.SeriesInstanceUID for ds in series}) == 1 and len({ds.SOPInstanceUID for ds in series}) == SLICES
    assert series[0].StudyInstanceUID != _series(cohort, 1)[1][0].StudyInstanceUID


def test_rtstruct_contours_give_back_the_mask(cohort, scans):
    rt = pydicom.dcmread(cohort / "dicom" / _folder(0) / "outlines.dcm")
    _, series = _series(cohort, 0)
    assert rt.Modality == "RTSTRUCT" and rt.StructureSetROISequence[0].ROIName == "MS plaques"
    assert rt.PatientID == series[0].PatientID
    assert rt.FrameOfReferenceUID == series[0].FrameOfReferenceUID and rt.PositionReferenceIndicator == ""
    uid_to_slice = {ds.SOPInstanceUID: k for k, ds in enumerate(series)}
    polygons = [[] for _ in series]
    for contour in rt.ROIContourSequence[0].ContourSequence:
        assert contour.ContourGeometricType == "CLOSED_PLANAR"
        k = uid_to_slice[contour.ContourImageSequence[0].ReferencedSOPInstanceUID]
        xyz = np.array(contour.ContourData, dtype=float).reshape(-1, 3)
        ipp = np.array(series[k].ImagePositionPatient, dtype=float)
        assert np.allclose(xyz[:, 2], ipp[2])
        spacing = np.array(series[k].PixelSpacing, dtype=float)  # (between rows, between columns)
        polygons[k].append(np.stack([(xyz[:, 0] - ipp[0]) / spacing[1], (xyz[:, 1] - ipp[1]) / spacing[0]], 1))
    mask = np.stack([rasterise_polygons(p, (H, W)) for p in polygons])
    assert mask.any() and np.array_equal(mask, scans[0].mask_shw)


def test_seg_frames_give_back_the_mask(cohort, scans):
    seg = hd.seg.segread(cohort / "dicom" / _folder(1) / "outlines.dcm")
    _, series = _series(cohort, 1)
    assert seg.SegmentSequence[0].SegmentLabel == "MS plaques"
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL" and seg.ContentCreatorName == "Phantom^Radiologist"
    lesion_slices = [k for k in range(SLICES) if scans[1].mask_shw[k].any()]
    assert seg.NumberOfFrames == len(lesion_slices)
    pixels = seg.get_pixels_by_source_instance([series[k].SOPInstanceUID for k in lesion_slices], segment_numbers=[1])
    assert np.array_equal(pixels[..., 0], scans[1].mask_shw[lesion_slices])


def test_seg_is_read_back_as_the_mask_by_the_import(cohort, scans):
    paths, _ = _series(cohort, 1)
    image = read_dicom_series(paths, [read_header(p) for p in paths])
    mask_ijk = read_seg(cohort / "dicom" / _folder(1) / "outlines.dcm", image)
    mask_shw, _ = to_cohort(mask_ijk, image.affine_ras)
    assert scans[1].mask_shw.any() and np.array_equal(mask_shw, scans[1].mask_shw)


def test_nifti_is_ras_ordered_with_the_dicom_geometry(cohort, scans):
    folder = cohort / "nifti" / _folder(0)
    flair, mask = nib.load(folder / "flair.nii.gz"), nib.load(folder / "mask.nii.gz")
    scan = scans[0]
    assert nib.aff2axcodes(flair.affine) == ("R", "A", "S")  # not the cohort's (L, P, S)
    assert flair.shape == (W, H, SLICES) and flair.get_data_dtype() == np.float32
    assert mask.get_data_dtype() == np.uint8 and np.allclose(mask.affine, flair.affine)
    for image in (flair, mask):
        assert image.header.get_xyzt_units() == ("mm", "sec")
        assert int(image.header["qform_code"]) == int(image.header["sform_code"]) == 1  # scanner
    data, labels = np.asarray(flair.dataobj), np.asarray(mask.dataobj)
    for k, row, col in [(0, 0, 0), (1, 100, 300), (SLICES - 1, H - 1, W - 1)]:
        i, j = W - 1 - col, H - 1 - row
        assert data[i, j, k] == scan.flair_shw[k, row, col] and labels[i, j, k] == scan.mask_shw[k, row, col]
        lps = np.array(scan.origin_lps) + [col * scan.voxel_mm[2], row * scan.voxel_mm[1], k * scan.voxel_mm[0]]
        ras = flair.affine @ [i, j, k, 1]
        assert np.allclose(ras[:3], lps * [-1, -1, 1], atol=1e-4)


def test_same_seed_same_files_byte_for_byte(cohort, tmp_path):
    again = phantom.write_phantom(tmp_path / "again", n_patients=2, n_slices=SLICES, seed=SEED)
    files = sorted(p.relative_to(cohort) for p in cohort.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (cohort / name).read_bytes() == (again / name).read_bytes(), name


def test_bad_sizes_are_input_errors_and_write_nothing(tmp_path):
    with pytest.raises(InputError, match="--slices"):
        phantom.write_phantom(tmp_path / "out", n_patients=1, n_slices=0)
    with pytest.raises(InputError, match="--patients"):
        phantom.write_phantom(tmp_path / "out", n_patients=0)
    assert list(tmp_path.iterdir()) == []


def test_every_dicom_file_passes_dciodvfy(cohort):
    """MR slices, the RTSTRUCT (patient 0) and the SEG (patient 1): no Error line."""
    iods, errors = set(), []
    for path in sorted((cohort / "dicom").rglob("*.dcm")):
        report = dciodvfy.report(path)
        iods.add(report[0])
        errors += [f"{path.relative_to(cohort)}: {line}" for line in dciodvfy.errors(report)]
    assert iods == {"MRImage", "RTStructureSet", "Segmentation"}
    assert not errors, "\n".join(errors)


def test_dciodvfy_finds_an_mr_slice_without_its_position_reference_indicator(cohort, tmp_path):
    ds = pydicom.dcmread(_series(cohort, 0)[0][0])
    del ds.PositionReferenceIndicator
    ds.save_as(tmp_path / "bad.dcm", enforce_file_format=True)
    assert any("PositionReferenceIndicator" in line for line in dciodvfy.errors(dciodvfy.report(tmp_path / "bad.dcm")))


# --- the truth beside the files: region map and exact plaques (#17) -----------------

# sha256 of phantom_patient(0, 6, 0).flair_shw and .mask_shw, computed before the
# region maps existed: adding them must not move a single voxel (no extra random number).
FLAIR_SHA256 = "20b915b4b16734786440b72326285e42a4b5850df42db1abd9fcdedc78754f78"
MASK_SHA256 = "6e71dbb4b355525f820c92e78c57b6ff63977773c9c13de1c2102739e64da133"
REGION = {name: label for label, name in phantom.REGIONS.items()}


@pytest.fixture(scope="module")
def full_head():
    """Six slices from the skull base to the vertex: slice 1 crosses the globes, slice 5 the vertex."""
    return phantom.phantom_patient(0, 6, 0)


def test_the_region_maps_leave_the_images_unchanged(full_head):
    assert hashlib.sha256(full_head.flair_shw.tobytes()).hexdigest() == FLAIR_SHA256
    assert hashlib.sha256(full_head.mask_shw.tobytes()).hexdigest() == MASK_SHA256


def test_the_region_legend_is_the_one_asked_for():
    assert phantom.REGIONS == {0: "air", 1: "brain", 2: "csf", 3: "scalp", 4: "calvaria", 5: "skull_base",
                               6: "temporal_bone", 7: "orbit", 8: "sinus"}


def test_region_maps_hold_legend_labels_and_agree_with_the_tissues(scans, full_head):
    tissue = phantom.TISSUE
    for scan in scans + [full_head]:
        regions, tissues = scan.regions_shw, scan.tissue_shw
        assert regions.dtype == np.uint8 and regions.shape == scan.flair_shw.shape
        assert set(np.unique(regions)) <= set(phantom.REGIONS)
        assert (regions[np.isin(tissues, phantom.PARENCHYMA)] == REGION["brain"]).all()
        assert (regions[np.isin(tissues, [tissue["csf"], tissue["ventricle"]])] == REGION["csf"]).all()
        eyes = np.isin(tissues, [tissue["vitreous"], tissue["sclera"], tissue["lens"], tissue["nerve"]])
        assert (regions[eyes] == REGION["orbit"]).all()
        assert set(np.unique(regions[tissues == tissue["mucosa"]])) <= {REGION["sinus"], REGION["temporal_bone"]}
        assert (tissues[regions == REGION["air"]] == tissue["air"]).all()
        assert set(np.unique(regions[tissues == tissue["air"]])) == {REGION["air"], REGION["sinus"],
                                                                      REGION["temporal_bone"]}  # mastoid cells


def test_exact_plaques_lie_in_the_brain_only(scans, full_head):
    for scan in scans + [full_head]:
        exact = scan.mask_exact_shw > 0
        assert exact.any() and (scan.regions_shw[exact] == REGION["brain"]).all()


def test_orbits_on_a_skull_base_slice_and_calvaria_on_the_vertex(full_head):
    low, top = full_head.regions_shw[1], full_head.regions_shw[-1]
    vitreous = full_head.tissue_shw[1] == phantom.TISSUE["vitreous"]
    assert vitreous.sum() > 500 and (low[vitreous] == REGION["orbit"]).all()  # the globes are cut
    assert (low == REGION["orbit"]).sum() > 5000  # globes, fat cones, optic nerves
    assert {REGION["sinus"], REGION["skull_base"]} <= set(np.unique(low))
    assert REGION["temporal_bone"] in full_head.regions_shw[0]  # petrous ridges and mastoids at the skull base
    assert set(np.unique(top)) == {REGION["air"], REGION["scalp"], REGION["calvaria"]}  # the vertex: no brain left
    bone = np.isin(full_head.tissue_shw[-1], [phantom.TISSUE["bone"], phantom.TISSUE["marrow"]])
    assert bone.any() and (top[bone] == REGION["calvaria"]).all()


def test_exact_mask_is_the_half_full_voxels_not_the_polygons(scans):
    for scan in scans:
        exact, polygons = scan.mask_exact_shw, scan.mask_shw
        assert exact.dtype == np.uint8 and np.array_equal(exact, (scan.plaque_shw >= 0.5).astype(np.uint8))
        assert not np.array_equal(exact, polygons)
        assert (polygons[exact > 0] > 0).mean() > 0.9 and exact.sum() < polygons.sum()  # generous outlines


def test_truth_files_lie_on_the_nifti_flair_grid(cohort, scans):
    truth = cohort / "truth"
    assert sorted(p.name for p in truth.iterdir() if p.is_dir()) == sorted(p.name for p in (cohort / "nifti").iterdir())
    assert json.loads((truth / "regions.json").read_text()) == {str(k): v for k, v in phantom.REGIONS.items()}
    for i, scan in enumerate(scans):
        folder = truth / _folder(i)
        assert {p.name for p in folder.iterdir()} == {"regions.nii.gz", "plaques_exact.nii.gz"}
        flair = nib.load(cohort / "nifti" / _folder(i) / "flair.nii.gz")
        for name, volume in (("regions.nii.gz", scan.regions_shw), ("plaques_exact.nii.gz", scan.mask_exact_shw)):
            image = nib.load(folder / name)
            assert image.get_data_dtype() == np.uint8 and np.array_equal(image.affine, flair.affine)
            assert np.array_equal(np.asarray(image.dataobj), phantom.to_nifti_order(volume))


@pytest.mark.parametrize("name, patients, slices", [("demo", 10, 20), ("quick", 12, 33), ("paper", 96, 33)])
def test_presets_are_the_table(name, patients, slices):
    assert phantom.PRESETS[name] == (patients, slices)


def test_write_phantom_defaults_are_the_demo_preset():
    import inspect
    defaults = inspect.signature(phantom.write_phantom).parameters
    assert (defaults["n_patients"].default, defaults["n_slices"].default) == phantom.PRESETS["demo"]
