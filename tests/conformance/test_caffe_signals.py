"""SIGINT and SIGHUP sent to real `caffe train` (the oracle, docs/CAFFE_ORACLE.md)
and to `plaquenet train` on the same tiny net: the same exit status (0), the
same snapshot files, the same log lines about them.

A signal is sent when a given line shows up in the log (the next one when the
previous signal's snapshot has been logged). Where it lands depends on timing
(Caffe runs this net about 100 times faster), so iteration numbers are masked
and what is compared is the structure, checked in both logs: a snapshot is of
the iteration after the last update (`Iteration K, lr` then `_iter_<K+1>`), a
"snapshot" effect goes on with that iteration, "stop" ends the run with
"Optimization stopped early.". A stop during a test is at iteration 0 in both,
so there the lines are compared as they are. Source: tools/caffe.cpp:51-56,
218-220, solver.cpp:269-282, 303-313, 355-398 and util/signal_handler.cpp at 99bd997."""

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import pytest

import tiny_nets

SOLVER = ('net: "net.prototxt"\nbase_lr: 0.001\nlr_policy: "fixed"\nmax_iter: 100000000\ndisplay: 1\n'
          'snapshot_prefix: "snap/m"\nrandom_seed: 0\n')
DURING_A_TEST = "test_iter: 100000000\ntest_interval: 1000\n"   # the test at iteration 0 outlasts the signals
WAIT_S = 60

GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ (\S+:\d+)\] (.*)$")
EVENTS = re.compile(r"Snapshotting |Optimization |Test interrupted|Iteration \d+, Testing net")
Plan = Sequence[Tuple[str, signal.Signals]]   # (line to wait for, signal to send then)
SNAPSHOT_LOGGED = "Snapshotting solver state"


def _folder(base: Path, extra: str = "") -> Path:
    return tiny_nets.write_run_folder(base, SOLVER + extra, tiny_nets.two_conv_train("list.txt", 2), rows=4, tile=8,
                                      data="d.h5", seed=3, label_above=0.5)


def _signalled(command: List[str], cwd: Path, log: Path, plan: Plan) -> Tuple[int, str, str]:
    """Run `command`, sending each signal of `plan` once its line is in `log`
    (after the previous one's); (exit status, log text, stdout)."""
    with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
        process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=err)
        try:
            deadline, seen = time.monotonic() + WAIT_S, 0
            for line, signum in plan:
                while True:
                    text = log.read_text() if log.exists() else ""
                    found = text.find(line, seen)
                    if found >= 0:
                        break
                    assert process.poll() is None and time.monotonic() < deadline, \
                        f"no {line!r} in {log} (exit {process.poll()}):\n{text[-2000:]}"
                    time.sleep(0.01)
                seen = found + len(line)
                process.send_signal(signum)
            status = process.wait(timeout=WAIT_S)
        finally:
            process.kill()
    return status, log.read_text(), (cwd / "stdout.txt").read_text()


def _caffe(caffe, folder: Path, flags: Sequence[str], plan: Plan) -> Tuple[int, str, Path]:
    """Real `caffe train` in the root's copy of `folder`, its glog lines in stderr.txt."""
    copy = caffe.put(folder, folder.name)
    for stale in ("stdout.txt", "stderr.txt"):
        (copy / stale).unlink(missing_ok=True)
    # exec: the process we signal is caffe itself (chroot and sh exec in turn)
    command = ["chroot", str(caffe.root), "sh", "-c",
               f"cd {caffe.inside(folder.name)} && GLOG_logtostderr=1 exec caffe train --solver=solver.prototxt "
               + " ".join(flags)]
    status, log, _ = _signalled(command, copy, copy / "stderr.txt", plan)
    return status, log, copy


def _ours(folder: Path, flags: Sequence[str], plan: Plan) -> Tuple[int, str, str]:
    command = [sys.executable, "-m", "plaquenet.cli", "train", "--solver", "solver.prototxt", *flags]
    return _signalled(command, folder, folder / "snap/train.log", plan)


def _events(log: str) -> List[Tuple[str, str]]:
    """(tag, message with numbers as N) of the lines about snapshots, tests and the end."""
    found = []
    for line in log.splitlines():
        m = GLOG.match(line)
        if m and EVENTS.match(m.group(2)):
            found.append((m.group(1), re.sub(r"\d+", "N", m.group(2))))
    return found


def _snapshot_iterations(log: str, folder: Path) -> List[int]:
    """The iterations snapshotted, in log order, after checking each against
    the updates around it and the files in snap/."""
    lines = log.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = re.search(r"Snapshotting to binary proto file snap/m_iter_(\d+)\.caffemodel$", line)
        if not m:
            continue
        it = int(m.group(1))
        updates = [int(u) for u in re.findall(r"\] Iteration (\d+), lr = ", "\n".join(lines[:i]))]
        assert (updates or [-1])[-1] == it - 1, line        # taken after the update of iteration it-1
        later = [int(d) for d in re.findall(r"\] Iteration (\d+) \(", "\n".join(lines[i:]))]
        assert not later or later[0] == it, line            # and training goes on with iteration it
        found.append(it)
    files = sorted(p.name for p in (folder / "snap").iterdir() if p.suffix in (".caffemodel", ".solverstate"))
    assert files == sorted(f"m_iter_{it}.{s}" for it in set(found) for s in ("caffemodel", "solverstate"))
    return found


# name: (solver extra, caffe train's flags, plaquenet train's flags, plan, snapshots written)
CASES = {
    "sigint stops": ("", [], [], [("] Iteration 3 (", signal.SIGINT)], 1),
    "sigint snapshots, sighup stops": (
        "", ["--sigint_effect=snapshot", "--sighup_effect=stop"], ["--sigint-effect", "snapshot", "--sighup-effect",
                                                                    "stop"],
        [("] Iteration 3 (", signal.SIGINT), (SNAPSHOT_LOGGED, signal.SIGHUP)], 2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_signals_during_training_do_what_they_do_in_caffe_train(case, caffe, tmp_path):
    extra, caffe_flags, our_flags, plan, snapshots = CASES[case]
    folder = _folder(tmp_path / "run", extra)
    their_status, their_log, copy = _caffe(caffe, folder, caffe_flags, plan)
    our_status, our_log, out = _ours(folder, our_flags, plan)

    assert their_status == our_status == 0
    assert _events(our_log) == _events(their_log)
    assert _events(their_log)[-2:] == [("solver.cpp:311", "Optimization stopped early."),
                                       ("caffe.cpp:250", "Optimization Done.")]   # Caffe's word, stated
    theirs, ours = _snapshot_iterations(their_log, copy), _snapshot_iterations(our_log, folder)
    assert len(theirs) == len(ours) == snapshots
    assert f"stopped early (a signal) at iteration {ours[-1]}" in out


def test_a_stop_during_a_test_interrupts_it_as_in_caffe_train(caffe, tmp_path):
    """SIGHUP (snapshot) then SIGINT (stop) while the test at iteration 0 runs."""
    folder = _folder(tmp_path / "run", DURING_A_TEST)
    plan = [("] Iteration 0, Testing net (#0)", signal.SIGHUP), (SNAPSHOT_LOGGED, signal.SIGINT)]
    their_status, their_log, copy = _caffe(caffe, folder, [], plan)
    our_status, our_log, _ = _ours(folder, [], plan)

    assert their_status == our_status == 0
    expected = [("solver.cpp:347", "Iteration 0, Testing net (#0)"),
                ("solver.cpp:464", "Snapshotting to binary proto file snap/m_iter_0.caffemodel"),
                ("sgd_solver.cpp:284", "Snapshotting solver state to binary proto file snap/m_iter_0.solverstate"),
                ("solver.cpp:396", "Test interrupted."),
                ("solver.cpp:464", "Snapshotting to binary proto file snap/m_iter_0.caffemodel"),   # snapshot_after_train
                ("sgd_solver.cpp:284", "Snapshotting solver state to binary proto file snap/m_iter_0.solverstate"),
                ("solver.cpp:311", "Optimization stopped early."),
                ("caffe.cpp:250", "Optimization Done.")]
    unmasked = [(tag, msg) for tag, msg in (GLOG.match(l).groups() for l in their_log.splitlines() if GLOG.match(l))
                if EVENTS.match(msg)]
    assert unmasked == expected
    ours = [(tag, msg) for tag, msg in (GLOG.match(l).groups() for l in our_log.splitlines() if GLOG.match(l))
            if EVENTS.match(msg)]
    assert ours == expected
    assert _snapshot_iterations(their_log, copy) == _snapshot_iterations(our_log, folder) == [0, 0]


def test_the_caffe_engine_passes_ctrl_c_on_to_caffe_train(caffe, tmp_path):
    """`plaquenet train --engine caffe` runs Caffe in its own session and forwards
    the SIGINT it gets: Caffe snapshots and stops, plaquenet exits 0."""
    folder = caffe.put(_folder(tmp_path / "engine"), "engine")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "caffe").write_text(f'#!/bin/sh\nexec {shutil.which("chroot")} {caffe.root} sh -c '
                                   f'\'cd {caffe.inside("engine")} && GLOG_logtostderr=1 exec caffe "$@"\' caffe "$@"\n')
    (bin_dir / "caffe").chmod(0o755)
    command = ["env", f"PATH={bin_dir}:/usr/bin:/bin", sys.executable, "-m", "plaquenet.cli", "train",
               "--engine", "caffe", "--solver", "solver.prototxt"]
    status, log, out = _signalled(command, folder, folder / "snap/train.log", [("] Iteration 3 (", signal.SIGINT)])
    assert status == 0
    assert _events(log)[-4:] == [("solver.cpp:464", "Snapshotting to binary proto file snap/m_iter_N.caffemodel"),
                                 ("sgd_solver.cpp:284", "Snapshotting solver state to binary proto file "
                                                        "snap/m_iter_N.solverstate"),
                                 ("solver.cpp:311", "Optimization stopped early."),
                                 ("caffe.cpp:250", "Optimization Done.")]
    (stop,) = _snapshot_iterations(log, folder)
    assert "stopped early (a signal)" in out and f"m_iter_{stop}.caffemodel" in out
