"""The exact threshold sweep against brute force on small random data."""

import numpy as np
import pytest

from plaquenet.evaluate.sweep import (
    TablePool, best_f_threshold, counts_at, merge_tables, pool_tables, sweep, value_table,
)


def brute_force(scans, t):
    """TP, FP, FN of "lesion where p >= t" over all pixels of all scans."""
    p = np.concatenate([o.ravel() for o, _ in scans]).astype(np.float64)
    g = np.concatenate([m.ravel() for _, m in scans]) != 0
    pred = p >= t
    return int((pred & g).sum()), int((pred & ~g).sum()), int((~pred & g).sum())


def brute_force_best(scans):
    """Best F over every distinct value as threshold; ties to the highest."""
    candidates = np.unique(np.concatenate([o.ravel() for o, _ in scans]).astype(np.float64))
    best_t, best_f = None, -1.0
    for t in candidates:
        tp, fp, fn = brute_force(scans, t)
        f = 2 * tp / (2 * tp + fp + fn)
        if f >= best_f:
            best_t, best_f = t, f
    return best_t, best_f


def random_scans(rng, n_scans, levels):
    # Few levels -> many ties inside a scan and values repeated across scans.
    scans = []
    for _ in range(n_scans):
        shape = tuple(rng.integers(1, 6, size=2))
        output = (rng.integers(0, levels, size=shape) / levels).astype(np.float32)
        truth = (rng.random(shape) < 0.3).astype(np.uint8)
        scans.append((output, truth))
    if not any(t.any() for _, t in scans):
        scans[0][1].flat[0] = 1
    return scans


@pytest.mark.parametrize("seed", range(30))
def test_best_threshold_and_curve_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    scans = random_scans(rng, n_scans=int(rng.integers(1, 6)), levels=int(rng.choice([2, 5, 50, 10_000])))
    # Compacting after every scan and only at the end must give the same table.
    eager = pool_tables((value_table(o, m) for o, m in scans), min_pending=1)
    lazy = pool_tables((value_table(o, m) for o, m in scans), min_pending=10 ** 9)
    np.testing.assert_array_equal(eager.values, lazy.values)
    np.testing.assert_array_equal(eager.positives, lazy.positives)
    np.testing.assert_array_equal(eager.negatives, lazy.negatives)
    assert np.all(np.diff(eager.values) > 0)
    assert eager.positives.sum() + eager.negatives.sum() == sum(o.size for o, _ in scans)

    curve = sweep(eager)
    for j, t in enumerate(curve.thresholds):
        assert (curve.tp[j], curve.fp[j], curve.fn[j]) == brute_force(scans, t)

    t_best, f_best = brute_force_best(scans)
    assert best_f_threshold(eager) == t_best
    assert curve.f1.max() == pytest.approx(f_best, abs=0)


def test_counts_at_any_threshold_match_brute_force():
    rng = np.random.default_rng(7)
    scans = random_scans(rng, 4, 20)
    table = merge_tables([value_table(o, m) for o, m in scans])
    for t in (-1.0, 0.0, 0.123, 0.5, 0.95, 2.0):
        assert counts_at(table, t) == brute_force(scans, t)


def test_tie_goes_to_the_highest_threshold():
    # t = 0.8: TP 1, FP 0, FN 1 -> F = 2/3;  t = 0.2: TP 2, FP 2, FN 0 -> F = 2/3.
    output = np.array([0.8, 0.2, 0.2, 0.2], np.float32)
    truth = np.array([1, 1, 0, 0])
    assert sweep(value_table(output, truth)).f1.tolist() == pytest.approx([2 / 3, 2 / 3])
    assert best_f_threshold(value_table(output, truth)) == pytest.approx(0.8)


def test_all_zero_output_marks_every_pixel():
    truth = np.array([[1, 0, 0, 0]])
    table = value_table(np.zeros((1, 4), np.float32), truth)
    assert best_f_threshold(table) == 0.0
    assert counts_at(table, 0.0) == (1, 3, 0)


def test_no_lesion_pixels_or_no_pixels_have_no_threshold():
    with pytest.raises(ValueError, match="no lesion"):
        best_f_threshold(value_table(np.array([0.1, 0.9]), np.array([0, 0])))
    with pytest.raises(ValueError, match="no pixels"):
        best_f_threshold(pool_tables([]))


def test_values_repeated_across_scans_are_merged_once():
    pool = TablePool(min_pending=1)
    pool.add(value_table(np.array([0.5, 0.5, 0.25]), np.array([1, 0, 0])))
    pool.add(value_table(np.array([0.5, 0.75]), np.array([1, 1])))
    table = pool.table()
    assert table.values.tolist() == [0.25, 0.5, 0.75]
    assert table.positives.tolist() == [0, 2, 1]
    assert table.negatives.tolist() == [1, 1, 0]


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        value_table(np.zeros((2, 3)), np.zeros((3, 2)))


# --- the two-pass sweep (constant memory) against the same brute force ------

from fractions import Fraction  # noqa: E402
import tracemalloc  # noqa: E402

from plaquenet.evaluate.sweep import (  # noqa: E402
    BINS, KEY_SHIFT, SweepHistogram, best_f_threshold_two_pass, histogram_curve, key_values, order_keys,
)


def from_keys(keys):
    return key_values(np.asarray(keys, np.uint32))


def adversarial_scans(rng):
    """Scans built to hit what binning could get wrong: thousands of values in
    one bin, values on and next to bin edges, 0.0, -0.0, 1.0, subnormals,
    negatives, and exact ties in F between values of one bin."""
    one = int(order_keys(np.float32(0.5)))
    edge = (one >> KEY_SHIFT) << KEY_SHIFT
    pieces = [
        from_keys(edge + rng.integers(0, 1 << KEY_SHIFT, 600)),  # crowded bin
        from_keys(edge + (rng.integers(-3, 4, 200) << KEY_SHIFT) + rng.integers(-1, 2, 200)),  # edges +-1
        np.float32([0.0, -0.0, 1.0, 1.0, 0.0]),
        np.float32([1e-45, 2e-45, 1e-40, 1.17e-38, 1.18e-38]),  # subnormals and the smallest normal
        -rng.random(20).astype(np.float32),
        rng.random(100).astype(np.float32),
        np.repeat(rng.random(5).astype(np.float32), 20),  # ties within a scan
    ]
    values = np.concatenate(pieces)
    rng.shuffle(values)
    truth = rng.random(values.size) < rng.choice([0.05, 0.3, 0.7])
    truth[0] = True
    cuts = np.sort(rng.integers(0, values.size, 3))
    return list(zip(np.split(values, cuts), np.split(truth, cuts)))


def two_pass(scans, max_bins=128):
    histogram = SweepHistogram()
    for output, truth in scans:
        histogram.add(output, truth)
    return histogram, best_f_threshold_two_pass(histogram, lambda: iter(scans), max_bins=max_bins)


@pytest.mark.parametrize("max_bins", [1, 128])
@pytest.mark.parametrize("seed", range(8))
def test_two_pass_matches_brute_force_on_adversarial_values(seed, max_bins):
    scans = adversarial_scans(np.random.default_rng(seed))
    _, choice = two_pass(scans, max_bins)
    t_best, f_best = brute_force_best(scans)
    assert choice.threshold == t_best
    assert (choice.tp, choice.fp, choice.fn) == brute_force(scans, t_best)
    assert choice.f1 == pytest.approx(f_best, abs=0)


@pytest.mark.parametrize("seed", range(20))
def test_two_pass_matches_the_value_table(seed):
    rng = np.random.default_rng(100 + seed)
    scans = random_scans(rng, n_scans=int(rng.integers(1, 6)), levels=int(rng.choice([2, 5, 50, 10_000])))
    table = pool_tables(value_table(o, m) for o, m in scans)
    _, choice = two_pass(scans, max_bins=int(rng.choice([1, 3, 128])))
    assert choice.threshold == best_f_threshold(table)
    assert (choice.tp, choice.fp, choice.fn) == counts_at(table, choice.threshold)


def test_two_pass_tie_goes_to_the_highest_threshold_inside_one_bin():
    # Neighbouring float32 values (one bin): t = b: F = 2/3;  t = a: F = 2/3.
    a, b = from_keys([order_keys(np.float32(0.3)), order_keys(np.float32(0.3)) + 1])
    output = np.array([b, a, a, a], np.float32)
    _, choice = two_pass([(output, np.array([1, 1, 0, 0]))])
    assert choice.threshold == float(b) and Fraction(2 * choice.tp, 2 * choice.tp + choice.fp + choice.fn) == Fraction(2, 3)


def test_two_pass_empty_cases():
    _, choice = two_pass([(np.zeros((2, 3), np.float32), np.eye(2, 3))])
    assert (choice.threshold, choice.tp, choice.fp, choice.fn) == (0.0, 2, 4, 0)
    with pytest.raises(ValueError, match="no lesion"):
        two_pass([(np.float32([0.1, 0.9]), np.array([0, 0]))])
    with pytest.raises(ValueError, match="no pixels"):
        two_pass([(np.zeros((0, 4), np.float32), np.zeros((0, 4)))])


def test_a_second_pass_over_other_pixels_is_refused():
    histogram = SweepHistogram()
    histogram.add(np.float32([0.2, 0.6]), np.array([0, 1]))
    with pytest.raises(ValueError, match="second pass"):
        best_f_threshold_two_pass(histogram, lambda: iter([(np.float32([0.2, 0.61]), np.array([0, 1]))]))


def test_histogram_curve_is_exact_at_its_thresholds_and_holds_the_choice():
    scans = adversarial_scans(np.random.default_rng(3))
    histogram, choice = two_pass(scans)
    curve = histogram_curve(histogram, choice)
    assert np.all(np.diff(curve.thresholds) >= 0)
    for j, t in enumerate(curve.thresholds):
        assert (curve.tp[j], curve.fp[j], curve.fn[j]) == brute_force(scans, t)
    at = np.flatnonzero(curve.thresholds == choice.threshold)
    assert len(at) and curve.f1[at[0]] == choice.f1


def test_order_keys_sort_like_the_values():
    values = np.float32([-np.inf, -1.0, -1e-45, -0.0, 0.0, 1e-45, 1e-38, 0.5, 1.0, np.inf])
    keys = order_keys(values)
    steps = np.diff(keys.astype(np.int64))
    assert steps[3] == 0 and np.all(np.delete(steps, 3) > 0)  # -0.0 and +0.0 are one value
    np.testing.assert_array_equal(key_values(keys), values)
    with pytest.raises(ValueError, match="NaN"):
        order_keys(np.float32([0.5, np.nan]))
    with pytest.raises(ValueError, match="float32"):
        order_keys(np.array([0.1]))  # float64 0.1 is not a float32 value
    assert order_keys(np.array([0.5, 2.0])).dtype == np.uint32


def test_pass_one_memory_does_not_grow_with_the_number_of_scans():
    rng = np.random.default_rng(0)

    def scan():  # sigmoid-like: nearly every value distinct
        output = 1 / (1 + np.exp(-rng.normal(-7, 2.5, (64, 64)))).astype(np.float32)
        return output, rng.random((64, 64)) < 0.05

    histogram = SweepHistogram()
    histogram.add(*scan())
    tracemalloc.start()
    try:
        histogram.add(*scan())
        after_one = tracemalloc.get_traced_memory()[0]
        for _ in range(40):  # 160k more distinct values: a value table would grow ~4 MB
            histogram.add(*scan())
        grown = tracemalloc.get_traced_memory()[0] - after_one
    finally:
        tracemalloc.stop()
    assert grown < 100_000
    assert histogram.counts.shape == (BINS, 2) and histogram.counts.sum() == 42 * 64 * 64
