"""`plaquenet train --devices 2`: two real worker processes (gloo, CPU) train
as Caffe's multi-GPU `caffe train` does (engines/torch/distributed.py), which
makes two workers of batch B the same computation as one process of batch 2B
reading the same rows (Caffe's CPU build has no multi-GPU: the oracle here is
its source, parallel.cpp and hdf5_data_layer.cpp, and this equivalence).

The tiny net reads 13 shuffled tiles from two files, so batches span files,
wrap around and are reshuffled: the rows a worker skips must still advance
its stream and its rand() exactly as the single process's do. clip_gradients
1 clips at every iteration: the clipping must see the averaged gradient
(Solver::Step: on_gradients_ready, then ApplyUpdate)."""

import json

import h5py
import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel
from plaquenet.engines.torch.train import train as engine_train
from plaquenet.errors import InputError
from plaquenet.train import train

SOLVER = ('net: "{net}"\n'
          'base_lr: 0.2  momentum: 0.9  weight_decay: 0.01  clip_gradients: 1\n'
          'lr_policy: "step"  gamma: 0.5  stepsize: 4\n'
          'display: 1  max_iter: 6  snapshot: 3\n'
          'snapshot_prefix: "{run}/tiny"\n'
          'random_seed: 7\n')


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Nets of batch 2 (one per worker) and 4 (one process), 13 tiles of 6x6
    in two files (8 + 5 rows), shuffled; a solver for each."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    (tmp_path / "tiles").mkdir()
    for name, rows in (("a.h5", 8), ("b.h5", 5)):
        label = (rng.random((rows, 1, 6, 6)) > 0.7).astype(np.float32)
        with h5py.File(tmp_path / "tiles" / name, "w") as f:
            f["data"] = (label + rng.normal(0, 0.3, label.shape)).astype(np.float32)
            f["label"] = label
    (tmp_path / "tiles/train.txt").write_text("tiles/a.h5\ntiles/b.h5\n")
    for batch in (2, 4):
        net = tiny_nets.two_conv_train("tiles/train.txt", batch).replace(
            f"batch_size: {batch} }}", f"batch_size: {batch} shuffle: true }}")
        assert "shuffle: true" in net
        (tmp_path / f"net{batch}.prototxt").write_text(net)
        (tmp_path / f"solver{batch}.prototxt").write_text(SOLVER.format(net=f"net{batch}.prototxt", run=f"run{batch}"))
    return tmp_path


def _weights(path):
    return caffemodel_weights(read_caffemodel(path))


def test_two_workers_of_batch_2_end_as_one_process_of_batch_4(workdir):
    two = train("solver2.prototxt", devices=2)
    one = engine_train("solver4.prototxt")
    assert two.iterations == one.iterations == 6
    ours, theirs = _weights(workdir / "run2/tiny_iter_6.caffemodel"), _weights(workdir / "run4/tiny_iter_6.caffemodel")
    start = _weights(workdir / "run4/tiny_iter_3.caffemodel")
    for layer in theirs:
        for a, b, s in zip(ours[layer], theirs[layer], start[layer]):
            # float noise (sums in another order), where reading other rows or summing instead of
            # averaging the gradients moves the weights by far more than this
            assert tiny_nets.relative_difference(a, b) < 1e-5, layer
            assert tiny_nets.relative_difference(s, b) > 1e-3, f"{layer} barely moved: the comparison says nothing"


def test_two_workers_write_one_log_and_one_set_of_snapshots(workdir):
    train("solver2.prototxt", devices=2)
    names = sorted(p.name for p in (workdir / "run2").iterdir())
    assert names == ["net2.prototxt", "solver2.prototxt", "tiny_iter_3.caffemodel", "tiny_iter_3.data_position.json",
                     "tiny_iter_3.solverstate", "tiny_iter_6.caffemodel", "tiny_iter_6.data_position.json",
                     "tiny_iter_6.solverstate", "train.csv", "train.log"]
    log = (workdir / "run2/train.log").read_text()
    assert log.count("] Solving tiny") == 1 and log.count("] Iteration 5, lr = ") == 1
    assert log.count("Snapshotting to binary proto file run2/tiny_iter_6.caffemodel") == 1
    assert "2 workers (cpu)" in log
    rows = (workdir / "run2/train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(6)]
    position = json.loads((workdir / "run2/tiny_iter_3.data_position.json").read_text())
    # each worker's own place in the row stream: rank 1 has walked one row further
    offsets = [w["layers"][0]["offset"] for w in position["workers"]]
    assert offsets == [3 * 4 - 1, 3 * 4]


def test_two_workers_resume_where_the_snapshot_left_every_worker(workdir):
    train("solver2.prototxt", devices=2)
    uninterrupted = (workdir / "run2/tiny_iter_6.caffemodel").read_bytes()
    (workdir / "run2/tiny_iter_6.caffemodel").unlink()
    result = train("solver2.prototxt", devices=2, snapshot="run2/tiny_iter_3.solverstate")
    assert result.iterations == 6
    assert (workdir / "run2/tiny_iter_6.caffemodel").read_bytes() == uninterrupted
    assert "Data position restored from run2/tiny_iter_3.data_position.json" in (workdir / "run2/train.log").read_text()


@pytest.mark.parametrize("devices, problem", [
    (3, "net2.prototxt: 3 workers for HDF5Data 'data' of batch_size 2"),   # more workers than tiles per batch
    (0, "--devices: must be at least 1"),
])
def test_bad_worker_counts_are_refused_before_any_worker_starts(workdir, devices, problem):
    with pytest.raises(InputError, match=problem):
        train("solver2.prototxt", devices=devices)
    assert not (workdir / "run2").exists()


def _signalled_worker(plan):
    """A launched worker's train(); rank 0 sends itself plan[(method, it)] right after its
    CaffeLog.`method` logs iteration `it`, as Ctrl-C or `kill -HUP` would reach it."""
    import os

    import torch

    from plaquenet.caffe.log import CaffeLog
    torch.set_num_threads(max(1, torch.get_num_threads() // 2))   # as --devices 2 shares the cores out
    for method in {m for m, _ in plan}:
        original = getattr(CaffeLog, method)

        def logged_then_signalled(self, it, *args, _original=original, _method=method):
            _original(self, it, *args)
            if os.environ["RANK"] == "0" and (_method, it) in plan:
                os.kill(os.getpid(), plan[(_method, it)])
        setattr(CaffeLog, method, logged_then_signalled)
    return engine_train("solver2.prototxt")


def test_rank_0s_signals_stop_and_snapshot_every_worker_and_the_run_resumes_exactly(workdir):
    import shutil
    import signal

    from plaquenet.engines.torch.distributed import launch
    solver = workdir / "solver2.prototxt"
    solver.write_text(solver.read_text() + "test_iter: 1  test_interval: 2\n")   # rank 0 alone tests
    train("solver2.prototxt", devices=2)
    uninterrupted = (workdir / "run2/tiny_iter_6.caffemodel").read_bytes()
    shutil.rmtree(workdir / "run2")
    # The same run again, stopped this time: SIGHUP at iteration 1 snapshots and goes on; SIGINT during
    # iteration 4's test snapshots (every worker's position as the test began) and stops: the other
    # worker must follow both
    result = launch(2, _signalled_worker, {"plan": {("iteration", 1): signal.SIGHUP, ("testing", 4): signal.SIGINT}})
    assert result.stopped_early and result.iterations == 4
    assert sorted(p.name for p in (workdir / "run2").glob("*.caffemodel")) == [
        "tiny_iter_2.caffemodel", "tiny_iter_3.caffemodel", "tiny_iter_4.caffemodel"]
    assert "Test interrupted" in (workdir / "run2/train.log").read_text()
    resumed = train("solver2.prototxt", devices=2, snapshot="run2/tiny_iter_4.solverstate")
    assert resumed.iterations == 6 and not resumed.stopped_early
    assert (workdir / "run2/tiny_iter_6.caffemodel").read_bytes() == uninterrupted
