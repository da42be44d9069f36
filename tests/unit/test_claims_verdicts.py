"""Each claim's verdict follows from its numbers: made-up numbers on both
sides of every rule (experiments/verdicts.py)."""

import math

import pytest

from plaquenet.experiments.verdicts import (ALL_ZERO_SHARE, FAILS, HOLDS, MARGIN, MOST, UNMEASURABLE, c1_threshold_source, c2_raw_intensity,
                                            c3_bright_negatives, c4_overtraining, c5_false_alarm_regions,
                                            c6_lesion_vs_pixel, c7_larger_tiles, c8_brain_extraction,
                                            c9_skull_stripped_training)


def results(f_scan=0.5, f_tiles=0.3, f_raw=0.1):
    return {"threshold": 0.9, "threshold_from_tiles": 0.3,
            "test": {"pixel": {"f1": f_scan}, "pixel_from_tiles_threshold": {"f1": f_tiles}},
            "baseline": {"raw_intensity": {"test": {"pixel": {"f1": f_raw}}}}}


def ranges(net, raw):
    return {"ranges": {"network": {"measure": net}, "raw": {"measure": raw}}}


def regions(fp):
    """{region: fp pixels} -> observations' region record (area 100 each, components = pixels // 10)."""
    return {"regions": {k: {"fp_pixels": v, "false_components": v // 10, "area_pixels": 100} for k, v in fp.items()}}


@pytest.mark.parametrize("f_scan, f_tiles, verdict", [(0.5, 0.3, HOLDS), (0.3, 0.5, FAILS), (0.4, 0.4, FAILS)])
def test_c1_compares_the_two_thresholds_on_test(f_scan, f_tiles, verdict):
    assert c1_threshold_source(results(f_scan, f_tiles)).verdict == verdict


def test_c1_without_tiles_is_not_measurable():
    r = results()
    r["test"]["pixel_from_tiles_threshold"] = {"f1": None}
    claim = c1_threshold_source(r)
    assert claim.verdict == UNMEASURABLE and "tiles" in claim.reason


@pytest.mark.parametrize("f_raw, net_width, raw_width, verdict", [
    (0.1, 0.5, 0.1, HOLDS),     # better and wider
    (0.6, 0.5, 0.1, FAILS),     # wider but not better
    (0.1, 0.1, 0.5, FAILS),     # better but not wider
])
def test_c2_needs_better_and_wider(f_raw, net_width, raw_width, verdict):
    assert c2_raw_intensity(results(f_raw=f_raw), ranges(net_width, raw_width)).verdict == verdict


def test_c3_reduction_must_reach_the_margin():
    none = regions({"calvaria": 1000, "orbit": 0, "brain": 50})
    just_enough = regions({"calvaria": int(1000 * (1 - MARGIN)), "brain": 999})  # brain pixels do not count
    not_enough = regions({"calvaria": int(1000 * (1 - MARGIN)) + 1, "brain": 0})
    f1 = {"bright": 0.4, "none": 0.3}
    assert c3_bright_negatives({"bright": just_enough, "none": none}, f1).verdict == HOLDS
    assert c3_bright_negatives({"bright": not_enough, "none": none}, f1).verdict == FAILS


def test_c3_reports_bright_against_uniform_separately():
    claim = c3_bright_negatives({"bright": regions({"orbit": 100}), "none": regions({"orbit": 1000}),
                                 "uniform": regions({"orbit": 105})}, {})
    assert claim.verdict == HOLDS and claim.numbers["bright_beats_uniform"] is False
    assert "does not add" in claim.reason


def test_c3_without_regions_or_runs_is_not_measurable():
    assert c3_bright_negatives({"bright": {"regions": None}, "none": {"regions": None}}, {}).verdict == UNMEASURABLE
    claim = c3_bright_negatives({"bright": regions({"orbit": 1}), "none": None}, {})
    assert claim.verdict == UNMEASURABLE and "none" in claim.reason


def curve(f1s, step=100):
    return [{"iteration": step * (k + 1), "test_f1": f} for k, f in enumerate(f1s)]


def test_c4_rise_then_fall_with_falling_loss_holds():
    claim = c4_overtraining(curve([0.2, 0.5, 0.4]), [0, 100, 200, 300], [9.0, 5.0, 4.0, 3.0], 300, 75000)
    assert claim.verdict == HOLDS and claim.numbers["best_iteration"] == 200


def test_c4_fall_within_noise_or_rising_loss_does_not_hold():
    small = c4_overtraining(curve([0.2, 0.5, 0.495]), [0, 300], [9.0, 3.0], 75000, 75000)
    assert small.verdict == FAILS and "no fall" in small.reason
    loss_rose = c4_overtraining(curve([0.2, 0.5, 0.3]), [0, 200, 300], [9.0, 3.0, 4.0], 75000, 75000)
    assert loss_rose.verdict == FAILS and "loss did not keep falling" in loss_rose.reason


def test_c4_still_rising_on_a_shortened_schedule_is_not_measurable():
    claim = c4_overtraining(curve([0.1, 0.2, 0.3]), [0, 300], [9.0, 3.0], 300, 75000)
    assert claim.verdict == UNMEASURABLE and "shortened" in claim.reason
    full = c4_overtraining(curve([0.1, 0.2, 0.3]), [0, 300], [9.0, 3.0], 75000, 75000)
    assert full.verdict == FAILS


def test_c4_needs_three_snapshots():
    assert c4_overtraining(curve([0.1, 0.2]), None, None, 200, 75000).verdict == UNMEASURABLE


def test_c5_share_of_the_papers_regions_outside_the_brain():
    holds = c5_false_alarm_regions(regions({"orbit": 30, "temporal_bone": 10, "calvaria": 10, "scalp": 50,
                                            "brain": 10_000}))
    assert holds.verdict == HOLDS and holds.numbers["share_in_paper_regions"] == 0.5
    fails = c5_false_alarm_regions(regions({"orbit": 30, "sinus": 31}))
    assert fails.verdict == FAILS
    none_outside = c5_false_alarm_regions(regions({"brain": 10}))
    assert none_outside.verdict == UNMEASURABLE
    assert c5_false_alarm_regions({"regions": None}).verdict == UNMEASURABLE


def observations(pixel_poly, lesion_poly, pixel_exact=None, lesion_exact=None):
    obs = {"pixel": {"polygons": {"f1": pixel_poly}}, "lesion": {"polygons": {"msseg2016": {"f1": lesion_poly}}}}
    if pixel_exact is not None:
        obs["pixel"]["exact"] = {"f1": pixel_exact}
        obs["lesion"]["exact"] = {"msseg2016": {"f1": lesion_exact}}
    return obs


def test_c6_lesion_above_pixel_and_the_gap_with_exact_masks():
    claim = c6_lesion_vs_pixel(observations(0.4, 0.7, 0.6, 0.7))
    assert claim.verdict == HOLDS and claim.numbers["gap_larger_with_polygons"] is True
    reverse = c6_lesion_vs_pixel(observations(0.4, 0.7, 0.2, 0.7))
    assert reverse.verdict == HOLDS and reverse.numbers["gap_larger_with_polygons"] is False
    assert c6_lesion_vs_pixel(observations(0.5, 0.4)).verdict == FAILS
    assert "not known" in c6_lesion_vs_pixel(observations(0.5, 0.6)).reason


def test_c6_without_lesion_scores_is_not_measurable():
    assert c6_lesion_vs_pixel(observations(0.0, math.nan)).verdict == UNMEASURABLE


def large_run(all_zero, f1, scans=10):
    """(score results, observations) of a 100x100-tile net: `all_zero` of `scans` test scans all-zero."""
    return ({"threshold": 0.1, "test": {"pixel": {"f1": f1}}},
            {"scans": scans, "outputs": {"all_zero_scans": all_zero, "blank_scans": 0, "max_output": 0.4}})


@pytest.mark.parametrize("euclid, dice, verdict", [
    (large_run(10, 0.0), large_run(0, 0.3), HOLDS),       # the finding and its fix
    (large_run(9, 0.1), large_run(2, 0.3), HOLDS),        # 90 % all-zero is enough
    (large_run(8, 0.1), large_run(0, 0.3), FAILS),        # the Euclidean net has output on 2 of 10 scans
    (large_run(10, 0.0), large_run(10, 0.0), FAILS),      # the Dice loss changes nothing
    (large_run(10, 0.2), large_run(5, 0.1), FAILS),       # more output but a lower F
])
def test_c7_needs_the_all_zero_finding_and_the_losss_fix(euclid, dice, verdict):
    claim = c7_larger_tiles({"large_euclidean": euclid, "large_dice": dice}, ["batch_size 25"])
    assert claim.verdict == verdict, claim.reason
    assert claim.numbers["large_euclidean"]["all_zero_share"] == euclid[1]["outputs"]["all_zero_scans"] / 10
    assert claim.numbers["all_zero_share_needed"] == ALL_ZERO_SHARE
    assert "batch_size 25" in claim.experiment


def test_c7_without_its_runs_is_not_measurable():
    claim = c7_larger_tiles({"large_euclidean": large_run(10, 0.0), "large_dice": (None, None)})
    assert claim.verdict == UNMEASURABLE and "large_dice" in claim.reason


def brain_observations(fp_before, fp_extractor, fp_true=None, without_mask=()):
    """Observations with a "brain" record: false-positive pixels before and inside the grown brain."""
    def pixel(fp):
        return {"tp": 50, "fp": fp, "fn": 50, "f1": 100 / (100 + fp + 50)}
    brain = {"extractor": pixel(fp_extractor), "without_mask": list(without_mask), "grow_mm": 3.0}
    if fp_true is not None:
        brain["true_brain"] = pixel(fp_true)
    return {"pixel": {"polygons": pixel(fp_before)}, "brain": brain}


@pytest.mark.parametrize("fp_extractor, verdict", [(400, HOLDS), (500, HOLDS), (501, FAILS), (1000, FAILS)])
def test_c8_most_false_alarms_must_fall_outside_the_brain(fp_extractor, verdict):
    claim = c8_brain_extraction(brain_observations(1000, fp_extractor, fp_true=300))
    assert claim.verdict == verdict, claim.reason
    assert claim.numbers["extractor"]["fp_removed_share"] == (1000 - fp_extractor) / 1000
    assert (claim.numbers["extractor"]["fp_removed_share"] >= MOST) == (verdict == HOLDS)
    assert claim.numbers["true_brain"]["fp_removed_share"] == 0.7 and "true brain" in claim.reason


@pytest.mark.parametrize("observations, unavailable, why", [
    ({"pixel": {"polygons": {"tp": 1, "fp": 1, "fn": 1, "f1": 0.5}}}, None, "no brain masks"),
    ({"pixel": {"polygons": {"tp": 1, "fp": 1, "fn": 1, "f1": 0.5}}}, "not installed (pip)", "not installed"),
    (brain_observations(1000, 10, without_mask=["P007"]), None, "without a brain mask: P007"),
    (brain_observations(0, 0), None, "no false-positive pixel"),
])
def test_c8_without_masks_or_false_alarms_is_not_measurable(observations, unavailable, why):
    claim = c8_brain_extraction(observations, unavailable)
    assert claim.verdict == UNMEASURABLE and why in claim.reason


def stripped_pair(fp_paper, fp_stripped):
    """The paper-protocol and the skull-stripped net's observations: all false positives on the calvaria."""
    def obs(fp):
        return {"pixel": {"polygons": {"tp": 50, "fp": fp, "fn": 50, "f1": 100 / (100 + fp + 50)}},
                **regions({"calvaria": fp, "brain": 0})}
    return obs(fp_paper), obs(fp_stripped)


@pytest.mark.parametrize("fp_stripped, verdict", [(100, HOLDS), (500, HOLDS), (501, FAILS), (1200, FAILS)])
def test_c9_the_stripped_net_must_make_half_the_false_alarms(fp_stripped, verdict):
    claim = c9_skull_stripped_training(*stripped_pair(1000, fp_stripped))
    assert claim.verdict == verdict, claim.reason
    assert claim.numbers["fp_removed_share"] == (1000 - fp_stripped) / 1000
    assert claim.numbers["fp_pixels_outside_brain"] == {"paper_protocol": 1000, "skull_stripped": fp_stripped}


def test_c9_not_run_says_how_to_run_it_or_why_not():
    paper, _ = stripped_pair(1000, 0)
    opt_in = c9_skull_stripped_training(paper, None)
    assert opt_in.verdict == UNMEASURABLE and "--skull-strip-training" in opt_in.reason
    missing = c9_skull_stripped_training(paper, None, "not run: brain extraction is not installed")
    assert missing.verdict == UNMEASURABLE and "not installed" in missing.reason
    nothing = c9_skull_stripped_training(*stripped_pair(0, 0))
    assert nothing.verdict == UNMEASURABLE and "no false-positive pixel" in nothing.reason


def test_c9_a_net_that_has_not_learned_is_not_compared():
    """An all-zero net gets a threshold near 0 that marks everything: its false alarms say nothing."""
    paper, stripped = stripped_pair(1000, 7_000_000)
    stripped.update(scans=34, threshold=0.0, outputs={"all_zero_scans": 34, "max_output": 0.039, "all_zero_level": 0.5})
    claim = c9_skull_stripped_training(paper, stripped)
    assert claim.verdict == UNMEASURABLE and "skull-stripped net has not learned" in claim.reason
    assert claim.numbers["not_learned"]["all_zero_share"] == 1.0
    stripped["outputs"]["all_zero_scans"] = int(34 * ALL_ZERO_SHARE) - 1   # below the share: compared
    assert c9_skull_stripped_training(paper, stripped).verdict == FAILS
