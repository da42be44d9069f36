"""The cohort store and the split file."""

import numpy as np
import pytest

from plaquenet.cohort import (Scan, load_scan, make_split, normalise_intensity, read_split, split_file,
                              write_cohort, write_split)
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
