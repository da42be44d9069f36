"""Outlines (NIfTI, PNG, SEG, RTSTRUCT) -> the same cohort mask; geometry mismatches are errors."""

import cv2
import numpy as np
import pydicom
import pytest

import dicom_fixtures as F
from plaquenet.errors import InputError
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.masks import is_anatomy, read_png_masks, read_rtstruct, read_seg
from plaquenet.io.nifti import read_nifti
from plaquenet.io.orientation import to_cohort
from plaquenet.ingest import read_patient


def image_of(paths):
    return read_dicom_series(paths, [read_header(p) for p in paths])


@pytest.mark.parametrize("outline", ["rtstruct", "seg", "png-stem", "png-order", "nifti"])
def test_every_outline_kind_gives_the_same_mask(tmp_path, outline):
    scan = read_patient(F.write_patient(tmp_path / "patient", outline), "P001")
    np.testing.assert_array_equal(scan.mask_shw, F.lesion_mask_shw())
    np.testing.assert_array_equal(scan.flair_shw, F.expected_flair_shw())
    assert scan.mask_source == {"png-stem": "png", "png-order": "png"}.get(outline, outline)


@pytest.mark.parametrize("outline", ["rtstruct", "seg", "png-stem"])
def test_masks_follow_a_mirrored_series(tmp_path, outline):
    # columns stored left -> right and rows posterior -> anterior: the outlines are in that file layout
    paths = F.write_dicom_series(tmp_path / "flair", iop=(-1, 0, 0, 0, -1, 0))
    image = image_of(paths)
    mirrored_ijk = np.flip(F.lesion_mask_shw().transpose(2, 1, 0), axis=(0, 1))
    if outline == "rtstruct":
        # write_rtstruct places rectangles via each file's own pixel grid: mirror them
        rects = {k: [(F.ROWS - 1 - r1, F.ROWS - 1 - r0, F.COLS - 1 - c1, F.COLS - 1 - c0) for r0, r1, c0, c1 in v]
                 for k, v in F.RECTANGLES.items()}
        holes = {k: [(F.ROWS - 1 - r1, F.ROWS - 1 - r0, F.COLS - 1 - c1, F.COLS - 1 - c0) for r0, r1, c0, c1 in v]
                 for k, v in F.HOLES.items()}
        mask = read_rtstruct(F.write_rtstruct(tmp_path / "rt.dcm", paths, rects, holes), image)
    elif outline == "seg":
        mask = read_seg(F.write_seg(tmp_path / "seg.dcm", paths, mirrored_ijk.transpose(2, 1, 0)), image)
    else:
        pngs = F.write_png_masks(tmp_path / "mask", mirrored_ijk.transpose(2, 1, 0), stems=[p.stem for p in paths])
        mask = read_png_masks(pngs, image)
    np.testing.assert_array_equal(mask, mirrored_ijk)


def test_png_masks_in_order_are_in_display_layout(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair", iop=(-1, 0, 0, 0, -1, 0))
    pngs = F.write_png_masks(tmp_path / "mask")  # z4, z8, z12, z16: natural order, cohort layout
    mask_ijk = read_png_masks(pngs, image_of(paths))
    np.testing.assert_array_equal(mask_ijk, np.flip(F.lesion_mask_shw().transpose(2, 1, 0), axis=(0, 1)))


def test_png_count_or_size_mismatch_is_an_error(tmp_path):
    image = image_of(F.write_dicom_series(tmp_path / "flair"))
    pngs = F.write_png_masks(tmp_path / "mask")
    with pytest.raises(InputError, match="3 PNG masks for 4 image slices"):
        read_png_masks(pngs[:3], image)
    cv2.imwrite(str(pngs[2]), np.zeros((16, 21), np.uint8))
    with pytest.raises(InputError, match=r"z12.png: mask of 16x21 pixels, the image slice is 16x20"):
        read_png_masks(pngs, image)


def test_seg_frames_found_by_position_without_references(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    seg_path = F.write_seg(tmp_path / "seg.dcm", paths)
    ds = pydicom.dcmread(seg_path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    ds.save_as(seg_path)
    mask = read_seg(seg_path, image_of(paths))
    np.testing.assert_array_equal(mask, F.lesion_mask_shw().transpose(2, 1, 0))


def test_seg_of_another_series_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    other = F.write_dicom_series(tmp_path / "other")
    seg_path = F.write_seg(tmp_path / "seg.dcm", other)
    with pytest.raises(InputError, match="seg.dcm: a SEG frame references an image that is not in the FLAIR series"):
        read_seg(seg_path, image_of(paths))


def test_seg_at_positions_off_the_image_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    seg_path = F.write_seg(tmp_path / "seg.dcm", paths)
    ds = pydicom.dcmread(seg_path)
    for frame in ds.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        position[2] = float(position[2]) + 100.0
    ds.save_as(seg_path)
    with pytest.raises(InputError, match="does not lie on a slice of the image"):
        read_seg(seg_path, image_of(paths))


def test_rtstruct_contour_between_slices_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    rt = F.write_rtstruct(tmp_path / "rt.dcm", paths, z_offset_mm=F.SLICE_MM / 2)
    with pytest.raises(InputError, match="rt.dcm: a contour at slice position 1.50 does not lie on a slice"):
        read_rtstruct(rt, image_of(paths))


def test_rtstruct_referencing_another_image_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    rt = F.write_rtstruct(tmp_path / "rt.dcm", paths, reference_uid=pydicom.uid.generate_uid())
    with pytest.raises(InputError, match="references an image that is not in the FLAIR series"):
        read_rtstruct(rt, image_of(paths))


def test_nifti_mask_of_another_geometry_is_an_error(tmp_path):
    folder = F.write_patient(tmp_path / "p", "nifti")
    affine = F.EXPECTED_AFFINE_WHS.copy()
    affine[2, 3] += 1.0  # shifted by 1 mm along z
    F.write_nifti(folder / "lesion_mask.nii.gz", F.lesion_mask_shw(), affine_whs=affine, dtype=np.uint8)
    with pytest.raises(InputError, match="lesion_mask.nii.gz: mask geometry differs from the FLAIR's"):
        read_patient(folder, "P001")
    F.write_nifti(folder / "lesion_mask.nii.gz", F.lesion_mask_shw()[:3], dtype=np.uint8)
    with pytest.raises(InputError, match=r"mask of shape \(3, 16, 20\) \(S, H, W\), the FLAIR is \(4, 16, 20\)"):
        read_patient(folder, "P001")


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("A", "R", "I"), ("S", "L", "P")])
def test_seg_of_the_dicom_series_fits_its_nifti_in_any_voxel_order(tmp_path, axcodes):
    # the SEG was drawn on the DICOM series; the patient folder holds the NIfTI of the same volume
    folder = tmp_path / "patient"
    folder.mkdir()
    F.write_seg(folder / "outlines.dcm", F.write_dicom_series(tmp_path / "dicom"))
    F.write_nifti(folder / "flair.nii.gz", F.expected_flair_shw(), axcodes=axcodes)
    np.testing.assert_array_equal(read_patient(folder, "P001").mask_shw, F.lesion_mask_shw())


def test_seg_of_another_pixel_spacing_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    seg_path = F.write_seg(tmp_path / "seg.dcm", paths)
    ds = pydicom.dcmread(seg_path)
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [F.ROW_MM, 2 * F.COL_MM]
    ds.save_as(seg_path)
    with pytest.raises(InputError, match="seg.dcm: a SEG frame's pixels are not the image's voxels"):
        read_seg(seg_path, image_of(paths))


@pytest.mark.parametrize("name, anatomy", [("BODY", True), ("brain_mask", True), ("Skin outline", True),
                                           ("Head", True), ("MS plaques", False), ("Brain lesions", False),
                                           ("Brainstem", False), ("lesion 3", False)])
def test_is_anatomy(name, anatomy):
    assert is_anatomy(name) == anatomy


def test_rtstruct_skips_anatomy_rois_and_unites_the_lesion_rois(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    rt = F.write_rtstruct(tmp_path / "rt.dcm", paths)
    head = {k: [(0, F.ROWS - 1, 0, F.COLS - 1)] for k in range(F.SLICES)}
    F.add_rtstruct_roi(rt, paths, "Patient", "EXTERNAL", head)  # skipped for its type
    F.add_rtstruct_roi(rt, paths, "Brain", "ORGAN", head)  # skipped for its name
    F.add_rtstruct_roi(rt, paths, "lesion 2", "ORGAN", {0: [(10, 12, 1, 3)]})  # one ROI per lesion: united
    expected = F.lesion_mask_shw()
    expected[0, 10:13, 1:4] = 1
    np.testing.assert_array_equal(read_rtstruct(rt, image_of(paths)), expected.transpose(2, 1, 0))


def test_seg_skips_anatomy_segments_and_unites_the_others(tmp_path):
    paths = F.write_dicom_series(tmp_path / "flair")
    second = np.zeros_like(F.lesion_mask_shw())
    second[0, 10:13, 1:4] = 1
    seg = F.write_seg(tmp_path / "seg.dcm", paths, segments={
        "Brain": np.ones_like(second), "plaque": F.lesion_mask_shw(), "lesion 2": second})
    np.testing.assert_array_equal(read_seg(seg, image_of(paths)), (F.lesion_mask_shw() | second).transpose(2, 1, 0))


@pytest.mark.parametrize("data, message", [(None, "a contour without ContourData"),
                                           ([0.0] * 10, "a contour with 10 ContourData values, not x, y, z triplets")])
def test_malformed_contour_is_a_one_line_error(tmp_path, data, message):
    paths = F.write_dicom_series(tmp_path / "flair")
    rt = F.write_rtstruct(tmp_path / "rt.dcm", paths)
    ds = pydicom.dcmread(rt)
    contour = ds.ROIContourSequence[0].ContourSequence[1]
    if data is None:
        del contour.ContourData
    else:
        contour.ContourData = data
    ds.save_as(rt)
    with pytest.raises(InputError) as err:
        read_rtstruct(rt, image_of(paths))
    assert (err.value.path, err.value.problem) == (str(rt), message)


def test_rtstruct_mask_does_not_depend_on_the_image_voxel_order(tmp_path):
    # contour vertices half a pixel off the centres: rounding ties must go the same way in any layout
    paths = F.write_dicom_series(tmp_path / "dicom")
    rt = F.write_rtstruct(tmp_path / "rt.dcm", paths)
    ds = pydicom.dcmread(rt)
    for contour in ds.ROIContourSequence[0].ContourSequence:
        contour.ContourData = [v + F.COL_MM / 2 if n % 3 == 0 else v for n, v in enumerate(contour.ContourData)]
    ds.save_as(rt)
    expected_shw = np.roll(F.lesion_mask_shw(), 1, axis=2)  # ties go to the next column (patient left)
    np.testing.assert_array_equal(read_rtstruct(rt, image_of(paths)).transpose(2, 1, 0), expected_shw)
    nifti = read_nifti(F.write_nifti(tmp_path / "flair.nii.gz", F.expected_flair_shw(), axcodes=("R", "A", "S")))
    np.testing.assert_array_equal(to_cohort(read_rtstruct(rt, nifti), nifti.affine_ras)[0], expected_shw)
