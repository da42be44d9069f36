"""The cohort store: one HDF5 file per cohort, one group per pseudonymous patient.

Layout of `data/<cohort>/cohort.h5`::

    attrs   format="plaquenet-cohort", version=1, name, cohort_id (random, new at
            every write: the split and the tiles record the one they were made from)
            regions_legend (optional, with the region maps): JSON {"0": "air", ...}
    /patients/<id>/flair   (S, H, W) float32, scanner units (rescale applied)
    /patients/<id>/mask    (S, H, W) uint8, 1 = plaque (radiologist's outline)
    /patients/<id>/regions     optional: (S, H, W) uint8, where each voxel is
                               (labels of regions_legend)
    /patients/<id>/mask_exact  optional: (S, H, W) uint8, 1 = plaque voxel, exactly
                               (the truth behind the outlines; the phantom has it)
    /patients/<id>/brain       optional: (S, H, W) uint8, 1 = brain (`plaquenet brainmask`,
                               added to the store in place: `write_brain_masks`)
    attrs brain_extractor      with the brain masks: which extractor wrote them
    /patients/<id> attrs   voxel_mm (3,) in (S, H, W) order, mm
                           affine_whs (4, 4): NIfTI affine of flair.transpose(2, 1, 0),
                             index (w, h, s) -> RAS mm
                           flair_source, mask_source: e.g. "dicom", "rtstruct"

Axis convention (the same for DICOM and NIfTI input): s runs inferior ->
superior, h anterior -> posterior, w patient right -> left, i.e. each slice
looks as a radiologist sees an axial FLAIR.

The optional datasets (`plaquenet import --truth`) are the same for every
patient or absent for all; `load_scan` and `iter_scans` do not read them,
`iter_truth` does.

The train/test split lives beside it, in `split.json` (paper §4.1: a random
split by patient). Patient ids are pseudonymous ("P001", ...): nothing from a
DICOM header or a folder name that could identify a person is stored.
A person scanned in several sessions (`plaquenet import --bids`) has one
group per session, "P002-S1", "P002-S2", ...: a volume of its own everywhere,
but one person to the split (`person`), so never on both sides of it.
"""

import dataclasses
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .typing import PathLike

FORMAT = "plaquenet-cohort"
VERSION = 1
TEST_FRACTION = 0.2  # §4.1: a random split by patient, 77 train / 19 test of 96
SESSION_MARK = "-S"  # "P002-S1": the first session of the person P002


@dataclasses.dataclass
class Scan:
    """One patient's axial FLAIR volume and the radiologist's mask."""

    patient: str  # pseudonymous id
    flair_shw: np.ndarray  # float32 (S, H, W), scanner units
    mask_shw: np.ndarray  # uint8 (S, H, W), 0/1
    voxel_mm: Tuple[float, ...]  # (slice, row, column) spacing in mm
    affine_whs: np.ndarray  # 4x4, index (w, h, s) -> RAS mm
    flair_source: str = ""
    mask_source: str = ""
    regions_shw: Optional[np.ndarray] = None  # uint8 (S, H, W), labels of the cohort's regions_legend
    mask_exact_shw: Optional[np.ndarray] = None  # uint8 (S, H, W) 0/1, the plaques themselves

    def lesion_slices(self) -> np.ndarray:
        """Indices of the slices with at least one plaque pixel (§4.1 keeps only these)."""
        return lesion_slices(self.mask_shw)


@dataclasses.dataclass
class Truth:
    """What the radiologist's outlines only approximate, where it is known (the phantom)."""

    patient: str
    regions_shw: Optional[np.ndarray]  # uint8 (S, H, W), labels of region_legend(), None if absent
    mask_exact_shw: Optional[np.ndarray]  # uint8 (S, H, W) 0/1, None if absent


def lesion_slices(mask_shw: np.ndarray) -> np.ndarray:
    """Indices of the slices of a (S, H, W) mask with at least one plaque pixel."""
    return np.flatnonzero(mask_shw.reshape(len(mask_shw), -1).any(axis=1))


def cohort_file(cohort_dir: PathLike) -> Path:
    return Path(cohort_dir) / "cohort.h5"


def split_file(cohort_dir: PathLike) -> Path:
    return Path(cohort_dir) / "split.json"


def check_scan(scan: Scan, source: PathLike = "") -> None:
    """Raise InputError for what no later stage can use: NaN/inf voxels, a mask
    of another shape, a volume that is not 3D."""
    where = source or scan.patient
    if scan.flair_shw.ndim != 3:
        raise InputError(where, f"FLAIR must be 3D (S, H, W), got shape {scan.flair_shw.shape}")
    if scan.mask_shw.shape != scan.flair_shw.shape:
        raise InputError(
            where, f"mask shape {scan.mask_shw.shape} does not match image shape {scan.flair_shw.shape}"
        )
    for what, truth in (("region map", scan.regions_shw), ("exact mask", scan.mask_exact_shw)):
        if truth is not None and truth.shape != scan.flair_shw.shape:
            raise InputError(where, f"{what} shape {truth.shape} does not match image shape {scan.flair_shw.shape}")
    bad = ~np.isfinite(scan.flair_shw)
    if bad.any():
        raise InputError(where, f"{int(bad.sum())} NaN/inf voxels in the FLAIR volume")


def write_cohort(cohort_dir: PathLike, scans: Iterable[Scan], name: Optional[str] = None,
                 regions_legend: Optional[Dict[int, str]] = None) -> Path:
    """Write all scans to `<cohort_dir>/cohort.h5` atomically; return its path.

    Scans with a region map need `regions_legend` (label -> region name), and
    their labels must be in it."""
    path = cohort_file(cohort_dir)
    seen = set()
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["version"] = VERSION
            f.attrs["name"] = name or Path(cohort_dir).name
            f.attrs["cohort_id"] = uuid.uuid4().hex
            if regions_legend is not None:
                f.attrs["regions_legend"] = json.dumps({str(k): v for k, v in sorted(regions_legend.items())})
            patients = f.create_group("patients")
            for scan in scans:
                check_scan(scan)
                if scan.patient in seen:
                    raise InputError(path, f"patient id {scan.patient} given twice")
                seen.add(scan.patient)
                if scan.regions_shw is not None:
                    _check_region_labels(scan, regions_legend)
                _write_scan(patients, scan)
    _drop_derived(cohort_dir)
    return path


def _check_region_labels(scan: Scan, legend: Optional[Dict[int, str]]) -> None:
    assert scan.regions_shw is not None
    if legend is None:
        raise InputError(scan.patient, "a region map needs a regions_legend")
    unknown = sorted(set(int(v) for v in np.flatnonzero(np.bincount(scan.regions_shw.ravel()))) - set(legend))
    if unknown:
        raise InputError(scan.patient, f"region labels {unknown} are not in the regions legend")


def _drop_derived(cohort_dir: PathLike) -> None:
    """A new cohort store makes the old split and tiles wrong: patient ids are
    positional, so an old split would silently put other people on each side."""
    split_file(cohort_dir).unlink(missing_ok=True)
    tiles = Path(cohort_dir) / "tiles"
    if tiles.is_dir() and not tiles.is_symlink():
        shutil.rmtree(tiles)


def _write_scan(patients: h5py.Group, scan: Scan) -> None:
    g = patients.create_group(scan.patient)
    s, h, w = scan.flair_shw.shape
    g.create_dataset("flair", data=np.asarray(scan.flair_shw, dtype=np.float32), chunks=(1, h, w))
    g.create_dataset("mask", data=(scan.mask_shw > 0).astype(np.uint8), chunks=(1, h, w), compression="lzf")
    for key, truth in (("regions", scan.regions_shw), ("mask_exact", scan.mask_exact_shw)):
        if truth is not None:
            g.create_dataset(key, data=np.asarray(truth, dtype=np.uint8), chunks=(1, h, w), compression="gzip")
    g.attrs["voxel_mm"] = np.asarray(scan.voxel_mm, dtype=np.float64)
    g.attrs["affine_whs"] = np.asarray(scan.affine_whs, dtype=np.float64)
    g.attrs["flair_source"] = scan.flair_source
    g.attrs["mask_source"] = scan.mask_source


def _open(cohort_dir: PathLike) -> h5py.File:
    path = cohort_file(cohort_dir)
    if not path.is_file():
        raise InputError(path, "no cohort store here (run `plaquenet import` or `plaquenet phantom` first)")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, f"not a readable HDF5 file ({e})") from None
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise InputError(path, "not a plaquenet cohort store")
    return f


def cohort_name(cohort_dir: PathLike) -> str:
    with _open(cohort_dir) as f:
        return str(f.attrs["name"])


def cohort_id(cohort_dir: PathLike) -> str:
    with _open(cohort_dir) as f:
        return str(f.attrs.get("cohort_id", ""))


def patient_ids(cohort_dir: PathLike) -> List[str]:
    with _open(cohort_dir) as f:
        return sorted(f["patients"].keys())


def load_scan(cohort_dir: PathLike, patient: str) -> Scan:
    with _open(cohort_dir) as f:
        if patient not in f["patients"]:
            raise InputError(cohort_file(cohort_dir), f"no patient {patient}")
        g = f["patients"][patient]
        return Scan(
            patient=patient,
            flair_shw=g["flair"][...],
            mask_shw=g["mask"][...],
            voxel_mm=tuple(float(v) for v in g.attrs["voxel_mm"]),
            affine_whs=np.array(g.attrs["affine_whs"]),
            flair_source=str(g.attrs.get("flair_source", "")),
            mask_source=str(g.attrs.get("mask_source", "")),
        )


def iter_scans(cohort_dir: PathLike, patients: Optional[Sequence[str]] = None) -> Iterator[Scan]:
    """Yield one patient at a time, so memory holds one volume whatever the cohort size."""
    for pid in patients if patients is not None else patient_ids(cohort_dir):
        yield load_scan(cohort_dir, pid)


def iter_masks(cohort_dir: PathLike, patients: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """Yield (patient, mask_shw) without reading the FLAIR volumes: for the
    passes that need only where the plaques are."""
    with _open(cohort_dir) as f:
        for pid in patients if patients is not None else sorted(f["patients"].keys()):
            if pid not in f["patients"]:
                raise InputError(cohort_file(cohort_dir), f"no patient {pid}")
            yield pid, f["patients"][pid]["mask"][...]


def region_legend(cohort_dir: PathLike) -> Optional[Dict[int, str]]:
    """Label -> region name of the cohort's region maps; None when the cohort has none."""
    with _open(cohort_dir) as f:
        text = f.attrs.get("regions_legend")
    return None if text is None else {int(k): str(v) for k, v in json.loads(text).items()}


def iter_truth(cohort_dir: PathLike, patients: Optional[Sequence[str]] = None) -> Iterator[Truth]:
    """Yield each patient's truth (region map, exact mask; None where the cohort
    has none), one patient in memory at a time, in the order of `patients`
    (default: all, sorted)."""
    with _open(cohort_dir) as f:
        for pid in patients if patients is not None else sorted(f["patients"].keys()):
            if pid not in f["patients"]:
                raise InputError(cohort_file(cohort_dir), f"no patient {pid}")
            g = f["patients"][pid]
            yield Truth(pid, g["regions"][...] if "regions" in g else None,
                        g["mask_exact"][...] if "mask_exact" in g else None)


def write_brain_masks(cohort_dir: PathLike, masks: Dict[str, np.ndarray], extractor: str) -> Path:
    """Add each patient's brain mask (S, H, W) 0/1 to the store, atomically (a copy
    with the masks is renamed onto it). The images, the split and the tiles stay
    valid (cohort_id is kept); earlier brain masks are replaced."""
    path = cohort_file(cohort_dir)
    with _open(cohort_dir) as f:
        shapes = {pid: f["patients"][pid]["flair"].shape for pid in f["patients"]}
    for pid, mask in masks.items():
        if pid not in shapes:
            raise InputError(path, f"no patient {pid}")
        if mask.shape != shapes[pid]:
            raise InputError(path, f"{pid}: brain mask shape {mask.shape} does not match image shape {shapes[pid]}")
    with atomic_path(path) as tmp:
        shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for pid, mask in masks.items():
                g = f["patients"][pid]
                if "brain" in g:
                    del g["brain"]
                g.create_dataset("brain", data=(np.asarray(mask) > 0).astype(np.uint8), chunks=(1,) + mask.shape[1:],
                                 compression="gzip")
            f.attrs["brain_extractor"] = extractor
    return path


def brain_masks_present(cohort_dir: PathLike) -> List[str]:
    """The patients whose group holds a brain mask."""
    with _open(cohort_dir) as f:
        return sorted(pid for pid, g in f["patients"].items() if "brain" in g)


def brain_extractor(cohort_dir: PathLike) -> str:
    """Which extractor wrote the store's brain masks ("" when none did)."""
    with _open(cohort_dir) as f:
        return str(f.attrs.get("brain_extractor", ""))


def load_brain(cohort_dir: PathLike, patient: str) -> Optional[np.ndarray]:
    """uint8 (S, H, W) 0/1, the patient's brain mask; None when the store has none for it."""
    with _open(cohort_dir) as f:
        if patient not in f["patients"]:
            raise InputError(cohort_file(cohort_dir), f"no patient {patient}")
        g = f["patients"][patient]
        return g["brain"][...] if "brain" in g else None


def normalise_intensity(flair_shw: np.ndarray) -> np.ndarray:
    """Scanner units -> [0, 1], per patient volume; the same at train and test time.

    The paper does not say how it scaled intensities; its Fig. 9 thresholds the
    raw image at 50/45/40 %, so some [0, 1] scaling is implied. Our choice: divide
    by the 99.9th percentile of the positive voxels of the whole volume (robust to
    a few hot voxels, independent of how much air the field of view holds) and
    clip to [0, 1]. Per volume, not per slice, so that a slice with only skull
    is not stretched to look like brain.
    """
    flair = np.asarray(flair_shw, dtype=np.float32)
    positive = flair[flair > 0]
    if positive.size == 0:
        return np.zeros_like(flair)
    scale = np.float32(np.percentile(positive, 99.9))
    del positive
    out = flair / scale
    return np.clip(out, 0.0, 1.0, out=out)


def network_input(flair_shw: np.ndarray, brain_shw: Optional[np.ndarray] = None,
                  voxel_mm: Optional[Sequence[float]] = None) -> np.ndarray:
    """What the network sees of a (S, H, W) FLAIR volume: float32 (S, H, W) in [0, 1].
    The one function tiles, score and segment feed the net through.

    `normalise_intensity`; with `brain_shw` (uint8 (S, H, W) 0/1, skull stripping,
    paper §6), every voxel further than `brain.GROW_MM` (mm, voxel_mm in (S, H, W)
    order) from the brain mask then set to 0. Normalised first, on the whole head:
    the brain keeps the scale an unstripped net sees (only the blanking differs
    between the two), and the scale does not follow the lesion load, as the 99.9th
    percentile of the brain alone would where plaques are more than 0.1 % of it.
    Grown, not the bare mask: plaques at the cortex stay whole where the mask
    errs tight (Dice 0.90-0.95 on the phantom), and the net sees exactly the
    region where `score --brain` and `segment --brain` count detections."""
    image_shw = normalise_intensity(flair_shw)
    if brain_shw is None:
        return image_shw
    from .brain import grow  # here: the cohort store itself needs no scipy

    if brain_shw.shape != image_shw.shape or voxel_mm is None:
        raise ValueError(f"a brain mask {brain_shw.shape} of the image's shape {image_shw.shape} and voxel_mm needed")
    image_shw[~grow(brain_shw, tuple(voxel_mm))] = 0
    return image_shw


def check_brain_masks(cohort_dir: PathLike, patients: Optional[Sequence[str]] = None) -> None:
    """InputError (one line naming the cohort and the patients) unless each of
    `patients` (default: all) has a brain mask in the store: a single 2D slice
    can have none (`brain.unusable`), so skull-stripped input refuses it too."""
    from .brain import unusable

    chosen = patient_ids(cohort_dir) if patients is None else list(patients)
    present = set(brain_masks_present(cohort_dir))
    missing = [p for p in chosen if p not in present]
    if not missing:
        return
    with _open(cohort_dir) as f:
        single = [p for p in missing if unusable(f["patients"][p]["flair"].shape)]
    if single:
        raise InputError(cohort_file(cohort_dir), f"{', '.join(single)}: a single 2D slice, no brain mask can exist: "
                                                  "skull-stripped input cannot be made (leave the patient out of the "
                                                  "cohort, or go without --skull-strip)")
    raise InputError(cohort_file(cohort_dir), f"no brain mask for {', '.join(missing)} (run `plaquenet brainmask "
                                              f"--cohort {cohort_dir}` first)")


def scan_input(cohort_dir: PathLike, scan: Scan, skull_strip: bool = False) -> np.ndarray:
    """`network_input` of a cohort patient: its brain mask from the store with `skull_strip`
    (InputError as `check_brain_masks` when it has none)."""
    if not skull_strip:
        return network_input(scan.flair_shw)
    brain_shw = load_brain(cohort_dir, scan.patient)
    if brain_shw is None:
        check_brain_masks(cohort_dir, [scan.patient])
    assert brain_shw is not None
    return network_input(scan.flair_shw, brain_shw, scan.voxel_mm)


def person(patient: str) -> str:
    """The person a cohort group belongs to: "P002-S1" -> "P002"; "P001" -> "P001"."""
    return patient.split(SESSION_MARK, 1)[0]


def make_split(patients: Sequence[str], test_fraction: float = TEST_FRACTION, seed: int = 0) -> Dict[str, Any]:
    """Random split by patient (§4.1: 77 train / 19 test of 96, i.e. about 80/20).

    The split draws persons (`person`): all sessions of one go to the same side, and
    the lists name every volume. Every cohort of two or more persons gets at least
    one on each side."""
    persons = sorted({person(p) for p in patients})
    if len(persons) < 2:
        raise InputError(None, f"a split needs at least 2 patients, the cohort has {len(persons)}")
    n_test = min(max(1, int(round(test_fraction * len(persons)))), len(persons) - 1)
    order = np.random.default_rng(seed).permutation(len(persons))
    test_persons = {persons[i] for i in order[:n_test]}
    test = sorted(p for p in patients if person(p) in test_persons)
    train = sorted(p for p in patients if person(p) not in test_persons)
    return {"seed": seed, "test_fraction": test_fraction, "train": train, "test": test}


def write_split(cohort_dir: PathLike, split: Dict[str, Any]) -> Path:
    """Write the split, stamped with the cohort store's id (see `read_split`)."""
    path = split_file(cohort_dir)
    check_split(split, path)
    split = dict(split, cohort_id=cohort_id(cohort_dir))
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(split, indent=2) + "\n")
    return path


def read_split(cohort_dir: PathLike) -> Dict[str, Any]:
    path = split_file(cohort_dir)
    if not path.is_file():
        raise InputError(path, "no split file (run `plaquenet tiles` first)")
    try:
        split = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(path, f"not valid JSON ({e})") from None
    check_split(split, path, known=patient_ids(cohort_dir))
    if split.get("cohort_id", "") not in ("", cohort_id(cohort_dir)):
        raise InputError(path, "was made for an earlier import of this cohort (delete it to make a new split)")
    return split


def check_split(split: object, path: PathLike, known: Optional[Sequence[str]] = None) -> None:
    if not isinstance(split, dict):
        raise InputError(path, "a split must be a JSON object with 'train' and 'test' lists")
    for side in ("train", "test"):
        ids = split.get(side)
        if not isinstance(ids, list) or not all(isinstance(p, str) for p in ids):
            raise InputError(path, f"split has no '{side}' list of patient ids")
    both = sorted(set(split["train"]) & set(split["test"]))
    if both:
        raise InputError(path, f"patient {both[0]} is in both the train and the test split")
    both = sorted({person(p) for p in split["train"]} & {person(p) for p in split["test"]})
    if both:
        raise InputError(path, f"patient {both[0]} has sessions in both the train and the test split")
    if known is not None:
        unknown = sorted(set(split["train"] + split["test"]) - set(known))
        if unknown:
            raise InputError(path, f"patient {unknown[0]} is in the split but not in the cohort")
