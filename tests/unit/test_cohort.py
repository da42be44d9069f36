"""The cohort store and the split file."""

import numpy as np
import pytest

from plaquenet.cohort import (Scan, iter_truth, load_scan, make_split, normalise_intensity, read_split, region_legend,
                              split_file, write_cohort, write_split)
from plaquenet.errors import InputError


def _scan(pid, value=1.0):
    flair = np.full((2, 4, 5), value, np.float32)
    mask = np.zeros((2, 4, 5), np.uint8)
    mask[1, 1:3, 2] = 1
    return Scan(pid, flair, mask, (3.0, 0.5, 0.5), np.eye(4))


def test_round_trip_keeps_arrays_and_geometry(tmp_path):
    write_cohort(tmp_path, [_scan("P001", 7.0)])
    scan = load_scan(tmp_path, "P001")
    assert scan.flair_shw.dtype == np.float32 and float(scan.flair_shw[0, 0, 0]) == 7.0
    assert scan.mask_shw.sum() == 2 and scan.voxel_mm == (3.0, 0.5, 0.5)
    assert list(scan.lesion_slices()) == [1]


def test_a_new_import_drops_the_old_split_and_tiles(tmp_path):
    write_cohort(tmp_path, [_scan("P001"), _scan("P002")])
    write_split(tmp_path, make_split(["P001", "P002"]))
    (tmp_path / "tiles").mkdir()
    write_cohort(tmp_path, [_scan("P001"), _scan("P002")])  # positional ids: other people now
    assert not split_file(tmp_path).exists() and not (tmp_path / "tiles").exists()


def test_a_split_from_an_earlier_import_is_refused(tmp_path):
    write_cohort(tmp_path / "a", [_scan("P001"), _scan("P002")])
    write_split(tmp_path / "a", make_split(["P001", "P002"]))
    stale = split_file(tmp_path / "a").read_text()
    write_cohort(tmp_path / "a", [_scan("P001"), _scan("P002")])
    split_file(tmp_path / "a").write_text(stale)
    with pytest.raises(InputError, match="earlier import"):
        read_split(tmp_path / "a")


@pytest.mark.parametrize("content, message", [
    ("[]", "JSON object"),
    ('{"train": ["P001"], "test": [["P002"]]}', "list of patient ids"),
    ('{"train": ["P001"], "test": ["P001"]}', "in both"),
    ('{"train": ["P001"], "test": ["P009"]}', "not in the cohort"),
    ("{", "not valid JSON"),
])
def test_bad_split_files_are_one_line_errors(tmp_path, content, message):
    write_cohort(tmp_path, [_scan("P001"), _scan("P002")])
    split_file(tmp_path).write_text(content)
    with pytest.raises(InputError, match=message) as e:
        read_split(tmp_path)
    assert "\n" not in str(e.value) and str(split_file(tmp_path)) in str(e.value)


def test_split_is_seeded_and_keeps_both_sides(tmp_path):
    patients = [f"P{i:03d}" for i in range(10)]
    a, b = make_split(patients, 0.2, seed=4), make_split(patients, 0.2, seed=4)
    assert a == b and len(a["test"]) == 2 and len(a["train"]) == 8
    assert len(make_split(patients[:2], 0.01)["test"]) == 1


def test_normalisation_is_per_volume_and_bounded():
    flair = np.arange(1000, dtype=np.float32).reshape(10, 10, 10)
    out = normalise_intensity(flair)
    assert out.dtype == np.float32 and out.min() == 0.0 and out.max() == 1.0
    assert 0.49 < out[5, 0, 0] < 0.51  # 500 / p99.9 of 1..999


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(InputError):
        write_cohort(tmp_path, [_scan("P001"), _scan("P001")])
    assert list(tmp_path.iterdir()) == []


# --- the optional truth: region maps and exact masks (#17) ---------------------------

LEGEND = {0: "air", 1: "brain", 2: "csf"}


def _truth_scan(pid, shift=0):
    scan = _scan(pid)
    scan.regions_shw = ((np.arange(40).reshape(2, 4, 5) + shift) % 3).astype(np.uint8)
    scan.mask_exact_shw = np.zeros((2, 4, 5), np.uint8)
    scan.mask_exact_shw[1, 2, 2] = 1
    return scan


def test_truth_round_trips_one_patient_at_a_time_in_the_given_order(tmp_path):
    scans = [_truth_scan("P001"), _truth_scan("P002", shift=1)]
    write_cohort(tmp_path, scans, regions_legend=LEGEND)
    assert region_legend(tmp_path) == LEGEND
    truth = list(iter_truth(tmp_path, ["P002", "P001"]))
    assert [t.patient for t in truth] == ["P002", "P001"]
    for t, scan in zip(truth, scans[::-1]):
        assert t.regions_shw.dtype == np.uint8 and np.array_equal(t.regions_shw, scan.regions_shw)
        assert t.mask_exact_shw.dtype == np.uint8 and np.array_equal(t.mask_exact_shw, scan.mask_exact_shw)
    loaded = load_scan(tmp_path, "P001")  # cheap: the scan does not carry the truth
    assert loaded.regions_shw is None and loaded.mask_exact_shw is None


def test_a_cohort_without_truth_has_no_legend_and_none_in_its_truth(tmp_path):
    write_cohort(tmp_path, [_scan("P001")])
    assert region_legend(tmp_path) is None
    [truth] = iter_truth(tmp_path)
    assert (truth.patient, truth.regions_shw, truth.mask_exact_shw) == ("P001", None, None)


def test_truth_of_another_shape_is_refused(tmp_path):
    scan = _truth_scan("P001")
    scan.mask_exact_shw = scan.mask_exact_shw[:1]
    with pytest.raises(InputError, match=r"exact mask shape \(1, 4, 5\) does not match image shape \(2, 4, 5\)"):
        write_cohort(tmp_path, [scan], regions_legend=LEGEND)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("legend, message", [(None, "needs a regions_legend"),
                                             ({0: "air", 1: "brain"}, r"region labels \[2\] are not in")])
def test_region_maps_need_their_labels_in_the_legend(tmp_path, legend, message):
    with pytest.raises(InputError, match=message):
        write_cohort(tmp_path, [_truth_scan("P001")], regions_legend=legend)
