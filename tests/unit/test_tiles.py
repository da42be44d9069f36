"""plaquenet.tiles: the §4.1 tile protocol on tiny cohorts written to real HDF5."""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from plaquenet.cohort import Scan, split_file, write_cohort, write_split
from plaquenet.errors import InputError
from plaquenet.tiles import (WeightedDraw, grid_origins, lesion_tile_origins, make_tiles, negative_tile_weights,
                             offer_windows)

T = 16  # tile side in these tests: small images, the same rules as 50 on 448x512


def _scan(patient, flair_shw, mask_shw):
    return Scan(patient=patient, flair_shw=np.asarray(flair_shw, np.float32), mask_shw=np.asarray(mask_shw, np.uint8),
                voxel_mm=(5.0, 0.5, 0.5), affine_whs=np.eye(4))


def _blob_patient(patient, rng, slices=3, h=64, w=72, lesions=3):
    """Brain at 100, lesions (squares of 3-6 px) at 1000: after normalisation
    lesion pixels are 1.0 and everything else <= 0.1."""
    flair = np.full((slices, h, w), 100.0) + rng.uniform(0, 5, (slices, h, w))
    mask = np.zeros((slices, h, w), np.uint8)
    for s in range(slices):
        for _ in range(lesions):
            size = rng.integers(3, 7)
            y, x = rng.integers(0, h - size), rng.integers(0, w - size)
            mask[s, y:y + size, x:x + size] = 1
    flair[mask > 0] = 1000.0
    return _scan(patient, flair, mask)


def _cohort(tmp_path, n_patients=5, seed=0, **kw):
    rng = np.random.default_rng(seed)
    write_cohort(tmp_path / "c", [_blob_patient(f"P{i:03d}", rng, **kw) for i in range(n_patients)])
    return tmp_path / "c"


def _read_tiles(out_dir):
    data, label = [], []
    for line in (Path(out_dir) / "train.txt").read_text().split():
        with h5py.File(line, "r") as f:
            data.append(f["data"][...])
            label.append(f["label"][...])
    return np.concatenate(data), np.concatenate(label)


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train.txt paths are relative to the working directory


# --- grid and shifts ---------------------------------------------------------

def test_grid_adds_a_last_tile_flush_with_the_edge():
    assert grid_origins(448, 50).tolist() == [0, 50, 100, 150, 200, 250, 300, 350, 398]
    assert grid_origins(100, 50).tolist() == [0, 50]


def test_every_grid_tile_with_lesion_pixels_is_kept():
    mask = np.zeros((64, 64), np.uint8)
    mask[2:4, 2:4] = 1  # inside tile (0, 0)
    mask[40:42, 20:22] = 1  # inside tile (32, 16)
    mask[60:63, 60:63] = 1  # inside tile (48, 48)
    assert sorted(map(tuple, lesion_tile_origins(mask, T))) == [(0, 0), (32, 16), (48, 48)]


def test_a_lesion_cut_by_the_grid_ends_whole_inside_shifted_tiles():
    mask = np.zeros((64, 64), np.uint8)
    mask[13:19, 5:9] = 1  # straddles the border between rows 0-15 and 16-31
    origins = lesion_tile_origins(mask, T)
    assert sorted(map(tuple, origins)) == [(3, 0), (13, 0)]  # smallest shifts up and down
    for y, x in origins:
        assert mask[y:y + T, x:x + T].sum() == mask.sum()


def test_a_lesion_larger_than_a_tile_keeps_the_grid_tiles():
    mask = np.zeros((64, 64), np.uint8)
    mask[10:40, 5:9] = 1
    assert sorted(map(tuple, lesion_tile_origins(mask, T))) == [(0, 0), (16, 0), (32, 0)]


def test_the_largest_cut_lesion_that_fits_decides_the_shift_and_windows_are_unique():
    mask = np.zeros((64, 64), np.uint8)
    mask[14:17, 2:4] = 1  # small, cut by the row border at 16
    mask[12:20, 8:12] = 1  # larger, cut by the same border
    origins = lesion_tile_origins(mask, T)
    for y, x in origins:  # both grid tiles end on windows that hold the larger lesion whole
        assert mask[y:y + T, x:x + T][:, 8 - x:12 - x].sum() == 32
    assert len(set(map(tuple, origins))) == len(origins)


# --- lesion-free tiles -----------------------------------------------------------

def test_negative_weights_exclude_lesions_and_air_and_prefer_bright_contrast():
    image = np.full((40, 40), 0.3, np.float32)
    image[:, :10] = 0.0  # air
    image[30:36, 30:36] = 1.0  # bright spot
    mask = np.zeros((40, 40), np.uint8)
    mask[2, 20] = 1
    weight = negative_tile_weights(image, mask, 8)
    assert weight.shape == (33, 33)
    assert (weight[:3, 13:21] == 0).all()  # windows holding the lesion pixel
    assert weight[10, 0] == 0 and weight[10, 5] > 0  # all air / half tissue
    assert weight[26, 28] > 5 * weight[20, 15]  # bright, high-contrast beats plain tissue


def test_weighted_draw_is_proportional_to_weight():
    image = np.zeros((10, 10), np.float32)
    image[5, 5] = 1.0
    weight = np.zeros((10, 10))
    weight[0, 0], weight[5, 5] = 1.0, 3.0  # two candidate 1x1 windows
    picks = []
    for seed in range(400):
        draw = WeightedDraw(k=1, tile=1)
        offer_windows(draw, image, weight, np.random.default_rng(seed))
        assert draw.keys.shape == (1,) and draw.tiles.shape == (1, 1, 1)
        picks.append(float(draw.tiles[0, 0, 0]))
    assert 0.68 < np.mean(picks) < 0.82  # expected 3/4


def test_weighted_draw_over_a_stream_keeps_k_distinct_windows():
    rng = np.random.default_rng(0)
    draw = WeightedDraw(k=5, tile=1)
    for value in range(4):  # four "slices", each window marked by slice and position
        image = (value * 100 + np.arange(100)).reshape(10, 10).astype(np.float32)
        offer_windows(draw, image, np.ones((10, 10)), rng)
    assert len(np.unique(draw.tiles)) == 5
    assert len(np.unique(draw.tiles // 100)) > 1  # not all from one slice


def test_negatives_prefer_the_bright_region(tmp_path):
    rng = np.random.default_rng(1)
    scans = []
    for i in range(3):
        flair = 300 + rng.uniform(0, 20, (2, 96, 96))
        flair[:, 60:80, 10:30] = 1000 + rng.uniform(0, 300, (2, 20, 20))  # "skull": bright, textured
        mask = np.zeros((2, 96, 96), np.uint8)
        mask[:, 10:13, 40:43] = 1
        mask[:, 30:33, 70:73] = 1
        mask[:, 50:53, 50:53] = 1
        scans.append(_scan(f"P{i}", flair, mask))
    write_cohort(tmp_path / "c", scans)
    write_split(tmp_path / "c", {"train": ["P0", "P1"], "test": ["P2"]})
    summary = make_tiles(tmp_path / "c", tmp_path / "t", tile=T, negative_share=0.5)
    data, label = _read_tiles(tmp_path / "t")
    negatives = data[label.reshape(len(label), -1).max(axis=1) == 0]
    assert len(negatives) == summary.negative_tiles > 0
    bright = (negatives.reshape(len(negatives), -1) > 0.6).any(axis=1)
    assert bright.mean() > 0.8  # uniform choice would overlap it in well under half of the draws


def test_lesion_free_share_is_about_one_third(tmp_path):
    cohort = _cohort(tmp_path, n_patients=6, slices=4, lesions=4)
    s = make_tiles(cohort, tmp_path / "t", tile=T)
    assert abs(s.negative_tiles - s.lesion_tiles / 2) <= 0.5
    assert abs(s.negative_fraction - 1 / 3) < 0.02
    _, label = _read_tiles(tmp_path / "t")
    assert (label.reshape(len(label), -1).max(axis=1) == 0).sum() == s.negative_tiles


# --- the stage ----------------------------------------------------------------------

def test_labels_match_the_masks_cut_at_the_same_offsets(tmp_path):
    cohort = _cohort(tmp_path)
    make_tiles(cohort, tmp_path / "t", tile=T, negative_preference=0.0)
    data, label = _read_tiles(tmp_path / "t")
    assert set(np.unique(label)) == {0.0, 1.0}
    np.testing.assert_array_equal(label, (data > 0.5).astype(np.float32))  # lesions alone are bright


def test_hdf5_files_are_what_caffe_reads(tmp_path):
    cohort = _cohort(tmp_path)
    s = make_tiles(cohort, tmp_path / "out" / "tiles", tile=T, max_tiles_per_file=7)
    lines = (tmp_path / "out" / "tiles" / "train.txt").read_text().splitlines()
    assert len(lines) == len(s.files) == -(-s.tiles // 7) > 1
    total = 0
    for line in lines:
        assert not os.path.isabs(line) and os.path.isfile(line)  # relative to the working directory
        with h5py.File(line, "r") as f:
            assert sorted(f.keys()) == ["data", "label"]
            assert f["data"].dtype == f["label"].dtype == np.float32
            assert f["data"].shape == f["label"].shape and f["data"].shape[1:] == (1, T, T)
            assert f["data"].shape[0] <= 7
            total += f["data"].shape[0]
    assert total == s.tiles
    meta = json.loads((tmp_path / "out" / "tiles" / "tiles.json").read_text())
    assert meta["counts"]["tiles"] == s.tiles and meta["parameters"]["tile"] == T
    assert meta["split"]["seed"] == 0 and "normalise_intensity" in meta["normalisation"]


def test_list_file_paths_follow_the_working_directory(tmp_path, monkeypatch):
    cohort = _cohort(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    make_tiles(cohort, cohort / "tiles", tile=T)
    assert (cohort / "tiles" / "train.txt").read_text().splitlines()[0] == "../c/tiles/train_000.h5"


def test_shuffled_rows_mix_both_kinds(tmp_path):
    cohort = _cohort(tmp_path, n_patients=6, slices=4, lesions=4)
    make_tiles(cohort, tmp_path / "t", tile=T)
    _, label = _read_tiles(tmp_path / "t")
    negative = label.reshape(len(label), -1).max(axis=1) == 0
    half = len(negative) // 2
    assert 0 < negative[:half].sum() < half and 0 < negative[half:].sum()


def test_same_seed_same_tiles_other_seed_other_order(tmp_path):
    cohort = _cohort(tmp_path)
    make_tiles(cohort, tmp_path / "a", tile=T, seed=3)
    make_tiles(cohort, tmp_path / "b", tile=T, seed=3)
    make_tiles(cohort, tmp_path / "c2", tile=T, seed=4)
    a, b, c = (_read_tiles(tmp_path / n)[0] for n in ("a", "b", "c2"))
    np.testing.assert_array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_split_is_made_once_and_reused(tmp_path):
    cohort = _cohort(tmp_path, n_patients=5)
    first = make_tiles(cohort, tmp_path / "t", tile=T, test_fraction=0.4, seed=1)
    split = json.loads(split_file(cohort).read_text())
    assert len(split["test"]) == 2 and not first.split_reused
    again = make_tiles(cohort, tmp_path / "t", tile=T, seed=9)
    assert again.split_reused and again.test_patients == 2
    assert json.loads(split_file(cohort).read_text()) == split


def test_a_test_fraction_that_the_existing_split_does_not_have_is_refused(tmp_path):
    cohort = _cohort(tmp_path, n_patients=5)
    make_tiles(cohort, tmp_path / "t", tile=T, test_fraction=0.4, seed=1)
    with pytest.raises(InputError, match="test fraction 0.4"):
        make_tiles(cohort, tmp_path / "t", tile=T, test_fraction=0.2)
    assert make_tiles(cohort, tmp_path / "t", tile=T, test_fraction=0.4).split_reused


def test_test_patients_never_reach_the_tiles(tmp_path):
    rng = np.random.default_rng(0)
    train = _blob_patient("P000", rng)
    test = _blob_patient("P001", rng)
    test.flair_shw[test.mask_shw == 0] = 2000.0  # tissue at 2/3 of its lesions' 3000 after normalisation
    test.flair_shw[test.mask_shw > 0] = 3000.0
    write_cohort(tmp_path / "c", [train, test])
    write_split(tmp_path / "c", {"train": ["P000"], "test": ["P001"]})
    s = make_tiles(tmp_path / "c", tmp_path / "t", tile=T)
    data, _ = _read_tiles(tmp_path / "t")
    assert s.train_patients == 1 and s.test_patients == 1 and s.test_scans == 3
    assert data[data < 0.5].max() < 0.2  # only P000's tissue (0.1), never P001's (0.67)


def test_a_patient_in_both_splits_is_an_input_error(tmp_path):
    cohort = _cohort(tmp_path, n_patients=3)
    split_file(cohort).write_text(json.dumps({"train": ["P000", "P001"], "test": ["P001", "P002"]}))
    with pytest.raises(InputError, match="P001 is in both"):
        make_tiles(cohort, tmp_path / "t", tile=T)
    assert not (tmp_path / "t").exists()


def test_a_cohort_patient_missing_from_the_split_is_an_input_error(tmp_path):
    cohort = _cohort(tmp_path, n_patients=3)
    write_split(cohort, {"train": ["P000"], "test": ["P001"]})
    with pytest.raises(InputError, match="P002 of the cohort is in neither split"):
        make_tiles(cohort, tmp_path / "t", tile=T)


def test_a_cohort_without_lesions_is_an_input_error_and_writes_nothing(tmp_path):
    scans = [_scan(f"P{i}", np.full((2, 32, 32), 100.0), np.zeros((2, 32, 32))) for i in range(3)]
    write_cohort(tmp_path / "c", scans)
    with pytest.raises(InputError, match="no slice has a lesion"):
        make_tiles(tmp_path / "c", tmp_path / "t", tile=T)
    assert not (tmp_path / "t").exists() and not split_file(tmp_path / "c").exists()


def test_bad_parameters_are_input_errors(tmp_path):
    cohort = _cohort(tmp_path, n_patients=2)
    with pytest.raises(InputError, match="--negative-share"):
        make_tiles(cohort, tmp_path / "t", tile=T, negative_share=1.0)
    with pytest.raises(InputError, match="INT_MAX|elements per blob"):
        make_tiles(cohort, tmp_path / "t", tile=50, max_tiles_per_file=10**6)
    with pytest.raises(InputError, match="smaller than"):
        make_tiles(cohort, tmp_path / "t", tile=100)


def test_lmdb_holds_the_same_rows_as_the_hdf5(tmp_path):
    caffe_pb2 = pytest.importorskip("plaquenet.caffe.caffe_pb2")
    import lmdb

    cohort = _cohort(tmp_path)
    s = make_tiles(cohort, tmp_path / "t", tile=T, lmdb=True)
    data, label = _read_tiles(tmp_path / "t")
    for name, expected in (("train_image_lmdb", data), ("train_mask_lmdb", label)):
        env = lmdb.open(str(tmp_path / "t" / name), readonly=True, lock=False)
        with env.begin() as txn:
            rows = list(txn.cursor())
        env.close()
        assert len(rows) == s.tiles
        for i in (0, len(rows) - 1):
            key, value = rows[i]
            datum = caffe_pb2.Datum.FromString(value)
            assert key == f"{i:08d}".encode()
            assert (datum.channels, datum.height, datum.width, datum.label) == (1, T, T, 0)
            np.testing.assert_array_equal(np.array(datum.float_data, np.float32).reshape(1, T, T), expected[i])


def test_cli_prints_the_counts(tmp_path, capsys):
    from plaquenet.cli import main

    cohort = _cohort(tmp_path)
    assert main(["tiles", "--cohort", str(cohort), "--tile", str(T)]) == 0
    out = capsys.readouterr().out
    assert "scans with lesions" in out and "lesion-free" in out
    assert (cohort / "tiles" / "train.txt").is_file()
    assert main(["tiles", "--cohort", str(cohort), "--tile", str(T)]) == 2  # exists, no --force
