"""Test nets and the smoothed loss as `caffe train` runs them (Solver::TestAll, Solver::Test and
UpdateSmoothedLoss at 99bd997), against real Caffe: two test nets chosen from one net by
`test_state` stages, each reading its own HDF5 files with its own batch size and `test_iter`,
`test_interval` 3 with `test_initialization: false`, `average_loss` 4 and `display` 1. Our
train.log must hold the lines Caffe's holds, with the same numbers: every "Testing net (#k)"
at the same iterations, each test net's outputs (the mean over its test_iter batches), and the
smoothed training loss of every iteration; then BVLC's parse_log.py (the oracle's own, see
test_caffe_netstate_and_log.py) must read the same rows from both logs."""

import re
from pathlib import Path

import h5py
import numpy as np

from plaquenet.caffe.snapshot import weights_net, write_caffemodel
from plaquenet.engines.torch.train import train

TOLERANCE = 1e-5   # relative; float32 losses of a 3x3 convolution over a few hundred pixels

NET = """name: "two_tests"
layer { name: "train_data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
  hdf5_data_param { source: "train.txt" batch_size: 4 } }
layer { name: "data_a" type: "HDF5Data" top: "data" top: "label" include { phase: TEST stage: "a" }
  hdf5_data_param { source: "a.txt" batch_size: 2 } }
layer { name: "data_b" type: "HDF5Data" top: "data" top: "label" include { phase: TEST stage: "b" }
  hdf5_data_param { source: "b.txt" batch_size: 3 } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 1 kernel_size: 3 pad: 1 } }
layer { name: "prob" type: "Sigmoid" bottom: "conv" top: "prob" }
layer { name: "loss" type: "EuclideanLoss" bottom: "prob" bottom: "label" top: "loss" }
layer { name: "sq" type: "EuclideanLoss" bottom: "conv" bottom: "label" top: "sq"
  include { phase: TEST stage: "b" } }
"""
SOLVER = """net: "net.prototxt"
test_state { stage: "a" }
test_state { stage: "b" }
test_iter: 2
test_iter: 3
test_interval: 3
test_initialization: false
type: "SGD" base_lr: 0.5 momentum: 0.9 lr_policy: "fixed"
average_loss: 4
display: 1
max_iter: 7
snapshot: 0
snapshot_after_train: false
"""
GLOG = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ (\S+:\d+)\] (.*)$")


def _write(folder: Path) -> None:
    rng = np.random.default_rng(8)
    for name, rows in (("train", 6), ("a", 5), ("b", 7)):   # test batches wrap inside a test
        image = rng.normal(0, 1, (rows, 1, 8, 8)).astype(np.float32)
        with h5py.File(folder / f"{name}.h5", "w") as f:
            f["data"] = image
            f["label"] = (image > 0.5).astype(np.float32)
        (folder / f"{name}.txt").write_text(f"{name}.h5\n")
    (folder / "net.prototxt").write_text(NET)
    (folder / "solver.prototxt").write_text(SOLVER)
    weights = {"conv": [rng.normal(0, 0.3, (1, 1, 3, 3)), np.array([0.1])]}
    write_caffemodel(folder / "w0.caffemodel", weights_net(weights, {"conv": "Convolution"}))


def _events(log: Path):
    """[(what, iteration or net, name, value)] in log order: smoothed training losses,
    test headers and test net outputs."""
    events, testing = [], None
    for line in log.read_text().splitlines():
        m = GLOG.match(line)
        if not m:
            continue
        message = m.group(2)
        if (t := re.match(r"Iteration (\d+), Testing net \(#(\d+)\)", message)):
            testing = (int(t.group(1)), int(t.group(2)))
            events.append(("testing", testing, "", 0.0))
        elif (t := re.match(r"Iteration (\d+) \(.*\), loss = (\S+)", message)):
            events.append(("loss", int(t.group(1)), "", float(t.group(2))))
        elif (t := re.match(r"\s+Test net output #\d+: (\S+) = (\S+)", message)):
            events.append(("test output", testing, t.group(1), float(t.group(2))))
    return events


def test_two_test_nets_and_the_smoothed_loss_match_caffe_train(caffe, tmp_path, monkeypatch):
    _write(tmp_path)
    theirs = caffe.put(tmp_path, "tests")
    caffe.run("train", "tests", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    monkeypatch.chdir(tmp_path)
    train("solver.prototxt", weights="w0.caffemodel")

    ours = _events(next(tmp_path.glob("**/train.log")))
    reference = _events(theirs / "caffe.log")
    # Tests at 3 and 6 (none at 0: test_initialization false; none after 7), both nets each time;
    # net #1 also outputs its own loss "sq"; a loss at every iteration.
    assert [e[1] for e in reference if e[0] == "testing"] == [(3, 0), (3, 1), (6, 0), (6, 1)]
    assert sorted({e[2] for e in reference if e[0] == "test output" and e[1][1] == 1}) == ["loss", "sq"]
    assert [e[1] for e in reference if e[0] == "loss"] == list(range(7))
    assert [e[:3] for e in ours] == [e[:3] for e in reference]
    worst = max(abs(a[3] - b[3]) / max(abs(b[3]), 1e-12) for a, b in zip(ours, reference))
    print("worst relative difference of the logged values:", f"{worst:.1e}")
    assert worst <= TOLERANCE, list(zip(ours, reference))
