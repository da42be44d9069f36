"""`plaquenet score` end to end on a tiny cohort, with the identity as the
network (output = normalised input: a deterministic forward, no snapshot)."""

import csv
import json
import re

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.patches import Rectangle
from scipy import ndimage

from plaquenet.cli import main
from plaquenet.cohort import Scan, normalise_intensity, write_cohort, write_split
from plaquenet.errors import InputError
from plaquenet.evaluate.inference import threshold_from_tiles
from plaquenet.engines.snapshots import latest_snapshot
from plaquenet.score import score, score_with_forward
from plaquenet.evaluate.sweep import best_f_threshold, merge_tables, value_table
from plaquenet.report.figures import (CROP_PX, FIGURE_WIDTH_PX, FN_RGB, lesion_windows, raw_threshold_figure,
                                      save_png, slice_outcome_figure)


def identity(image_hw):
    return image_hw


def tiny_scan(patient, rng, lesion_slices=(1, 2)):
    """(4, 16, 16) volume: noisy tissue, plaques brighter than it on some slices."""
    flair = rng.uniform(100, 300, size=(4, 16, 16)).astype(np.float32)
    mask = np.zeros((4, 16, 16), np.uint8)
    for s in lesion_slices:
        r, c = rng.integers(2, 11, size=2)
        mask[s, r:r + 3, c:c + 4] = 1
    flair[mask == 1] += rng.uniform(150, 400, size=int(mask.sum()))
    return Scan(patient, flair, mask, (5.0, 0.5, 0.5), np.eye(4))


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(0)
    cohort_dir = tmp_path / "cohort"
    scans = [tiny_scan("P001", rng), tiny_scan("P002", rng, (0, 3)), tiny_scan("P003", rng, ()),
             tiny_scan("P004", rng, (2,)), tiny_scan("P005", rng, (1, 2, 3))]
    write_cohort(cohort_dir, scans, name="tiny")
    write_split(cohort_dir, {"train": ["P001", "P002", "P003"], "test": ["P004", "P005"]})
    return cohort_dir


def write_tiles(cohort_dir, rng):
    tiles = cohort_dir / "tiles"
    tiles.mkdir()
    data = rng.random((5, 1, 8, 8)).astype(np.float32)
    label = (data > 0.7).astype(np.float32)
    with h5py.File(tiles / "train_0.h5", "w") as f:
        f["data"], f["label"] = data, label
    (tiles / "train.txt").write_text("data/elsewhere/tiles/train_0.h5\n")  # found by its name
    return data, label


def test_latest_snapshot_by_iteration_number(tmp_path):
    for n in (200, 1000, 30):
        (tmp_path / f"plaquenet_iter_{n}.caffemodel").write_bytes(b"")
    (tmp_path / "plaquenet_iter_5000.solverstate").write_bytes(b"")
    assert latest_snapshot(tmp_path).name == "plaquenet_iter_1000.caffemodel"
    assert latest_snapshot(tmp_path / "plaquenet_iter_200.caffemodel").name == "plaquenet_iter_200.caffemodel"


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "missing.caffemodel", "no such snapshot"),
    (lambda p: p, "no \\*_iter_<N>.caffemodel"),
    (lambda p: (p / "x_iter_5.solverstate").write_bytes(b"") or p / "x_iter_5.solverstate", "not a .caffemodel"),
])
def test_bad_snapshot_is_one_line_input_error(tmp_path, make, problem):
    with pytest.raises(InputError, match=problem) as e:
        latest_snapshot(make(tmp_path))
    assert "\n" not in str(e.value)


def test_score_writes_results_figures_and_a_self_contained_report(cohort, tmp_path):
    data, label = write_tiles(cohort, np.random.default_rng(1))
    out = tmp_path / "run" / "score"
    results = score_with_forward(identity, cohort, out, about={"snapshot": "s_iter_1.caffemodel", "engine": "id"})

    saved = json.loads((out / "results.json").read_text())
    for key in ("threshold", "threshold_from_tiles", "snapshot", "engine", "cohort", "counts", "paper"):
        assert key in saved
    for split in ("train", "test"):
        assert set(saved[split]["pixel"]) >= {"precision", "recall", "f1"}
    assert saved["test"]["pixel_from_tiles_threshold"]["f1"] is not None
    assert set(saved["baseline"]["raw_intensity"]["test"]["pixel"]) >= {"precision", "recall", "f1"}
    assert saved["cohort"] == "tiny" and saved["snapshot"] == "s_iter_1.caffemodel"
    assert saved["counts"]["train"] == {"patients": 3, "patients_with_plaques": 2, "scans": 4}
    assert saved["counts"]["test"]["scans"] == 4 and saved["counts"]["tiles"] == 5
    assert saved["paper"]["test"]["pixel"]["f1"] == 0.55
    for rule in ("msseg2016", "wmh2017"):
        assert set(saved["test"]["lesion"][rule]) >= {"sensitivity", "precision", "f1", "reference_lesions"}

    # The identity network *is* the raw-intensity baseline: same threshold, same scores.
    base = saved["baseline"]["raw_intensity"]
    assert saved["threshold"] == base["threshold"]
    assert saved["test"]["pixel"] == base["test"]["pixel"]

    # Test F-measure, recomputed by hand over the test slices with plaques.
    tp = fp = fn = 0
    with h5py.File(cohort / "cohort.h5", "r") as f:
        for p in ("P004", "P005"):
            image = normalise_intensity(f["patients"][p]["flair"][...])
            mask = f["patients"][p]["mask"][...].astype(bool)
            keep = mask.any(axis=(1, 2))
            pred, truth = image[keep] >= saved["threshold"], mask[keep]
            tp += (pred & truth).sum()
            fp += (pred & ~truth).sum()
            fn += (~pred & truth).sum()
    assert saved["test"]["pixel"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert results["out"] == str(out)

    # The tiles' threshold: best F over the tile pixels themselves (identity network).
    values = np.unique(data)
    f1 = [2 * ((data >= t) & (label > 0.5)).sum() / ((data >= t).sum() + (label > 0.5).sum()) for t in values]
    assert saved["threshold_from_tiles"] == pytest.approx(values[np.flatnonzero(f1 == np.max(f1))[-1]])

    rows = list(csv.DictReader((out / "per_patient.csv").open()))
    assert [(r["patient"], r["split"], r["slices"]) for r in rows] == [
        ("P001", "train", "2"), ("P002", "train", "2"), ("P004", "test", "1"), ("P005", "test", "3")]
    assert set(rows[0]) >= {"patient", "split", "slices", "precision", "recall", "f1"}
    # Lesion-wise metrics per test patient, from results.json; empty for training rows.
    for rule in ("msseg2016", "wmh2017"):
        per_patient = {r["patient"]: r for r in saved["test"]["lesion"][rule]["patients"]}
        for row in rows:
            for m in ("sensitivity", "precision", "f1"):
                value = row[f"lesion_{rule}_{m}"]
                if row["split"] == "train":
                    assert value == ""
                else:
                    expected = per_patient[row["patient"]][m]
                    assert (value == "" and expected is None) or float(value) == pytest.approx(expected)
    assert any(row["lesion_wmh2017_f1"] for row in rows)

    for png in ("best_test_slice.png", "worst_test_slice.png", "raw_intensity_thresholds.png",
                "precision_recall_train.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page = (out / "report.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "0.55" in page and "tiny" in page
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # cache removed


def test_lesions_are_counted_in_3d_per_patient_and_in_2d_per_slice(cohort, tmp_path):
    out = tmp_path / "score"
    score_with_forward(identity, cohort, out)
    saved = json.loads((out / "results.json").read_text())
    # Reference lesions by hand: 26-connected in each patient's volume (wmh2017,
    # 3D) and 8-connected within each slice (2D); every plaque here is > 3 mm^3.
    in_3d = in_2d = 0
    with h5py.File(cohort / "cohort.h5", "r") as f:
        for p in ("P004", "P005"):
            mask = f["patients"][p]["mask"][...] != 0
            in_3d += ndimage.label(mask, structure=np.ones((3, 3, 3)))[1]
            in_2d += sum(ndimage.label(m, structure=np.ones((3, 3)))[1] for m in mask)
    assert in_2d > in_3d  # P005's plaques on slices 1-3 touch across slices
    assert saved["test"]["lesion"]["wmh2017"]["reference_lesions"] == in_3d
    for rule in ("msseg2016", "wmh2017"):
        flat = saved["test"]["lesion_2d"][rule]
        assert set(flat) >= {"sensitivity", "precision", "f1", "reference_lesions", "per_patient", "patients"}
        assert flat["reference_lesions"] == in_2d
        assert flat["detected"] + flat["missed"] == in_2d
    rows = {r["patient"]: r for r in csv.DictReader((out / "per_patient.csv").open())}
    expected = {r["patient"]: r for r in saved["test"]["lesion_2d"]["wmh2017"]["patients"]}
    assert float(rows["P005"]["lesion_2d_wmh2017_sensitivity"]) == pytest.approx(expected["P005"]["sensitivity"])
    assert rows["P001"]["lesion_2d_wmh2017_f1"] == ""
    page = (out / "report.html").read_text()
    assert page.count("3D per patient</td>") == 2 and page.count("2D per slice (8-connected)</td>") == 2


def value_table_threshold(files, forward):
    """The tiles' threshold as it was computed before the two-pass sweep: one
    value table over every output pixel of every tile."""
    tables = []
    for path in files:
        with h5py.File(path, "r") as f:
            outputs = [forward(image) for image in f["data"][:, 0]]
            if outputs:
                tables.append(value_table(np.stack(outputs), f["label"][:, 0] > 0.5))
    table = merge_tables(tables)
    return best_f_threshold(table) if table.positives.sum() else None


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_tiles_threshold_two_pass_equals_the_value_table_and_leaves_no_cache(tmp_path, batch):
    rng = np.random.default_rng(batch)
    files = []
    for i, n in enumerate((7, 0, 4)):  # an empty tile file too
        data = rng.random((n, 1, 6, 5)).astype(np.float32)
        data[:, :, 0, 0] = 0.5  # values repeated across tiles and files
        label = ((data + rng.normal(0, 0.2, data.shape)) > 0.7).astype(np.float32)
        files.append(tmp_path / f"train_{i}.h5")
        with h5py.File(files[-1], "w") as f:
            f["data"], f["label"] = data, label

    def squash(image):  # a nonlinear net: many outputs, some equal
        return np.round(1 / (1 + np.exp(-8 * (image - 0.6))), 3).astype(np.float32)

    cache = tmp_path / "cache"
    cache.mkdir()
    got = threshold_from_tiles(files, squash, batch=batch, cache_dir=cache)
    assert got is not None and got == value_table_threshold(files, squash)
    assert list(cache.iterdir()) == []
    # No lesion pixel in any tile: no threshold (and still no cache left).
    with h5py.File(files[0], "a") as f:
        f["label"][...] = 0
    with h5py.File(files[2], "a") as f:
        f["label"][...] = 0
    assert threshold_from_tiles(files, squash, batch=batch, cache_dir=cache) is None
    assert list(cache.iterdir()) == []


def test_cli_score_refuses_existing_out_and_missing_snapshot(cohort, tmp_path, capsys):
    out = tmp_path / "score"
    out.mkdir()
    assert main(["score", "--snapshot", str(tmp_path / "nope.caffemodel"), "--cohort", str(cohort)]) == 2
    assert "nope.caffemodel: no such snapshot" in capsys.readouterr().err
    (tmp_path / "x_iter_1.caffemodel").write_bytes(b"")
    assert main(["score", "--snapshot", str(tmp_path), "--cohort", str(cohort), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_force_replaces_an_existing_score_folder(cohort, tmp_path):
    out = tmp_path / "score"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(InputError, match="already exists"):
        score_with_forward(identity, cohort, out)
    score_with_forward(identity, cohort, out, force=True)
    assert (out / "results.json").is_file() and not (out / "stale.txt").exists()
    assert json.loads((out / "results.json").read_text())["threshold_from_tiles"] is None  # no tiles


def test_default_out_is_the_run_folder(cohort, tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    (run / "net_iter_10.caffemodel").write_bytes(b"")
    # The deploy file is checked before any engine is loaded.
    with pytest.raises(InputError, match="no such deploy"):
        score(run, cohort_dir=cohort, deploy=tmp_path / "missing.prototxt")
    assert not (run / "score").exists()


def test_test_set_without_plaques_is_refused_and_nothing_written(cohort, tmp_path):
    write_split(cohort, {"train": ["P001", "P002"], "test": ["P003"]})
    out = tmp_path / "score"
    with pytest.raises(InputError, match="no test slice contains a plaque"):
        score_with_forward(identity, cohort, out)
    assert not out.exists()


def test_empty_side_of_the_split_is_refused(cohort, tmp_path):
    write_split(cohort, {"train": [], "test": ["P004"]})
    with pytest.raises(InputError, match="no training patients"):
        score_with_forward(identity, cohort, tmp_path / "score")


def test_failure_during_scoring_leaves_no_partial_folder(cohort, tmp_path):
    def broken(image_hw):
        return image_hw[:-1]

    out = tmp_path / "score"
    with pytest.raises(ValueError, match="output shape"):
        score_with_forward(broken, cohort, out)
    assert not out.exists() and not list(tmp_path.glob(".score*"))


TINY_DEPLOY = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 16 dim: 16 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 1 kernel_size: 3 pad: 1 } }
layer { name: "prob" type: "Sigmoid" bottom: "conv" top: "prob" }
"""


def test_a_diverged_snapshot_is_refused_by_name(cohort, tmp_path):
    from plaquenet.caffe.snapshot import weights_net, write_caffemodel

    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(TINY_DEPLOY)
    run = tmp_path / "runs" / "nan"
    run.mkdir(parents=True)
    weights = [np.full((1, 1, 3, 3), np.nan, np.float32), np.zeros(1, np.float32)]
    write_caffemodel(run / "net_iter_5.caffemodel", weights_net({"conv": weights}, {"conv": "Convolution"}))
    with pytest.raises(InputError, match="NaN") as e:
        score(run, cohort_dir=cohort, deploy=deploy)
    assert "net_iter_5.caffemodel" in str(e.value)
    assert not (run / "score").exists()


# --- the slice figures' zoomed insets (report/figures.py) --------------------

SLICE_HW = (448, 512)


def plaque_slice(row, col, size=2):
    """(448, 512) image, truth and output: flat tissue, one size x size plaque at
    (row, col), bright in the input, missed by the output (yellow, FN_RGB)."""
    image = np.full(SLICE_HW, 0.3)
    truth = np.zeros(SLICE_HW, np.uint8)
    truth[row:row + size, col:col + size] = 1
    image[truth == 1] = 0.9
    return image, truth, np.zeros(SLICE_HW)


def saved_rgb(fig, path):
    """The figure saved by save_png and read back: (H, W, 3) floats in [0, 1]."""
    return mpimg.imread(save_png(fig, path))[..., :3]


def png_pixels_of(rgb_png, ax, colour):
    """How many PNG pixels inside `ax` have `colour` (8 bits, +-1 for rounding)."""
    x0, y0, x1, y1 = np.round(ax.get_window_extent().extents).astype(int)
    region = rgb_png[rgb_png.shape[0] - y1:rgb_png.shape[0] - y0, x0:x1]
    return int(np.all(np.abs(region - np.asarray(colour)) < 1.5 / 255, axis=2).sum())


def insets(fig):
    return [ax for ax in fig.axes if ax.get_label().startswith("inset ")]


def outlines(fig):
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]


def test_a_2x2_plaque_is_zoomed_to_at_least_a_6x6_block_of_png_pixels(tmp_path):
    image, truth, output = plaque_slice(200, 300)
    [window] = lesion_windows(truth)
    assert window.crop(truth).sum() == 4
    fig = slice_outcome_figure(image, truth, output, 0.5, "one missed plaque")
    [outcome] = [ax for ax in insets(fig) if ax.get_label() == "inset 1: output >= 0.5"]
    # In the whole-slice panel (~0.84 PNG pixel per image pixel) it covers at most 3 x 3.
    assert png_pixels_of(saved_rgb(fig, tmp_path / "slice.png"), outcome, FN_RGB) >= 36


@pytest.mark.parametrize("row, col", [(0, 0), (0, 510), (446, 0), (446, 510)])
def test_windows_and_outlines_stay_inside_the_slice_for_a_plaque_at_a_corner(row, col):
    image, truth, output = plaque_slice(row, col)
    [window] = lesion_windows(truth)
    assert 0 <= window.top < window.bottom <= SLICE_HW[0] and 0 <= window.left < window.right <= SLICE_HW[1]
    assert (window.bottom - window.top, window.right - window.left) == (CROP_PX, CROP_PX)  # shifted, not cut
    assert window.crop(truth).sum() == 4
    for fig in (slice_outcome_figure(image, truth, output, 0.5, ""), raw_threshold_figure(image, truth)):
        for rect in outlines(fig):
            assert rect.get_x() >= -0.5 and rect.get_x() + rect.get_width() <= SLICE_HW[1] - 0.5
            assert rect.get_y() >= -0.5 and rect.get_y() + rect.get_height() <= SLICE_HW[0] - 0.5


def test_an_empty_slice_gets_no_insets_and_still_saves(tmp_path):
    empty = np.zeros(SLICE_HW)
    assert lesion_windows(empty, empty) == []
    for fig in (slice_outcome_figure(empty, empty, empty, 0.5, "empty"), raw_threshold_figure(empty, empty)):
        assert insets(fig) == [] and outlines(fig) == []
        assert saved_rgb(fig, tmp_path / "empty.png").shape[1] == FIGURE_WIDTH_PX


def test_windows_go_to_plaques_largest_first_then_to_false_positives_at_most_max():
    truth = np.zeros(SLICE_HW, np.uint8)
    truth[100:102, 100:102] = 1  # small plaque
    truth[300:310, 300:310] = 1  # large plaque
    truth[305:307, 315:317] = 1  # its neighbour: inside the large one's window, no window of its own
    prediction = np.zeros(SLICE_HW, bool)
    prediction[20:30, 400:430] = True  # a false positive larger than every plaque
    centres = [((w.top + w.bottom) // 2, (w.left + w.right) // 2) for w in lesion_windows(truth, prediction)]
    assert centres == [(305, 305), (101, 101), (25, 415)]
    assert len(lesion_windows(truth, prediction, max_windows=2)) == 2


def test_raw_threshold_figure_zooms_each_plaque_in_the_input_and_at_every_threshold():
    image, truth, _ = plaque_slice(200, 300)
    truth[50:53, 60:63] = 1
    fig = raw_threshold_figure(image, truth, thresholds=(0.5, 0.4))
    assert sorted(ax.get_label() for ax in insets(fig)) == [
        f"inset {n}: {name}" for n in (1, 2) for name in ("input", "input >= 40 %", "input >= 50 %")]
    assert len(outlines(fig)) == 2 * 2  # two windows on each of the two whole-slice panels


def test_a_slice_the_panels_already_draw_at_the_magnification_gets_no_insets():
    truth = np.zeros((16, 16), np.uint8)
    truth[5:7, 5:7] = 1
    assert lesion_windows(truth) != []
    assert insets(slice_outcome_figure(truth * 0.9, truth, np.zeros((16, 16)), 0.5, "")) == []
