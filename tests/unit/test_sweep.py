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
