"""`plaquenet brainmask`: the brain of each volume, offline (`brain.py`).

Two forms:

* `--cohort data/NAME`: every patient of the cohort store; the masks go into
  the store (`/patients/<id>/brain`, `cohort.write_brain_masks`), and
  `data/NAME/brain.json` records the extractor, the seconds per volume, the
  patients skipped and why (a single 2D slice), and, where the store holds the
  phantom's region maps (`import --truth`), each mask's Dice against the true
  brain (`brain.true_brain`: parenchyma and the CSF inside the skull).
* `STUDY --out FILE.nii.gz`: one patient folder (DICOM series or NIfTI, found
  as `import` finds them) -> its brain mask, uint8, in the source's voxel
  order and affine. Nothing from a header reaches it.

Earlier masks are replaced only with `force`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .atomic import atomic_path, refuse_existing
from .brain import Extractor, brain_mask, dice, true_brain, unusable
from .cohort import (brain_masks_present, cohort_file, iter_scans, iter_truth, patient_ids, region_legend,
                     write_brain_masks)
from .errors import InputError
from .io.nifti import write_nifti
from .io.orientation import check_axial, from_cohort, to_cohort, voxel_mm
from .io.study import discover_patient, read_flair
from .progress import progress
from .typing import PathLike

DESCRIPTION = "brain.json"


@dataclasses.dataclass
class BrainSummary:
    """What `brainmask_cohort` did, as brain.json records it."""

    store: Path
    extractor: str
    masked: List[str]  # patients with a mask now
    skipped: Dict[str, str]  # patient -> why
    seconds_per_volume: float
    dice: Dict[str, float]  # patient -> Dice against the true brain (the phantom's region maps)

    def __str__(self) -> str:
        text = (f"brain masks of {len(self.masked)} patients into {self.store} ({self.extractor}, "
                f"{self.seconds_per_volume:.1f} s per volume)")
        if self.dice:
            text += f"; Dice against the phantom's brain: mean {np.mean(list(self.dice.values())):.3f}"
        for patient, why in self.skipped.items():
            text += f"; {patient} skipped: {why}"
        return text


def brainmask_cohort(cohort_dir: PathLike, extractor: Extractor, extractor_name: str, force: bool = False,
                     patients: Optional[Sequence[str]] = None) -> BrainSummary:
    """Extract every patient's brain (or `patients`'), write the masks into the
    store and brain.json beside it. InputError when the store already holds brain
    masks (without `force`), when no patient can be extracted, and for an empty mask."""
    store = cohort_file(cohort_dir)
    chosen = list(patients) if patients is not None else patient_ids(cohort_dir)
    if brain_masks_present(cohort_dir) and not force:
        raise InputError(store, "already holds brain masks (use --force to replace them)")
    masks: Dict[str, np.ndarray] = {}
    skipped: Dict[str, str] = {}
    started = time.perf_counter()
    for scan in progress(iter_scans(cohort_dir, chosen), total=len(chosen), desc="brainmask", unit="volume"):
        why = unusable(scan.flair_shw.shape)
        if why:
            skipped[scan.patient] = why
            continue
        masks[scan.patient] = brain_mask(scan.flair_shw, scan.voxel_mm, extractor, where=scan.patient)
    if not masks:
        raise InputError(store, f"no patient's brain could be extracted ({'; '.join(sorted(set(skipped.values())))})")
    seconds = (time.perf_counter() - started) / len(masks)
    scores = _dice_against_truth(cohort_dir, masks)
    write_brain_masks(cohort_dir, masks, extractor_name)
    summary = BrainSummary(store, extractor_name, sorted(masks), skipped, seconds, scores)
    _write_description(Path(cohort_dir) / DESCRIPTION, summary, keep=patients is not None)
    return summary


def _dice_against_truth(cohort_dir: PathLike, masks: Dict[str, np.ndarray]) -> Dict[str, float]:
    legend = region_legend(cohort_dir)
    if legend is None:
        return {}
    return {truth.patient: dice(masks[truth.patient], true_brain(truth.regions_shw, legend))
            for truth in iter_truth(cohort_dir, sorted(masks)) if truth.regions_shw is not None}


def _write_description(path: Path, summary: BrainSummary, keep: bool = False) -> None:
    """brain.json; with `keep` (some patients only), the earlier record's other
    patients stay listed when the same extractor made them (their masks stay in
    the store: `write_brain_masks` replaces only the ones given)."""
    dice_true = {p: round(v, 4) for p, v in summary.dice.items()}
    record: Dict[str, Any] = {
        "extractor": summary.extractor, "patients": summary.masked, "skipped": summary.skipped,
        "seconds_per_volume": round(summary.seconds_per_volume, 2), "dice_true_brain": dice_true,
        "true_brain": "the phantom's region maps: brain (parenchyma) and csf (ventricles, subarachnoid)"}
    try:
        earlier = json.loads(path.read_text()) if keep else {}
    except (OSError, ValueError):
        earlier = {}
    if earlier.get("extractor") == summary.extractor:
        redone = set(summary.masked) | set(summary.skipped)
        record["patients"] = sorted(set(earlier.get("patients", [])) - redone | set(summary.masked))
        record["skipped"] = {**{p: w for p, w in earlier.get("skipped", {}).items() if p not in redone},
                             **summary.skipped}
        record["dice_true_brain"] = {**{p: v for p, v in earlier.get("dice_true_brain", {}).items()
                                        if p not in redone}, **dice_true}
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def brainmask_study(study: PathLike, out: PathLike, extractor: Extractor, force: bool = False) -> Path:
    """One patient folder -> OUT (NIfTI, uint8 0/1, the source's voxel order and
    affine), atomically. A single 2D slice is an InputError here: there is nothing
    else to write."""
    study, out = Path(study), Path(out)
    if not study.is_dir():
        raise InputError(study, "not a folder (give one patient's study folder)")
    if not out.name.endswith((".nii", ".nii.gz")):
        raise InputError(out, "the brain mask is written as NIfTI: give a name ending in .nii.gz")
    refuse_existing(out, force)
    image, _ = read_flair(discover_patient(study, need_outlines=False))
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    mask_shw = brain_mask(flair_shw, voxel_mm(affine_whs), extractor, where=image.path)
    with atomic_path(out) as tmp:
        # nibabel picks gzip by the name: the temporary keeps the suffix
        named = tmp.with_name(tmp.name + ("" if out.name.endswith(".nii") else ".nii.gz"))
        write_nifti(named, np.ascontiguousarray(from_cohort(mask_shw, image.affine_ras)), image.affine_ras,
                    dtype=np.uint8)
        named.rename(tmp)
    return out
