"""train() like `caffe train` on a tiny net (tests/conftest.py's `train_workdir`): snapshots,
log, resume, a test net."""

import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe.snapshot import (blob_proto, caffemodel_weights, read_caffemodel, read_solverstate,
                                      weights_net, write_caffemodel)
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError


def test_train_writes_caffe_snapshots_and_log(train_workdir):
    result = train("solver.prototxt")
    run = train_workdir / "runs/tiny"
    assert result.run_dir == run.relative_to(train_workdir) and result.iterations == 4
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


def test_resume_is_bit_identical(train_workdir):
    train("solver.prototxt")
    run = train_workdir / "runs/tiny"
    uninterrupted = {s: (run / f"tiny_iter_4.{s}").read_bytes() for s in ("caffemodel", "solverstate")}
    (run / "tiny_iter_4.caffemodel").unlink()
    result = train("solver.prototxt", snapshot="runs/tiny/tiny_iter_2.solverstate")
    assert result.iterations == 4
    for suffix, content in uninterrupted.items():
        assert (run / f"tiny_iter_4.{suffix}").read_bytes() == content, suffix
    log = (run / "train.log").read_text()
    assert "] Restoring previous solver status from runs/tiny/tiny_iter_2.solverstate" in log
    assert log.count("] Solving tiny") == 2          # the resumed run appends


def test_test_net_shares_the_train_weights(train_workdir):
    net, solver = train_workdir / "nets/tiny_train.prototxt", train_workdir / "solver.prototxt"
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 4, phase="TEST") + net.read_text())
    solver.write_text(solver.read_text() + "test_iter: 1\ntest_interval: 2\n")
    train("solver.prototxt")
    log = (train_workdir / "runs/tiny/train.log").read_text()
    assert log.count("] Iteration 0, Testing net (#0)") == 1 and "] Iteration 4, Testing net (#0)" in log
    losses = [float(l.rsplit("loss = ", 1)[1].split()[0]) for l in log.splitlines() if "Test net output #0: loss" in l]
    assert len(losses) == 3 and losses[-1] < losses[0]        # the test net sees the trained weights


def test_weights_and_snapshot_are_exclusive_and_bad_solvers_refused(train_workdir):
    with pytest.raises(InputError, match="not both"):
        train("solver.prototxt", weights="a.caffemodel", snapshot="b.solverstate")
    solver = (train_workdir / "solver.prototxt").read_text()
    (train_workdir / "bad.prototxt").write_text(solver.replace('lr_policy: "step"', 'lr_policy: "cosine"'))
    with pytest.raises(InputError, match="unknown lr_policy 'cosine'"):
        train("bad.prototxt")
    (train_workdir / "rms.prototxt").write_text(solver + 'type: "RMSProp"\n')
    with pytest.raises(InputError, match="solver type 'RMSProp' is not supported"):
        train("rms.prototxt")


def test_test_iter_without_test_interval_is_refused_at_its_line(train_workdir):
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text() + "test_iter: 1\n")
    lines = len(solver.read_text().splitlines())
    with pytest.raises(InputError, match="test_interval must be > 0") as e:
        train("solver.prototxt")
    assert str(e.value).startswith(f"solver.prototxt:{lines}: ")


# --- --weights, as Caffe's LoadNetWeights and Net::CopyTrainedLayersFrom ------

def _weights(value):
    """Every blob of the tiny net (3 channels) filled with `value`."""
    shapes = {"conv1": [(3, 1, 3, 3), (3,)], "prelu1": [(3,)], "conv2": [(1, 3, 3, 3), (1,)]}
    return {k: [np.full(s, value, np.float32) for s in v] for k, v in shapes.items()}


def _loaded(train_workdir, weights):
    """The weights of the iteration-0 snapshot of a run with max_iter 0 from `weights`."""
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 0").replace("snapshot: 2", "snapshot: 0"))
    train("solver.prototxt", weights=weights)
    return caffemodel_weights(read_caffemodel(train_workdir / "runs/tiny/tiny_iter_0.caffemodel"))


def test_a_layer_given_twice_in_a_caffemodel_takes_the_later_copy(train_workdir):
    model = weights_net(_weights(1.0), tiny_nets.LAYER_TYPES)
    model.layer.add(name="conv1").blobs.extend(blob_proto(a) for a in _weights(2.0)["conv1"])
    write_caffemodel(train_workdir / "w.caffemodel", model)
    loaded = _loaded(train_workdir, "w.caffemodel")
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 2.0, "prelu1": 1.0, "conv2": 1.0}


def test_a_weights_list_is_copied_in_turn(train_workdir):
    write_caffemodel(train_workdir / "a.caffemodel", tiny_nets.tiny_weights(_weights(1.0)))
    write_caffemodel(train_workdir / "b.caffemodel", tiny_nets.tiny_weights({"prelu1": _weights(3.0)["prelu1"]}))
    loaded = _loaded(train_workdir, "a.caffemodel , b.caffemodel")   # names are trimmed, as in Caffe
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 1.0, "prelu1": 3.0, "conv2": 1.0}


@pytest.mark.parametrize("weights, message", [("a.caffemodel,", "empty file name"),
                                              ("a.caffemodel,nope.caffemodel", "nope.caffemodel: cannot read")])
def test_a_bad_name_in_the_weights_list_is_refused(train_workdir, weights, message):
    write_caffemodel(train_workdir / "a.caffemodel", tiny_nets.tiny_weights(_weights(1.0)))
    with pytest.raises(InputError, match=message):
        train("solver.prototxt", weights=weights)


def test_a_caffemodel_layer_without_blobs_for_a_layer_with_blobs_is_refused(train_workdir):
    model = tiny_nets.tiny_weights(_weights(1.0))
    model.layer.add(name="prelu1")   # Caffe: CHECK_EQ(1, 0) "Incompatible number of blobs"
    write_caffemodel(train_workdir / "w.caffemodel", model)
    with pytest.raises(InputError, match="w.caffemodel: layer 'prelu1': 0 blobs in the file, 1 in the net"):
        train("solver.prototxt", weights="w.caffemodel")


def test_a_layer_only_the_test_net_has_gets_the_weights(train_workdir):
    net, solver = train_workdir / "nets/tiny_train.prototxt", train_workdir / "solver.prototxt"
    probe = ('layer { name: "probe" type: "Convolution" bottom: "prob" top: "probe" include { phase: TEST } '
             'convolution_param { num_output: 1 kernel_size: 1 } }\n')
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 2, phase="TEST") + net.read_text() + probe)
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 0") + "test_iter: 1\ntest_interval: 1\n")
    weights = dict(_weights(0.5), probe=[np.full((1, 1, 1, 1), 2.0, np.float32), np.full(1, 7.0, np.float32)])
    write_caffemodel(train_workdir / "w.caffemodel", weights_net(weights))
    train("solver.prototxt", weights="w.caffemodel")
    log = (train_workdir / "runs/tiny/train.log").read_text()
    # probe = 2 * prob + 7 with 0 <= prob <= 1: outputs in [7, 9], not the filler's 0
    probe_values = [float(l.split("probe = ")[1].split()[0]) for l in log.splitlines() if "probe = " in l]
    assert probe_values and all(7 <= v <= 9 for v in probe_values), probe_values
