"""Skull-stripped input (issue #14 item 1, paper §6): `tiles --skull-strip` cuts the
tiles with everything further than brain.GROW_MM from the brain mask set to 0, and
score and segment feed the net the same (`cohort.network_input`), as recorded in
tiles.json / results.json (plaquenet/skull_strip.py).

The tiny cohort (as test_score_brain.py): 32x32 slices of 0.5 mm, a bright ring (the
'skull', 1000 -> normalised 1.0) beyond 10 mm from the centre, brain 200 (0.2),
plaques 900 (0.9) in the middle; the fake brain mask is a disc of 3 mm, grown by
3 mm to 6 mm, so the ring is blanked and the plaques are not."""

import json

import numpy as np
import pytest

import dicom_fixtures as F
from plaquenet import brain
from plaquenet.cli import main
from plaquenet.cohort import (Scan, load_brain, load_scan, network_input, normalise_intensity, write_brain_masks,
                              write_cohort, write_split)
from plaquenet.errors import InputError
from plaquenet.experiments.runner import TileSpec, ensure_tiles, tiles_match
from plaquenet.score import score_with_forward, training_input
from plaquenet.segment import segment
from plaquenet.tiles import AIR_LEVEL, make_tiles

SIDE = 32
TILE = 8
VOXEL_MM = (5.0, 0.5, 0.5)
PATIENTS = [f"P00{i}" for i in range(1, 6)]


def _radius():
    rows, cols = np.mgrid[:SIDE, :SIDE]
    return np.hypot(rows - 15.5, cols - 15.5)


def _scan(pid, slices=3):
    flair = np.full((slices, SIDE, SIDE), 200, np.float32)
    flair[:, _radius() > 20] = 1000  # the skull ring: 10 mm from the centre and beyond
    mask = np.zeros(flair.shape, np.uint8)
    mask[:, 14:18, 14:18] = 1
    flair[mask == 1] = 900
    return Scan(pid, flair, mask, VOXEL_MM, np.eye(4))


def _disc(slices=3):
    return np.broadcast_to(_radius() <= 6, (slices, SIDE, SIDE)).astype(np.uint8)  # 3 mm


@pytest.fixture
def cohort(tmp_path):
    """Five patients, four for training; no brain masks yet."""
    folder = tmp_path / "cohort"
    write_cohort(folder, [_scan(p) for p in PATIENTS])
    write_split(folder, {"train": PATIENTS[:4], "test": PATIENTS[4:]})
    return folder


@pytest.fixture
def masked(cohort):
    write_brain_masks(cohort, {p: _disc() for p in PATIENTS}, "fake 1.0")
    return cohort


def _tiles(folder):
    import h5py

    with h5py.File(folder / "train_000.h5", "r") as f:
        return f["data"][:, 0], f["label"][:, 0]


def _windows(image_hw):
    return np.lib.stride_tricks.sliding_window_view(image_hw, (TILE, TILE)).reshape(-1, TILE, TILE)


# --- the input itself ------------------------------------------------------------

def test_network_input_blanks_beyond_the_grown_brain_and_keeps_the_whole_heads_scale():
    scan = _scan("P001")
    stripped = network_input(scan.flair_shw, _disc(), VOXEL_MM)
    plain = normalise_intensity(scan.flair_shw)
    grown = brain.grow(_disc(), VOXEL_MM)
    assert not grown[:, _radius() > 13].any() and grown[scan.mask_shw > 0].all()  # the ring out, the plaques in
    assert (stripped[~grown] == 0).all()
    np.testing.assert_array_equal(stripped[grown], plain[grown])  # normalised first: same scale inside
    assert plain[~grown].max() == 1.0 and stripped.max() == pytest.approx(0.9)


# --- tiles --skull-strip -----------------------------------------------------------

def test_stripped_tiles_hold_no_skull_and_each_is_a_window_of_the_stripped_input(masked, tmp_path):
    make_tiles(masked, tmp_path / "plain", tile=TILE)
    make_tiles(masked, tmp_path / "stripped", tile=TILE, skull_strip=True)
    plain, _ = _tiles(tmp_path / "plain")
    stripped, label = _tiles(tmp_path / "stripped")
    assert plain.max() == 1.0  # without it the bright ring is drawn (lesion-free tiles prefer it)
    assert stripped.max() < 1.0  # with it no tile holds a skull pixel
    windows = np.concatenate([_windows(network_input(load_scan(masked, p).flair_shw, load_brain(masked, p),
                                                     VOXEL_MM)[s]) for p in PATIENTS[:4] for s in range(3)])
    for tile in stripped:
        assert (np.abs(windows - tile).max(axis=(1, 2)) == 0).any()
    negatives = stripped[label.reshape(len(label), -1).max(axis=1) == 0]
    assert len(negatives) and (negatives.mean(axis=(1, 2)) >= AIR_LEVEL).all()  # no window of blanked air drawn
    record = json.loads((tmp_path / "stripped" / "tiles.json").read_text())
    assert record["parameters"]["skull_strip"] is True and record["skull_strip"]["grow_mm"] == brain.GROW_MM
    assert record["skull_strip"]["extractor"] == "fake 1.0" and record["skull_strip"]["plaque_pixels_zero"] == 0
    assert json.loads((tmp_path / "plain" / "tiles.json").read_text())["parameters"]["skull_strip"] is False


def test_stripped_tiles_need_every_patients_mask_and_name_those_without(cohort, tmp_path, capsys):
    write_brain_masks(cohort, {p: _disc() for p in PATIENTS[:3]}, "fake")
    with pytest.raises(InputError, match=r"no brain mask for P004, P005 \(run `plaquenet brainmask --cohort"):
        make_tiles(cohort, tmp_path / "tiles", tile=TILE, skull_strip=True)
    assert main(["tiles", "--cohort", str(cohort), "--out", str(tmp_path / "tiles"), "--tile", str(TILE),
                 "--skull-strip"]) == 2
    err = capsys.readouterr().err
    assert "cohort.h5" in err and "P004, P005" in err and err.count("\n") == 1
    assert not (tmp_path / "tiles").exists()


def test_a_single_slice_patient_is_refused_since_no_mask_can_exist(tmp_path):
    folder = tmp_path / "cohort"
    write_cohort(folder, [_scan("P001"), _scan("P002"), _scan("P003", slices=1)])
    write_brain_masks(folder, {"P001": _disc(), "P002": _disc()}, "fake")
    with pytest.raises(InputError, match="P003: a single 2D slice, no brain mask can exist"):
        make_tiles(folder, tmp_path / "tiles", tile=TILE, skull_strip=True)


# --- score feeds the same ---------------------------------------------------------------

class Recorder:
    """The identity net, keeping every full slice it is given."""

    def __init__(self):
        self.slices = []

    def __call__(self, image_hw):
        if image_hw.shape == (SIDE, SIDE):
            self.slices.append(np.array(image_hw))
        return image_hw


def test_score_forwards_the_input_the_tiles_were_cut_from(masked, tmp_path):
    make_tiles(masked, tmp_path / "tiles", tile=TILE, skull_strip=True)
    plain, stripped = Recorder(), Recorder()
    score_with_forward(plain, masked, tmp_path / "plain", tiles=tmp_path / "tiles", whole_volume=False)
    results = score_with_forward(stripped, masked, tmp_path / "out", tiles=tmp_path / "tiles", whole_volume=False,
                                 skull_strip=True)
    assert max(s.max() for s in plain.slices) == 1.0 and max(s.max() for s in stripped.slices) < 1.0
    expected = [network_input(load_scan(masked, p).flair_shw, load_brain(masked, p), VOXEL_MM)[s]
                for p in PATIENTS for s in range(3)]  # train then test patients, their slices with plaques
    assert len(stripped.slices) == len(expected)
    for seen, wanted in zip(stripped.slices, expected):
        np.testing.assert_array_equal(seen, wanted)
    windows = np.concatenate([_windows(s) for s in stripped.slices[:12]])  # the training patients' slices
    tiles, _ = _tiles(tmp_path / "tiles")
    assert all((np.abs(windows - tile).max(axis=(1, 2)) == 0).any() for tile in tiles)
    assert results["input"]["skull_strip"] is True and results["input"]["grow_mm"] == brain.GROW_MM
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["input"]["skull_strip"] is True
    assert json.loads((tmp_path / "plain" / "results.json").read_text())["input"]["skull_strip"] is False


def test_scoring_stripped_needs_the_masks(cohort, tmp_path):
    with pytest.raises(InputError, match="no brain mask for P001, P002, P003, P004, P005"):
        score_with_forward(Recorder(), cohort, tmp_path / "out", whole_volume=False, skull_strip=True)
    assert not (tmp_path / "out").exists()


def _run_reading(run, tiles_dir):
    """A run folder whose train net reads TILES/train.txt, as `train` copies it."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "plaquenet_train.prototxt").write_text(
        f'name: "t"\nlayer {{ name: "data" type: "HDF5Data" top: "data" top: "label"\n'
        f'  hdf5_data_param {{ source: "{tiles_dir / "train.txt"}" batch_size: 2 }} }}\n')
    snapshot = run / "net_iter_1.caffemodel"
    snapshot.write_bytes(b"")
    return snapshot


def test_score_follows_the_runs_tiles_and_refuses_a_mismatch(masked, tmp_path, capsys):
    make_tiles(masked, tmp_path / "stripped", tile=TILE, skull_strip=True)
    make_tiles(masked, tmp_path / "plain", tile=TILE)
    snapshot = _run_reading(tmp_path / "run", tmp_path / "stripped")
    stripped, source = training_input(snapshot, masked, tiles=tmp_path / "stripped")
    assert stripped is True and source == str(tmp_path / "stripped" / "tiles.json")
    assert training_input(snapshot, masked, tiles=None)[0] is True  # no COHORT/tiles: the run's record alone
    with pytest.raises(InputError, match="records unstripped input, but .*stripped/tiles.json records skull-stripped"):
        training_input(snapshot, masked, tiles=tmp_path / "plain")
    plain_run = _run_reading(tmp_path / "plain-run", tmp_path / "plain")
    with pytest.raises(InputError, match="trained on unstripped input, --skull-strip given"):
        training_input(plain_run, masked, tiles=None, option=True)
    assert main(["score", "--snapshot", str(plain_run), "--cohort", str(masked), "--skull-strip"]) == 2
    err = capsys.readouterr().err
    assert "plain/tiles.json" in err and "--skull-strip given" in err and err.count("\n") == 1
    assert training_input(tmp_path / "nowhere" / "x_iter_1.caffemodel", masked, None) == \
        (False, "no record found: unstripped")


# --- segment feeds the same -------------------------------------------------------------

def _sigmoid(x):
    return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def test_segment_strips_the_study_when_the_run_was_trained_stripped(tmp_path, scored_snapshot, deploy, monkeypatch):
    """tests/conftest.py's net: output sigmoid(x - 0.5) of each input voxel x. The fake
    brain is columns 0-9 (0.75 mm): grown by 3 mm it ends at column 13, so lesion B
    (column 15) is blanked from the input, not filtered after."""
    monkeypatch.setattr(brain, "MIN_BRAIN_ML", 0.001)
    study = F.write_three_lesion_study(tmp_path / "study")
    left_columns = F.left_columns_brain

    results = scored_snapshot.parent / "score" / "results.json"
    results.write_text(json.dumps({"threshold": 0.5, "input": {"skull_strip": True}}))
    result = segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy, extractor=left_columns)
    assert len(result.lesions) == 2 and result.mask_shw[:, :, 14:].sum() == 0
    np.testing.assert_allclose(result.probability_shw[:, :, 14:], _sigmoid(-0.5), rtol=1e-5)  # input 0 there
    assert result.probability_shw[:, :, :14].min() > _sigmoid(-0.5) + 1e-3  # the background kept (x ~ 0.1)
    about = json.loads((tmp_path / "out" / "segment.json").read_text())
    assert about["input"]["skull_strip"] is True and about["input"]["from"] == str(results)
    assert about["brain"] == "not used" and "brain.nii.gz" in about["files"]
    with pytest.raises(InputError, match="trained on skull-stripped input, no --skull-strip"):
        segment(study, scored_snapshot, out=tmp_path / "other", deploy=deploy, extractor=left_columns,
                skull_strip=False)


def test_segment_refuses_a_single_slice_for_a_stripped_run(tmp_path, scored_snapshot, deploy):
    study = tmp_path / "study"
    F.write_dicom_series(study / "flair", stored=np.full((1, F.ROWS, F.COLS), 100, np.uint16))
    (scored_snapshot.parent / "score" / "results.json").write_text(
        json.dumps({"threshold": 0.5, "input": {"skull_strip": True}}))
    with pytest.raises(InputError, match="a single 2D slice.*trained on skull-stripped input"):
        segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy, extractor=lambda v, s: v > 0)
    assert not (tmp_path / "out").exists()


# --- tile folders made with and without are not confused ------------------------------

def test_the_runner_does_not_reuse_tiles_made_the_other_way(masked, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # train.txt lists paths relative to the working directory
    plain_spec, stripped_spec = TileSpec(tile=TILE), TileSpec(tile=TILE, skull_strip=True)
    assert plain_spec.folder_name() + "-skullstrip" == stripped_spec.folder_name()
    out = ensure_tiles(masked, stripped_spec)
    assert tiles_match(out, masked, stripped_spec) and not tiles_match(out, masked, plain_spec)
    ensure_tiles(masked, plain_spec, out_dir=out)  # the same folder, the other way: remade
    assert json.loads((out / "tiles.json").read_text())["parameters"]["skull_strip"] is False
    assert tiles_match(out, masked, plain_spec) and not tiles_match(out, masked, stripped_spec)


def test_a_tiles_json_from_before_the_option_counts_as_unstripped(masked, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = ensure_tiles(masked, TileSpec(tile=TILE))
    description = json.loads((out / "tiles.json").read_text())
    del description["parameters"]["skull_strip"]
    (out / "tiles.json").write_text(json.dumps(description))
    assert tiles_match(out, masked, TileSpec(tile=TILE))  # today's folders stay valid
    assert not tiles_match(out, masked, TileSpec(tile=TILE, skull_strip=True))
    snapshot = _run_reading(tmp_path / "run", out.resolve())
    assert training_input(snapshot, masked, tiles=None)[0] is False


def test_a_worker_process_forwards_the_same_stripped_input(masked, monkeypatch):
    """What each process of `score --workers N` runs per patient (evaluate/parallel.py), in this process."""
    from plaquenet.evaluate import parallel

    monkeypatch.setattr(parallel, "_FORWARD", [Recorder()])
    done = parallel._forward_patient(str(masked), "P005", False, True)
    wanted = network_input(load_scan(masked, "P005").flair_shw, load_brain(masked, "P005"), VOXEL_MM)
    np.testing.assert_array_equal(done.image_shw, wanted)
    np.testing.assert_array_equal(done.output_khw, wanted)
