"""Solver fields the oracle (Caffe master 99bd997, docs/CAFFE_ORACLE.md) reads
differently from Caffe 1.0, each case run through `caffe train` in the Caffe
root and through `plaquenet train`:

1. the γ / stepsize CHECKs of SGDSolver::GetLearningRate (sgd_solver.cpp:33-62):
   Caffe aborts at the first update, we refuse with one line (exit 2);
2. the solver's `weights` (solver.cpp:66-75, 116-118, 194-196): loaded into
   every net, replaced by `--weights`, cleared by `--snapshot` (caffe.cpp:222-227);
   an empty .caffemodel copies nothing;
3. `snapshot_prefix` unset or naming a directory (upgrade_proto.cpp:1100-1116):
   the same snapshot file names, and the same `upgrade_proto.cpp:1108`/`1113` line.

The net is tiny_nets' two-convolution net on one HDF5 file of 8 rows of 12x12,
batches of 4."""

import re
import shlex
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, weights_net, write_caffemodel
from plaquenet.cli import main

BATCH, TILE, ROWS = 4, 12, 8
NET = tiny_nets.two_conv_train("list.txt", BATCH, channels=4, kernel_size=5)
BASE = 'net: "net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nmax_iter: 2\ndisplay: 1\nrandom_seed: 0\n'
SOLVER = BASE + 'snapshot_prefix: "snap/m"\n'
FIXED = 'lr_policy: "fixed"\n'


def _write_folder(folder: Path, solver: str, solver_name: str = "solver.prototxt") -> Path:
    """The solver, net.prototxt, list.txt over d0.h5 (ROWS rows), an empty snap/."""
    return tiny_nets.write_run_folder(folder, solver, NET, ROWS, TILE, solver_name)


def _caffe_train(caffe, folder: Path, *flags: str, solver: str = "solver.prototxt") -> Tuple[int, str, Path]:
    """`caffe train --solver=SOLVER FLAGS` in the root's copy of `folder` (copied
    on the first call): (exit status, its log, the copy)."""
    copy = caffe.scratch / folder.name
    if not copy.exists():
        caffe.put(folder, folder.name)
    status = caffe.run("train_status", folder.name, f"--solver={solver}", *(shlex.quote(f) for f in flags))
    return int(status.split()[-1]), (copy / "caffe.log").read_text(), copy


def _ours(folder: Path, monkeypatch, capsys, *flags: str, solver: str = "solver.prototxt") -> Tuple[int, str]:
    """`plaquenet train --solver SOLVER FLAGS` in `folder`: (exit status, stderr)."""
    monkeypatch.chdir(folder)
    capsys.readouterr()
    status = main(["train", "--solver", solver, *flags])
    return status, capsys.readouterr().err


# --- 1. the learning-rate policies' CHECKs -------------------------------------

# name: (schedule lines, what Caffe's log says)
GAMMA = "Check failed: this->param_.gamma() >= 0"
STEPSIZE = "Check failed: this->param_.stepsize() > 0"
REFUSED_SCHEDULES = {
    "step_negative_gamma": ('lr_policy: "step"\ngamma: -0.5\nstepsize: 2\n', GAMMA),
    "step_stepsize_0": ('lr_policy: "step"\ngamma: 0.5\nstepsize: 0\n', STEPSIZE),
    "exp_negative_gamma": ('lr_policy: "exp"\ngamma: -0.5\n', GAMMA),
    "inv_negative_gamma": ('lr_policy: "inv"\ngamma: -0.5\npower: 0.75\n', GAMMA),
    "multistep_negative_gamma": ('lr_policy: "multistep"\ngamma: -0.5\nstepvalue: 1\n', GAMMA),
    "sigmoid_negative_gamma": ('lr_policy: "sigmoid"\ngamma: -0.5\nstepsize: 2\n', GAMMA),
    "sigmoid_stepsize_unset": ('lr_policy: "sigmoid"\ngamma: 0.5\n', STEPSIZE),
}


@pytest.mark.parametrize("case", sorted(REFUSED_SCHEDULES))
def test_a_schedule_caffe_aborts_on_is_refused(case, caffe, tmp_path, monkeypatch, capsys):
    schedule, caffe_says = REFUSED_SCHEDULES[case]
    folder = _write_folder(tmp_path / case, SOLVER + schedule)
    status, log, _ = _caffe_train(caffe, folder)
    assert status != 0 and caffe_says in log, log[-2000:]

    status, err = _ours(folder, monkeypatch, capsys)
    field = "stepsize" if caffe_says == STEPSIZE else "gamma"
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    assert "error: solver.prototxt" in err and f"needs {field}" in err, err


# --- 2. the solver's `weights` -------------------------------------------------

ZERO_ITERATIONS = SOLVER.replace("max_iter: 2", "max_iter: 0") + FIXED


A, B = tiny_nets.random_two_conv_weights(1), tiny_nets.random_two_conv_weights(2)


def _weights_folder(folder: Path, solver: str) -> Path:
    """A folder with a.caffemodel (A), b.caffemodel (conv2 of B only), empty.caffemodel (0 bytes)."""
    _write_folder(folder, solver)
    write_caffemodel(folder / "a.caffemodel", weights_net(A))
    write_caffemodel(folder / "b.caffemodel", weights_net({"conv2": B["conv2"]}))
    (folder / "empty.caffemodel").write_bytes(b"")
    return folder


def _assert_same(ours: Dict[str, List[np.ndarray]], theirs: Dict[str, List[np.ndarray]], **tolerance: float) -> None:
    assert ours.keys() == theirs.keys()
    for name in theirs:
        assert len(ours[name]) == len(theirs[name]), name
        for a, b in zip(ours[name], theirs[name]):
            np.testing.assert_allclose(a.ravel(), b.ravel(), err_msg=name, **tolerance)


# name: (the solver's weights lines, the --weights flag or None, the weights after 0 iterations or None:
#        the filler's, which only the other weights files are checked against)
LOADED = {
    "solver_weights": ('weights: "a.caffemodel"\n', None, A),
    "solver_weights_each_split_at_commas": ('weights: "empty.caffemodel , a.caffemodel"\nweights: "b.caffemodel"\n',
                                            None, dict(A, conv2=B["conv2"])),
    "flag_replaces_solver_weights": ('weights: "missing.caffemodel"\n', "a.caffemodel", A),
    "empty_caffemodel_from_the_flag": ("", "empty.caffemodel", None),
    "empty_caffemodel_from_the_solver": ('weights: "empty.caffemodel"\n', None, None),
}


@pytest.mark.parametrize("case", sorted(LOADED))
def test_solver_weights_load_as_the_oracle_loads_them(case, caffe, tmp_path, monkeypatch, capsys):
    lines, flag, expected = LOADED[case]
    folder = _weights_folder(tmp_path / case, ZERO_ITERATIONS + lines)
    flags = [f"--weights={flag}"] if flag else []
    status, log, copy = _caffe_train(caffe, folder, *flags)
    assert status == 0, log[-2000:]
    theirs = caffemodel_weights(read_caffemodel(copy / "snap/m_iter_0.caffemodel"))

    status, err = _ours(folder, monkeypatch, capsys, *(["--weights", flag] if flag else []))
    assert status == 0, err
    ours = caffemodel_weights(read_caffemodel(folder / "snap/m_iter_0.caffemodel"))
    logged = re.compile(r'^weights: "(.*)"$', re.M)   # in the solver parameters, after caffe.cpp:222-227
    assert logged.findall((folder / "snap/train.log").read_text()) == logged.findall(log) != []
    if expected is None:   # nothing copied: both keep their (differently drawn) filler values
        assert ours.keys() == theirs.keys() == A.keys()
        assert not np.array_equal(theirs["conv1"][0], A["conv1"][0])
    else:
        _assert_same(theirs, expected, rtol=0, atol=0)
        _assert_same(ours, expected, rtol=0, atol=0)


def test_two_iterations_from_the_solver_weights_agree(caffe, tmp_path, monkeypatch, capsys):
    folder = _weights_folder(tmp_path / "two", SOLVER + FIXED + 'weights: "a.caffemodel"\n')
    status, log, copy = _caffe_train(caffe, folder)
    assert status == 0, log[-2000:]
    status, err = _ours(folder, monkeypatch, capsys)
    assert status == 0, err
    theirs, ours = (caffemodel_weights(read_caffemodel(f / "snap/m_iter_2.caffemodel")) for f in (copy, folder))
    _assert_same(ours, theirs, rtol=1e-4, atol=1e-6)
    assert not np.array_equal(theirs["conv1"][0], A["conv1"][0])   # trained from A, not left as A


def test_a_resume_clears_the_solver_weights(caffe, tmp_path, monkeypatch, capsys):
    """`--snapshot` clears `weights` (caffe.cpp:222-223): a missing file named there is never read."""
    folder = _weights_folder(tmp_path / "resume", SOLVER + FIXED)
    status, log, copy = _caffe_train(caffe, folder)
    assert status == 0, log[-2000:]
    status, err = _ours(folder, monkeypatch, capsys)
    assert status == 0, err
    longer = SOLVER.replace("max_iter: 2", "max_iter: 3") + FIXED + 'weights: "missing.caffemodel"\n'
    for f in (copy, folder):
        (f / "solver.prototxt").write_text(longer)
    status, log, _ = _caffe_train(caffe, folder, "--snapshot=snap/m_iter_2.solverstate")
    assert status == 0 and (copy / "snap/m_iter_3.caffemodel").is_file(), log[-2000:]
    status, err = _ours(folder, monkeypatch, capsys, "--snapshot", "snap/m_iter_2.solverstate")
    assert status == 0 and (folder / "snap/m_iter_3.caffemodel").is_file(), err


# --- 3. snapshot_prefix unset or a directory -----------------------------------

# name: (solver file, its snapshot_prefix line)
PREFIXES = {
    "unset": ("solver.prototxt", ""),
    "unset_solver_in_a_folder": ("cfg/tiny.solver.prototxt", ""),
    "a_directory": ("solver.prototxt", 'snapshot_prefix: "snap"\n'),
    "a_directory_with_a_slash": ("cfg/s.prototxt", 'snapshot_prefix: "snap/"\n'),
}


def _snapshot_files(folder: Path) -> List[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.suffix in (".caffemodel", ".solverstate"))


@pytest.mark.parametrize("case", sorted(PREFIXES))
def test_snapshot_files_are_named_as_caffe_names_them(case, caffe, tmp_path, monkeypatch, capsys):
    solver, prefix = PREFIXES[case]
    folder = _write_folder(tmp_path / case, BASE + FIXED + "snapshot: 1\n" + prefix, solver_name=solver)
    status, log, copy = _caffe_train(caffe, folder, solver=solver)
    assert status == 0, log[-2000:]
    theirs = _snapshot_files(copy)
    assert len(theirs) == 4, theirs   # iterations 1 and 2

    status, err = _ours(folder, monkeypatch, capsys, solver=solver)
    assert status == 0, err
    assert _snapshot_files(folder) == theirs
    logged = re.search(r'snapshot_prefix: "([^"]*)"', log).group(1)   # the solver parameters Caffe logs
    (train_log,) = folder.rglob("train.log")
    assert f'snapshot_prefix: "{logged}"' in train_log.read_text()
    # UpgradeSnapshotPrefixProperty's line, the first of both logs: `upgrade_proto.cpp:N] message`
    upgraded = [re.search(r"\S+:\d+\] .*", line).group() for line in log.splitlines() if "upgrade_proto.cpp" in line]
    assert len(upgraded) == 1 and upgraded[0].endswith(f" {logged}"), upgraded
    assert re.search(r"\S+:\d+\] .*", train_log.read_text().splitlines()[0]).group() == upgraded[0]
