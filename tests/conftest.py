"""Fixtures shared by the tests: a tiny cohort, tiny nets written to disk, run
folders with real snapshots, the working directory of a tiny training run.

The texts of the nets and the functions that write their weights are in
tests/helpers/tiny_nets.py; DICOM/NIfTI studies in tests/helpers/dicom_fixtures.py
(tests/helpers is on pytest's path: `import tiny_nets`)."""

import json

import h5py
import numpy as np
import pytest

import tiny_nets
from plaquenet.cohort import write_cohort, write_split
from plaquenet.engines.torch.train import _Csv
from tiny_cohort import tiny_scan


@pytest.fixture
def cohort(tmp_path):
    """tmp_path/cohort: five (4, 16, 16) tiny scans (`tiny_cohort.tiny_scan`), P003 without
    plaques; split P001-P003 train, P004-P005 test."""
    rng = np.random.default_rng(0)
    cohort_dir = tmp_path / "cohort"
    scans = [tiny_scan("P001", rng), tiny_scan("P002", rng, (0, 3)), tiny_scan("P003", rng, ()),
             tiny_scan("P004", rng, (2,)), tiny_scan("P005", rng, (1, 2, 3))]
    write_cohort(cohort_dir, scans, name="tiny")
    write_split(cohort_dir, {"train": ["P001", "P002", "P003"], "test": ["P004", "P005"]})
    return cohort_dir


@pytest.fixture
def deploy(tmp_path):
    """tmp_path/deploy.prototxt: `tiny_nets.one_conv_deploy()`."""
    path = tmp_path / "deploy.prototxt"
    path.write_text(tiny_nets.one_conv_deploy())
    return path


@pytest.fixture
def tiny_run(tmp_path, deploy):
    """(run folder, deploy): snapshots of `deploy` at iterations 10, 20 and 100 (name
    order would put 100 first), their weights all different, and a train.csv."""
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    for n in (100, 10, 20):
        rng = np.random.default_rng(n)
        tiny_nets.write_one_conv_snapshot(run_dir / f"tiny_iter_{n}.caffemodel", rng.normal(0, 0.5, (1, 1, 3, 3)),
                                          rng.normal(0, 0.5, 1))
    with _Csv(run_dir / "train.csv", append=False) as table:  # the torch engine's own writer
        for it in range(101):
            table.row(it, 1.0 / (it + 1), 2.0 / (it + 2), 0.01)
    return run_dir, deploy


@pytest.fixture
def scored_snapshot(tmp_path):
    """tmp_path/runs/scored/net_iter_10.caffemodel, a snapshot of `deploy` whose output is
    sigmoid(x - 0.5) of the input x, and its run folder's score/results.json (threshold 0.5)."""
    run = tmp_path / "runs" / "scored"
    (run / "score").mkdir(parents=True)
    centre = np.zeros((3, 3))
    centre[1, 1] = 1
    snapshot = tiny_nets.write_one_conv_snapshot(run / "net_iter_10.caffemodel", centre, -0.5)
    (run / "score" / "results.json").write_text(json.dumps({"threshold": 0.5}))
    return snapshot


@pytest.fixture
def train_workdir(tmp_path, monkeypatch):
    """The working directory (entered) of a tiny training run: nets/tiny_train.prototxt and
    nets/tiny_deploy.prototxt (`tiny_nets.two_conv_*`, 3 channels), solver.prototxt (4
    iterations, snapshots at 2 and 4 as runs/tiny/tiny_iter_N) and tiles/train.txt over
    4 tiles of 6x6 (2 batches)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets/tiny_train.prototxt").write_text(tiny_nets.two_conv_train("tiles/train.txt", 2, phase="TRAIN"))
    (tmp_path / "nets/tiny_deploy.prototxt").write_text(tiny_nets.two_conv_deploy(4, 4))
    (tmp_path / "solver.prototxt").write_text('net: "nets/tiny_train.prototxt"\n'
                                              'base_lr: 0.5  momentum: 0.9  weight_decay: 0.01\n'
                                              'lr_policy: "step"  gamma: 0.5  stepsize: 3\n'
                                              'display: 1  max_iter: 4  snapshot: 2\n'
                                              'snapshot_prefix: "runs/tiny/tiny"\n'
                                              'random_seed: 3\n')
    rng = np.random.default_rng(0)
    label = (rng.random((4, 1, 6, 6)) > 0.7).astype(np.float32)
    (tmp_path / "tiles").mkdir()
    with h5py.File(tmp_path / "tiles/train_000.h5", "w") as f:
        f["data"] = (label + rng.normal(0, 0.3, label.shape)).astype(np.float32)
        f["label"] = label
    (tmp_path / "tiles/train.txt").write_text("tiles/train_000.h5\n")
    return tmp_path


@pytest.fixture
def caffe_log():
    """What `caffe train` logs for a run of 40 iterations (display 20), glog prefixes included."""
    return """\
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
