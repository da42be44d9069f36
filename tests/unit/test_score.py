"""`plaquenet score` end to end on a tiny cohort (tests/conftest.py), with the
identity as the network (output = normalised input: a deterministic forward, no
snapshot), and with real .caffemodel files of a one-layer deploy net: a
diverged one, and every snapshot of a run for the training curves (Fig. 5)."""

import csv
import json
import re

import h5py
import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

import tiny_nets
from plaquenet.cli import main
from plaquenet.cohort import Scan, normalise_intensity, write_cohort, write_split
from plaquenet.engines.torch.net import load_deploy
from plaquenet.evaluate.inference import forward_slices
from plaquenet.errors import InputError
from plaquenet.report.html import png_data_uri
from plaquenet.score import score, score_with_forward
from tiny_cohort import tiny_scan


def identity(image_hw):
    return image_hw


def write_tiles(cohort_dir, rng):
    tiles = cohort_dir / "tiles"
    tiles.mkdir()
    data = rng.random((5, 1, 8, 8)).astype(np.float32)
    label = (data > 0.7).astype(np.float32)
    with h5py.File(tiles / "train_0.h5", "w") as f:
        f["data"], f["label"] = data, label
    (tiles / "train.txt").write_text("data/elsewhere/tiles/train_0.h5\n")  # found by its name
    return data, label


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


def test_a_diverged_snapshot_is_refused_by_name(cohort, deploy, tmp_path):
    run = tmp_path / "runs" / "nan"
    run.mkdir(parents=True)
    tiny_nets.write_one_conv_snapshot(run / "net_iter_5.caffemodel", np.full((3, 3), np.nan), 0.0)
    with pytest.raises(InputError, match="NaN") as e:
        score(run, cohort_dir=cohort, deploy=deploy)
    assert "net_iter_5.caffemodel" in str(e.value)
    assert not (run / "score").exists()


# --- every snapshot of a run: the training curves (Fig. 5); --save-probabilities

def test_all_snapshots_scores_each_as_a_single_scoring_would(cohort, tiny_run, tmp_path):
    run_dir, deploy = tiny_run
    assert main(["score", "--all-snapshots", str(run_dir), "--cohort", str(cohort), "--deploy", str(deploy)]) == 0
    out = run_dir / "score"
    rows = list(csv.DictReader((out / "curves.csv").open()))
    assert [int(r["iteration"]) for r in rows] == [10, 20, 100]

    for row in rows:
        single = score(row["snapshot"], cohort_dir=cohort, deploy=deploy, out=tmp_path / f"single_{row['iteration']}")
        assert float(row["threshold"]) == single["threshold"]
        assert float(row["train_f1"]) == single["train"]["pixel"]["f1"]
        assert float(row["test_f1"]) == single["test"]["pixel"]["f1"]
    assert len({r["threshold"] for r in rows}) == 3  # different weights, different curves points

    results = json.loads((out / "results.json").read_text())
    assert results["snapshot"].endswith("tiny_iter_100.caffemodel")  # the latest is the main result
    assert [c["iteration"] for c in results["training_curve"]] == [10, 20, 100]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_data_uri(out / "curves.png") in (out / "report.html").read_text()
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # caches removed


def test_single_snapshot_scoring_has_no_curves(cohort, tiny_run):
    run_dir, deploy = tiny_run
    score(run_dir, cohort_dir=cohort, deploy=deploy)
    assert not (run_dir / "score" / "curves.csv").exists()
    assert "training_curve" not in json.loads((run_dir / "score" / "results.json").read_text())


def test_save_probabilities_writes_every_slice_of_every_patient(tiny_run, tmp_path):
    run_dir, deploy = tiny_run
    rng = np.random.default_rng(3)
    affine = np.array([[-0.5, 0, 0, 90], [0, -0.6, 0, 120], [0, 0, 5, -40], [0, 0, 0, 1]])
    scans = []
    for patient, lesions in (("P001", (1,)), ("P002", (0, 2)), ("P003", ())):
        s = tiny_scan(patient, rng, lesions)  # (4, 16, 16); cropped to H = 12 != W = 16
        scans.append(Scan(patient, s.flair_shw[:, :12], s.mask_shw[:, :12], s.voxel_mm, affine))
    cohort_dir = tmp_path / "cohort2"
    write_cohort(cohort_dir, scans)
    write_split(cohort_dir, {"train": ["P001", "P003"], "test": ["P002"]})

    probabilities = tmp_path / "probabilities"
    snapshot = run_dir / "tiny_iter_20.caffemodel"
    assert main(["score", "--snapshot", str(snapshot), "--cohort", str(cohort_dir), "--deploy", str(deploy),
                 "--save-probabilities", str(probabilities)]) == 0
    assert sorted(p.name for p in probabilities.iterdir()) == ["P001.nii.gz", "P002.nii.gz", "P003.nii.gz"]
    net = load_deploy(deploy, snapshot)
    for scan in scans:
        image = nib.load(str(probabilities / f"{scan.patient}.nii.gz"))
        assert image.shape == (16, 12, 4) and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, affine, atol=1e-5)  # NIfTI keeps the sform as float32
        output_whs = np.asarray(image.dataobj)
        image_shw = normalise_intensity(scan.flair_shw)
        # every slice, with plaques or not, as the engine forwards them (several per call:
        # evaluate/inference.py forward_slices; test_inference checks it against one at a time)
        np.testing.assert_array_equal(output_whs.transpose(2, 1, 0), forward_slices(net, image_shw))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]

    # An existing folder is refused before any work, like the score folder.
    assert main(["score", "--snapshot", str(snapshot), "--cohort", str(cohort_dir), "--deploy", str(deploy),
                 "--out", str(tmp_path / "other"), "--save-probabilities", str(probabilities)]) == 2
    assert not (tmp_path / "other").exists()


# --- whole volumes: every slice of each test patient, beside the paper's protocol (#14)

def test_whole_volume_scores_every_slice_of_every_test_patient(cohort, tmp_path):
    write_split(cohort, {"train": ["P001", "P002"], "test": ["P003", "P004", "P005"]})  # P003: no plaque
    out = tmp_path / "score"
    score_with_forward(identity, cohort, out)
    saved = json.loads((out / "results.json").read_text())
    volume = saved["whole_volume"]
    assert volume["threshold"] == saved["threshold"]
    assert volume["counts"] == {"patients": 3, "patients_with_plaques": 2, "slices": 12, "plaque_slices": 4}
    assert [r["patient"] for r in volume["patients"]] == ["P003", "P004", "P005"]
    # Pixel counts by hand over every slice (the identity network: output = normalised input).
    tp = fp = fn = 0
    with h5py.File(cohort / "cohort.h5", "r") as f:
        for p, row in zip(("P003", "P004", "P005"), volume["patients"]):
            pred = normalise_intensity(f["patients"][p]["flair"][...]) >= saved["threshold"]
            truth = f["patients"][p]["mask"][...].astype(bool)
            counts = ((pred & truth).sum(), (pred & ~truth).sum(), (~pred & truth).sum())
            assert (row["tp"], row["fp"], row["fn"]) == counts
            tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    assert (volume["pixel"]["tp"], volume["pixel"]["fp"], volume["pixel"]["fn"]) == (tp, fp, fn)
    assert volume["pixel"]["fp"] > saved["test"]["pixel"]["fp"]  # false alarms off the paper's slices
    assert volume["left_out"]["recall"] == 1  # P003 has nothing to find
    for rule in ("msseg2016", "wmh2017"):
        lesion = volume["lesion"][rule]
        assert lesion["reference_lesions"] == saved["test"]["lesion"][rule]["reference_lesions"]
        assert lesion["left_out"]["sensitivity"] == 1 and "reference_convention" in lesion
    assert "whole_volume" in saved["definitions"]
    page = (out / "report.html").read_text()
    assert "Whole volumes (every slice of each test patient)" in page and "Anima" in page


def test_whole_volume_forwards_each_test_slice_once(cohort, tmp_path):
    calls = []

    def counting(image_hw):
        calls.append(image_hw.shape)
        return image_hw

    score_with_forward(counting, cohort, tmp_path / "paper", whole_volume=False)
    paper = len(calls)
    calls.clear()
    score_with_forward(counting, cohort, tmp_path / "whole")
    # train: 4 slices with plaques; test: 4 of P004 and P005's 8 slices, or all 8 (plaque slices reused)
    assert (paper, len(calls)) == (4 + 4, 4 + 8)
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("paper", "whole"))
    assert "whole_volume" not in a and "Whole volumes" not in (tmp_path / "paper" / "report.html").read_text()
    assert a["test"] == b["test"] and a["threshold"] == b["threshold"]  # the paper's figures unchanged


def test_cli_no_whole_volume_and_all_snapshots_does_it_only_for_the_latest(cohort, tiny_run, monkeypatch, capsys):
    import plaquenet.evaluate.parallel as parallel   # where score forwards each patient

    run_dir, deploy = tiny_run
    volumes = []
    real = parallel.forward_scan

    def counting(scan, forward, every_slice=False, image_shw=None):
        volumes.extend([1] if every_slice else [])   # a whole volume forwarded
        return real(scan, forward, every_slice, image_shw)
    monkeypatch.setattr(parallel, "forward_scan", counting)
    assert main(["score", "--all-snapshots", str(run_dir), "--cohort", str(cohort), "--deploy", str(deploy)]) == 0
    assert len(volumes) == 2  # the two test patients, once: for the snapshot results.json reports
    assert "whole volumes" in capsys.readouterr().out
    assert "whole_volume" in json.loads((run_dir / "score" / "results.json").read_text())
    volumes.clear()
    assert main(["score", "--snapshot", str(run_dir), "--cohort", str(cohort), "--deploy", str(deploy),
                 "--force", "--no-whole-volume"]) == 0
    assert not volumes and "whole_volume" not in json.loads((run_dir / "score" / "results.json").read_text())


def test_score_in_bf16_records_its_precision_and_stays_near_fp32(cohort, tiny_run, tmp_path):
    run_dir, deploy = tiny_run
    exact = score(run_dir, cohort_dir=cohort, deploy=deploy, out=tmp_path / "fp32", whole_volume=False)
    rounded = score(run_dir, cohort_dir=cohort, deploy=deploy, out=tmp_path / "bf16", whole_volume=False,
                    precision="bf16")
    written = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert (exact["precision"], written["precision"]) == ("fp32", "bf16")
    assert written["test"]["pixel"]["f1"] == pytest.approx(exact["test"]["pixel"]["f1"], abs=0.05)
    assert rounded["threshold"] == pytest.approx(exact["threshold"], abs=0.02)
