"""`plaquenet train` (plaquenet/train.py): an earlier run is never overwritten
silently, and the time the schedule will take is said before it is spent."""

from pathlib import Path

import pytest

from plaquenet.engines.run import estimate_line
from plaquenet.errors import InputError
from plaquenet.train import earlier_run_files, train


def _longer(workdir: Path, max_iter: int) -> None:
    solver = workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 4", f"max_iter: {max_iter}"))


def test_the_estimate_comes_once_after_the_first_iterations_and_counts_the_rest(train_workdir):
    _longer(train_workdir, 8)
    lines = []
    train("solver.prototxt", on_estimate=lines.append)
    assert len(lines) == 1
    assert "on cpu" in lines[0] and "remaining 4 iterations" in lines[0]  # timed on iterations 2-4 of 8


def test_a_long_schedule_says_how_to_shorten_it():
    line = estimate_line(2.0, 75_000, "cpu")
    assert "41.7 h" in line and "max_iter" in line and "--device cuda" in line
    assert "max_iter" not in estimate_line(0.1, 100, "cpu")  # ten seconds need no advice


def test_an_earlier_run_is_refused_then_replaced_with_force(train_workdir):
    train("solver.prototxt", on_estimate=lambda line: None)
    with pytest.raises(InputError, match="--force"):
        train("solver.prototxt")
    stale = train_workdir / "runs/tiny/tiny_iter_100.caffemodel"  # a longer earlier run's last snapshot
    stale.write_bytes(b"")
    stale_position = train_workdir / "runs/tiny/tiny_iter_100.data_position.json"   # and its data position
    stale_position.write_text("{}")
    train("solver.prototxt", force=True, on_estimate=lambda line: None)
    assert not stale.exists()  # latest_snapshot would otherwise pick the old run's
    assert not stale_position.exists()
    assert sorted(p.name for p in earlier_run_files(Path("runs/tiny/tiny"))) == [
        "tiny_iter_2.caffemodel", "tiny_iter_2.data_position.json", "tiny_iter_2.solverstate",
        "tiny_iter_4.caffemodel", "tiny_iter_4.data_position.json", "tiny_iter_4.solverstate",
        "train.csv", "train.log"]


def test_resuming_from_a_snapshot_needs_no_force(train_workdir):
    train("solver.prototxt", on_estimate=lambda line: None)
    _longer(train_workdir, 6)
    result = train("solver.prototxt", snapshot="runs/tiny/tiny_iter_4.solverstate", on_estimate=lambda line: None)
    assert result.iterations == 6


def test_a_device_this_machine_cannot_give_is_one_input_error(train_workdir):
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is available here")
    with pytest.raises(InputError, match="no CUDA device"):
        train("solver.prototxt", device="gpu")
    assert not (train_workdir / "runs").exists()  # refused before anything was written


def test_an_earlier_run_under_a_derived_snapshot_prefix_is_refused_too(train_workdir):
    # No snapshot_prefix: Caffe (99bd997) writes solver_iter_N.* beside solver.prototxt.
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace('snapshot_prefix: "runs/tiny/tiny"', ""))
    train("solver.prototxt", on_estimate=lambda line: None)
    with pytest.raises(InputError, match="holds an earlier run"):
        train("solver.prototxt")
    assert [p.name for p in earlier_run_files("solver")] == [
        "solver_iter_2.caffemodel", "solver_iter_2.data_position.json", "solver_iter_2.solverstate",
        "solver_iter_4.caffemodel", "solver_iter_4.data_position.json", "solver_iter_4.solverstate",
        "train.csv", "train.log"]


@pytest.mark.parametrize("solver, prefix, expected", [
    ("solver.prototxt", None, "solver"),
    ("cfg/a.b.prototxt", None, "cfg/a.b"),          # Boost's extension: from the last dot
    ("cfg/solver", None, "cfg/solver"),
    ("cfg/solver.prototxt", "runs/x", "runs/x"),    # not a directory: as written
    ("cfg/solver.prototxt", "out", "out/solver"),   # a directory: its stem inside it
    ("cfg/solver.prototxt", "out/", "out/solver"),
])
def test_the_effective_snapshot_prefix_follows_caffe(tmp_path, monkeypatch, solver, prefix, expected):
    from plaquenet.caffe import caffe_pb2
    from plaquenet.engines.run import effective_snapshot_prefix

    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    param = caffe_pb2.SolverParameter() if prefix is None else caffe_pb2.SolverParameter(snapshot_prefix=prefix)
    assert effective_snapshot_prefix(param, solver) == expected
