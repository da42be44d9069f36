"""A trained net on a new study (`plaquenet segment`): masks for viewers.

STUDY is one patient folder, read by the same content rules as `plaquenet
import` (`io.study.discover_patient`), outlines not needed: a DICOM FLAIR
series or a NIfTI volume. Every slice (not only those with plaques) goes
through the deploy net after the same per-volume `normalise_intensity` as
training and scoring; a voxel is plaque where the output >= the threshold
(default: the one `plaquenet score` chose, `<run dir>/score/results.json`),
a number in [0, 1] since the output is a sigmoid. Plaques are 3D connected
components (26-connectivity); `min_lesion_mm3` drops those of that volume or
less, by the same rule as the lesion-wise evaluation (`evaluate.lesions`).

OUT (written atomically, one folder) holds

    mask.nii.gz         uint8 0/1, the source's voxel order and affine
    probability.nii.gz  float32 network output, same grid
    segmentation.dcm    DICOM input only: a DICOM SEG (BINARY, one segment
                        "MS plaques") on the source series, for PACS/Slicer/OHIF.
                        A SEG carries its source's patient and study modules
                        by design (that is how a viewer attaches it): the one
                        file here with patient data, for the hospital's systems.
    lesions.csv         one row per lesion: volume, slices, centroid as cohort
                        voxel indices (s, h, w) and in RAS mm, the world
                        frame of mask.nii.gz (LESION_COLUMNS)
    overlays/slice_<s>.png  each slice with plaques, mask in colour
    brain.nii.gz        with `brain`: the brain mask (uint8, same grid); plaque
                        voxels further than `brain.GROW_MM` from it are dropped
                        (also written when the net takes skull-stripped input)
    segment.json        threshold, snapshot, counts (no header field, no path
                        of the study)

A run trained on skull-stripped tiles (`plaquenet tiles --skull-strip`; recorded
in RUN/score/results.json "input" and the run's tiles.json, plaquenet/skull_strip.py)
is fed the study skull-stripped the same way (`cohort.network_input` with the
study's brain mask from the extractor); the overlays show that input. A single
2D slice has no brain mask, so such a run refuses it.

Indices s, h, w are the cohort's (0-based; s inferior -> superior, each slice
as a radiologist sees it); nothing from a DICOM header or the study's folder
name reaches any file but the SEG.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from . import __version__, paths
from .atomic import atomic_path, refuse_existing
from .brain import GROW_MM, Extractor, brain_mask, grow, hd_bet, unusable
from .cohort import network_input
from .skull_strip import resolve, results_record, run_records
from .engines import checked, get_engine, with_batch_slices
from .engines.snapshots import find_deploy, latest_snapshot
from .errors import InputError
from .typing import PathLike
from .evaluate.inference import forward_volume
from .evaluate.lesions import lesion_components
from .io.nifti import write_nifti
from .io.orientation import SourceVolume, check_axial, from_cohort, to_cohort, voxel_mm
from .io.seg import write_seg
from .io.study import discover_patient, read_flair

CONNECTIVITY = 26  # fully connected, as the WMH challenge counts lesions
SEGMENT_LABEL = "MS plaques"
SEG_SERIES_NUMBER = 9901  # a series number no scanner protocol uses
# lesions.csv: centroids as cohort voxel indices and in RAS mm, the world
# frame of mask.nii.gz (+x toward the patient's right, +y anterior, +z
# superior; DICOM's patient coordinates are LPS: x and y negated).
LESION_COLUMNS = ("lesion", "volume_mm3", "voxels", "first_slice", "last_slice", "centroid_s", "centroid_h",
                  "centroid_w", "centroid_x_ras_mm", "centroid_y_ras_mm", "centroid_z_ras_mm")
LESIONS_CSV_FRAME = ("centroid_s/h/w: voxel indices in the cohort's (S, H, W) order (s inferior -> superior); "
                     "centroid_x/y/z_ras_mm: RAS world coordinates in mm (NIfTI, as mask.nii.gz)")
OVERLAY_COLOUR_BGR = (0, 0, 255)
OUTLINE_COLOUR_BGR = (0, 255, 255)


@dataclasses.dataclass
class Lesion:
    """One 3D connected component of the thresholded output."""

    number: int  # 1.., in scan order (first voxel in s, h, w order)
    voxels: int
    volume_mm3: float
    first_slice: int  # s
    last_slice: int  # s
    centroid_shw: Tuple[float, float, float]  # voxel indices
    centroid_ras_mm: Tuple[float, float, float]  # NIfTI world coordinates


@dataclasses.dataclass
class SegmentResult:
    out: Path
    threshold: float
    lesions: List[Lesion]
    mask_shw: np.ndarray  # uint8 (S, H, W), 0/1, after the size filter
    probability_shw: np.ndarray  # float32 (S, H, W)
    brain_shw: Optional[np.ndarray] = None  # uint8 (S, H, W) 0/1, with `brain`

    @property
    def total_volume_mm3(self) -> float:
        return float(sum(lesion.volume_mm3 for lesion in self.lesions))

    def __str__(self) -> str:
        return (f"{len(self.lesions)} lesions, {self.total_volume_mm3:.1f} mm^3 in total "
                f"(threshold {self.threshold:.4g}) -> {self.out}")


def segment(study: PathLike, snapshot: PathLike, out: PathLike = paths.SEGMENT_OUT,
            threshold: Optional[float] = None, deploy: Optional[PathLike] = None, min_lesion_mm3: float = 0.0,
            engine: str = "torch", device: str = "cpu", force: bool = False,
            precision: str = "fp32", brain: bool = False, extractor: Optional[Extractor] = None,
            batch_slices: Optional[int] = None, skull_strip: Optional[bool] = None) -> SegmentResult:
    """Segment one patient's study with a snapshot (a .caffemodel or a run folder: its latest);
    write OUT atomically (see the module docstring). `deploy` defaults to the run folder's copy
    (`engines.snapshots.find_deploy`); `precision`: the engine's arithmetic
    (fp32: Caffe's), recorded in the outputs; `brain`: drop plaque voxels outside the
    brain grown by GROW_MM (`extractor`, default HD-BET's fast mode; a single slice
    is segmented without it, and segment.json says so); `batch_slices`: 448x512 slices
    per forward call (engines.with_batch_slices; default the engine's); `skull_strip`: None,
    feed the input the run was trained on as recorded (`training_input`); True/False: say
    so, refused when a record disagrees. InputError on any bad input."""
    study, out = Path(study), Path(out)
    if not study.is_dir():
        raise InputError(study, "not a folder (give one patient's study folder)")
    if min_lesion_mm3 < 0 or not math.isfinite(min_lesion_mm3):
        raise InputError("--min-lesion-mm3", f"must be a volume >= 0, got {min_lesion_mm3}")
    snapshot = latest_snapshot(snapshot)
    threshold_from = "--threshold" if threshold is not None else str(results_file(snapshot))
    threshold = stored_threshold(snapshot) if threshold is None else check_threshold(threshold, snapshot)
    deploy = find_deploy(snapshot, deploy)
    device = get_engine(engine).check_device(device)
    skull_strip, input_from = training_input(snapshot, skull_strip)
    refuse_existing(out, force)  # before the slow part: fail fast
    if (brain or skull_strip) and extractor is None:
        extractor = hd_bet(device=device)  # the extra and its weights checked before the forward, too
    image, headers = read_flair(discover_patient(study, need_outlines=False))
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    if not np.isfinite(flair_shw).all():
        raise InputError(image.path, "NaN/inf voxels in the FLAIR volume")
    if skull_strip and unusable(flair_shw.shape):
        raise InputError(image.path, f"{unusable(flair_shw.shape)}; this run was trained on skull-stripped input "
                                     f"({input_from}), which needs a brain mask")
    brain_shw, brain_note = None, "not used"
    if (brain or skull_strip) and extractor is not None and not unusable(flair_shw.shape):
        brain_shw = brain_mask(flair_shw, voxel_mm(affine_whs), extractor, where=image.path)
    if brain:
        brain_note = unusable(flair_shw.shape) or f"plaque voxels further than {GROW_MM:g} mm from it dropped"
    image_shw = network_input(flair_shw, brain_shw if skull_strip else None, voxel_mm(affine_whs))
    forward = with_batch_slices(checked(get_engine(engine).load_deploy(deploy, snapshot, device, precision=precision),
                                        snapshot), batch_slices)  # NaN: one line
    probability_shw = forward_volume(flair_shw, forward, image_shw)
    keep_shw = None if brain_shw is None or not brain else grow(brain_shw, voxel_mm(affine_whs))
    mask_shw, lesions = plaques(probability_shw, threshold, affine_whs, min_lesion_mm3, keep_shw)
    result = SegmentResult(out, threshold, lesions, mask_shw, probability_shw, brain_shw)
    about = {"snapshot": str(snapshot), "deploy": str(deploy), "engine": engine, "device": device,
             "precision": precision, "threshold": threshold,
             "threshold_from": threshold_from,
             "min_lesion_mm3": min_lesion_mm3, "connectivity": CONNECTIVITY,
             "flair_source": "dicom" if headers else "nifti", "shape_shw": list(flair_shw.shape),
             "voxel_mm": list(voxel_mm(affine_whs)), "lesions_csv": LESIONS_CSV_FRAME, "brain": brain_note,
             "input": {"skull_strip": skull_strip, **({"grow_mm": GROW_MM} if skull_strip else {}),
                       "from": input_from}}
    write_outputs(out, result, image, headers, image_shw, about)
    return result


def training_input(snapshot: Path, option: Optional[bool] = None) -> Tuple[bool, str]:
    """(skull-stripped, where recorded) for the snapshot's run: RUN/score/results.json
    "input" and the tiles its train nets read, which must agree with each other and
    with `option` (plaquenet/skull_strip.py); InputError on a mismatch."""
    scored = results_record(results_file(snapshot))
    return resolve(([scored] if scored is not None else []) + run_records(Path(snapshot).parent), option)


# --- input -----------------------------------------------------------------

def results_file(snapshot: Path) -> Path:
    return Path(snapshot).parent / "score" / "results.json"


def stored_threshold(snapshot: Path) -> float:
    """The threshold `plaquenet score` chose for this run (§3.3: best F on the training scans)."""
    path = results_file(snapshot)
    if not path.is_file():
        raise InputError(path, "no score results to take the threshold from (run `plaquenet score` "
                               "or give --threshold)")
    try:
        value = float(json.loads(path.read_text())["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"no readable 'threshold' ({type(e).__name__}: {e})") from None
    if not 0 <= value <= 1:
        raise InputError(path, f"threshold is {value}, outside [0, 1]")
    return value


def check_threshold(threshold: float, snapshot: Path) -> float:
    """A threshold given by hand: the net's output is a sigmoid, so only [0, 1]
    can separate plaque from background (above 1 nothing, below 0 everything)."""
    value = float(threshold)
    if not 0 <= value <= 1:
        try:
            stored = f"; this run's stored threshold is {stored_threshold(snapshot):.4g}"
        except InputError:
            stored = ""
        raise InputError("--threshold", f"must be in [0, 1] (the network's output is a sigmoid), got {threshold}"
                                        f"{stored}")
    return value


# --- the net and its plaques -------------------------------------------------

def plaques(probability_shw: np.ndarray, threshold: float, affine_whs: np.ndarray,
            min_lesion_mm3: float = 0.0, keep_shw: Optional[np.ndarray] = None) -> Tuple[np.ndarray, List[Lesion]]:
    """Threshold (plaque where output >= threshold, and inside `keep_shw` when given:
    the grown brain), label 3D components, drop those of
    `min_lesion_mm3` or less (`evaluate.lesions.lesion_components`: the MSSEG-2016 rule). Returns (mask_shw uint8 0/1, lesions in scan order); ([], empty
    mask) when nothing reaches the threshold."""
    marked_shw = probability_shw >= threshold if keep_shw is None else (probability_shw >= threshold) & keep_shw
    labels_shw, n = lesion_components(marked_shw, voxel_mm(affine_whs), CONNECTIVITY,
                                      min_volume_mm3=min_lesion_mm3)
    return (labels_shw > 0).astype(np.uint8), lesion_table(labels_shw, n, affine_whs)


def lesion_table(labels_shw: np.ndarray, n: int, affine_whs: np.ndarray) -> List[Lesion]:
    """One Lesion per label 1..n of a (S, H, W) label volume."""
    from scipy import ndimage

    voxel_mm3 = float(np.prod(voxel_mm(affine_whs)))
    lesions = []
    for number, where in enumerate(ndimage.find_objects(labels_shw, max_label=n), start=1):
        voxels = np.argwhere(labels_shw[where] == number) + [sl.start for sl in where]
        centroid_shw = voxels.mean(axis=0)
        s, h, w = (float(v) for v in centroid_shw)
        x, y, z = (float(v) for v in (np.asarray(affine_whs) @ [w, h, s, 1.0])[:3])
        lesions.append(Lesion(number, len(voxels), len(voxels) * voxel_mm3, int(where[0].start),
                              int(where[0].stop - 1), (s, h, w), (x, y, z)))
    return lesions


# --- outputs ---------------------------------------------------------------

def write_outputs(out: Path, result: SegmentResult, image: SourceVolume, headers: Optional[list],
                  image_shw: np.ndarray, about: dict) -> None:
    """Everything of the module docstring into `out`, atomically."""
    with atomic_path(out) as tmp:
        tmp.mkdir()
        write_nifti_like(tmp / "mask.nii.gz", result.mask_shw, image)
        write_nifti_like(tmp / "probability.nii.gz", result.probability_shw, image)
        files = ["mask.nii.gz", "probability.nii.gz"]
        if result.brain_shw is not None:
            write_nifti_like(tmp / "brain.nii.gz", result.brain_shw, image)
            files.append("brain.nii.gz")
        if headers:
            write_segmentation(tmp / "segmentation.dcm", result.mask_shw, image, headers)
            files.append("segmentation.dcm")
        write_lesion_table(tmp / "lesions.csv", result.lesions)
        files += ["lesions.csv"] + write_overlays(tmp / "overlays", image_shw, result.mask_shw)
        summary = {**about, "lesions": len(result.lesions), "total_volume_mm3": result.total_volume_mm3,
                   "files": files + ["segment.json"]}
        (tmp / "segment.json").write_text(json.dumps(summary, indent=2) + "\n")


def write_nifti_like(path: Path, volume_shw: np.ndarray, image: SourceVolume) -> None:
    """A cohort-order volume back in the source's voxel order, with the source's affine."""
    write_nifti(path, np.ascontiguousarray(from_cohort(volume_shw, image.affine_ras)), image.affine_ras)


def write_segmentation(path: Path, mask_shw: np.ndarray, image: SourceVolume, headers: Sequence) -> None:
    """DICOM SEG on the source series (headers in slice order k): frames for slices with plaques."""
    mask_kji = from_cohort(mask_shw, image.affine_ras).transpose(2, 1, 0).astype(bool)  # (slice, row, col)
    write_seg(path, mask_kji, headers, SEGMENT_LABEL, algorithm_version=__version__, series_number=SEG_SERIES_NUMBER,
              series_description="plaquenet MS plaques", content_label="PLAQUES")


def write_lesion_table(path: Path, lesions: List[Lesion]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LESION_COLUMNS)
        for lesion in lesions:
            writer.writerow([lesion.number, f"{lesion.volume_mm3:.4f}", lesion.voxels, lesion.first_slice,
                             lesion.last_slice, *(f"{v:.2f}" for v in lesion.centroid_shw),
                             *(f"{v:.2f}" for v in lesion.centroid_ras_mm)])


def overlay(image_hw: np.ndarray, mask_hw: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 BGR: the normalised slice in grey, plaques tinted red and outlined in yellow."""
    grey = (np.clip(image_hw, 0, 1) * 255).astype(np.uint8)
    picture = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    inside = mask_hw > 0
    tint = np.array(OVERLAY_COLOUR_BGR, np.float32)
    picture[inside] = (0.5 * picture[inside] + 0.5 * tint).astype(np.uint8)
    contours, _ = cv2.findContours(inside.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, OUTLINE_COLOUR_BGR, 1)
    return picture


def write_overlays(folder: Path, image_shw: np.ndarray, mask_shw: np.ndarray) -> List[str]:
    """overlays/slice_<s>.png for each slice with plaques; returns the names relative to OUT."""
    folder.mkdir()
    names = []
    for s in np.flatnonzero(mask_shw.reshape(len(mask_shw), -1).any(axis=1)):
        name = f"slice_{s:03d}.png"
        if not cv2.imwrite(str(folder / name), overlay(image_shw[s], mask_shw[s])):
            raise OSError(f"cannot write {folder / name}")
        names.append(f"overlays/{name}")
    return names
