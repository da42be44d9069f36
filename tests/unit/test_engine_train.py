"""train() like `caffe train` on a tiny net, resume, and load_deploy."""

import h5py
import numpy as np
import pytest
import torch

from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, read_solverstate
from plaquenet.engines.torch.net import load_deploy
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError

LAYERS = """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: %d kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" }
layer { name: "conv2" type: "Convolution" bottom: "conv1" top: "conv2"
        convolution_param { num_output: 1 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "prob" type: "Sigmoid" bottom: "conv2" top: "prob" }
"""
TRAIN_NET = """name: "tiny"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TRAIN }
        hdf5_data_param { source: "tiles/train.txt" batch_size: 2 } }
""" + LAYERS % 3 + """
layer { name: "loss" type: "EuclideanLoss" bottom: "prob" bottom: "label" top: "loss" }
"""
DEPLOY_NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }
"""
SOLVER = """net: "nets/tiny_train.prototxt"
base_lr: 0.5  momentum: 0.9  weight_decay: 0.01
lr_policy: "step"  gamma: 0.5  stepsize: 3
display: 1  max_iter: 4  snapshot: 2
snapshot_prefix: "runs/tiny/tiny"
random_seed: 3
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory with a tiny net, its solver and 4 tiles of 6x6 (2 batches)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets/tiny_train.prototxt").write_text(TRAIN_NET)
    (tmp_path / "nets/tiny_deploy.prototxt").write_text(DEPLOY_NET + LAYERS % 3)
    (tmp_path / "solver.prototxt").write_text(SOLVER)
    rng = np.random.default_rng(0)
    label = (rng.random((4, 1, 6, 6)) > 0.7).astype(np.float32)
    (tmp_path / "tiles").mkdir()
    with h5py.File(tmp_path / "tiles/train_000.h5", "w") as f:
        f["data"] = (label + rng.normal(0, 0.3, label.shape)).astype(np.float32)
        f["label"] = label
    (tmp_path / "tiles/train.txt").write_text("tiles/train_000.h5\n")
    return tmp_path


def test_train_writes_caffe_snapshots_and_log(workdir):
    result = train("solver.prototxt")
    run = workdir / "runs/tiny"
    assert result.run_dir == run.relative_to(workdir) and result.iterations == 4
    assert str(result.last_snapshot) == "runs/tiny/tiny_iter_4.caffemodel"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["solver.prototxt", "tiny_deploy.prototxt", "tiny_iter_2.caffemodel", "tiny_iter_2.solverstate",
                     "tiny_iter_4.caffemodel", "tiny_iter_4.solverstate", "tiny_train.prototxt",
                     "train.csv", "train.log"]
    state = read_solverstate(run / "tiny_iter_4.solverstate")
    assert (state.iter, state.learned_net, state.current_step) == (4, "runs/tiny/tiny_iter_4.caffemodel", 1)
    weights = caffemodel_weights(read_caffemodel(run / "tiny_iter_4.caffemodel"))
    assert {k: [w.shape for w in v] for k, v in weights.items()} == {
        "conv1": [(3, 1, 3, 3), (3,)], "prelu1": [(3,)], "conv2": [(1, 3, 3, 3), (1,)]}
    assert len(state.history) == 5

    log = (run / "train.log").read_text()
    for expected in ["] Solving tiny", "] Learning Rate Policy: step", "] Iteration 0, lr = 0.5",
                     "] Iteration 3, lr = 0.25", "]     Train net output #0: loss = ",
                     "] Snapshotting to binary proto file runs/tiny/tiny_iter_2.caffemodel",
                     "] Snapshotting solver state to binary proto file runs/tiny/tiny_iter_4.solverstate",
                     "] Iteration 4, loss = ", "] Optimization Done."]:
        assert expected in log, expected
    rows = (run / "train.csv").read_text().splitlines()
    assert rows[0] == "iter,loss,smoothed_loss,lr,seconds" and [r.split(",")[0] for r in rows[1:]] == list("0123")
    assert float(rows[-1].split(",")[3]) == 0.25


def test_resume_is_bit_identical(workdir):
    train("solver.prototxt")
    run = workdir / "runs/tiny"
    uninterrupted = {s: (run / f"tiny_iter_4.{s}").read_bytes() for s in ("caffemodel", "solverstate")}
    (run / "tiny_iter_4.caffemodel").unlink()
    result = train("solver.prototxt", snapshot="runs/tiny/tiny_iter_2.solverstate")
    assert result.iterations == 4
    for suffix, content in uninterrupted.items():
        assert (run / f"tiny_iter_4.{suffix}").read_bytes() == content, suffix
    log = (run / "train.log").read_text()
    assert "] Restoring previous solver status from runs/tiny/tiny_iter_2.solverstate" in log
    assert log.count("] Solving tiny") == 2          # the resumed run appends


def test_test_net_shares_the_train_weights(workdir):
    test_data = ('layer { name: "data" type: "HDF5Data" top: "data" top: "label" include { phase: TEST } '
                 'hdf5_data_param { source: "tiles/train.txt" batch_size: 4 } }\n')
    (workdir / "nets/tiny_train.prototxt").write_text(test_data + TRAIN_NET)
    (workdir / "solver.prototxt").write_text(SOLVER + "test_iter: 1\ntest_interval: 2\n")
    train("solver.prototxt")
    log = (workdir / "runs/tiny/train.log").read_text()
    assert log.count("] Iteration 0, Testing net (#0)") == 1 and "] Iteration 4, Testing net (#0)" in log
    losses = [float(l.rsplit("loss = ", 1)[1].split()[0]) for l in log.splitlines() if "Test net output #0: loss" in l]
    assert len(losses) == 3 and losses[-1] < losses[0]        # the test net sees the trained weights


def test_weights_and_snapshot_are_exclusive_and_bad_solvers_refused(workdir):
    with pytest.raises(InputError, match="not both"):
        train("solver.prototxt", weights="a.caffemodel", snapshot="b.solverstate")
    (workdir / "bad.prototxt").write_text(SOLVER.replace('lr_policy: "step"', 'lr_policy: "cosine"'))
    with pytest.raises(InputError, match="unknown lr_policy 'cosine'"):
        train("bad.prototxt")
    (workdir / "rms.prototxt").write_text(SOLVER + 'type: "RMSProp"\n')
    with pytest.raises(InputError, match="solver type 'RMSProp' is not supported"):
        train("rms.prototxt")


def test_load_deploy_on_another_size(workdir):
    train("solver.prototxt")
    model = "runs/tiny/tiny_iter_4.caffemodel"
    forward = load_deploy("nets/tiny_deploy.prototxt", model)
    image = np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32)   # prototxt says 4x4
    prob = forward(image)
    assert prob.shape == (5, 7) and prob.dtype == np.float32

    w = {k: [torch.from_numpy(a) for a in v] for k, v in caffemodel_weights(read_caffemodel(model)).items()}
    x = torch.from_numpy(image)[None, None]
    x = torch.nn.functional.prelu(torch.nn.functional.conv2d(x, *w["conv1"], padding=1), w["prelu1"][0])
    expected = torch.sigmoid(torch.nn.functional.conv2d(x, *w["conv2"], padding=1))[0, 0].numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert not np.shares_memory(prob, forward(image))


def test_load_deploy_refuses_mismatched_or_corrupt_weights(workdir):
    train("solver.prototxt")
    (workdir / "nets/wide_deploy.prototxt").write_text(DEPLOY_NET + LAYERS % 4)
    with pytest.raises(InputError, match=r"layer 'conv1' blob 0: shape \(3, 1, 3, 3\) in the file, "
                                         r"\(4, 1, 3, 3\) in the net"):
        load_deploy("nets/wide_deploy.prototxt", "runs/tiny/tiny_iter_4.caffemodel")
    (workdir / "bad.caffemodel").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(InputError, match="bad.caffemodel"):
        load_deploy("nets/tiny_deploy.prototxt", "bad.caffemodel")
