"""Pixel-wise precision, recall and F-measure (paper §3.3), pooled or per case.

Pooled: the counts of all pixels of all slices are added first, then the
metric is taken once (the paper's figure: one F-measure for the test set).
Per case: the metric of each patient (its slices pooled), then the mean and
standard deviation over patients.

Lesion-wise metrics (paper §5: "whether a lesion has been detected or not")
are in `lesions.py`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Iterable

import numpy as np


@dataclasses.dataclass
class PixelCounts:
    """True positive, false positive and false negative pixel counts."""

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __add__(self, other: "PixelCounts") -> "PixelCounts":
        return PixelCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)


def count_pixels(prediction: np.ndarray, truth: np.ndarray) -> PixelCounts:
    """Compare a binary prediction with the ground-truth mask (same shape, nonzero = lesion)."""
    prediction = np.asarray(prediction) != 0
    truth = np.asarray(truth) != 0
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction shape {prediction.shape} != ground-truth shape {truth.shape}")
    tp = int(np.count_nonzero(prediction & truth))
    return PixelCounts(tp, int(np.count_nonzero(prediction)) - tp, int(np.count_nonzero(truth)) - tp)


def precision(c: PixelCounts) -> float:
    """TP / (TP + FP): the share of marked pixels that are lesion.
    NaN when nothing is marked (TP + FP = 0)."""
    return c.tp / (c.tp + c.fp) if c.tp + c.fp else math.nan


def recall(c: PixelCounts) -> float:
    """TP / (TP + FN): the share of lesion pixels that are marked.
    NaN when the ground truth is empty (TP + FN = 0)."""
    return c.tp / (c.tp + c.fn) if c.tp + c.fn else math.nan


def f_measure(c: PixelCounts) -> float:
    """Harmonic mean of precision and recall, 2 TP / (2 TP + FP + FN).

    0 when there are lesion pixels and none is found, or pixels are marked
    and none is lesion (where precision or recall alone would be NaN);
    NaN only when both the ground truth and the prediction are empty."""
    denominator = 2 * c.tp + c.fp + c.fn
    return 2 * c.tp / denominator if denominator else math.nan


def pixel_metrics(c: PixelCounts) -> Dict[str, float]:
    return {"precision": precision(c), "recall": recall(c), "f1": f_measure(c)}


def mean_and_std(per_case: Iterable[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
    """{metric: {"mean", "std", "n"}} over cases; NaN cases are left out of that
    metric (n says how many counted); population std (ddof=0); NaN if n = 0."""
    per_case = list(per_case)
    summary = {}
    for name in ("precision", "recall", "f1"):
        values = np.array([case[name] for case in per_case], dtype=np.float64)
        values = values[~np.isnan(values)]
        summary[name] = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std()) if len(values) else math.nan,
            "n": int(len(values)),
        }
    return summary
