"""Lesion-wise detection on hand-made masks: each case is drawn so that the two
rules (MSSEG-2016 of Commowick et al. 2018, WMH-2017) can be told apart."""

import math

import numpy as np
import pytest

from plaquenet.evaluate.lesions import (LesionCounts, all_rules, lesion_components, lesion_detection,
                                        lesion_metrics, lesion_summary, min_component_voxels, msseg_detected)

MM = (1.0, 1.0, 1.0)  # 1 mm^3 voxels: components of at most 3 voxels are dropped under MSSEG


def masks(shape=(1, 30, 30)):
    return np.zeros(shape, bool), np.zeros(shape, bool)


def both(pred, truth, voxel_mm=MM):
    return {rule: lesion_detection(pred, truth, voxel_mm, rule) for rule in ("msseg2016", "wmh2017")}


def test_split_one_lesion_two_components():
    pred, truth = masks()
    truth[0, 0:4, 0:10] = True
    pred[0, 0:4, 0:4] = pred[0, 0:4, 6:10] = True
    for c in both(pred, truth).values():
        assert (c.reference, c.automatic, c.detected, c.true_automatic) == (1, 2, 1, 2)
        assert lesion_metrics(c) == {"sensitivity": 1.0, "precision": 1.0, "f1": 1.0}


def test_merge_two_lesions_one_component():
    pred, truth = masks()
    truth[0, 0:4, 0:4] = truth[0, 0:4, 6:10] = True
    pred[0, 0:4, 0:10] = True  # 8 of its 40 voxels between the lesions: 20 % outside <= beta
    for c in both(pred, truth).values():
        assert (c.reference, c.automatic, c.detected, c.true_automatic) == (2, 1, 2, 1)


def test_overlap_below_alpha_missed_by_msseg_detected_by_wmh():
    pred, truth = masks()
    truth[0, 0:10, 0:10] = True
    pred[0, 0, 0:5] = True  # 5 % of the lesion
    c = both(pred, truth)
    assert c["msseg2016"].detected == 0 and c["wmh2017"].detected == 1
    # The component lies inside the lesion, but the lesion is 95 % outside it (> beta): not a true detection.
    assert c["msseg2016"].false_positives == 1 and c["wmh2017"].false_positives == 0
    assert lesion_metrics(c["msseg2016"])["f1"] == 0.0


def test_component_mostly_outside_the_lesion():
    pred, truth = masks()
    truth[0, 0:4, 0:4] = True
    pred[0, 0:10, 0:10] = True  # covers the whole lesion, 84 % of it outside (> beta)
    c = both(pred, truth)
    assert c["msseg2016"].detected == 0 and c["wmh2017"].detected == 1


@pytest.mark.parametrize("good_first, detected", [(True, 1), (False, 0)])
def test_gamma_only_the_largest_overlaps_must_be_inside(good_first, detected):
    pred, truth = masks()
    truth[0, 0:5, 0:10] = True
    if good_first:
        pred[0, 0:5, 0:7] = True  # 35 of the 45 overlapping voxels (>= gamma), all inside
        pred[0, 0:5, 8:20] = True  # 10 inside, 50 outside: 83 % outside, never looked at
    else:
        pred[0, 0:5, 0:2] = True  # 10 inside
        pred[0, 0:20, 3:10] = True  # 35 inside, 105 outside: 75 % outside, the largest overlap
    c = both(pred, truth)
    assert c["msseg2016"].detected == detected and c["wmh2017"].detected == 1


def test_components_of_at_most_3_mm3_ignored_by_msseg():
    pred, truth = masks()
    truth[0, 0, 0:3] = True  # 3 mm^3 lesion
    truth[0, 10:14, 10:14] = True  # 16 mm^3 lesion, touched only by a 2-voxel component
    pred[0, 10, 10:12] = True
    pred[0, 20, 20:23] = True  # 3 mm^3 false alarm
    c = both(pred, truth)
    assert (c["msseg2016"].reference, c["msseg2016"].automatic, c["msseg2016"].detected) == (1, 0, 0)
    assert (c["wmh2017"].reference, c["wmh2017"].automatic, c["wmh2017"].detected) == (2, 2, 1)
    assert c["wmh2017"].false_positives == 1


def test_minimum_volume_uses_the_voxel_size():
    truth = np.zeros((1, 10, 10), bool)
    truth[0, 0, 0:4] = True  # 4 voxels of 0.75 mm^3 = 3 mm^3: dropped
    truth[0, 5, 0:5] = True  # 3.75 mm^3: kept
    _, n = lesion_components(truth, (3.0, 0.5, 0.5), connectivity=6, min_volume_mm3=3.0)
    assert n == 1


def test_a_3_mm3_component_is_dropped_where_float_rounding_says_2_99():
    """3 mm^3 / (3.0 x 0.2 x 1.0 mm) is 4.999999999999999 in floats: plain floor
    would keep a component of 5 voxels, exactly 3 mm^3."""
    assert 3.0 / float(np.prod((3.0, 0.2, 1.0))) < 5 and min_component_voxels(3.0, (3.0, 0.2, 1.0)) == 5
    assert min_component_voxels(3.0, (3.0, 0.5, 0.5)) == 4 and min_component_voxels(3.0, (1.0, 1.0, 0.7)) == 4
    truth = np.zeros((1, 10, 10), bool)
    truth[0, 0, 0:5] = True  # 5 voxels of 0.6 mm^3 = 3 mm^3: dropped
    truth[0, 5, 0:6] = True  # 3.6 mm^3: kept
    _, n = lesion_components(truth, (3.0, 0.2, 1.0), connectivity=6, min_volume_mm3=3.0)
    assert n == 1


@pytest.mark.parametrize("bad_label", [2, 3])
def test_equal_overlaps_are_taken_larger_component_first_wherever_it_lies(bad_label):
    """Lesion 1 overlaps component A (60 voxels) and two more by 20 each; after A
    (60 %) one of the two reaches gamma (65 %) and the other is never looked at.
    The larger of the two lies 80 % outside every lesion: Anima takes it first
    (its labels are sorted by size), so the lesion is missed whatever its label."""
    good_label = 5 - bad_label
    table = np.zeros((2, 4), np.int64)
    table[1, 1:] = 60, 20, 20
    table[0, bad_label] = 80  # the larger (100 voxels), 80 % > beta on background
    assert not msseg_detected(table)[0]
    table[0, bad_label] = 0   # both small and inside: detected
    table[0, good_label] = 0
    assert msseg_detected(table)[0]


def test_empty_cases():
    pred, truth = masks()
    nothing = lesion_metrics(lesion_detection(pred, truth, MM))
    assert all(math.isnan(v) for v in nothing.values())
    truth[0, 0:4, 0:4] = True
    missed = lesion_metrics(lesion_detection(pred, truth, MM))
    assert missed["sensitivity"] == 0.0 and math.isnan(missed["precision"]) and missed["f1"] == 0.0
    false_alarm = lesion_metrics(lesion_detection(truth, np.zeros_like(truth), MM, "wmh2017"))
    assert math.isnan(false_alarm["sensitivity"]) and false_alarm["precision"] == 0.0 and false_alarm["f1"] == 0.0


def test_connectivity_3d_and_per_slice():
    truth = np.zeros((2, 6, 6), bool)
    truth[0, 0:2, 0:2] = True
    truth[1, 2:4, 2:4] = True  # touches the first only through a corner across slices
    truth[1, 0:2, 0:2] = True  # directly above the first
    assert lesion_components(truth, MM, connectivity=26)[1] == 1
    assert lesion_components(truth, MM, connectivity=6)[1] == 2
    assert lesion_components(truth, MM, connectivity=8)[1] == 2  # per slice: slice 1's two squares touch diagonally
    assert lesion_components(truth, MM, connectivity=4)[1] == 3
    with pytest.raises(ValueError):
        lesion_components(truth, MM, connectivity=5)


def test_all_rules_in_2d_count_a_plaque_once_per_slice():
    truth = np.zeros((3, 10, 10), bool)
    truth[0:3, 2:5, 2:5] = True  # one plaque through three slices
    pred = truth.copy()
    pred[1] = False  # found on slices 0 and 2 only
    in_3d, in_2d = all_rules(pred, truth, MM), all_rules(pred, truth, MM, connectivity=8)
    for rule in ("msseg2016", "wmh2017"):
        assert (in_3d[rule].reference, in_3d[rule].detected) == (1, 1)
        assert (in_2d[rule].reference, in_2d[rule].detected, in_2d[rule].automatic) == (3, 2, 2)


def test_summary_pooled_and_per_patient():
    a = LesionCounts(reference=2, automatic=2, detected=2, true_automatic=1, detected_volumes_mm3=(10.0, 30.0))
    b = LesionCounts(reference=2, automatic=0, detected=0, true_automatic=0, missed_volumes_mm3=(4.0, 6.0))
    summary = lesion_summary({"P1": a, "P2": b})
    assert summary["sensitivity"] == 0.5 and summary["precision"] == 0.5 and summary["f1"] == 0.5
    assert (summary["reference_lesions"], summary["false_positives"], summary["missed"]) == (4, 1, 2)
    assert summary["per_patient"]["sensitivity"] == {"mean": 0.5, "std": 0.5, "n": 2}
    assert summary["per_patient"]["precision"]["n"] == 1  # P2 marked nothing: precision undefined
    assert summary["volume_mm3"]["detected"]["mean"] == 20.0 and summary["volume_mm3"]["missed"]["median"] == 5.0
    assert summary["volume_mm3"]["reference"]["n"] == 4
    assert [row["patient"] for row in summary["patients"]] == ["P1", "P2"]


def test_detected_and_missed_volumes_in_mm3():
    pred, truth = masks()
    truth[0, 0:4, 0:4] = True
    truth[0, 10:12, 10:15] = True
    pred[0, 0:4, 0:4] = True
    c = lesion_detection(pred, truth, (2.0, 0.5, 0.5), "wmh2017")
    assert c.detected_volumes_mm3 == (8.0,) and c.missed_volumes_mm3 == (5.0,)


def test_bad_arguments():
    pred, truth = masks()
    with pytest.raises(ValueError):
        lesion_detection(pred, truth, MM, rule="isbi")
    with pytest.raises(ValueError):
        lesion_detection(pred[:, :5], truth, MM)
