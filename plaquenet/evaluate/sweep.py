"""The exact threshold sweep of paper §3.3: every distinct output value is a
candidate threshold, and the one that maximises the pixel F-measure wins.

A *value table* holds, for each distinct output value v, how many lesion
pixels (positives) and background pixels (negatives) had exactly that value.
Tables of many scans merge into one whose length is the number of distinct
values, not the number of pixels, so the training set streams through one
patient at a time. From the table, cumulative sums taken from the top give,
for "a pixel is a lesion when p >= t", the true positives, false positives
and false negatives at every distinct t at once: O(n log n) for n pixels.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np


@dataclasses.dataclass
class ValueTable:
    """Pixel counts per distinct output value.

    values     (K,) float64, strictly increasing
    positives  (K,) int64, pixels with this value inside the ground-truth mask
    negatives  (K,) int64, pixels with this value outside it
    """

    values: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return len(self.values)


@dataclasses.dataclass
class SweepCurve:
    """Counts at every candidate threshold t = values[j], for "p >= t".

    thresholds (K,) increasing; tp, fp, fn (K,) int64; f1 (K,) float64.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    f1: np.ndarray

    @property
    def precision(self) -> np.ndarray:
        # Every candidate marks at least the pixels equal to it, so TP + FP > 0.
        return self.tp / (self.tp + self.fp)

    @property
    def recall(self) -> np.ndarray:
        """NaN everywhere when the table holds no lesion pixel."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.tp / (self.tp + self.fn)


def empty_table() -> ValueTable:
    return ValueTable(np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))


def value_table(output: np.ndarray, truth: np.ndarray) -> ValueTable:
    """Count lesion and background pixels per distinct value of `output`.

    output  any shape, e.g. (H, W) or (S, H, W) network probabilities or
            normalised intensities; compared in float64 (float32 is exact in it)
    truth   same shape, nonzero = lesion
    """
    output = np.asarray(output)
    truth = np.asarray(truth)
    if output.shape != truth.shape:
        raise ValueError(f"output shape {output.shape} != ground-truth shape {truth.shape}")
    values, index = np.unique(output.astype(np.float64).ravel(), return_inverse=True)
    index = index.ravel()
    total = np.bincount(index, minlength=len(values))
    positives = np.bincount(index[truth.ravel() != 0], minlength=len(values))
    return ValueTable(values, positives.astype(np.int64), (total - positives).astype(np.int64))


def merge_tables(tables: Iterable[ValueTable]) -> ValueTable:
    """One table for the pooled pixels of all `tables` (compacted: each value once)."""
    tables = [t for t in tables if len(t)]
    if not tables:
        return empty_table()
    values = np.unique(np.concatenate([t.values for t in tables]))
    positives = np.zeros(len(values), np.int64)
    negatives = np.zeros(len(values), np.int64)
    for t in tables:
        # Each table's values are distinct, so plain fancy-index += adds once per value.
        at = np.searchsorted(values, t.values)
        positives[at] += t.positives
        negatives[at] += t.negatives
    return ValueTable(values, positives, negatives)


@dataclasses.dataclass
class TablePool:
    """A running merge of value tables arriving one scan at a time.

    Added tables wait until they hold more entries than the merged table
    (and at least `min_pending`), then all are compacted at once: the total
    work stays O(n log n) and memory within a small multiple of the number of
    distinct values, however many scans stream through."""

    min_pending: int = 1 << 20
    merged: ValueTable = dataclasses.field(default_factory=lambda: empty_table())
    pending: list = dataclasses.field(default_factory=list)
    pending_len: int = 0

    def add(self, table: ValueTable) -> None:
        self.pending.append(table)
        self.pending_len += len(table)
        if self.pending_len >= max(len(self.merged), self.min_pending):
            self._compact()

    def table(self) -> ValueTable:
        self._compact()
        return self.merged

    def _compact(self) -> None:
        if self.pending:
            self.merged = merge_tables([self.merged] + self.pending)
            self.pending, self.pending_len = [], 0


def pool_tables(tables: Iterable[ValueTable], min_pending: int = 1 << 20) -> ValueTable:
    """Merge a stream of tables into one without holding the stream (see TablePool)."""
    pool = TablePool(min_pending)
    for table in tables:
        pool.add(table)
    return pool.table()


def sweep(table: ValueTable) -> SweepCurve:
    """TP, FP, FN and F-measure for "p >= t" at every distinct value t of the table.

    F1 = 2 TP / (2 TP + FP + FN), computed from exact integer counts, so two
    thresholds with the same F-measure as a fraction compare equal as floats.
    Empty table: a curve of length 0. No lesion pixel: F1 = 0 everywhere."""
    tp = np.cumsum(table.positives[::-1])[::-1]
    fp = np.cumsum(table.negatives[::-1])[::-1]
    fn = int(table.positives.sum()) - tp
    denominator = 2 * tp + fp + fn  # >= FP + TP > 0 for every candidate
    return SweepCurve(table.values, tp, fp, fn, 2 * tp / np.maximum(denominator, 1))


def best_f_threshold(table: ValueTable) -> float:
    """The threshold t maximising the pooled pixel F-measure of "lesion where p >= t"
    (§3.3: "a search through all possible threshold values").

    Candidates are the distinct values of the table, so the result is exact,
    not the best point of a grid. Ties: the highest of the tied thresholds
    (equal F-measure with the fewest pixels marked). Marking nothing
    (t above every value) scores F = 0 and never beats the lowest candidate,
    which marks every pixel.

    Empty cases: an all-zero output has a single value, 0.0, which is then the
    threshold (every pixel marked, F = 2P / (2P + N)). A table with no lesion
    pixel, or no pixel at all, has no meaningful threshold: ValueError.
    """
    if len(table) == 0:
        raise ValueError("no pixels: the F-measure is undefined for every threshold")
    if table.positives.sum() == 0:
        raise ValueError("no lesion pixels: the F-measure is undefined for every threshold")
    f1 = sweep(table).f1
    best = np.flatnonzero(f1 == f1.max())[-1]
    return float(table.values[best])


def counts_at(table: ValueTable, threshold: float) -> tuple:
    """(TP, FP, FN) of "lesion where p >= threshold" over the pixels of `table`."""
    above = table.values >= threshold
    tp = int(table.positives[above].sum())
    return tp, int(table.negatives[above].sum()), int(table.positives.sum()) - tp
