"""Outlines (NIfTI, PNG, SEG, RTSTRUCT) -> the same cohort mask; geometry mismatches are errors."""

import cv2
import numpy as np
import pydicom
import pytest

import dicom_fixtures as F
from plaquenet.errors import InputError
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.masks import read_png_masks, read_rtstruct, read_seg
from plaquenet.io.study import read_patient


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
