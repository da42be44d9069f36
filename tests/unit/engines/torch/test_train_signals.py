"""SIGINT and SIGHUP during train(), as `caffe train` handles them (Solver::Step
and Solver::Test at 99bd997; engines/signals.py). The signals are real: this
process sends them to itself from a log line (the display of an iteration, or
"Testing net"), so the iteration they land in is known; one test sends
SIGINT to a `plaquenet train` process, as Ctrl-C does.

The solver is tests/conftest.py's `train_workdir` one, run for MAX_ITER
iterations with a snapshot every SNAPSHOT."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from plaquenet.caffe.log import CaffeLog
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError

MAX_ITER, SNAPSHOT = 10, 4
INT, HUP = signal.SIGINT, signal.SIGHUP


@pytest.fixture
def workdir(train_workdir):
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 4  snapshot: 2", f"max_iter: {MAX_ITER}  snapshot: {SNAPSHOT}"))
    return train_workdir


def _signal_at(monkeypatch, method: str, plan: Dict[int, List[int]]) -> None:
    """Send this process plan[it] right after CaffeLog.`method` logs iteration `it`
    (`iteration`: the display of iteration it, before its update; `testing`: a test at it)."""
    original = getattr(CaffeLog, method)

    def logged_then_signalled(self, it, *args):
        original(self, it, *args)
        for signum in plan.get(it, []):
            assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler)
            os.kill(os.getpid(), signum)
    monkeypatch.setattr(CaffeLog, method, logged_then_signalled)


def _snapshots(workdir: Path) -> List[int]:
    found = [int(re.search(r"_iter_(\d+)\.", p.name).group(1)) for p in (workdir / "runs/tiny").glob("tiny_iter_*.*")
             if p.suffix in (".caffemodel", ".solverstate")]
    assert sorted(found) == sorted(2 * sorted(set(found)))   # each with both files
    return sorted(set(found))


def _tail(workdir: Path, n: int) -> List[str]:
    """The last n lines of train.log as `tag] message`."""
    lines = (workdir / "runs/tiny/train.log").read_text().splitlines()
    return [re.search(r"\S+:\d+\] .*", line).group() for line in lines[-n:]]


def test_sigint_snapshots_the_iteration_it_stops_at_and_ends_the_run(workdir, monkeypatch):
    _signal_at(monkeypatch, "iteration", {5: [INT]})   # read after iteration 5's update: iter_ is 6
    result = train("solver.prototxt")
    assert (result.stopped_early, result.iterations, str(result.last_snapshot)) == (
        True, 6, "runs/tiny/tiny_iter_6.caffemodel")
    assert _snapshots(workdir) == [4, 6]
    assert _tail(workdir, 4) == [
        "solver.cpp:464] Snapshotting to binary proto file runs/tiny/tiny_iter_6.caffemodel",
        "sgd_solver.cpp:284] Snapshotting solver state to binary proto file runs/tiny/tiny_iter_6.solverstate",
        "solver.cpp:311] Optimization stopped early.",
        "caffe.cpp:250] Optimization Done."]
    rows = (workdir / "runs/tiny/train.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == [str(i) for i in range(6)]   # whole rows, iterations 0-5
    assert "stopped early (a signal) at iteration 6" in str(result)
    assert not list(workdir.rglob("*.partial"))


def test_a_stop_on_a_snapshot_iteration_writes_that_snapshot_once(workdir, monkeypatch):
    _signal_at(monkeypatch, "iteration", {3: [INT]})
    train("solver.prototxt")
    assert _snapshots(workdir) == [4]
    assert (workdir / "runs/tiny/train.log").read_text().count("Snapshotting to binary proto file") == 1


def test_a_run_stopped_by_sigint_resumes_to_the_weights_of_an_uninterrupted_run(workdir, monkeypatch):
    train("solver.prototxt")
    uninterrupted = caffemodel_weights(read_caffemodel(workdir / f"runs/tiny/tiny_iter_{MAX_ITER}.caffemodel"))
    with monkeypatch.context() as patched:
        _signal_at(patched, "iteration", {5: [INT]})
        train("solver.prototxt")   # over the first run: its snapshots are rewritten
    assert train("solver.prototxt", snapshot="runs/tiny/tiny_iter_6.solverstate").iterations == MAX_ITER
    resumed = caffemodel_weights(read_caffemodel(workdir / f"runs/tiny/tiny_iter_{MAX_ITER}.caffemodel"))
    for name, blobs in uninterrupted.items():   # 6 is an even batch count: HDF5Data restarts at row 0 in step
        for a, b in zip(blobs, resumed[name]):
            np.testing.assert_array_equal(a, b)


# (sigint_effect, sighup_effect, signals sent at the display of iteration N, snapshots, stopped early)
EFFECTS = [
    pytest.param("stop", "snapshot", {2: [HUP], 6: [INT]}, [3, 4, 7], True, id="sighup snapshots, sigint stops"),
    pytest.param("snapshot", "stop", {2: [INT], 6: [HUP]}, [3, 4, 7], True, id="the effects swapped"),
    pytest.param("none", "snapshot", {2: [INT], 5: [INT]}, [4, 8, 10], False, id="sigint ignored"),
    pytest.param("stop", "none", {2: [HUP]}, [4, 8, 10], False, id="sighup ignored"),
    # Both pending at one check: SIGHUP's effect first; SIGINT's waits for the next iteration.
    pytest.param("stop", "snapshot", {2: [INT, HUP]}, [3, 4], True, id="sighup answered first"),
]


@pytest.mark.parametrize("sigint_effect, sighup_effect, plan, snapshots, stopped", EFFECTS)
def test_each_signal_has_the_effect_its_option_names(workdir, monkeypatch, sigint_effect, sighup_effect, plan,
                                                     snapshots, stopped):
    _signal_at(monkeypatch, "iteration", plan)
    result = train("solver.prototxt", sigint_effect=sigint_effect, sighup_effect=sighup_effect)
    assert _snapshots(workdir) == snapshots
    assert result.stopped_early == stopped and result.iterations == (snapshots[-1] if stopped else MAX_ITER)
    log = (workdir / "runs/tiny/train.log").read_text()
    assert ("solver.cpp:311] Optimization stopped early." in log) == stopped
    assert ("solver.cpp:332] Optimization Done." in log) == (not stopped)


def test_without_snapshot_after_train_a_stop_writes_no_snapshot(workdir, monkeypatch):
    solver = workdir / "solver.prototxt"
    solver.write_text(solver.read_text() + "snapshot_after_train: false\n")
    _signal_at(monkeypatch, "iteration", {5: [INT]})
    result = train("solver.prototxt")
    assert _snapshots(workdir) == [4] and str(result.last_snapshot) == "runs/tiny/tiny_iter_4.caffemodel"
    assert _tail(workdir, 2) == ["solver.cpp:311] Optimization stopped early.", "caffe.cpp:250] Optimization Done."]


@pytest.fixture
def with_test_net(workdir):
    """A test net run at iterations 0, 4 and 8 (and 10), 3 test iterations each."""
    import tiny_nets
    net = workdir / "nets/tiny_train.prototxt"
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 2, phase="TEST") + net.read_text())
    (workdir / "solver.prototxt").write_text((workdir / "solver.prototxt").read_text() +
                                             "test_iter: 3\ntest_interval: 4\n")
    return workdir


def test_sigint_during_a_test_interrupts_it_and_stops_the_run(with_test_net, monkeypatch):
    _signal_at(monkeypatch, "testing", {4: [INT]})
    result = train("solver.prototxt")
    assert (result.stopped_early, result.iterations) == (True, 4)
    assert _snapshots(with_test_net) == [4]   # the interval's; snapshot_after_train has nothing to add
    assert _tail(with_test_net, 4) == ["solver.cpp:347] Iteration 4, Testing net (#0)", "solver.cpp:396] Test interrupted.",
                                       "solver.cpp:311] Optimization stopped early.", "caffe.cpp:250] Optimization Done."]


def test_sighup_during_a_test_snapshots_and_the_test_goes_on(with_test_net, monkeypatch):
    _signal_at(monkeypatch, "testing", {0: [HUP]})
    result = train("solver.prototxt")
    assert not result.stopped_early and _snapshots(with_test_net) == [0, 4, 8, 10]
    log = (with_test_net / "runs/tiny/train.log").read_text()
    first_test = log[log.index("Iteration 0, Testing net (#0)"):log.index("Iteration 0 (")]
    assert "Snapshotting to binary proto file runs/tiny/tiny_iter_0.caffemodel" in first_test
    assert "Test net output #0" in first_test and "Test interrupted." not in log


def test_handlers_are_in_place_only_while_training(workdir, monkeypatch):
    before = signal.getsignal(INT), signal.getsignal(HUP)
    _signal_at(monkeypatch, "iteration", {2: [HUP]})   # the assertion in the hook: a handler is there
    train("solver.prototxt")
    assert (signal.getsignal(INT), signal.getsignal(HUP)) == before


def test_a_bad_effect_is_refused_before_anything_is_written(workdir):
    with pytest.raises(InputError, match="^--sigint-effect: 'STOP' is not a signal effect"):
        train("solver.prototxt", sigint_effect="STOP")
    assert not (workdir / "runs").exists()


def test_ctrl_c_on_plaquenet_train_ends_it_with_a_snapshot_and_exit_status_0(workdir):
    solver = workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace(f"max_iter: {MAX_ITER}  snapshot: {SNAPSHOT}",
                                                 "max_iter: 100000000  snapshot: 0"))
    log = workdir / "runs/tiny/train.log"
    process = subprocess.Popen([sys.executable, "-m", "plaquenet.cli", "train", "--solver", "solver.prototxt"],
                               cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and "] Iteration 3 (" in log.read_text()):
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            time.sleep(0.02)
        process.send_signal(INT)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    (stop,) = _snapshots(workdir)   # wherever the signal landed: the iteration after the last one run
    assert stop == 1 + max(int(it) for it in re.findall(r"\] Iteration (\d+), lr = ", log.read_text()))
    assert _tail(workdir, 2) == ["solver.cpp:311] Optimization stopped early.", "caffe.cpp:250] Optimization Done."]
    assert f"stopped early (a signal) at iteration {stop}" in out


def test_a_snapshot_in_the_middle_of_a_test_resumes_bit_for_bit_with_shuffled_data(with_test_net, monkeypatch):
    """A SIGHUP after the first of three test iterations at iteration 4 rewrites
    tiny_iter_4 mid-test. The resumed run repeats that whole test (Caffe tests
    at the start of an iteration), so the data position saved is the test's
    start: otherwise the test net's rows, and with shuffle the rand() draws
    that the train net's later shuffles share, would differ."""
    import plaquenet.engines.torch.train as torch_train
    net = with_test_net / "nets/tiny_train.prototxt"
    net.write_text(net.read_text().replace("batch_size: 2", "batch_size: 2 shuffle: true"))
    assert net.read_text().count("shuffle: true") == 2
    solver = with_test_net / "solver.prototxt"   # long enough for a shuffle after the test at 8 to be read
    solver.write_text(solver.read_text().replace(f"max_iter: {MAX_ITER}", "max_iter: 14"))
    train("solver.prototxt")
    uninterrupted = caffemodel_weights(read_caffemodel(with_test_net / "runs/tiny/tiny_iter_14.caffemodel"))

    outputs, testing = torch_train._output_values, []
    with monkeypatch.context() as patched:
        original_testing = CaffeLog.testing

        def testing_at(self, it, *args):
            testing.append(it)
            original_testing(self, it, *args)

        def output_values_then_hup(net, blobs):
            values = outputs(net, blobs)
            if testing and testing[-1] == 4 and not getattr(output_values_then_hup, "sent", False):
                output_values_then_hup.sent = True   # type: ignore[attr-defined]
                os.kill(os.getpid(), HUP)            # after the first test iteration of iteration 4
            return values
        patched.setattr(CaffeLog, "testing", testing_at)
        patched.setattr(torch_train, "_output_values", output_values_then_hup)
        train("solver.prototxt")   # over the first run: its snapshots are rewritten
    log = (with_test_net / "runs/tiny/train.log").read_text()
    test_at_4 = log[log.index("Iteration 4, Testing net (#0)"):log.index("Iteration 4 (")]
    assert "Snapshotting to binary proto file runs/tiny/tiny_iter_4.caffemodel" in test_at_4   # mid-test
    assert train("solver.prototxt", snapshot="runs/tiny/tiny_iter_4.solverstate").iterations == 14
    resumed = caffemodel_weights(read_caffemodel(with_test_net / "runs/tiny/tiny_iter_14.caffemodel"))
    for name, blobs in uninterrupted.items():
        for a, b in zip(blobs, resumed[name]):
            np.testing.assert_array_equal(a, b)
