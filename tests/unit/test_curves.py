"""Training curves (Fig. 5) over every snapshot of a run, the training loss
from train.csv or a Caffe log, and --save-probabilities, on the tiny cohort of
test_report.py with a one-layer deploy net and real .caffemodel files."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from plaquenet.caffe.snapshot import weights_net, write_caffemodel
from plaquenet.cli import main
from plaquenet.cohort import Scan, normalise_intensity, write_cohort, write_split
from plaquenet.engines.torch.net import load_deploy
from plaquenet.engines.torch.train import _Csv
from plaquenet.errors import InputError
from plaquenet.caffe.log import caffe_log_losses
from plaquenet.engines.snapshots import snapshots_by_iteration
from plaquenet.evaluate.curves import read_training_loss
from plaquenet.score import score
from plaquenet.report.html import png_data_uri
from test_report import TINY_DEPLOY, cohort, tiny_scan  # noqa: F401  (cohort: a fixture)

CAFFE_LOG = """\
I1124 10:00:00.000001  4242 solver.cpp:272] Solving plaquenet
I1124 10:00:00.100000  4242 solver.cpp:218] Iteration 0 (0 iter/s, 0.1s/20 iters), loss = 0.25
I1124 10:00:00.100001  4242 solver.cpp:237]     Train net output #0: loss = 0.25 (* 1 = 0.25 loss)
I1124 10:00:00.100002  4242 sgd_solver.cpp:105] Iteration 0, lr = 0.01
I1124 10:00:01.000000  4242 solver.cpp:218] Iteration 20 (22.2 iter/s, 0.9s/20 iters), loss = 0.125
I1124 10:00:01.000002  4242 sgd_solver.cpp:105] Iteration 20, lr = 0.01
I1124 10:00:01.500000  4242 solver.cpp:330] Iteration 40, Testing net (#0)
I1124 10:00:02.000000  4242 solver.cpp:310] Iteration 40, loss = 0.0625
I1124 10:00:02.000001  4242 solver.cpp:315] Optimization Done.
"""


def write_snapshot(path, seed):
    rng = np.random.default_rng(seed)
    weights = [rng.normal(0, 0.5, (1, 1, 3, 3)).astype(np.float32), rng.normal(0, 0.5, 1).astype(np.float32)]
    write_caffemodel(path, weights_net({"conv": weights}, {"conv": "Convolution"}))
    return path


@pytest.fixture
def run(tmp_path):
    """A run folder with snapshots at iterations 10, 20 and 100 (name order
    would put 100 first), their weights all different, and a train.csv."""
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    for n in (100, 10, 20):
        write_snapshot(run_dir / f"tiny_iter_{n}.caffemodel", seed=n)
    with _Csv(run_dir / "train.csv", append=False) as table:  # the torch engine's own writer
        for it in range(101):
            table.row(it, 1.0 / (it + 1), 2.0 / (it + 2), 0.01)
    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(TINY_DEPLOY)
    return run_dir, deploy


def test_caffe_log_losses_read_the_display_and_the_final_lines():
    assert caffe_log_losses(CAFFE_LOG.splitlines()) == [(0, 0.25), (20, 0.125), (40, 0.0625)]
    # Without the glog prefix (a log printed by other tools) the lines still parse.
    assert caffe_log_losses(["Iteration 7 (1 iter/s, 1s/1 iters), loss = 3e-05"]) == [(7, 3e-05)]


def test_training_loss_from_train_csv_first_else_train_log(run, tmp_path):
    run_dir, _ = run
    (run_dir / "train.log").write_text(CAFFE_LOG)
    loss = read_training_loss(run_dir)
    assert loss.source.name == "train.csv"
    assert loss.iteration.tolist() == list(range(101))
    assert loss.loss[10] == pytest.approx(2.0 / 12)  # smoothed_loss, as Caffe's log prints it

    (run_dir / "train.csv").unlink()
    loss = read_training_loss(run_dir)
    assert loss.source.name == "train.log"
    assert loss.iteration.tolist() == [0, 20, 40] and loss.loss.tolist() == [0.25, 0.125, 0.0625]

    (run_dir / "train.log").write_text("I1124 solver.cpp:272] Solving plaquenet\n")
    with pytest.raises(InputError, match="train.log: holds no training loss"):
        read_training_loss(run_dir)
    (run_dir / "train.log").unlink()
    assert read_training_loss(run_dir) is None


def test_a_resumed_log_keeps_the_last_value_of_an_iteration(tmp_path):
    (tmp_path / "train.log").write_text(CAFFE_LOG + CAFFE_LOG.replace("0.125", "0.5"))
    assert read_training_loss(tmp_path).loss.tolist() == [0.25, 0.5, 0.0625]


def test_snapshots_in_iteration_order(run):
    run_dir, _ = run
    assert [n for n, _ in snapshots_by_iteration(run_dir)] == [10, 20, 100]
    with pytest.raises(InputError, match="not a run folder"):
        snapshots_by_iteration(run_dir / "tiny_iter_10.caffemodel")


def test_all_snapshots_scores_each_as_a_single_scoring_would(cohort, run, tmp_path):  # noqa: F811
    run_dir, deploy = run
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


def test_single_snapshot_scoring_has_no_curves(cohort, run):  # noqa: F811
    run_dir, deploy = run
    score(run_dir, cohort_dir=cohort, deploy=deploy)
    assert not (run_dir / "score" / "curves.csv").exists()
    assert "training_curve" not in json.loads((run_dir / "score" / "results.json").read_text())


def test_save_probabilities_writes_every_slice_of_every_patient(run, tmp_path):
    run_dir, deploy = run
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
        for s in range(4):  # every slice, with plaques or not
            np.testing.assert_array_equal(output_whs[:, :, s].T, net(image_shw[s]))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]

    # An existing folder is refused before any work, like the score folder.
    assert main(["score", "--snapshot", str(snapshot), "--cohort", str(cohort_dir), "--deploy", str(deploy),
                 "--out", str(tmp_path / "other"), "--save-probabilities", str(probabilities)]) == 2
    assert not (tmp_path / "other").exists()
