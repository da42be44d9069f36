"""Lesion-wise detection (paper §5: "whether a lesion has been detected or
not"): connected components of the reference mask and of the thresholded
output, matched by one of two published rules.

A *reference lesion* is a connected component of the radiologist's mask; an
*automatic component* one of the thresholded network output. Components are
found in 3D over a patient's volume (default) or in 2D on each slice
(connectivity 4 or 8: no link across slices).

Rules
-----
"msseg2016"  Commowick et al., Sci Rep 8:13650 (2018), "Objective evaluation of
             multiple sclerosis lesion segmentation using a data management and
             processing infrastructure", §Methods "detection"; written after what
             their tool, Anima's animaSegPerfAnalyzer, computes (read, not copied):

             * components with 6-connectivity (ITK's default, not fully
               connected); those of at most `min_volume_mm3` = 3 mm^3 are
               dropped (a component is kept when its voxel count exceeds
               floor(3 mm^3 / voxel volume), the ratio compared with a relative
               tolerance, `min_component_voxels`) and their voxels count as background;
             * O[i, j]: voxels in reference lesion i and automatic component j,
               row/column 0 being the background of either mask;
             * reference lesion i is *detected* when
               (alpha) more than 10 % of its voxels lie in automatic components, and
               (beta, gamma) taking the automatic components that overlap it in
               decreasing order of overlap (ties: the larger component first, then
               label order) until they hold >= 65 % (gamma) of that
               overlap, none of them lies more than 70 % (beta) on reference
               background (outside every reference lesion);
             * an automatic component is a *true detection* by the same test with
               the roles swapped (the transposed table): lesion precision.

"wmh2017"    The WMH segmentation challenge (MICCAI 2017, Kuijf et al. 2019):
             components with 26-connectivity (fully connected), no minimum size;
             a reference lesion is detected when any automatic voxel overlaps it;
             an automatic component is a true detection when it overlaps any
             reference voxel, else a false positive.

Reductions
----------
Pooled: counts summed over patients, then sensitivity, precision and F1 once.
Per patient: the metric of each patient, then mean and population std over
patients, NaN (undefined) patients left out, n = patients counted.

Empty cases: sensitivity is NaN without reference lesions, precision NaN
without automatic components; F1 = 2 S P / (S + P) is 0 when one of S, P is
0 and the other 0 or NaN (lesions missed, or only false alarms), NaN when
both are NaN (nothing on either side).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

RULES = ("msseg2016", "wmh2017")
DEFAULT_CONNECTIVITY = {"msseg2016": 6, "wmh2017": 26}
DEFAULT_MIN_VOLUME_MM3 = {"msseg2016": 3.0, "wmh2017": 0.0}
# Commowick et al. 2018 / animaSegPerfAnalyzer defaults.
ALPHA, BETA, GAMMA = 0.10, 0.70, 0.65


@dataclasses.dataclass
class LesionCounts:
    """Lesion counts of one patient (or several, added).

    reference: reference lesions; automatic: automatic components;
    detected: reference lesions detected; true_automatic: automatic components
    that are true detections; *_volumes_mm3: volumes of the reference lesions
    detected and missed."""

    reference: int = 0
    automatic: int = 0
    detected: int = 0
    true_automatic: int = 0
    detected_volumes_mm3: Tuple[float, ...] = ()
    missed_volumes_mm3: Tuple[float, ...] = ()

    @property
    def false_positives(self) -> int:
        return self.automatic - self.true_automatic

    @property
    def missed(self) -> int:
        return self.reference - self.detected

    def __add__(self, other: "LesionCounts") -> "LesionCounts":
        return LesionCounts(self.reference + other.reference, self.automatic + other.automatic,
                            self.detected + other.detected, self.true_automatic + other.true_automatic,
                            self.detected_volumes_mm3 + other.detected_volumes_mm3,
                            self.missed_volumes_mm3 + other.missed_volumes_mm3)


def connectivity_structure(connectivity: int) -> np.ndarray:
    """3x3x3 neighbourhood over (S, H, W): 6, 18, 26 in 3D; 4 or 8 within a slice only."""
    if connectivity in (6, 18, 26):
        return ndimage.generate_binary_structure(3, {6: 1, 18: 2, 26: 3}[connectivity])
    if connectivity in (4, 8):
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = ndimage.generate_binary_structure(2, {4: 1, 8: 2}[connectivity])
        return structure
    raise ValueError(f"connectivity must be 4, 8 (per slice) or 6, 18, 26 (3D), not {connectivity}")


def lesion_components(mask_shw: np.ndarray, voxel_mm: Sequence[float], connectivity: int = 26,
                      min_volume_mm3: float = 0.0) -> Tuple[np.ndarray, int]:
    """Label the connected components of a (S, H, W) mask; components of at most
    `min_volume_mm3` (if > 0) become background. Returns (labels_shw int32,
    1..n in scan order; number of components n)."""
    labels, n = ndimage.label(np.asarray(mask_shw) != 0, structure=connectivity_structure(connectivity))
    if min_volume_mm3 > 0 and n:
        min_voxels = min_component_voxels(min_volume_mm3, voxel_mm)  # Anima: kept when > this
        keep = np.bincount(labels.ravel(), minlength=n + 1) > min_voxels
        keep[0] = False
        relabel = np.zeros(n + 1, np.int32)
        relabel[keep] = np.arange(1, int(keep.sum()) + 1)
        labels, n = relabel[labels], int(keep.sum())
    return labels.astype(np.int32, copy=False), n


RATIO_TOLERANCE = 1e-9  # relative: a volume ratio this close above an integer's float is that integer


def min_component_voxels(min_volume_mm3: float, voxel_mm: Sequence[float]) -> int:
    """floor(min_volume_mm3 / voxel volume), the ratio taken as the integer it is
    when float rounding put it just below (3 mm^3 / (3 x 0.2 x 1 mm) is
    4.999999999999999 in floats, 5 in fact): a component of exactly 3 mm^3 is
    dropped ("at most 3 mm^3") whatever order the spacings multiply in."""
    ratio = min_volume_mm3 / float(np.prod(voxel_mm))
    return math.floor(ratio * (1 + RATIO_TOLERANCE))


def overlap_table(reference_labels: np.ndarray, automatic_labels: np.ndarray, n_reference: int,
                  n_automatic: int) -> np.ndarray:
    """O[i, j] = voxels in reference lesion i and automatic component j (0 = background)."""
    pairs = reference_labels.astype(np.int64).ravel() * (n_automatic + 1) + automatic_labels.ravel()
    table = np.bincount(pairs, minlength=(n_reference + 1) * (n_automatic + 1))
    return table.reshape(n_reference + 1, n_automatic + 1)


def msseg_detected(table: np.ndarray, alpha: float = ALPHA, beta: float = BETA, gamma: float = GAMMA) -> np.ndarray:
    """Which rows (lesions 1..R of table's row side) are detected by the column
    side under the MSSEG-2016 rule (module docstring). Returns bool (R,)."""
    column_size = table.sum(axis=0)
    labels = np.arange(table.shape[1] - 1)
    detected = np.zeros(table.shape[0] - 1, bool)
    for i in range(1, table.shape[0]):
        overlap = table[i, 1:]
        covered = int(overlap.sum())
        if covered == 0 or covered / int(table[i].sum()) <= alpha:
            continue
        weight, ok = 0.0, True
        # largest overlap first; ties: the larger component first (Anima's labels are
        # sorted by size), then label order, so that no outcome depends on position
        for j in np.lexsort((labels, -column_size[1:], -overlap)):
            if weight >= gamma or overlap[j] == 0:
                break
            if table[0, j + 1] / column_size[j + 1] > beta:  # mostly outside every lesion
                ok = False
                break
            weight += overlap[j] / covered
        detected[i - 1] = ok
    return detected


def lesion_detection(pred_shw: np.ndarray, truth_shw: np.ndarray, voxel_mm: Sequence[float],
                     rule: str = "msseg2016", connectivity: Optional[int] = None,
                     min_volume_mm3: Optional[float] = None) -> LesionCounts:
    """Lesion counts of one patient: automatic mask `pred_shw` against the
    reference `truth_shw`, both (S, H, W), nonzero = lesion; voxel_mm: (S, H, W)
    spacing in mm. `connectivity` and `min_volume_mm3` default to the rule's
    (module docstring). No reference lesion or no automatic component: counts 0,
    nothing detected."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, not {rule!r}")
    if np.shape(pred_shw) != np.shape(truth_shw):
        raise ValueError(f"prediction shape {np.shape(pred_shw)} != reference shape {np.shape(truth_shw)}")
    connectivity = DEFAULT_CONNECTIVITY[rule] if connectivity is None else connectivity
    min_volume_mm3 = DEFAULT_MIN_VOLUME_MM3[rule] if min_volume_mm3 is None else min_volume_mm3
    ref, n_ref = lesion_components(truth_shw, voxel_mm, connectivity, min_volume_mm3)
    auto, n_auto = lesion_components(pred_shw, voxel_mm, connectivity, min_volume_mm3)
    table = overlap_table(ref, auto, n_ref, n_auto)
    if rule == "msseg2016":
        detected, true_automatic = msseg_detected(table), msseg_detected(table.T)
    else:  # wmh2017: any overlap
        detected, true_automatic = table[1:, 1:].sum(axis=1) > 0, table[1:, 1:].sum(axis=0) > 0
    volumes = table[1:].sum(axis=1) * float(np.prod(voxel_mm))
    return LesionCounts(n_ref, n_auto, int(detected.sum()), int(true_automatic.sum()),
                        tuple(float(v) for v in volumes[detected]), tuple(float(v) for v in volumes[~detected]))


def lesion_metrics(c: LesionCounts) -> Dict[str, float]:
    """Sensitivity = detected / reference lesions, precision = true automatic /
    automatic components, F1 their harmonic mean (empty cases: module docstring)."""
    s = c.detected / c.reference if c.reference else math.nan
    p = c.true_automatic / c.automatic if c.automatic else math.nan
    if math.isnan(s) or math.isnan(p):
        f1 = 0.0 if s == 0 or p == 0 else math.nan  # NaN == 0 is False: both NaN -> NaN
    else:
        f1 = 2 * s * p / (s + p) if s + p else 0.0
    return {"sensitivity": s, "precision": p, "f1": f1}


def _volume_summary(volumes: Sequence[float]) -> Dict[str, float]:
    return {"n": len(volumes), "mean": float(np.mean(volumes)) if volumes else math.nan,
            "median": float(np.median(volumes)) if volumes else math.nan}


def lesion_summary(per_patient: Dict[str, LesionCounts]) -> Dict[str, Any]:
    """{patient: counts} -> pooled metrics and counts, reference lesion volumes
    (mm^3: all, detected, missed), per-patient mean/std/n, and each patient's row."""
    pooled = sum(per_patient.values(), LesionCounts())
    rows = {patient: lesion_metrics(c) for patient, c in per_patient.items()}
    spread: Dict[str, Dict[str, float]] = {}
    for name in ("sensitivity", "precision", "f1"):
        values = np.array([r[name] for r in rows.values()], dtype=np.float64)
        values = values[~np.isnan(values)]
        spread[name] = {"mean": float(values.mean()) if len(values) else math.nan,
                        "std": float(values.std()) if len(values) else math.nan, "n": int(len(values))}
    return {
        **lesion_metrics(pooled),
        **_count_record(pooled),
        "volume_mm3": {"reference": _volume_summary(pooled.detected_volumes_mm3 + pooled.missed_volumes_mm3),
                       "detected": _volume_summary(pooled.detected_volumes_mm3),
                       "missed": _volume_summary(pooled.missed_volumes_mm3)},
        "per_patient": spread,
        "patients": [{"patient": p, **rows[p], **_count_record(c)} for p, c in per_patient.items()],
    }


def _count_record(c: LesionCounts) -> Dict[str, int]:
    return {"reference_lesions": c.reference, "automatic_components": c.automatic, "detected": c.detected,
            "missed": c.missed, "true_automatic": c.true_automatic, "false_positives": c.false_positives}


def lesion_summaries(per_patient: Dict[str, Dict[str, LesionCounts]]) -> Dict[str, Dict[str, Any]]:
    """{rule: {patient: counts}} -> {rule: lesion_summary}."""
    return {rule: lesion_summary(counts) for rule, counts in per_patient.items()}


def all_rules(pred_shw: np.ndarray, truth_shw: np.ndarray, voxel_mm: Sequence[float],
              connectivity: Optional[int] = None) -> Dict[str, LesionCounts]:
    """lesion_detection under each rule with its defaults; `connectivity`, when
    given, replaces each rule's own (e.g. 8: components per slice, in 2D)."""
    return {rule: lesion_detection(pred_shw, truth_shw, voxel_mm, rule, connectivity) for rule in RULES}

