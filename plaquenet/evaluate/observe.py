"""What a trained net does on the test scans beyond the paper's own metrics:
the measurements behind `plaquenet claims` (experiments/claims.py).

One pass over the test patients' slices with plaques (§4.1, as `score`),
at thresholds already chosen on the training scans (§3.3, `score`'s
results.json), gathers:

* the test F-measure at every threshold, for the network output and for the
  normalised intensity itself (§5, Fig. 9: over how wide a range of
  thresholds does each stay near its best?), from the pass-1 histogram of
  the exact sweep (`sweep.histogram_curve`: thresholds 2^-11 apart, relatively);
* where the false alarms fall (§4.1, §4.3, §5): false-positive pixels and
  false components per anatomical region, when the cohort has region maps
  (the phantom's; `cohort.iter_truth`). A false component is an 8-connected
  component of the thresholded output, within one slice, that touches no
  outlined plaque; it belongs to the region holding most of its pixels. The
  area of each region on the same slices is kept as the base rate;
* pixel-wise and lesion-wise scores against the radiologist's polygons and,
  when the cohort has them, against the exact plaque masks (§5-6: are
  lesion-wise scores higher because the outlines are approximate?). The
  exact masks are restricted to the slices the polygons mark, so both are
  scored on the same scans;
* how much output there is at all (§6: larger tiles "resulted in all-zero
  network outputs"): the scans whose output has no pixel at ALL_ZERO_LEVEL
  or above, those with no pixel at the chosen threshold, the largest output;
* with `brain` (§5-6: "remove the irrelevant parts of the input"): the pixel
  scores again with every detection outside the patient's brain mask, grown
  by brain.GROW_MM, dropped (`plaquenet brainmask --cohort`'s masks), and with
  the phantom's true brain in its place when the cohort has region maps (what
  a perfect extractor would do), at the same threshold;
* with `skull_strip`, all of it for a net trained on skull-stripped tiles
  (`tiles --skull-strip`), fed the same stripped input (`cohort.scan_input`).

Torch-free, one patient in memory at a time, like `score`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from scipy import ndimage

from ..brain import GROW_MM, grow, true_brain
from ..cohort import iter_scans, iter_truth, load_brain, region_legend, scan_input
from ..engines import Forward
from ..progress import progress
from ..typing import PathLike
from .inference import forward_lesion_slices
from .lesions import all_rules, lesion_summaries, LesionCounts
from .metrics import PixelCounts, count_pixels, pixel_metrics
from .sweep import SweepCurve, SweepHistogram, ThresholdChoice, histogram_curve

NEAR_BEST = 0.9  # "a wide range of thresholds" (§5): F within 90 % of the best test F
CURVE_POINTS = 400  # thresholds kept per F curve in observations.json (the measures use all)
FALSE_COMPONENT_STRUCTURE = np.ones((3, 3), bool)  # 8-connected, within a slice
# An output with no pixel at 0.5 or above is "all-zero" (§6): black where the
# sigmoid's midpoint decides, whatever threshold the training scans then choose.
ALL_ZERO_LEVEL = 0.5


@dataclasses.dataclass
class ThresholdRange:
    """Thresholds at which the test F-measure is at least NEAR_BEST x its best."""

    best_f1: float
    best_threshold: float
    low: float  # the lowest such threshold
    high: float  # the highest
    measure: float  # total length of the threshold intervals where F stays above the cut

    def as_dict(self) -> Dict[str, float]:
        return dataclasses.asdict(self)


def threshold_range(curve: SweepCurve, near_best: float = NEAR_BEST) -> ThresholdRange:
    """The thresholds of `curve` at which F >= near_best x max F; `measure`
    adds up the gaps between consecutive curve thresholds that both qualify
    (the set need not be one interval)."""
    f1 = np.asarray(curve.f1, dtype=np.float64)
    t = np.asarray(curve.thresholds, dtype=np.float64)
    best = int(np.argmax(f1))
    if f1[best] <= 0:
        return ThresholdRange(0.0, float(t[best]), float("nan"), float("nan"), 0.0)
    good = f1 >= near_best * f1[best]
    both = good[:-1] & good[1:]
    return ThresholdRange(float(f1[best]), float(t[best]), float(t[good].min()), float(t[good].max()),
                          float(np.sum(np.diff(t)[both])))


def false_components(marked_hw: np.ndarray, truth_hw: np.ndarray) -> tuple:
    """8-connected components of `marked_hw` that touch no pixel of `truth_hw`:
    (labels (H, W) int32 with 0 = none, the ids of the false components)."""
    labels, n = ndimage.label(marked_hw, structure=FALSE_COMPONENT_STRUCTURE)
    if n == 0:
        return labels, np.zeros(0, np.int64)
    touching = np.unique(labels[(truth_hw > 0) & (labels > 0)])
    ids = np.setdiff1d(np.arange(1, n + 1), touching)
    return labels, ids


def majority_region(labels_hw: np.ndarray, ids: np.ndarray, regions_hw: np.ndarray, n_regions: int) -> np.ndarray:
    """For each component id, the region label holding most of its pixels
    (ties: the lower label)."""
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    inside = np.isin(labels_hw, ids)
    comp = np.searchsorted(ids, labels_hw[inside])
    table = np.zeros((len(ids), n_regions), np.int64)
    np.add.at(table, (comp, regions_hw[inside].astype(np.int64)), 1)
    return np.argmax(table, axis=1)


@dataclasses.dataclass
class Observations:
    """The measurements of one net on the test scans (see the module docstring)."""

    threshold: float  # the network threshold chosen on the training scans
    raw_threshold: float  # the same for the normalised intensity
    scans: int
    f_curves: Dict[str, Dict[str, List[float]]]  # "network"/"raw" -> thresholds, f1 (thinned)
    ranges: Dict[str, Dict[str, float]]  # "network"/"raw" -> ThresholdRange.as_dict()
    regions: Optional[Dict[str, Dict[str, int]]]  # region -> fp_pixels, false_components, area_pixels
    pixel: Dict[str, Dict[str, float]]  # "polygons"/"exact" -> pixel metrics and counts
    lesion: Dict[str, Dict[str, Any]]  # "polygons"/"exact" -> rule -> pooled lesion metrics (3D)
    # all_zero_scans (no pixel >= ALL_ZERO_LEVEL), blank_scans (none >= threshold), max_output
    outputs: Dict[str, float] = dataclasses.field(default_factory=dict)
    # with `brain`: "extractor"/"true_brain" -> pixel metrics and counts inside the grown brain,
    # "without_mask": patients counted unfiltered, "grow_mm"
    brain: Optional[Dict[str, Any]] = None

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def observe(forward: Forward, cohort_dir: PathLike, patients: Sequence[str], threshold: float,
            raw_threshold: float, brain: bool = False, skull_strip: bool = False) -> Observations:
    """One pass over the slices with plaques of `patients` (the test split);
    `brain`: also score inside each patient's grown brain mask; `skull_strip`:
    feed the net the skull-stripped input its tiles were cut from
    (`cohort.scan_input`; the raw-intensity baseline then thresholds it too)."""
    legend = region_legend(cohort_dir)
    n_regions = (max(legend) + 1) if legend else 0
    hist = {"network": SweepHistogram(), "raw": SweepHistogram()}
    at = {"network": PixelCounts(), "raw": PixelCounts()}
    exact = PixelCounts()  # against the polygons: at["network"]
    lesions: Dict[str, Dict[str, Dict[str, LesionCounts]]] = {"polygons": {}, "exact": {}}
    fp_pixels = np.zeros(n_regions, np.int64)
    false_comp = np.zeros(n_regions, np.int64)
    area = np.zeros(n_regions, np.int64)
    have_exact = True
    scans = all_zero = blank = 0
    max_output = -np.inf
    inside = {"extractor": PixelCounts(), "true_brain": PixelCounts()}
    without_mask: List[str] = []
    have_true_brain = bool(legend)
    truths = iter_truth(cohort_dir, list(patients))
    for scan, truth in progress(zip(iter_scans(cohort_dir, list(patients)), truths), total=len(patients),
                                desc="test scans (claims)", unit="patient"):
        assert truth.patient == scan.patient, (truth.patient, scan.patient)
        marked_shw = np.zeros(scan.mask_shw.shape, bool)
        exact_shw = np.zeros(scan.mask_shw.shape, np.uint8)
        have_exact = have_exact and truth.mask_exact_shw is not None
        kept: Dict[str, Optional[np.ndarray]] = {"extractor": None, "true_brain": None}
        if brain:
            mask = load_brain(cohort_dir, scan.patient)
            if mask is None:
                without_mask.append(scan.patient)
            kept["extractor"] = grow(mask, scan.voxel_mm) if mask is not None else None
            have_true_brain = have_true_brain and truth.regions_shw is not None
            if legend and truth.regions_shw is not None:
                kept["true_brain"] = grow(true_brain(truth.regions_shw, legend), scan.voxel_mm)
        for s in forward_lesion_slices(scan, forward, scan_input(cohort_dir, scan, skull_strip)):
            scans += 1
            marked = s.output_hw >= threshold
            marked_shw[s.index] = marked
            if brain:
                for name, grown in kept.items():   # a patient without a mask counts unfiltered
                    inside[name] += count_pixels(marked if grown is None else marked & grown[s.index], s.truth_hw)
            top = float(np.max(s.output_hw))
            max_output = max(max_output, top)
            all_zero += top < ALL_ZERO_LEVEL
            blank += not marked.any()
            hist["network"].add(s.output_hw, s.truth_hw)
            hist["raw"].add(s.image_hw, s.truth_hw)
            at["network"] += count_pixels(marked, s.truth_hw)
            at["raw"] += count_pixels(s.image_hw >= raw_threshold, s.truth_hw)
            if truth.mask_exact_shw is not None:
                exact_shw[s.index] = truth.mask_exact_shw[s.index]
                exact += count_pixels(marked, exact_shw[s.index])
            if legend and truth.regions_shw is not None:
                regions_hw = truth.regions_shw[s.index]
                area += np.bincount(regions_hw.ravel(), minlength=n_regions)[:n_regions]
                fp_pixels += np.bincount(regions_hw[marked & (s.truth_hw == 0)], minlength=n_regions)[:n_regions]
                labels, ids = false_components(marked, s.truth_hw)
                false_comp += np.bincount(majority_region(labels, ids, regions_hw, n_regions),
                                          minlength=n_regions)[:n_regions]
        if not scan.lesion_slices().size:
            continue
        for rule, counts in all_rules(marked_shw, scan.mask_shw, scan.voxel_mm).items():
            lesions["polygons"].setdefault(rule, {})[scan.patient] = counts
        if truth.mask_exact_shw is not None:
            for rule, counts in all_rules(marked_shw, exact_shw, scan.voxel_mm).items():
                lesions["exact"].setdefault(rule, {})[scan.patient] = counts

    curves, ranges = {}, {}
    for name, h in hist.items():
        c = at[name]
        curve = histogram_curve(h, ThresholdChoice(threshold if name == "network" else raw_threshold,
                                                   c.tp, c.fp, c.fn))
        ranges[name] = threshold_range(curve).as_dict()
        keep = np.unique(np.linspace(0, len(curve.thresholds) - 1, min(CURVE_POINTS, len(curve.thresholds)))
                         .astype(int))
        curves[name] = {"thresholds": [float(v) for v in curve.thresholds[keep]],
                        "f1": [float(v) for v in curve.f1[keep]]}
    pixel_record = {"polygons": {**pixel_metrics(at["network"]), **dataclasses.asdict(at["network"])}}
    lesion_record = {"polygons": _pooled(lesion_summaries(lesions["polygons"]))}
    if have_exact:
        pixel_record["exact"] = {**pixel_metrics(exact), **dataclasses.asdict(exact)}
        lesion_record["exact"] = _pooled(lesion_summaries(lesions["exact"]))
    region_record = None
    if legend:
        region_record = {legend[k]: {"fp_pixels": int(fp_pixels[k]), "false_components": int(false_comp[k]),
                                     "area_pixels": int(area[k])} for k in sorted(legend)}
    outputs = {"all_zero_scans": all_zero, "blank_scans": blank, "max_output": float(max_output),
               "all_zero_level": ALL_ZERO_LEVEL}
    brain_record: Optional[Dict[str, Any]] = None
    if brain:
        brain_record = {name: {**pixel_metrics(c), **dataclasses.asdict(c)} for name, c in inside.items()
                        if name == "extractor" or have_true_brain}
        brain_record.update(without_mask=without_mask, grow_mm=GROW_MM)
    return Observations(float(threshold), float(raw_threshold), scans, curves, ranges, region_record,
                        pixel_record, lesion_record, outputs, brain_record)


def _pooled(summaries: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Each rule's pooled figures, without the per-patient rows."""
    return {rule: {k: v for k, v in s.items() if k in ("sensitivity", "precision", "f1", "reference_lesions",
                                                        "automatic_components", "detected", "false_positives")}
            for rule, s in summaries.items()}
