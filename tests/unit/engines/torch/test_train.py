"""train() like `caffe train` on a tiny net (tests/conftest.py's `train_workdir`): snapshots,
log, resume, a test net."""

import pytest

import tiny_nets
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, read_solverstate
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
