"""Radiologists' outlines -> a uint8 mask (I, J, K) on the grid of the FLAIR `SourceVolume`.

Every reader returns its mask in the image's own voxel order, so that the one
`orientation.to_cohort` step turns image and mask into (S, H, W) together.
Any non-zero label, any segment and any ROI counts as plaque: several
segments, ROIs or contours on one slice are united (a hole contour is filled,
as `rasterise_polygons` unites overlapping polygons).

PNG masks (a folder `mask/`, one PNG per slice, non-zero = plaque):
  * when every PNG stem equals a DICOM file stem, PNG `X.png` belongs to
    DICOM file `X[.dcm]` and is in that file's pixel layout (rows x columns);
  * otherwise the PNGs, in natural name order (`s2` before `s10`), are the
    cohort slices inferior -> superior, each drawn as the cohort shows it
    (rows anterior -> posterior, columns patient right -> left).
DICOM SEG: a frame goes to the slice whose SOPInstanceUID it references, or
  (NIfTI images, or no reference) whose position it gives (PlanePosition).
DICOM RTSTRUCT: CLOSED_PLANAR contours (patient mm) are mapped through the
  image affine to pixel coordinates and assigned to the slice at their
  position; referenced images (ContourImageSequence) must be in the series.
"""

import re
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import pydicom

from ..errors import InputError
from .dicom import dicom_stem, one_line
from .orientation import SourceVolume, from_cohort, lps_to_ras, ras_to_ijk, to_cohort
from .polygons import rasterise_polygons

ON_GRID = 0.2  # voxels: how far a SEG frame or contour may sit from a slice or pixel centre


# --- PNG -------------------------------------------------------------------

def natural_key(path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def read_png_masks(paths: Sequence[Path], image: SourceVolume) -> np.ndarray:
    """One PNG per slice -> mask (I, J, K); see the module docstring for the two mappings."""
    paths = sorted(paths, key=natural_key)
    n_slices = image.data_ijk.shape[2]
    if len(paths) != n_slices:
        raise InputError(paths[0].parent, f"{len(paths)} PNG masks for {n_slices} image slices")
    stems = image.stems or []
    if len(set(stems)) == len(stems) and {p.stem for p in paths} == set(stems):
        mask_ijk = np.zeros(image.data_ijk.shape, dtype=np.uint8)
        for path in paths:
            mask_ijk[:, :, stems.index(path.stem)] = _read_png(path, image.data_ijk.shape[1::-1]).T
        return mask_ijk
    shape_hw = to_cohort(np.zeros(image.data_ijk.shape, np.uint8), image.affine_ras)[0].shape[1:]
    mask_shw = np.stack([_read_png(p, shape_hw) for p in paths])
    return from_cohort(mask_shw, image.affine_ras)


def _read_png(path: Path, shape_hw) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise InputError(path, "not a readable PNG image")
    if pixels.ndim == 3:  # colour: any colour channel, not alpha
        pixels = pixels[..., :3].max(axis=2)
    if pixels.shape != tuple(shape_hw):
        raise InputError(path, f"mask of {pixels.shape[0]}x{pixels.shape[1]} pixels, the image slice is "
                               f"{shape_hw[0]}x{shape_hw[1]}")
    return (pixels > 0).astype(np.uint8)


# --- DICOM SEG -------------------------------------------------------------

def read_seg(path: Path, image: SourceVolume) -> np.ndarray:
    """DICOM Segmentation -> mask (I, J, K); all segments united."""
    ds = _read_dataset(path)
    n_i, n_j, _ = image.data_ijk.shape
    if (ds.Rows, ds.Columns) != (n_j, n_i):
        raise InputError(path, f"SEG frames are {ds.Rows}x{ds.Columns}, the image slices {n_j}x{n_i}")
    try:
        frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    except Exception as e:
        raise InputError(path, f"cannot decode the SEG pixel data ({one_line(e)})") from None
    if ds.get("SegmentationType") == "FRACTIONAL":
        lesion = frames >= max(1, int(ds.get("MaximumFractionalValue", 255))) / 2
    else:  # BINARY, LABELMAP: any non-zero pixel
        lesion = frames > 0
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    if len(per_frame) != len(frames):
        raise InputError(path, f"{len(frames)} frames but {len(per_frame)} per-frame descriptions")
    mask_ijk = np.zeros(image.data_ijk.shape, dtype=np.uint8)
    for frame, groups in zip(lesion, per_frame):
        mask_ijk[:, :, _seg_frame_slice(path, groups, image)] |= frame.T.astype(np.uint8)
    return mask_ijk


def _seg_frame_slice(path, groups, image: SourceVolume) -> int:
    """The slice index k of one SEG frame: by referenced SOPInstanceUID, else by position."""
    uids = [str(src.ReferencedSOPInstanceUID)
            for derivation in groups.get("DerivationImageSequence", [])
            for src in derivation.get("SourceImageSequence", [])]
    if uids and image.sop_uids:
        if uids[0] not in image.sop_uids:
            raise InputError(path, "a SEG frame references an image that is not in the FLAIR series")
        return image.sop_uids.index(uids[0])
    planes = groups.get("PlanePositionSequence", [])
    if not planes:
        raise InputError(path, "a SEG frame has neither a referenced image nor a position")
    i, j, k = ras_to_ijk(lps_to_ras(planes[0].ImagePositionPatient), image.affine_ras)[0]
    if max(abs(i), abs(j)) > ON_GRID:
        raise InputError(path, f"a SEG frame's first pixel lies at image pixel ({i:.2f}, {j:.2f}), not (0, 0): "
                               "its pixel grid is not the image's")
    return _slice_at(path, k, image, "SEG frame")


def _slice_at(path, k: float, image: SourceVolume, what: str) -> int:
    n_slices = image.data_ijk.shape[2]
    nearest = int(round(k))
    if abs(k - nearest) > ON_GRID or not 0 <= nearest < n_slices:
        raise InputError(path, f"a {what} at slice position {k:.2f} does not lie on a slice of the image "
                               f"(slices 0..{n_slices - 1})")
    return nearest


# --- DICOM RTSTRUCT --------------------------------------------------------

def read_rtstruct(path: Path, image: SourceVolume) -> np.ndarray:
    """RT Structure Set -> mask (I, J, K): every CLOSED_PLANAR contour of every ROI, united."""
    ds = _read_dataset(path)
    polygons: Dict[int, List[np.ndarray]] = {}
    for roi in ds.get("ROIContourSequence", []):
        for contour in roi.get("ContourSequence", []):
            if contour.get("ContourGeometricType", "CLOSED_PLANAR") != "CLOSED_PLANAR":
                continue  # points and open lines outline nothing
            _check_contour_images(path, contour, image)
            ijk = ras_to_ijk(lps_to_ras(contour.ContourData), image.affine_ras)
            if np.ptp(ijk[:, 2]) > ON_GRID:
                raise InputError(path, "a contour is not in the plane of one image slice")
            k = _slice_at(path, float(ijk[:, 2].mean()), image, "contour")
            polygons.setdefault(k, []).append(ijk[:, :2])  # (column i, row j)
    n_i, n_j, _ = image.data_ijk.shape
    mask_ijk = np.zeros(image.data_ijk.shape, dtype=np.uint8)
    for k, polys in polygons.items():
        mask_ijk[:, :, k] = rasterise_polygons(polys, (n_j, n_i)).T
    return mask_ijk


def _check_contour_images(path, contour, image: SourceVolume) -> None:
    if not image.sop_uids:
        return
    for ref in contour.get("ContourImageSequence", []):
        if str(ref.ReferencedSOPInstanceUID) not in image.sop_uids:
            raise InputError(path, "a contour references an image that is not in the FLAIR series")


def _read_dataset(path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path))
    except Exception as e:
        raise InputError(path, f"unreadable DICOM file ({one_line(e)})") from None
