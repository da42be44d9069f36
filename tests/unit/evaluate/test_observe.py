"""The measurements behind the claims, on tiny arrays and a tiny cohort (evaluate/observe.py)."""

import dataclasses

import numpy as np

from plaquenet.cohort import iter_masks, iter_scans, normalise_intensity, read_split, write_cohort, write_split
from plaquenet.evaluate.metrics import count_pixels
from plaquenet.evaluate.observe import false_components, majority_region, observe, threshold_range
from plaquenet.evaluate.sweep import SweepCurve


def curve(thresholds, f1):
    n = len(thresholds)
    zeros = np.zeros(n, np.int64)
    return SweepCurve(np.asarray(thresholds, float), zeros, zeros, zeros, np.asarray(f1, float))


def test_threshold_range_adds_only_intervals_whose_both_ends_qualify():
    # best 0.5; cut 0.45: thresholds 0.1-0.3 and 0.6-0.7 qualify, 0.4-0.5 does not
    r = threshold_range(curve([0.1, 0.2, 0.3, 0.4, 0.6, 0.7], [0.45, 0.5, 0.46, 0.2, 0.47, 0.48]))
    assert r.best_f1 == 0.5 and r.best_threshold == 0.2
    assert (r.low, r.high) == (0.1, 0.7)
    assert np.isclose(r.measure, 0.2 + 0.1)


def test_threshold_range_of_a_useless_signal_is_empty():
    r = threshold_range(curve([0.1, 0.2], [0.0, 0.0]))
    assert r.measure == 0.0 and np.isnan(r.low)


def test_false_components_are_those_touching_no_plaque():
    marked = np.zeros((6, 6), bool)
    truth = np.zeros((6, 6), np.uint8)
    marked[0, 0:2] = True            # touches the plaque below -> not false
    truth[0, 1] = 1
    marked[3, 3] = marked[4, 4] = True  # one 8-connected component -> one false component
    labels, ids = false_components(marked, truth)
    assert len(ids) == 1
    assert set(np.unique(labels[np.isin(labels, ids)])) == set(ids)
    assert labels[3, 3] == labels[4, 4] == ids[0]


def test_majority_region_ties_to_the_lower_label():
    labels = np.array([[1, 1, 2, 2, 2]])
    regions = np.array([[3, 4, 5, 5, 0]])
    assert list(majority_region(labels, np.array([1, 2]), regions, 6)) == [3, 5]
    assert majority_region(labels, np.zeros(0, np.int64), regions, 6).size == 0


# --- observe() on a tiny cohort ------------------------------------------------


def with_truth(scans, rng):
    """Each scan with a region map (labels 0-2, legend air/brain/orbit) and an exact
    mask that is the polygon mask shrunk by one pixel row."""
    out = []
    for scan in scans:
        regions = rng.integers(0, 3, size=scan.mask_shw.shape).astype(np.uint8)
        exact = scan.mask_shw.copy()
        exact[:, :, 0] = 0
        out.append(dataclasses.replace(scan, regions_shw=regions, mask_exact_shw=exact))
    return out


def identity(image_hw):
    return image_hw  # the "network" is the normalised intensity itself


def test_observe_counts_match_brute_force_per_region(cohort, tmp_path):
    rng = np.random.default_rng(5)
    scans = with_truth(list(iter_scans(cohort)), rng)
    truth_cohort = tmp_path / "truth"
    write_cohort(truth_cohort, scans, name="tiny-truth", regions_legend={0: "air", 1: "brain", 2: "orbit"})
    write_split(truth_cohort, read_split(cohort))
    test = read_split(truth_cohort)["test"]
    found = observe(identity, truth_cohort, test, threshold=0.6, raw_threshold=0.6)

    fp = {0: 0, 1: 0, 2: 0}
    polygons, exact = [0, 0, 0], [0, 0, 0]
    for scan in scans:
        if scan.patient not in test:
            continue
        image = normalise_intensity(scan.flair_shw)
        for s in np.flatnonzero(scan.mask_shw.reshape(len(scan.mask_shw), -1).any(axis=1)):
            marked = image[s] >= 0.6
            false = marked & (scan.mask_shw[s] == 0)
            for label in fp:
                fp[label] += int((false & (scan.regions_shw[s] == label)).sum())
            for acc, truth in ((polygons, scan.mask_shw[s]), (exact, scan.mask_exact_shw[s])):
                c = count_pixels(marked, truth)
                acc[0] += c.tp
                acc[1] += c.fp
                acc[2] += c.fn
    assert {k: v["fp_pixels"] for k, v in found.regions.items()} == {"air": fp[0], "brain": fp[1], "orbit": fp[2]}
    assert [found.pixel["polygons"][k] for k in ("tp", "fp", "fn")] == polygons
    assert [found.pixel["exact"][k] for k in ("tp", "fp", "fn")] == exact
    assert set(found.lesion["polygons"]) == {"msseg2016", "wmh2017"}
    # the identity "network" and the raw intensity are the same signal: the same F curve
    assert found.f_curves["network"] == found.f_curves["raw"]


def test_observe_without_truth_leaves_regions_and_exact_out(cohort):
    test = read_split(cohort)["test"]
    found = observe(identity, cohort, test, threshold=0.6, raw_threshold=0.6)
    assert found.regions is None
    assert set(found.pixel) == {"polygons"} and set(found.lesion) == {"polygons"}
    assert found.scans == sum(int(m.reshape(len(m), -1).any(axis=1).sum()) for _, m in iter_masks(cohort, test))
