"""`caffe train`'s log, line for line: glog's prefix and Caffe's messages,
so that BVLC's tools/extra/parse_log.py (and anything else written for Caffe
logs) reads our train.log.

A glog line is `I1124 01:02:03.456789 12345 solver.cpp:218] message`:
severity, month and day, local time to the microsecond, thread id (width 5),
and the source file and line that prints the message, as the oracle prints
them (BVLC master 99bd997, docs/CAFFE_ORACLE.md: the 1.0 tag has other line
numbers). Numbers are printed like C++'s `ostream << float` (6 significant
digits, %g)."""

import datetime
import re
import threading
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from ..typing import PathLike

# Caffe 1.0 `Iteration 100 (2.5 iter/s, 40s/100 iters), loss = 0.0123`; older
# Caffe and the final line omit the parenthesis: `Iteration 100, loss = 0.0123`.
CAFFE_LOSS_LINE = re.compile(r"(?:^|\] )Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")


def cpp_number(x: float) -> str:
    """A number as C++ ostream prints it by default (like printf %g)."""
    return "%g" % x


def glog_line(source: str, message: str, when: Optional[datetime.datetime] = None,
              severity: str = "I", thread_id: Optional[int] = None) -> str:
    when = when or datetime.datetime.now()
    tid = threading.get_native_id() if thread_id is None else thread_id
    return (f"{severity}{when:%m%d %H:%M:%S}.{when.microsecond:06d} {tid:5d} {source}] "
            f"{message}\n")


class CaffeLog:
    """An open train.log; one method per message that `caffe train` prints.
    `display` lines go through `iteration`, `net_outputs` and `learning_rate`."""

    def __init__(self, path: PathLike, append: bool = False) -> None:
        self.path = Path(path)
        self.file = open(self.path, "a" if append else "w", buffering=1)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> "CaffeLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self, source: str, message: str) -> None:
        self.file.write(glog_line(source, message))

    # --- start ---------------------------------------------------------------
    def snapshot_prefix_upgraded(self, prefix: str, was_directory: bool) -> None:
        """UpgradeSnapshotPrefixProperty, as the solver file is read: the first line of the run."""
        if was_directory:
            self.info("upgrade_proto.cpp:1113", f"snapshot_prefix was a directory and is replaced to {prefix}")
        else:
            self.info("upgrade_proto.cpp:1108", f"snapshot_prefix was not specified and is set to {prefix}")

    def solver_parameters(self, solver_text: str) -> None:
        self.info("solver.cpp:45", "Initializing solver from parameters: \n" + solver_text.rstrip("\n"))

    def training_net(self, net_file: str) -> None:
        # The tag of a LOG_IF whose message is on its next line is the LOG_IF's line.
        self.info("solver.cpp:102", f"Creating training net from net file: {net_file}")

    def finetuning(self, weights: str) -> None:
        """Once per file and per net (LoadNetWeights, as each net is built)."""
        self.info("solver.cpp:72", f"Finetuning from {weights}")

    def resuming(self, solverstate: str) -> None:
        self.info("caffe.cpp:235", f"Resuming from {solverstate}")

    def restoring_history(self) -> None:
        """SGDSolver::RestoreSolverStateFromBinaryProto, after the iteration and
        weights, before the history (every solver type is an SGDSolver)."""
        self.info("sgd_solver.cpp:336", "SGDSolver: restoring history")

    def solving(self, net_name: str, lr_policy: str) -> None:
        self.info("caffe.cpp:239", "Starting Optimization")
        self.info("solver.cpp:289", f"Solving {net_name}")
        self.info("solver.cpp:290", f"Learning Rate Policy: {lr_policy}")

    # --- every `display` iterations --------------------------------------------
    def iteration(self, it: int, iters_per_s: float, seconds: float, display: int, smoothed_loss: float) -> None:
        self.info("solver.cpp:239", f"Iteration {it} ({cpp_number(iters_per_s)} iter/s, "
                                    f"{cpp_number(seconds)}s/{display} iters), loss = {cpp_number(smoothed_loss)}")

    def net_outputs(self, outputs: Sequence[Tuple[str, float, float]], test: bool = False) -> None:
        """One line per output value: (blob name, value, loss weight)."""
        source, kind = ("solver.cpp:414", "Test") if test else ("solver.cpp:258", "Train")
        for k, (name, value, weight) in enumerate(outputs):
            loss = f" (* {cpp_number(weight)} = {cpp_number(weight * value)} loss)" if weight else ""
            self.info(source, f"    {kind} net output #{k}: {name} = {cpp_number(value)}{loss}")

    def learning_rate(self, it: int, rate: float) -> None:
        self.info("sgd_solver.cpp:112", f"Iteration {it}, lr = {cpp_number(rate)}")

    def testing(self, it: int, test_net: int) -> None:
        self.info("solver.cpp:347", f"Iteration {it}, Testing net (#{test_net})")

    def test_interrupted(self) -> None:
        """A stop requested (a signal) while a test net runs: its outputs are not printed."""
        self.info("solver.cpp:396", "Test interrupted.")

    def test_loss(self, loss: float) -> None:
        self.info("solver.cpp:401", f"Test loss: {cpp_number(loss)}")

    def multistep(self, it: int, step: int) -> None:
        self.info("sgd_solver.cpp:50", f"MultiStep Status: Iteration {it}, step = {step}")

    def clipping(self, norm: float, clip: float, scale: float) -> None:
        self.info("sgd_solver.cpp:99", f"Gradient clipping: scaling down gradients (L2 norm "
                                       f"{cpp_number(norm)} > {cpp_number(clip)}) by scale factor {cpp_number(scale)}")

    # --- snapshots and the end -------------------------------------------------
    def snapshot(self, caffemodel: str, solverstate: str) -> None:
        self.info("solver.cpp:464", f"Snapshotting to binary proto file {caffemodel}")
        self.info("sgd_solver.cpp:284", f"Snapshotting solver state to binary proto file {solverstate}")

    def final_loss(self, it: int, smoothed_loss: float) -> None:
        self.info("solver.cpp:327", f"Iteration {it}, loss = {cpp_number(smoothed_loss)}")

    def done(self, stopped_early: bool = False) -> None:
        """Solve()'s last line (a run stopped by a signal has its own), then caffe.cpp's."""
        if stopped_early:
            self.info("solver.cpp:311", "Optimization stopped early.")
        else:
            self.info("solver.cpp:332", "Optimization Done.")
        self.info("caffe.cpp:250", "Optimization Done.")


def caffe_log_losses(lines: Iterable[str]) -> List[Tuple[int, float]]:
    """(iteration, smoothed loss) of each `Iteration N (...), loss = X` line of a
    Caffe log (glog prefix or not), in file order."""
    found = []
    for line in lines:
        m = CAFFE_LOSS_LINE.search(line)
        if m:
            found.append((int(m.group(1)), float(m.group(2))))
    return found
