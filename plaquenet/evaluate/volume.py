"""Whole-volume evaluation: every slice of each test patient, as MSSEG-2016 and
WMH-2017 evaluate, beside the paper's protocol (§4.1: only the slices that
contain plaques are scored).

On the paper's slices a false alarm can only fall on a slice that holds a
plaque; over the whole volume every slice counts, so precision (pixel and
lesion) is lower and the number of automatic components higher: what
`plaquenet segment`, which runs every slice, finds on the same patient.

Per patient: the network output (S, H, W) thresholded (lesion where output
>= threshold), pixel counts (metrics.py) and lesion counts under each rule
(lesions.py, 3D components). Patients without any plaque are included.

Reductions
----------
Pooled: counts summed over patients, metrics taken once.
Per patient: each patient's metric, mean and population std over patients;
a patient whose metric is undefined (NaN) is left out of that metric's mean
(n says how many counted, `left_out` how many were dropped):

* pixel precision, lesion precision: nothing marked (no automatic component);
* pixel recall, lesion sensitivity: nothing in the reference mask;
* F1: both of the above (metrics.py, lesions.py).

The references differ on a patient with nothing marked: Anima's
animaSegPerfAnalyzer (MSSEG-2016) gives lesion precision 0, the WMH-2017
evaluation gives 1. `reference_convention` is the per-patient lesion
precision with that patient counted as its rule's reference counts it
(msseg2016: 0, wmh2017: 1), beside plaquenet's mean that leaves it out.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

from ..cohort import lesion_slices
from .lesions import LesionCounts, all_rules, lesion_metrics, lesion_summary
from .metrics import PixelCounts, count_pixels, mean_and_std, pixel_metrics

# Lesion precision of a patient with nothing marked, as each rule's reference tool counts it.
EMPTY_PRECISION: Dict[str, Tuple[float, str]] = {"msseg2016": (0.0, "Anima (animaSegPerfAnalyzer), MSSEG-2016"),
                                                 "wmh2017": (1.0, "WMH-2017 evaluation")}


@dataclasses.dataclass
class VolumeCounts:
    """One patient's whole volume at one threshold."""

    patient: str
    slices: int  # S: every slice
    plaque_slices: int  # slices whose reference mask holds a plaque
    pixel: PixelCounts
    lesion: Dict[str, LesionCounts]  # rule -> counts (3D components)


def volume_counts(patient: str, output_shw: np.ndarray, truth_shw: np.ndarray, voxel_mm: Sequence[float],
                  threshold: float) -> VolumeCounts:
    """Counts of one patient: `output_shw` float (S, H, W) network output on every
    slice, `truth_shw` (S, H, W) nonzero = plaque, voxel_mm (S, H, W) spacing in mm."""
    marked_shw = np.asarray(output_shw) >= threshold
    truth_shw = np.asarray(truth_shw)
    return VolumeCounts(patient, len(truth_shw), len(lesion_slices(truth_shw)), count_pixels(marked_shw, truth_shw),
                        all_rules(marked_shw, truth_shw, voxel_mm))


def whole_volume_summary(patients: List[VolumeCounts], threshold: float) -> Dict[str, Any]:
    """results.json's "whole_volume": pixel and lesion-wise metrics, pooled and
    per patient (module docstring); NaN where undefined."""
    rows = [{"patient": p.patient, "slices": p.slices, "plaque_slices": p.plaque_slices,
             **pixel_metrics(p.pixel), **dataclasses.asdict(p.pixel)} for p in patients]
    pooled = sum((p.pixel for p in patients), PixelCounts())
    per_patient = mean_and_std(rows)
    rules = sorted({rule for p in patients for rule in p.lesion})
    return {
        "threshold": threshold,
        "counts": {"patients": len(patients), "patients_with_plaques": sum(p.plaque_slices > 0 for p in patients),
                   "slices": sum(p.slices for p in patients),
                   "plaque_slices": sum(p.plaque_slices for p in patients)},
        "pixel": {**pixel_metrics(pooled), **dataclasses.asdict(pooled)},
        "per_patient": per_patient,
        "left_out": left_out(per_patient, len(patients)),
        "patients": rows,
        "lesion": {rule: lesion_rule_summary(rule, {p.patient: p.lesion[rule] for p in patients}) for rule in rules},
    }


def lesion_rule_summary(rule: str, per_patient: Dict[str, LesionCounts]) -> Dict[str, Any]:
    """lesion_summary (lesions.py) plus the patients left out of each per-patient
    mean and the per-patient precision under the rule's reference convention."""
    summary = lesion_summary(per_patient)
    summary["left_out"] = left_out(summary["per_patient"], len(per_patient))
    if rule in EMPTY_PRECISION:
        summary["reference_convention"] = reference_precision(per_patient, *EMPTY_PRECISION[rule])
    return summary


def reference_precision(per_patient: Dict[str, LesionCounts], precision: float, source: str) -> Dict[str, Any]:
    """Mean and population std of lesion precision over ALL patients, a patient
    with no automatic component counted as `precision`."""
    values = np.array([precision if not c.automatic else lesion_metrics(c)["precision"]
                       for c in per_patient.values()], dtype=np.float64)
    return {"precision": {"mean": float(values.mean()) if len(values) else math.nan,
                          "std": float(values.std()) if len(values) else math.nan, "n": int(len(values))},
            "empty_precision": precision, "source": source,
            "patients_with_nothing_marked": int(sum(not c.automatic for c in per_patient.values()))}


def left_out(per_patient: Dict[str, Dict[str, Any]], patients: int) -> Dict[str, int]:
    """{metric: patients left out of its per-patient mean (undefined there)}."""
    return {name: patients - int(spread["n"]) for name, spread in per_patient.items()}
