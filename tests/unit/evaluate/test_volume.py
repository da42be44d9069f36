"""Whole-volume evaluation (every slice of each test patient) on volumes of a few
voxels: what counts beside the paper's slices, the pooled and per-patient
reductions, and the patients with nothing marked or nothing to find."""

import math

import numpy as np
import pytest

from plaquenet.evaluate.volume import volume_counts, whole_volume_summary

MM = (1.0, 1.0, 1.0)  # 1 mm^3 voxels: MSSEG drops components of at most 3 voxels
THRESHOLD = 0.5


def volume(shape=(3, 8, 8)):
    """(output_shw float32 zeros, truth_shw uint8 zeros)."""
    return np.zeros(shape, np.float32), np.zeros(shape, np.uint8)


def found_patient(name="A"):
    """One plaque of 8 voxels on slice 0, found exactly; a false alarm of 4 voxels
    on slice 2, which holds no plaque (the paper's protocol never sees it)."""
    output, truth = volume()
    truth[0, 1:3, 1:5] = 1
    output[0, 1:3, 1:5] = 0.9
    output[2, 5:7, 5:7] = 0.6
    return volume_counts(name, output, truth, MM, THRESHOLD)


def test_a_false_alarm_on_a_slice_without_plaques_counts():
    p = found_patient()
    assert (p.slices, p.plaque_slices) == (3, 1)
    assert (p.pixel.tp, p.pixel.fp, p.pixel.fn) == (8, 4, 0)
    for rule in ("msseg2016", "wmh2017"):
        c = p.lesion[rule]
        assert (c.reference, c.automatic, c.detected, c.true_automatic) == (1, 2, 1, 1)


def test_output_at_the_threshold_is_marked():
    output, truth = volume()
    truth[1, 0, 0] = 1
    output[1, 0, 0] = THRESHOLD
    assert volume_counts("A", output, truth, MM, THRESHOLD).pixel.tp == 1


def test_pooled_sums_counts_per_patient_averages_metrics():
    a = found_patient("A")  # precision 8/12, recall 1
    output, truth = volume()
    truth[1, 0:2, 0:4] = 1
    output[1, 0:2, 0:2] = 0.7  # 4 of 8 found, no false alarm: precision 1, recall 1/2
    b = volume_counts("B", output, truth, MM, THRESHOLD)
    summary = whole_volume_summary([a, b], THRESHOLD)
    assert summary["pixel"] == pytest.approx({"precision": 12 / 16, "recall": 12 / 16, "f1": 0.75,
                                              "tp": 12, "fp": 4, "fn": 4})
    assert summary["per_patient"]["precision"] == pytest.approx(
        {"mean": (8 / 12 + 1) / 2, "std": (1 - 8 / 12) / 2, "n": 2})
    assert summary["per_patient"]["recall"]["mean"] == pytest.approx(0.75)
    assert summary["left_out"] == {"precision": 0, "recall": 0, "f1": 0}
    assert summary["counts"] == {"patients": 2, "patients_with_plaques": 2, "slices": 6, "plaque_slices": 2}
    assert [r["patient"] for r in summary["patients"]] == ["A", "B"]
    assert summary["patients"][0]["fp"] == 4 and summary["threshold"] == THRESHOLD
    wmh = summary["lesion"]["wmh2017"]
    assert (wmh["reference_lesions"], wmh["automatic_components"], wmh["false_positives"]) == (2, 3, 1)
    assert wmh["precision"] == pytest.approx(2 / 3)  # pooled: 2 true of 3 components
    assert wmh["per_patient"]["precision"]["mean"] == pytest.approx((1 / 2 + 1) / 2)


def test_nothing_marked_is_left_out_of_precision_and_counted_as_each_reference_does():
    a = found_patient("A")  # lesion precision 1/2 under both rules
    output, truth = volume()
    truth[1, 0:2, 0:4] = 1  # a plaque, nothing marked
    missed = volume_counts("M", output, truth, MM, THRESHOLD)
    summary = whole_volume_summary([a, missed], THRESHOLD)
    assert math.isnan(summary["patients"][1]["precision"]) and summary["patients"][1]["f1"] == 0
    assert summary["left_out"] == {"precision": 1, "recall": 0, "f1": 0}
    assert summary["per_patient"]["precision"]["n"] == 1
    for rule, empty in (("msseg2016", 0.0), ("wmh2017", 1.0)):
        lesion = summary["lesion"][rule]
        assert lesion["left_out"] == {"sensitivity": 0, "precision": 1, "f1": 0}
        assert lesion["per_patient"]["precision"]["mean"] == pytest.approx(0.5)  # plaquenet: M left out
        convention = lesion["reference_convention"]
        assert convention["empty_precision"] == empty and convention["patients_with_nothing_marked"] == 1
        assert convention["precision"]["n"] == 2
        assert convention["precision"]["mean"] == pytest.approx((0.5 + empty) / 2)
    assert "Anima" in summary["lesion"]["msseg2016"]["reference_convention"]["source"]


def test_a_patient_without_plaques_is_scored_but_left_out_of_recall():
    a = found_patient("A")
    output, truth = volume()
    output[0, 0:2, 0:2] = 0.8  # a false alarm, nothing to find
    clean = volume_counts("C", output, truth, MM, THRESHOLD)
    output, truth = volume()
    empty = volume_counts("E", output, truth, MM, THRESHOLD)  # nothing either side
    summary = whole_volume_summary([a, clean, empty], THRESHOLD)
    assert summary["counts"]["patients"] == 3 and summary["counts"]["patients_with_plaques"] == 1
    assert summary["pixel"]["fp"] == 8  # C's false alarm counts in the pooled figures
    rows = {r["patient"]: r for r in summary["patients"]}
    assert rows["C"]["precision"] == 0 and math.isnan(rows["C"]["recall"]) and rows["C"]["f1"] == 0
    assert all(math.isnan(rows["E"][m]) for m in ("precision", "recall", "f1"))
    assert summary["left_out"] == {"precision": 1, "recall": 2, "f1": 1}
    wmh = summary["lesion"]["wmh2017"]
    assert wmh["left_out"] == {"sensitivity": 2, "precision": 1, "f1": 1}
    assert wmh["reference_convention"]["precision"]["mean"] == pytest.approx((0.5 + 0 + 1) / 3)
