"""NIfTI -> SourceVolume -> cohort (S, H, W): the same arrays as the DICOM of the same volume; errors."""

import nibabel as nib
import numpy as np
import pytest

import dicom_fixtures as F
from plaquenet.errors import InputError
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.nifti import read_nifti
from plaquenet.io.orientation import cohort_grid, to_cohort


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "A", "S"), ("L", "P", "S"), ("A", "R", "I"), ("S", "L", "P")])
def test_nifti_and_dicom_of_one_volume_give_identical_arrays(tmp_path, axcodes):
    paths = F.write_dicom_series(tmp_path / "dicom")
    dicom = read_dicom_series(paths, [read_header(p) for p in paths])
    nifti = read_nifti(F.write_nifti(tmp_path / "flair.nii.gz", F.expected_flair_shw(), axcodes=axcodes))
    assert nib.aff2axcodes(nifti.affine_ras) == axcodes  # the file really is stored in that order
    flair_dicom, affine_dicom = to_cohort(dicom.data_ijk, dicom.affine_ras)
    flair_nifti, affine_nifti = to_cohort(nifti.data_ijk, nifti.affine_ras)
    np.testing.assert_array_equal(flair_nifti, flair_dicom)
    np.testing.assert_array_equal(affine_nifti, affine_dicom)
    np.testing.assert_array_equal(flair_nifti, F.expected_flair_shw())
    shape_shw, affine_whs = cohort_grid(nifti.data_ijk.shape, nifti.affine_ras)
    assert shape_shw == flair_nifti.shape
    np.testing.assert_array_equal(affine_whs, affine_nifti)


def test_scaling_is_applied_and_masks_are_binary(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    img = nib.Nifti1Image(data, np.eye(4))
    img.header.set_slope_inter(2.0, -10.0)
    nib.save(img, str(tmp_path / "f.nii"))
    np.testing.assert_array_equal(read_nifti(tmp_path / "f.nii").data_ijk, data * 2.0 - 10)
    mask = read_nifti(tmp_path / "f.nii", mask=True).data_ijk
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1} and mask.sum() == 24 - 6


def test_4d_with_one_volume_is_squeezed(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), np.eye(4)), str(tmp_path / "f.nii.gz"))
    assert read_nifti(tmp_path / "f.nii.gz").data_ijk.shape == (3, 4, 5)


@pytest.mark.parametrize("shape", [(3, 4, 5, 2), (3, 4)])
def test_not_3d_is_an_error(tmp_path, shape):
    nib.save(nib.Nifti1Image(np.ones(shape, np.float32), np.eye(4)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(InputError, match=r"f.nii.gz: expected a 3D volume, got shape"):
        read_nifti(tmp_path / "f.nii.gz")


def test_damaged_file_is_an_error(tmp_path):
    (tmp_path / "f.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(InputError, match="f.nii.gz: unreadable NIfTI file"):
        read_nifti(tmp_path / "f.nii.gz")
