"""The exact threshold sweep of paper §3.3: every distinct output value is a
candidate threshold, and the one that maximises the pixel F-measure wins.

Two routes to the same, exact answer:

* A *value table* holds, for each distinct output value v, how many lesion
  pixels (positives) and background pixels (negatives) had exactly that value;
  cumulative sums taken from the top give TP, FP, FN of "a pixel is a lesion
  when p >= t" at every distinct t at once. Its length is the number of
  distinct values, which for sigmoid outputs (nearly all distinct near 0)
  grows with the pixels: fine for small sets (tiles, tests), not for 982 scans.

* The *two-pass sweep* keeps memory constant. Non-negative float32 values
  ordered as numbers are ordered as their bit patterns (negative ones too,
  after flipping), so a 32-bit "order key" sorts the values. Pass 1
  (`SweepHistogram.add`, one scan at a time) counts lesion and background
  pixels per bin of the top 20 key bits: 2^20 bins, 16 MiB, whatever the
  cohort. At each bin's lower edge the counts are exact, and inside a bin TP
  can be no more than at its lower edge and FP no less than at its upper
  edge, which bounds the best F any threshold inside the bin can reach. Pass 2
  (`best_f_threshold_two_pass`, reading the scans again) counts exactly each
  of the 2^12 possible values of just those bins whose bound reaches the best
  edge F: a handful of bins, so the work is O(pixels), not O(pixels x
  thresholds), and the answer is the brute-force one.

F-measures are compared as exact fractions, so ties (-> the highest
threshold) are real ties, not float rounding.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Callable, Iterable, List, Tuple

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
    pending: List[ValueTable] = dataclasses.field(default_factory=list)
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

    F1 = 2 TP / (2 TP + FP + FN) as a float; the choice of the best threshold
    compares the exact fractions (`_best_index`). Empty table: a curve of length 0. No lesion pixel: F1 = 0 everywhere."""
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
    curve = sweep(table)
    return float(table.values[_best_index(curve.tp, curve.fp, int(table.positives.sum()))])


def counts_at(table: ValueTable, threshold: float) -> Tuple[int, int, int]:
    """(TP, FP, FN) of "lesion where p >= threshold" over the pixels of `table`."""
    above = table.values >= threshold
    tp = int(table.positives[above].sum())
    return tp, int(table.negatives[above].sum()), int(table.positives.sum()) - tp


def _best_index(tp: np.ndarray, fp: np.ndarray, positives: int) -> int:
    """The last index with the largest F = 2 TP / (TP + FP + positives), compared
    as exact fractions (candidates in increasing threshold order: last = highest).

    Floats only shortlist: division rounds monotonically, so every exact maximum
    has the largest float; among those equal floats, Fractions decide."""
    f1 = 2 * tp / (tp + fp + positives)
    top = np.flatnonzero(f1 == f1.max())
    if len(top) > 1:
        exact = [Fraction(2 * int(tp[i]), int(tp[i]) + int(fp[i]) + positives) for i in top]
        top = top[np.flatnonzero(np.array([e == max(exact) for e in exact]))]
    return int(top[-1])


# --- the two-pass sweep: constant memory, exact ----------------------------

KEY_SHIFT = 12  # key bits resolved only in pass 2: a bin holds 2^12 possible values
BINS = 1 << (32 - KEY_SHIFT)  # sign, exponent and 11 mantissa bits: 2^-11 relative width
_KEY_NEG_INF, _KEY_POS_INF = 0x007FFFFF, 0xFF800000  # keys outside these are NaN


def order_keys(output: np.ndarray) -> np.ndarray:
    """uint32 keys of the float32 values of `output` (same shape), in the same
    order as the values: key(a) < key(b) exactly when a < b, -0.0 and +0.0 one key.

    ValueError for NaN (it has no place in the order) or values float32 does
    not hold exactly (float64 probabilities: round them to float32 first)."""
    output = np.asarray(output)
    values = output.astype(np.float32)  # always a fresh buffer: modified in place below
    if output.dtype != np.float32 and not np.array_equal(values, output, equal_nan=True):
        raise ValueError(f"output of type {output.dtype} is not exactly representable as float32")
    values += np.float32(0.0)  # -0.0 + 0.0 = +0.0: equal values must share a key
    keys = values.view(np.uint32)
    # Non-negative: set the sign bit (above every negative); negative: flip all bits.
    flip = keys >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    keys ^= flip
    keys ^= np.uint32(0x80000000)
    if keys.size and (keys.min() < _KEY_NEG_INF or keys.max() > _KEY_POS_INF):
        raise ValueError("output holds NaN: no threshold order exists")
    return keys


def key_values(keys: np.ndarray) -> np.ndarray:
    """The float32 values of order keys (the inverse of `order_keys`)."""
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> np.uint32(31) == 1, keys ^ np.uint32(0x80000000), ~keys)
    return bits.astype(np.uint32).view(np.float32)


def _keys_and_truth(output: np.ndarray, truth: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Flat order keys and flat lesion flags (uint8 0/1), shapes checked."""
    output = np.asarray(output)
    truth = np.asarray(truth)
    if output.shape != truth.shape:
        raise ValueError(f"output shape {output.shape} != ground-truth shape {truth.shape}")
    return order_keys(output).ravel(), (truth.ravel() != 0).view(np.uint8)


@dataclasses.dataclass
class SweepHistogram:
    """Pass 1 of the two-pass sweep: lesion and background pixel counts per bin
    of the top 20 bits of the order key, added one scan at a time.

    counts  (BINS, 2) int64: [:, 0] background pixels, [:, 1] lesion pixels;
            16 MiB, whatever the number of scans (bins only ever gain counts)
    """

    counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((BINS, 2), np.int64))

    def add(self, output: np.ndarray, truth: np.ndarray) -> None:
        """Count the pixels of one scan (any shape, e.g. (S, H, W)); truth nonzero = lesion."""
        keys, lesion = _keys_and_truth(output, truth)
        if not keys.size:
            return
        bins = keys >> np.uint32(KEY_SHIFT)
        first = int(bins.min())
        # One bincount over (bin, lesion) pairs, offset to the bins this scan
        # touches: no 16 MiB temporary per scan.
        index = (bins - np.uint32(first)).astype(np.intp)
        index <<= 1
        index |= lesion
        found = np.bincount(index)
        flat = self.counts.reshape(-1)
        flat[2 * first:2 * first + len(found)] += found


@dataclasses.dataclass
class ThresholdChoice:
    """The chosen threshold (lesion where p >= threshold) and its pooled counts."""

    threshold: float
    tp: int
    fp: int
    fn: int

    @property
    def f1(self) -> float:
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn)


@dataclasses.dataclass
class _BinEdges:
    """Pass-1 counts at the lower edge of each non-empty bin (increasing),
    i.e. for the threshold "p >= the lowest value the bin could hold"."""

    bins: np.ndarray  # (B,) bin numbers
    positives: np.ndarray  # (B,) lesion pixels inside each bin
    negatives: np.ndarray
    tp: np.ndarray  # (B,) lesion pixels in this bin and above
    fp: np.ndarray
    total_positives: int

    @property
    def f1(self) -> np.ndarray:
        return 2 * self.tp / (self.tp + self.fp + self.total_positives)

    @property
    def f1_bound(self) -> np.ndarray:
        """No threshold inside a bin beats TP of its lower edge with FP of its upper edge."""
        return 2 * self.tp / (self.tp + self.fp - self.negatives + self.total_positives)


def _bin_edges(histogram: SweepHistogram) -> _BinEdges:
    bins = np.flatnonzero(histogram.counts.any(axis=1))
    negatives, positives = histogram.counts[bins, 0], histogram.counts[bins, 1]
    tp = np.cumsum(positives[::-1])[::-1]
    fp = np.cumsum(negatives[::-1])[::-1]
    return _BinEdges(bins, positives, negatives, tp, fp, int(tp[0]) if len(tp) else 0)


Rescan = Callable[[], Iterable[Tuple[np.ndarray, np.ndarray]]]   # a fresh pass over the (output, truth) pairs


def best_f_threshold_two_pass(histogram: SweepHistogram, rescan: Rescan, max_bins: int = 128) -> ThresholdChoice:
    """`best_f_threshold` over the pixels counted in `histogram`, in constant memory.

    rescan() must give a fresh iterable of the same (output, truth) pairs that
    were added to `histogram` (any order, any grouping into arrays); it is
    called once per `max_bins` bins still in question: once in practice (51
    bins for 1,000 synthetic 448x512 scans). ValueError when it gives other pixels.

    Same rules as `best_f_threshold`: candidates are the distinct values,
    lesion where p >= t, ties to the highest threshold; all-zero output -> 0.0;
    ValueError with no pixel or no lesion pixel.
    """
    edges = _bin_edges(histogram)
    if len(edges.bins) == 0:
        raise ValueError("no pixels: the F-measure is undefined for every threshold")
    if edges.total_positives == 0:
        raise ValueError("no lesion pixels: the F-measure is undefined for every threshold")
    # A bin without lesion pixels never holds the best threshold: the lowest
    # value above it has the same TP and fewer FP. Float bounds suffice to
    # prune: rounding is monotonic, so a bound that truly reaches a fraction
    # also reaches its float.
    bound = edges.f1_bound
    open_ = np.flatnonzero((edges.positives > 0) & (bound >= edges.f1.max()))
    open_ = open_[np.argsort(-bound[open_], kind="stable")]  # most promising first
    best_f1, best = Fraction(-1), None
    while len(open_):
        f1, choice = _best_in_bins(edges, open_[:max_bins], rescan)
        if (f1, choice.threshold) > (best_f1, best.threshold if best else -np.inf):
            best_f1, best = f1, choice
        open_ = open_[max_bins:]
        open_ = open_[bound[open_] >= float(best_f1)]
    assert best is not None  # the bin of the best edge F holds lesion pixels: open_ started non-empty
    return best


def _best_in_bins(edges: _BinEdges, which: np.ndarray, rescan: Rescan) -> Tuple[Fraction, ThresholdChoice]:
    """Pass 2 over the bins edges.bins[which]: exact counts of each value in
    them, then the best threshold among those values (exact F, ties to highest)."""
    which = np.sort(which)
    slot = np.full(BINS, -1, np.int32)
    slot[edges.bins[which]] = np.arange(len(which), dtype=np.int32)
    counts: np.ndarray = np.zeros(len(which) * (1 << KEY_SHIFT) * 2, np.int64)  # (slot, low key bits, lesion)
    for output, truth in rescan():
        keys, lesion = _keys_and_truth(output, truth)
        where = slot[keys >> np.uint32(KEY_SHIFT)]
        inside = np.flatnonzero(where >= 0)
        if not len(inside):
            continue
        index = where[inside].astype(np.intp) << KEY_SHIFT
        index |= keys[inside] & np.uint32((1 << KEY_SHIFT) - 1)
        index <<= 1
        index |= lesion[inside]
        first = int(index.min())
        found = np.bincount(index - first)
        counts[first:first + len(found)] += found
    counts = counts.reshape(len(which), 1 << KEY_SHIFT, 2)
    if not np.array_equal(counts.sum(axis=1), np.stack([edges.negatives[which], edges.positives[which]], 1)):
        raise ValueError("the second pass over the outputs did not give the pixels of the first")

    # Per bin: TP, FP of every value = pass-1 counts above the bin + the bin's values >= it.
    above = np.stack([edges.fp[which] - edges.negatives[which], edges.tp[which] - edges.positives[which]], 1)
    at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1] + above[:, None, :]
    present = counts.any(axis=2)
    fp, tp = at_or_above[present][:, 0], at_or_above[present][:, 1]
    bin_of, low = np.nonzero(present)  # row-major: increasing key, i.e. increasing value
    keys = (edges.bins[which][bin_of].astype(np.uint32) << np.uint32(KEY_SHIFT)) | low.astype(np.uint32)
    positives = edges.total_positives
    best = _best_index(tp, fp, positives)
    choice = ThresholdChoice(float(key_values(keys[best])), int(tp[best]), int(fp[best]), positives - int(tp[best]))
    return Fraction(2 * choice.tp, choice.tp + choice.fp + positives), choice


def histogram_curve(histogram: SweepHistogram, choice: ThresholdChoice) -> SweepCurve:
    """The precision-recall curve for the report from pass 1: exact counts at the
    lower edge of every non-empty bin (thresholds 2^-11 apart in relative terms),
    plus the chosen threshold itself, in increasing threshold order."""
    edges = _bin_edges(histogram)
    thresholds = key_values(edges.bins.astype(np.uint32) << np.uint32(KEY_SHIFT)).astype(np.float64)
    at = int(np.searchsorted(thresholds, choice.threshold))
    thresholds = np.insert(thresholds, at, choice.threshold)
    tp = np.insert(edges.tp, at, choice.tp)
    fp = np.insert(edges.fp, at, choice.fp)
    fn = edges.total_positives - tp
    return SweepCurve(thresholds, tp, fp, fn, 2 * tp / np.maximum(2 * tp + fp + fn, 1))
