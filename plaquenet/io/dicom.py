"""A DICOM MR series -> `SourceVolume` (voxels in file order + RAS affine).

Axes of the returned `data_ijk`: i = column, j = row (as in each file's pixel
array, `pixel_array[j, i]`), k = slice, sorted by position along the slice
normal (ImagePositionPatient . (row direction x column direction)), never by
file name or InstanceNumber. Values are in scanner units: the modality LUT
(RescaleSlope/RescaleIntercept) is applied. `orientation.to_cohort` turns this
into the cohort's (S, H, W).

Only the image header fields that define geometry and pixel values are read;
nothing that identifies a person leaves this module.
"""

import warnings
from pathlib import Path
from typing import List, Sequence

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut
except ImportError:  # pydicom 2.x (Python 3.9)
    from pydicom.pixel_data_handlers.util import apply_modality_lut  # type: ignore[no-redef]

from ..errors import InputError
from ..typing import PathLike
from .orientation import SourceVolume

MAX_GAP = 1.5  # a step above 1.5x the median slice spacing means missing slices
MAX_STEP_CHANGE = 0.1  # any other step more than 10% from the median: irregular, the affine has one step
GEOMETRY_VALUES = {"ImagePositionPatient": 3, "ImageOrientationPatient": 6, "PixelSpacing": 2, "Rows": 1,
                   "Columns": 1}  # header fields that place an MR image, with their number of values
_SAME = 1e-4  # tolerance for direction cosines and spacings read from DS strings


def one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def read_header(path: PathLike) -> pydicom.Dataset:
    """The DICOM header without pixel data; InputError if it is not DICOM or unreadable."""
    try:
        return pydicom.dcmread(str(path), stop_before_pixels=True)
    except InvalidDicomError:
        raise InputError(path, "not a DICOM file (no 'DICM' preamble)") from None
    except Exception as e:  # pydicom raises many types on damaged files
        raise InputError(path, f"unreadable DICOM file ({one_line(e)})") from None


def read_pixels(path: PathLike) -> np.ndarray:
    """(rows, columns) float32 in scanner units (modality LUT applied)."""
    try:
        ds = pydicom.dcmread(str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "excess padding removed"
            pixels = ds.pixel_array
    except Exception as e:
        raise InputError(path, f"cannot decode the pixel data ({one_line(e)})") from None
    if pixels.shape != (ds.Rows, ds.Columns):
        raise InputError(path, f"pixel data of shape {pixels.shape}, expected one {ds.Rows}x{ds.Columns} frame")
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32)


def dicom_stem(path: PathLike) -> str:
    """File name without a .dcm/.dicom/.ima suffix (UID-style names keep their dots)."""
    path = Path(path)
    return path.stem if path.suffix.lower() in (".dcm", ".dicom", ".ima") else path.name


def slice_normal(ds: pydicom.Dataset) -> np.ndarray:
    """Unit normal (LPS) of an image plane: row direction x column direction."""
    iop = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
    return np.cross(iop[:3], iop[3:])


def read_dicom_series(paths: Sequence[PathLike], headers: Sequence[pydicom.Dataset]) -> SourceVolume:
    """The files of one MR series (any order) -> SourceVolume of shape (columns, rows, slices)."""
    order = _sorted_by_position(paths, headers)
    paths = [paths[n] for n in order]
    headers = [headers[n] for n in order]
    _check_same_geometry(paths, headers)
    positions = np.array([h.ImagePositionPatient for h in headers], dtype=np.float64)
    _check_no_missing_slices(paths, positions @ slice_normal(headers[0]))
    volume_kji = np.stack([read_pixels(p) for p in paths])
    return SourceVolume(
        data_ijk=volume_kji.transpose(2, 1, 0),
        affine_ras=series_affine(headers[0], positions),
        path=str(Path(paths[0]).parent),
        sop_uids=[str(h.SOPInstanceUID) for h in headers],
        stems=[dicom_stem(p) for p in paths],
    )


def series_affine(first: pydicom.Dataset, positions_lps: np.ndarray) -> np.ndarray:
    """4x4 affine (i, j, k, 1) -> RAS mm of a sorted series; columns = step per index in mm."""
    iop = np.asarray(first.ImageOrientationPatient, dtype=np.float64)
    row_mm, column_mm = (float(v) for v in first.PixelSpacing)  # between rows, between columns
    if len(positions_lps) > 1:
        slice_step = (positions_lps[-1] - positions_lps[0]) / (len(positions_lps) - 1)
    else:
        thickness = first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 1.0
        slice_step = slice_normal(first) * float(thickness)
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = iop[:3] * column_mm
    affine_lps[:3, 1] = iop[3:] * row_mm
    affine_lps[:3, 2] = slice_step
    affine_lps[:3, 3] = positions_lps[0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps


def _sorted_by_position(paths: Sequence[PathLike], headers: Sequence[pydicom.Dataset]) -> List[int]:
    for path, h in zip(paths, headers):
        for key, count in GEOMETRY_VALUES.items():
            check_values(path, h, key, count, "MR image")
        if int(h.get("NumberOfFrames", 1) or 1) > 1:
            raise InputError(path, "multi-frame (enhanced) MR images are not supported; export single-frame files")
        if int(h.get("SamplesPerPixel", 1)) != 1:
            raise InputError(path, "colour MR image: FLAIR must be greyscale")
    normal = slice_normal(headers[0])
    along = [float(np.dot(np.asarray(h.ImagePositionPatient, dtype=np.float64), normal)) for h in headers]
    return sorted(range(len(headers)), key=lambda n: along[n])


def check_values(path: PathLike, ds: pydicom.Dataset, key: str, count: int, what: str) -> None:
    """InputError unless `ds` has `key` with exactly `count` values (what: e.g. "MR image")."""
    if key not in ds or ds[key].VM == 0:
        raise InputError(path, f"{what} without {key}: cannot place it in the volume")
    if ds[key].VM != count:
        raise InputError(path, f"{what} with {ds[key].VM} {key} values, expected {count}")


def _check_same_geometry(paths: Sequence[PathLike], headers: Sequence[pydicom.Dataset]) -> None:
    first = headers[0]
    for path, h in zip(paths[1:], headers[1:]):
        if (h.Rows, h.Columns) != (first.Rows, first.Columns):
            raise InputError(path, f"mixed sizes in the series: {h.Rows}x{h.Columns} and {first.Rows}x{first.Columns}")
        if not np.allclose(h.ImageOrientationPatient, first.ImageOrientationPatient, atol=_SAME):
            raise InputError(path, "mixed ImageOrientationPatient in the series")
        if not np.allclose(h.PixelSpacing, first.PixelSpacing, rtol=_SAME):
            raise InputError(path, "mixed PixelSpacing in the series")


def _check_no_missing_slices(paths: Sequence[PathLike], along_mm: np.ndarray) -> None:
    """Slices must be distinct, without gaps (a step > MAX_GAP x the median) and evenly spaced
    (every step within MAX_STEP_CHANGE x the median of it): the affine has one slice step."""
    steps = np.diff(along_mm)
    if len(steps) == 0:
        return
    median = float(np.median(steps))
    for n, step in enumerate(steps):
        if step < _SAME * max(median, 1.0):
            raise InputError(paths[n + 1], f"two slices at the same position ({along_mm[n]:.3f} mm along the normal)")
        if step > MAX_GAP * median:
            raise InputError(
                paths[n + 1],
                f"missing slices: a gap of {step:.2f} mm before this slice, median spacing {median:.2f} mm",
            )
    uneven = np.flatnonzero(np.abs(steps - median) > MAX_STEP_CHANGE * median)
    if len(uneven):
        raise InputError(paths[uneven[0] + 1], f"irregular slice spacing: steps {steps.min():.2f}..{steps.max():.2f} "
                                               f"mm, median {median:.2f} mm (one slice step is needed)")
