"""Pixel metrics on hand-made masks, empty cases included."""

import math

import numpy as np
import pytest

from plaquenet.evaluate.metrics import PixelCounts, count_pixels, mean_and_std, pixel_metrics

TRUTH = np.array([[1, 1, 0, 0],
                  [1, 0, 0, 0]], np.uint8)
PRED = np.array([[1, 0, 1, 0],
                 [1, 0, 0, 1]], bool)


def test_counts_and_metrics_on_a_hand_made_mask():
    c = count_pixels(PRED, TRUTH)
    assert c == PixelCounts(tp=2, fp=2, fn=1)
    m = pixel_metrics(c)
    assert m["precision"] == pytest.approx(2 / 4)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 1))
    # F1 is the harmonic mean of the two.
    assert m["f1"] == pytest.approx(2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"]))


def test_pooled_counts_add_up():
    c = count_pixels(PRED, TRUTH) + count_pixels(TRUTH, TRUTH)
    assert c == PixelCounts(tp=5, fp=2, fn=1)


def test_empty_cases():
    empty = np.zeros_like(TRUTH)
    nothing_marked = pixel_metrics(count_pixels(empty, TRUTH))
    assert math.isnan(nothing_marked["precision"]) and nothing_marked["recall"] == 0 and nothing_marked["f1"] == 0

    no_lesion = pixel_metrics(count_pixels(PRED, empty))
    assert no_lesion["precision"] == 0 and math.isnan(no_lesion["recall"]) and no_lesion["f1"] == 0

    both_empty = pixel_metrics(count_pixels(empty, empty))
    assert all(math.isnan(v) for v in both_empty.values())


def test_perfect_prediction():
    assert pixel_metrics(count_pixels(TRUTH, TRUTH)) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_mean_and_std_leave_undefined_cases_out():
    cases = [{"precision": 0.5, "recall": 1.0, "f1": 0.5},
             {"precision": math.nan, "recall": 0.0, "f1": 0.0},
             {"precision": 1.0, "recall": 0.5, "f1": 1.0}]
    s = mean_and_std(cases)
    assert s["precision"] == {"mean": 0.75, "std": 0.25, "n": 2}
    assert s["f1"]["mean"] == pytest.approx(0.5) and s["f1"]["n"] == 3
    assert s["f1"]["std"] == pytest.approx(np.std([0.5, 0.0, 1.0]))
    assert math.isnan(mean_and_std([])["recall"]["mean"])


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shape"):
        count_pixels(PRED, TRUTH.T)
