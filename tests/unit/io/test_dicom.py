"""DICOM series -> SourceVolume -> cohort (S, H, W): ordering, rescale, orientation, transfer syntaxes, errors."""

import numpy as np
import pydicom
import pytest

import dicom_fixtures as F
from plaquenet.errors import InputError
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.orientation import to_cohort, voxel_mm

MR_SMALL_VARIANTS = ["RLE", "bigendian", "expb", "implicit", "jp2klossless", "jpeg_ls_lossless", "padded"]


def read_series(paths):
    paths = list(paths)
    return read_dicom_series(paths, [read_header(p) for p in paths])


def cohort_of(paths):
    image = read_series(paths)
    return to_cohort(image.data_ijk, image.affine_ras)


def test_series_is_ordered_by_position_and_rescaled(tmp_path):
    # file names are in reverse slice order and InstanceNumbers scrambled: only positions may order
    flair_shw, affine_whs = cohort_of(F.write_dicom_series(tmp_path))
    np.testing.assert_array_equal(flair_shw, F.expected_flair_shw())  # RescaleSlope 2, intercept -10
    np.testing.assert_array_equal(affine_whs, F.EXPECTED_AFFINE_WHS)
    assert voxel_mm(affine_whs) == (F.SLICE_MM, F.ROW_MM, F.COL_MM)


def test_affine_maps_voxels_to_their_dicom_positions(tmp_path):
    paths = F.write_dicom_series(tmp_path)
    image = read_series(paths)
    ds = pydicom.dcmread(paths[2])  # cohort slice 2
    i, j = 5, 7
    lps = F.pixel_to_lps(ds, i, j)
    ras = image.affine_ras @ [i, j, 2, 1]
    np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1])


@pytest.mark.parametrize("iop", [(-1, 0, 0, 0, 1, 0), (1, 0, 0, 0, -1, 0), (-1, 0, 0, 0, -1, 0)])
def test_any_axial_orientation_gives_the_same_cohort_volume(tmp_path, iop):
    # the same physical voxels stored mirrored and/or with the slice normal pointing to the feet
    flair_shw, affine_whs = cohort_of(F.write_dicom_series(tmp_path, iop=iop))
    np.testing.assert_array_equal(flair_shw, F.expected_flair_shw())
    np.testing.assert_array_equal(affine_whs, F.EXPECTED_AFFINE_WHS)


@pytest.mark.parametrize("variant", MR_SMALL_VARIANTS)
def test_transfer_syntaxes_decode_to_the_same_pixels(tmp_path, variant):
    reference = read_series(F.mr_small_series(tmp_path / "plain"))
    paths = F.mr_small_series(tmp_path / variant, variant)
    syntax = pydicom.dcmread(paths[0]).file_meta.TransferSyntaxUID
    original = pydicom.dcmread(pydicom.data.get_testdata_file(f"MR_small_{variant}.dcm")).file_meta.TransferSyntaxUID
    assert syntax == original  # the copies keep their encoding
    if syntax.is_compressed:
        from pydicom.pixels import get_decoder
        if not get_decoder(syntax).is_available:
            pytest.skip(f"no installed pixel data handler decodes {syntax.name}")
    volume = read_series(paths)
    assert volume.data_ijk.shape == (64, 64, 3)
    np.testing.assert_array_equal(volume.data_ijk, reference.data_ijk)
    np.testing.assert_array_equal(volume.affine_ras, reference.affine_ras)


def test_truncated_file_is_a_one_line_error_naming_it(tmp_path):
    paths = F.mr_small_series(tmp_path, n=2) + [F.truncated_mr_file(tmp_path, z_mm=6.6406 + 1.6)]
    with pytest.raises(InputError) as err:
        read_series(paths)
    assert err.value.path.endswith("truncated.dcm")
    assert "pixel data" in err.value.problem and "\n" not in str(err.value)


def test_non_dicom_file_is_an_error(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"this is no DICOM" * 20)
    with pytest.raises(InputError, match="junk.dcm: not a DICOM file"):
        read_header(path)


def test_mixed_sizes_are_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path / "a")
    other = F.write_dicom_series(tmp_path / "b", stored=F.stored_kji()[:, :8, :])
    ds = pydicom.dcmread(other[1])
    ds.ImagePositionPatient = pydicom.dcmread(paths[1]).ImagePositionPatient
    ds.save_as(paths[1])
    with pytest.raises(InputError, match="mixed sizes in the series: 8x20 and 16x20"):
        read_series(paths)


def test_missing_slice_is_an_error(tmp_path):
    stored = np.concatenate([F.stored_kji(), F.stored_kji()])  # 8 slices, then drop one in the middle
    paths = F.write_dicom_series(tmp_path, stored=stored)
    paths[4].unlink()
    with pytest.raises(InputError, match="missing slices: a gap of 5.00 mm"):
        read_series(paths[:4] + paths[5:])


def test_two_slices_at_one_position_are_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    ds.ImagePositionPatient = pydicom.dcmread(paths[1]).ImagePositionPatient
    ds.save_as(paths[2])
    with pytest.raises(InputError, match="two slices at the same position"):
        read_series(paths)


def test_mr_file_without_pixels_is_an_error(tmp_path):
    paths = F.write_dicom_series(tmp_path)
    ds = pydicom.dcmread(paths[3])
    del ds.PixelData
    ds.save_as(paths[3])
    with pytest.raises(InputError) as err:
        read_series(paths)
    assert err.value.path == str(paths[3]) and err.value.problem.startswith("cannot decode the pixel data (")


def shift_slices(paths, offsets_mm):
    """Move slice k of a written series by offsets_mm[k] along z."""
    for path, offset in zip(paths, offsets_mm):
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + offset
        ds.save_as(path)


def test_irregular_slice_spacing_is_an_error(tmp_path):
    # one step of 3.2 mm among 2.5 mm ones: no gap (< 1.5x), but the one slice step of the affine misplaces slices
    paths = F.write_dicom_series(tmp_path, stored=np.concatenate([F.stored_kji(), F.stored_kji()[:2]]))
    shift_slices(paths, [0, 0, 0, 0, 0.7, 0.7])
    with pytest.raises(InputError) as err:
        read_series(paths)
    assert err.value.path == str(paths[4])
    assert err.value.problem == ("irregular slice spacing: steps 2.50..3.20 mm, median 2.50 mm "
                                 "(one slice step is needed)")


def test_slice_positions_jittered_a_little_are_accepted(tmp_path):
    paths = F.write_dicom_series(tmp_path)
    shift_slices(paths, [0, 0.05, -0.05, 0])
    _, affine_whs = cohort_of(paths)
    np.testing.assert_allclose(affine_whs, F.EXPECTED_AFFINE_WHS)


@pytest.mark.parametrize("key, value, message", [
    ("PixelSpacing", [0.5], "MR image with 1 PixelSpacing values, expected 2"),
    ("ImageOrientationPatient", [1, 0, 0, 0, 1], "MR image with 5 ImageOrientationPatient values, expected 6"),
    ("Rows", None, "MR image without Rows: cannot place it in the volume"),
])
def test_malformed_geometry_is_a_one_line_error(tmp_path, key, value, message):
    paths = F.write_dicom_series(tmp_path)
    ds = pydicom.dcmread(paths[1])
    if value is None:
        delattr(ds, key)
    else:
        setattr(ds, key, value)
    ds.save_as(paths[1])
    with pytest.raises(InputError) as err:
        read_series(paths)
    assert (err.value.path, err.value.problem) == (str(paths[1]), message)
