"""`plaquenet import`: discovery, pseudonyms, no PHI in any output, atomic failure, resampling."""

import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest

import dicom_fixtures as F
from plaquenet.cli import main
from plaquenet.cohort import iter_truth, load_scan, patient_ids, region_legend
from plaquenet.errors import InputError
from plaquenet.ingest import find_truth, import_studies, read_patient, resample_scan
from plaquenet.phantom import REGIONS, fake_patients, phantom_patient, write_phantom


def run_import(capsys, studies, cohort, *extra):
    code = main(["import", str(studies), "--cohort", str(cohort), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_dicom_and_nifti_patients(tmp_path, capsys):
    F.write_patient(tmp_path / "studies" / "zz_second", "seg")
    F.write_nifti_patient(tmp_path / "studies" / "aa_first", axcodes=("L", "A", "S"))
    code, out, _ = run_import(capsys, tmp_path / "studies", tmp_path / "cohort")
    assert code == 0
    assert out.strip().startswith("imported 2 patients (P001-P002): 8 slices, 6 with lesions; slice sizes HxW "
                                  "(patients): 16x20 (2)")
    assert patient_ids(tmp_path / "cohort") == ["P001", "P002"]
    first, second = load_scan(tmp_path / "cohort", "P001"), load_scan(tmp_path / "cohort", "P002")
    assert (first.flair_source, first.mask_source, second.flair_source) == ("nifti", "nifti", "dicom")
    for scan in (first, second):
        np.testing.assert_array_equal(scan.flair_shw, F.expected_flair_shw())
        np.testing.assert_array_equal(scan.mask_shw, F.lesion_mask_shw())
        np.testing.assert_array_equal(scan.affine_whs, F.EXPECTED_AFFINE_WHS)
        assert scan.voxel_mm == (F.SLICE_MM, F.ROW_MM, F.COL_MM)


def test_no_identifying_text_reaches_the_cohort_or_stdout(tmp_path, capsys):
    phi = dict(F.PHI)
    studies = tmp_path / "studies"
    F.write_patient(studies / "Doe_Jane_PHI", "rtstruct", phi=phi)
    F.write_patient(studies / "Roe_Rick_PHI", "seg", phi=phi)
    code, out, _ = run_import(capsys, studies, tmp_path / "cohort")
    assert code == 0
    secrets = list(phi.values()) + ["Doe_Jane_PHI", "Roe_Rick_PHI", "ACC-PHI-99"]  # long: no chance matches
    for path in studies.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        secrets += [str(ds.SOPInstanceUID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)]
    stored = (tmp_path / "cohort" / "cohort.h5").read_bytes()
    for secret in secrets:
        assert secret.encode().lower() not in stored.lower(), secret
        assert secret.lower() not in out.lower(), secret


def test_bad_file_fails_with_one_line_and_leaves_no_cohort(tmp_path, capsys):
    F.write_patient(tmp_path / "studies" / "a", "png-order")
    folder = F.write_patient(tmp_path / "studies" / "b", "rtstruct")
    (folder / "flair" / "IM0002.dcm").write_bytes(b"garbage" * 100)
    code, out, err = run_import(capsys, tmp_path / "studies", tmp_path / "cohort")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.strip().endswith("IM0002.dcm: not a DICOM file (no 'DICM' preamble)")
    assert not (tmp_path / "cohort").exists()


def test_failure_keeps_an_existing_cohort_under_force(tmp_path, capsys):
    F.write_patient(tmp_path / "studies" / "a", "nifti")
    assert run_import(capsys, tmp_path / "studies", tmp_path / "cohort")[0] == 0
    before = (tmp_path / "cohort" / "cohort.h5").read_bytes()
    assert run_import(capsys, tmp_path / "studies", tmp_path / "cohort")[0] == 2  # exists, no --force
    victim = tmp_path / "studies" / "a" / "flair" / "IM0003.dcm"
    victim.write_bytes(victim.read_bytes()[:-100])  # a file cut short in its pixel data
    code, _, err = run_import(capsys, tmp_path / "studies", tmp_path / "cohort", "--force")
    assert code == 2 and "IM0003.dcm: cannot decode the pixel data" in err
    assert (tmp_path / "cohort" / "cohort.h5").read_bytes() == before
    assert [p.name for p in (tmp_path / "cohort").iterdir()] == ["cohort.h5"]


def test_ignored_and_unexpected_files(tmp_path):
    folder = F.write_patient(tmp_path / "p", "png-stem")
    (folder / "notes.txt").write_text("not DICOM, ignored")
    (folder / "DICOMDIR").write_bytes(b"ignored by name")
    (folder / ".DS_Store").write_bytes(b"hidden")
    assert read_patient(folder, "P001").mask_shw.sum() == F.lesion_mask_shw().sum()
    ds = pydicom.dcmread(next((folder / "flair").iterdir()))
    ds.Modality = "PR"
    ds.save_as(folder / "state.dcm")
    with pytest.raises(InputError, match="state.dcm: DICOM of modality PR: expected MR images, SEG or RTSTRUCT"):
        read_patient(folder, "P001")


@pytest.mark.parametrize("problem, message", [
    ("two kinds", "ambiguous: found SEG and RTSTRUCT outlines"),
    ("two segs", "ambiguous: 2 SEG outlines"),
    ("no outlines", "no outlines found"),
    ("dicom and nifti", "ambiguous: found FLAIR as a DICOM series and as NIfTI"),
    ("no flair", "no FLAIR found"),
    ("two series", "ambiguous: 2 MR series, 0 of them described as FLAIR"),
])
def test_discovery_problems(tmp_path, problem, message):
    folder = F.write_patient(tmp_path / "p", "rtstruct")
    series = sorted((folder / "flair").iterdir())
    if problem == "two kinds":
        F.write_seg(folder / "seg.dcm", series[::-1])
    elif problem == "two segs":
        (folder / "outlines.dcm").unlink()
        F.write_seg(folder / "seg1.dcm", series)
        F.write_seg(folder / "seg2.dcm", series)
    elif problem == "no outlines":
        (folder / "outlines.dcm").unlink()
    elif problem == "dicom and nifti":
        F.write_nifti(folder / "flair.nii.gz", F.expected_flair_shw())
    elif problem == "no flair":
        shutil.rmtree(folder / "flair")
    else:
        F.write_dicom_series(folder / "t1", description="AX T1")
        for path in (folder / "flair").iterdir():
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = "AX T2"
            ds.save_as(path)
    with pytest.raises(InputError, match=message):
        read_patient(folder, "P001")


def test_two_series_pick_the_flair(tmp_path):
    folder = F.write_patient(tmp_path / "p", "seg")
    F.write_dicom_series(folder / "t1", stored=F.stored_kji() + 1, description="AX T1 SE")
    np.testing.assert_array_equal(read_patient(folder, "P001").flair_shw, F.expected_flair_shw())


def test_study_level_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no patient folders"):
        import_studies(tmp_path / "empty", tmp_path / "cohort")
    folder = F.write_patient(tmp_path / "studies" / "a", "png-order")
    F.write_png_masks(folder / "mask", np.zeros_like(F.lesion_mask_shw()))
    with pytest.raises(InputError, match="studies: no lesions: no patient has any outlined pixel"):
        import_studies(tmp_path / "studies", tmp_path / "cohort")
    assert not (tmp_path / "cohort").exists()
    with pytest.raises(InputError, match="--resample: expected HxW"):
        import_studies(tmp_path / "studies", tmp_path / "cohort", resample="448")


def test_nan_voxels_are_an_error_naming_the_file(tmp_path):
    folder = F.write_nifti_patient(tmp_path / "p")
    flair = F.expected_flair_shw()
    flair[1, 2, 3] = np.nan
    F.write_nifti(folder / "flair.nii.gz", flair)
    with pytest.raises(InputError, match="flair.nii.gz: 1 NaN/inf voxels"):
        read_patient(folder, "P001")


def test_resample_keeps_geometry(tmp_path):
    scan = read_patient(F.write_patient(tmp_path / "p", "png-order"), "P001")
    big = resample_scan(scan, (32, 40))  # twice the pixels in each direction
    assert big.flair_shw.shape == big.mask_shw.shape == (4, 32, 40)
    assert big.voxel_mm == (F.SLICE_MM, F.ROW_MM / 2, F.COL_MM / 2)
    assert big.mask_shw.sum() == 4 * scan.mask_shw.sum()  # nearest: every pixel becomes 2x2
    # the field of view's corner (pixel -0.5, -0.5) stays where it was
    np.testing.assert_allclose(big.affine_whs @ [-0.5, -0.5, 0, 1], scan.affine_whs @ [-0.5, -0.5, 0, 1])
    # a pixel centre of the new grid maps onto the same point of the old one
    np.testing.assert_allclose(big.affine_whs @ [1.5, 1.5, 2, 1], scan.affine_whs @ [0.5, 0.5, 2, 1])
    assert np.isclose(big.flair_shw.mean(), scan.flair_shw.mean(), rtol=0.05)


def test_cli_resample_flag(tmp_path, capsys):
    F.write_patient(tmp_path / "studies" / "a", "seg")
    code, out, _ = run_import(capsys, tmp_path / "studies", tmp_path / "cohort", "--resample", "8x10")
    assert code == 0 and "8x10 (1)" in out
    img = load_scan(tmp_path / "cohort", "P001")
    assert img.flair_shw.shape == (4, 8, 10) and img.voxel_mm == (F.SLICE_MM, 2 * F.ROW_MM, 2 * F.COL_MM)
    assert nib.aff2axcodes(img.affine_whs) == ("L", "P", "S")


@pytest.mark.parametrize("key, value", [("SeriesDescription", "t2_tirm_tra_dark-fluid"),
                                        ("ProtocolName", "AX DARK FLUID"), ("SequenceName", "*tirm2d1")])
def test_two_series_pick_the_flair_by_other_names(tmp_path, key, value):
    folder = F.write_patient(tmp_path / "p", "seg")
    for path in (folder / "flair").iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = "AX"
        setattr(ds, key, value)
        ds.save_as(path)
    F.write_dicom_series(folder / "t1", stored=F.stored_kji() + 1, description="t1_se_tra")
    np.testing.assert_array_equal(read_patient(folder, "P001").flair_shw, F.expected_flair_shw())


def write_sagittal_patient(folder, voxel_whs_mm):
    """flair + mask NIfTI of the reference volume stored as a sagittal series (columns -> P, rows -> I,
    slices -> L) with the given voxel size (w, h, s) in mm."""
    folder.mkdir()
    affine_whs = np.diag([-voxel_whs_mm[0], -voxel_whs_mm[1], voxel_whs_mm[2], 1.0])
    F.write_nifti(folder / "flair.nii.gz", F.expected_flair_shw(), affine_whs, axcodes=("P", "I", "L"))
    F.write_nifti(folder / "mask.nii.gz", F.lesion_mask_shw(), affine_whs, axcodes=("P", "I", "L"), dtype=np.uint8)
    return folder


def test_thick_sagittal_slices_do_not_become_axial_slices(tmp_path):
    # 5 mm sagittal slices would become axial slices of 0.5 x 5 mm pixels
    folder = write_sagittal_patient(tmp_path / "p", (5.0, 0.5, 0.5))
    with pytest.raises(InputError) as err:
        read_patient(folder, "P001")
    assert err.value.path == str(folder / "flair.nii.gz")
    assert err.value.problem == "not an axial acquisition (in-plane voxel 0.50 x 5.00 mm); reslice it to axial first"


def test_an_isotropic_sagittal_volume_becomes_axial_slices(tmp_path):
    scan = read_patient(write_sagittal_patient(tmp_path / "p", (1.0, 1.0, 1.0)), "P001")
    np.testing.assert_array_equal(scan.flair_shw, F.expected_flair_shw())
    np.testing.assert_array_equal(scan.mask_shw, F.lesion_mask_shw())


# --- --truth: region maps and exact masks beside the studies (#17) --------------------

REGIONS_JSON = '{"0": "air", "1": "brain", "2": "csf"}'


def _regions_shw():
    return (np.arange(F.expected_flair_shw().size).reshape(F.expected_flair_shw().shape) % 3).astype(np.uint8)


def write_truth(truth, names=("a", "b"), axcodes=("L", "A", "S")):
    """TRUTH/<name>/{regions,plaques_exact}.nii.gz on the reference study's grid (stored in `axcodes`
    order, not the cohort's), and TRUTH/regions.json."""
    for name in names:
        (truth / name).mkdir(parents=True)
        F.write_nifti(truth / name / "regions.nii.gz", _regions_shw(), axcodes=axcodes, dtype=np.uint8)
        F.write_nifti(truth / name / "plaques_exact.nii.gz", F.lesion_mask_shw(), axcodes=axcodes, dtype=np.uint8)
    (truth / "regions.json").write_text(REGIONS_JSON)
    return truth


@pytest.fixture(scope="module")
def phantom_out(tmp_path_factory):
    """A two-patient phantom of four slices, with its truth/."""
    out = tmp_path_factory.mktemp("phantom") / "out"
    write_phantom(out, n_patients=2, n_slices=4, seed=3)
    return out


def test_phantom_truth_reaches_the_cohort_bit_for_bit(phantom_out, tmp_path, capsys):
    code, out, err = run_import(capsys, phantom_out / "dicom", tmp_path / "cohort", "--truth",
                                str(phantom_out / "truth"))
    assert code == 0, err
    assert "; truth: regions, mask_exact -> " in out
    assert region_legend(tmp_path / "cohort") == REGIONS
    folders = [p.folder for p in fake_patients(3, 2)]
    by_id = {f"P{n + 1:03d}": folders.index(name) for n, name in enumerate(sorted(folders))}  # ids in folder order
    truths = list(iter_truth(tmp_path / "cohort"))
    assert [t.patient for t in truths] == ["P001", "P002"]
    for truth in truths:
        scan = phantom_patient(3, 4, by_id[truth.patient])
        assert truth.regions_shw.dtype == np.uint8 and np.array_equal(truth.regions_shw, scan.regions_shw)
        assert np.array_equal(truth.mask_exact_shw, scan.mask_exact_shw) and truth.mask_exact_shw.any()


def test_truth_turns_like_the_nifti_flair(tmp_path):
    folder = F.write_nifti_patient(tmp_path / "studies" / "a", axcodes=("R", "A", "S"))
    write_truth(tmp_path / "truth", names=("a",), axcodes=("P", "L", "S"))
    [files] = find_truth(tmp_path / "truth", [folder])
    scan = read_patient(folder, "P001", truth=files, legend={0: "air", 1: "brain", 2: "csf"})
    np.testing.assert_array_equal(scan.regions_shw, _regions_shw())
    np.testing.assert_array_equal(scan.mask_exact_shw, F.lesion_mask_shw())


def test_truth_is_resampled_with_the_mask(tmp_path, capsys):
    F.write_patient(tmp_path / "studies" / "a", "seg")
    write_truth(tmp_path / "truth", names=("a",))
    code, _, err = run_import(capsys, tmp_path / "studies", tmp_path / "cohort", "--resample", "8x10",
                              "--truth", str(tmp_path / "truth"))
    assert code == 0, err
    [truth] = iter_truth(tmp_path / "cohort")
    scan = load_scan(tmp_path / "cohort", "P001")
    assert truth.regions_shw.shape == truth.mask_exact_shw.shape == scan.mask_shw.shape == (4, 8, 10)
    np.testing.assert_array_equal(truth.mask_exact_shw, scan.mask_shw)  # nearest, both: the same pixels
    np.testing.assert_array_equal(truth.regions_shw, _regions_shw()[:, ::2, ::2])


def _no_truth_for_b(truth):
    shutil.rmtree(truth / "b")


def _no_regions_for_b(truth):
    (truth / "b" / "regions.nii.gz").unlink()


def _other_grid(truth):
    F.write_nifti(truth / "b" / "regions.nii.gz", _regions_shw()[:, :, 1:], dtype=np.uint8)


def _shifted(truth):
    affine = F.EXPECTED_AFFINE_WHS.copy()
    affine[0, 3] += 1.0
    F.write_nifti(truth / "b" / "plaques_exact.nii.gz", F.lesion_mask_shw(), affine, dtype=np.uint8)


def _unknown_label(truth):
    F.write_nifti(truth / "a" / "regions.nii.gz", _regions_shw() * 3, dtype=np.uint8)


@pytest.mark.parametrize("spoil, where, message", [
    (lambda truth: shutil.rmtree(truth), "truth", "--truth: not a folder"),
    (lambda truth: [_no_truth_for_b(truth), shutil.rmtree(truth / "a")], "truth",
     "no truth files for any of the 2 patients"),
    (_no_truth_for_b, "truth", "no regions.nii.gz for 1 of 2 patients (b): give it for all patients or for none"),
    (_no_regions_for_b, "truth", "no regions.nii.gz for 1 of 2 patients (b)"),
    (lambda truth: (truth / "regions.json").unlink(), "regions.json", "missing: the legend"),
    (_other_grid, "regions.nii.gz", "region map of shape (4, 16, 19) (S, H, W), the FLAIR is (4, 16, 20)"),
    (_shifted, "plaques_exact.nii.gz", "exact mask geometry differs from the FLAIR's"),
    (_unknown_label, "regions.nii.gz", "region labels [3, 6] are not in regions.json"),
], ids=["no folder", "no patient", "one patient without", "one region map missing", "no legend", "another grid",
        "shifted grid", "unknown label"])
def test_bad_truth_is_one_line_naming_the_file_and_writes_nothing(tmp_path, capsys, spoil, where, message):
    for name in ("a", "b"):
        F.write_nifti_patient(tmp_path / "studies" / name)
    spoil(write_truth(tmp_path / "truth"))
    code, out, err = run_import(capsys, tmp_path / "studies", tmp_path / "cohort", "--truth", str(tmp_path / "truth"))
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert f"{where}: " in err and message in err, err
    assert not (tmp_path / "cohort").exists()
