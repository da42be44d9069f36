"""Radiologists' outlines -> a uint8 mask (I, J, K) on the grid of the FLAIR `SourceVolume`.

Every reader returns its mask in the image's own voxel order, so that the one
`orientation.to_cohort` step turns image and mask into (S, H, W) together.
Every non-zero label counts as plaque, and so does every SEG segment and RT
ROI except those of anatomy (`is_anatomy`: EXTERNAL ROIs, names such as BODY,
Skin, Brain), which would mark the whole head. The rest are united: lesion
ROIs are often one per plaque, and several segments, ROIs or contours on one
slice are united (a hole contour is filled, as `rasterise_polygons` unites
overlapping polygons).

PNG masks (a folder `mask/`, one PNG per slice, non-zero = plaque):
  * when every PNG stem equals a DICOM file stem, PNG `X.png` belongs to
    DICOM file `X[.dcm]` and is in that file's pixel layout (rows x columns);
  * otherwise the PNGs, in natural name order (`s2` before `s10`), are the
    cohort slices inferior -> superior, each drawn as the cohort shows it
    (rows anterior -> posterior, columns patient right -> left).
DICOM SEG: each frame is placed through its own geometry (PlanePosition,
  PlaneOrientation, PixelSpacing), which must be the image's voxel grid up to
  flips and a permutation of axes, so a SEG drawn on a DICOM series also fits a
  NIfTI of the same volume in any voxel order. A frame without a position goes
  to the slice whose SOPInstanceUID it references, in that file's pixel layout.
DICOM RTSTRUCT: CLOSED_PLANAR contours (patient mm) are mapped to the
  cohort's (w, h, s) voxel coordinates and rasterised on the axial slice at
  their position, as `rasterise_polygons` does for the phantom, whatever the
  image's voxel order; referenced images (ContourImageSequence) must be in
  the series.
"""

import re
from pathlib import Path
from typing import Dict, List, Sequence, Set, Tuple, Union

import cv2
import numpy as np
import pydicom

from ..errors import InputError
from ..typing import PathLike
from .dicom import check_values, one_line
from .orientation import SourceVolume, cohort_grid, from_cohort, lps_to_ras, ras_to_ijk
from .polygons import rasterise_polygons

ON_GRID = 0.2  # voxels: how far a SEG frame or contour may sit from a slice or pixel centre
ANATOMY_WORDS = {"body", "external", "skin", "outline", "brain", "head"}
LESION_WORDS = {"lesion", "lesions", "plaque", "plaques", "ms"}


def is_anatomy(name: str) -> bool:
    """True when an ROI or segment name says anatomy, not plaques: a word of ANATOMY_WORDS and none
    of LESION_WORDS ("BODY", "brain_mask" and "Skin outline" are anatomy, "Brain lesions" is not)."""
    words = set(re.findall(r"[a-z]+", str(name).lower()))
    return bool(words & ANATOMY_WORDS) and not words & LESION_WORDS


# --- PNG -------------------------------------------------------------------

def natural_key(path: PathLike) -> List[Union[int, str]]:
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
    shape_hw = cohort_grid(image.data_ijk.shape, image.affine_ras)[0][1:]
    mask_shw = np.stack([_read_png(p, shape_hw) for p in paths])
    return from_cohort(mask_shw, image.affine_ras)


def _read_png(path: Path, shape_hw: Sequence[int]) -> np.ndarray:
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
    """DICOM Segmentation -> mask (I, J, K): the plaque segments united (see the module docstring)."""
    ds = _read_dataset(path)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
    mask_ijk = np.zeros(image.data_ijk.shape, dtype=np.uint8)
    for frame, groups in zip(_seg_plaque_frames(path, ds, per_frame), per_frame):
        mask_ijk[_seg_frame_voxels(path, ds, groups, image)] |= frame
    return mask_ijk


def _seg_plaque_frames(path: PathLike, ds: pydicom.Dataset, per_frame: Sequence[pydicom.Dataset]) -> np.ndarray:
    """(frames, rows, columns) uint8: 1 where a frame shows a segment that is not anatomy."""
    try:
        frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    except Exception as e:
        raise InputError(path, f"cannot decode the SEG pixel data ({one_line(e)})") from None
    if len(per_frame) != len(frames):
        raise InputError(path, f"{len(frames)} frames but {len(per_frame)} per-frame descriptions")
    anatomy = _anatomy_segments(ds)
    if ds.get("SegmentationType") == "LABELMAP":  # pixel value = segment number
        return ((frames > 0) & ~np.isin(frames, anatomy)).astype(np.uint8)
    if ds.get("SegmentationType") == "FRACTIONAL":
        lesion = frames >= max(1, int(ds.get("MaximumFractionalValue", 255))) / 2
    else:  # BINARY
        lesion = frames > 0
    segments = [g.get("SegmentIdentificationSequence") for g in per_frame]
    keep = [not ids or int(ids[0].ReferencedSegmentNumber) not in anatomy for ids in segments]
    return (lesion & np.array(keep)[:, None, None]).astype(np.uint8)


def _anatomy_segments(ds: pydicom.Dataset) -> List[int]:
    """Segment numbers of anatomy: the label or the segmented property type `is_anatomy`."""
    numbers = []
    for segment in ds.get("SegmentSequence", []):
        names = [segment.get("SegmentLabel", "")] + [
            code.get("CodeMeaning", "") for code in segment.get("SegmentedPropertyTypeCodeSequence", [])]
        if "SegmentNumber" in segment and any(is_anatomy(name) for name in names):
            numbers.append(int(segment.SegmentNumber))
    return numbers


def _seg_frame_voxels(path: PathLike, ds: pydicom.Dataset, groups: pydicom.Dataset,
                      image: SourceVolume) -> Tuple[np.ndarray, ...]:
    """Image voxel indices (i, j, k), each (rows, columns), of the pixels of one SEG frame."""
    first, steps = _seg_frame_grid(path, ds, groups, image)
    shape = np.array(image.data_ijk.shape)
    in_plane = np.abs(steps).argmax(axis=1)  # the image axes of the frame's columns and rows
    if (shape[in_plane[1]], shape[in_plane[0]]) != (ds.Rows, ds.Columns):
        raise InputError(path, f"SEG frames are {ds.Rows}x{ds.Columns}, the image slices "
                               f"{shape[in_plane[1]]}x{shape[in_plane[0]]}")
    normal = 3 - in_plane.sum()
    corner = np.round(first).astype(int)
    corner[normal] = _slice_at(path, first[normal], shape[normal], "SEG frame")
    rows, columns = np.mgrid[0:ds.Rows, 0:ds.Columns]
    ijk = corner[:, None, None] + steps[0][:, None, None] * columns + steps[1][:, None, None] * rows
    if np.abs(first - corner).max() > ON_GRID or ijk.min() < 0 or (ijk.max(axis=(1, 2)) >= shape).any():
        raise InputError(path, "a SEG frame's first pixel lies at image voxel ({:.2f}, {:.2f}, {:.2f}): its pixel "
                               "grid is not the image's".format(*first))
    return tuple(ijk)


def _seg_frame_grid(path: PathLike, ds: pydicom.Dataset, groups: pydicom.Dataset,
                    image: SourceVolume) -> Tuple[np.ndarray, np.ndarray]:
    """The frame's first pixel as fractional image voxel (i, j, k), and the (2, 3) integer voxel
    steps of one frame column and one frame row (a signed unit vector each: flips/permutation only)."""
    uids = [str(src.ReferencedSOPInstanceUID)
            for derivation in groups.get("DerivationImageSequence", [])
            for src in derivation.get("SourceImageSequence", [])]
    if uids and image.sop_uids and uids[0] not in image.sop_uids:
        raise InputError(path, "a SEG frame references an image that is not in the FLAIR series")
    position = _functional_item(ds, groups, "PlanePositionSequence")
    if "ImagePositionPatient" not in position:
        if not (uids and image.sop_uids):
            raise InputError(path, "a SEG frame has neither a referenced image nor a position")
        return np.array([0.0, 0.0, image.sop_uids.index(uids[0])]), np.eye(3, dtype=int)[:2]
    orientation = _functional_item(ds, groups, "PlaneOrientationSequence")
    spacing = _functional_item(ds, groups, "PixelMeasuresSequence")
    for item, key, count in ((position, "ImagePositionPatient", 3), (orientation, "ImageOrientationPatient", 6),
                             (spacing, "PixelSpacing", 2)):
        check_values(path, item, key, count, "a SEG frame")
    iop = np.asarray(orientation.ImageOrientationPatient, dtype=np.float64)
    row_mm, column_mm = (float(v) for v in spacing.PixelSpacing)
    first = ras_to_ijk(lps_to_ras(position.ImagePositionPatient), image.affine_ras)[0]
    steps = lps_to_ras([iop[:3] * column_mm, iop[3:] * row_mm]) @ np.linalg.inv(image.affine_ras)[:3, :3].T
    unit = np.round(steps)
    if not np.array_equal(unit @ unit.T, np.eye(2)) or np.abs(steps - unit).max() * max(ds.Rows, ds.Columns) > ON_GRID:
        raise InputError(path, "a SEG frame's pixels are not the image's voxels (another pixel spacing or an "
                               "oblique orientation)")
    return first, unit.astype(int)


def _functional_item(ds: pydicom.Dataset, groups: pydicom.Dataset, name: str) -> pydicom.Dataset:
    """The first item of functional group `name` of one frame (per-frame, else shared); empty if none."""
    for group in (groups, *ds.get("SharedFunctionalGroupsSequence", [])):
        if group.get(name):
            return group.get(name)[0]
    return pydicom.Dataset()


def _slice_at(path: PathLike, k: float, n_slices: int, what: str) -> int:
    nearest = int(round(k))
    if abs(k - nearest) > ON_GRID or not 0 <= nearest < n_slices:
        raise InputError(path, f"a {what} at slice position {k:.2f} does not lie on a slice of the image "
                               f"(slices 0..{n_slices - 1})")
    return nearest


# --- DICOM RTSTRUCT --------------------------------------------------------

def read_rtstruct(path: Path, image: SourceVolume) -> np.ndarray:
    """RT Structure Set -> mask (I, J, K): every CLOSED_PLANAR contour of every plaque ROI, united
    (ROIs of anatomy are skipped, see the module docstring). Contours are rasterised on the cohort's
    axial slices, so the mask does not depend on the image's voxel order."""
    ds = _read_dataset(path)
    anatomy = _anatomy_rois(ds)
    shape_shw, affine_whs = cohort_grid(image.data_ijk.shape, image.affine_ras)
    polygons: Dict[int, List[np.ndarray]] = {}
    for roi in ds.get("ROIContourSequence", []):
        if roi.get("ReferencedROINumber") in anatomy:
            continue
        for contour in roi.get("ContourSequence", []):
            if contour.get("ContourGeometricType", "CLOSED_PLANAR") != "CLOSED_PLANAR":
                continue  # points and open lines outline nothing
            _check_contour_images(path, contour, image)
            whs = ras_to_ijk(lps_to_ras(_contour_points(path, contour)), affine_whs)
            if np.ptp(whs[:, 2]) > ON_GRID:
                raise InputError(path, "a contour is not in the plane of one image slice")
            s = _slice_at(path, float(whs[:, 2].mean()), shape_shw[0], "contour")
            polygons.setdefault(s, []).append(whs[:, :2])  # (column w, row h)
    mask_shw = np.zeros(shape_shw, dtype=np.uint8)
    for s, polys in polygons.items():
        mask_shw[s] = rasterise_polygons(polys, shape_shw[1:])
    return from_cohort(mask_shw, image.affine_ras)


def _anatomy_rois(ds: pydicom.Dataset) -> Set[int]:
    """ROI numbers of anatomy: RTROIInterpretedType EXTERNAL, or a name `is_anatomy`."""
    external = {int(o.ReferencedROINumber) for o in ds.get("RTROIObservationsSequence", [])
                if "ReferencedROINumber" in o and str(o.get("RTROIInterpretedType", "")).upper() == "EXTERNAL"}
    named = {int(r.ROINumber) for r in ds.get("StructureSetROISequence", [])
             if "ROINumber" in r and is_anatomy(r.get("ROIName", ""))}
    return external | named


def _contour_points(path: PathLike, contour: pydicom.Dataset) -> np.ndarray:
    """(N, 3) LPS mm of one contour; InputError unless ContourData holds x, y, z triplets."""
    count = contour["ContourData"].VM if "ContourData" in contour else 0
    if count == 0:
        raise InputError(path, "a contour without ContourData")
    if count % 3:
        raise InputError(path, f"a contour with {count} ContourData values, not x, y, z triplets")
    return np.asarray(contour.ContourData, dtype=np.float64).reshape(-1, 3)


def _check_contour_images(path: PathLike, contour: pydicom.Dataset, image: SourceVolume) -> None:
    if not image.sop_uids:
        return
    for ref in contour.get("ContourImageSequence", []):
        if str(ref.ReferencedSOPInstanceUID) not in image.sop_uids:
            raise InputError(path, "a contour references an image that is not in the FLAIR series")


def _read_dataset(path: PathLike) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(str(path))
    except Exception as e:
        raise InputError(path, f"unreadable DICOM file ({one_line(e)})") from None
