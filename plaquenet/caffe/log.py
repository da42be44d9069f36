"""`caffe train`'s log, line for line: glog's prefix and Caffe 1.0's messages,
so that BVLC's tools/extra/parse_log.py (and anything else written for Caffe
logs) reads our train.log.

A glog line is `I1124 01:02:03.456789 12345 solver.cpp:218] message`:
severity, month and day, local time to the microsecond, thread id (width 5),
and the source file and line of Caffe 1.0 that prints the message. Numbers
are printed like C++'s `ostream << float` (6 significant digits, %g)."""

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
    def solver_parameters(self, solver_text: str) -> None:
        self.info("solver.cpp:44", "Initializing solver from parameters: \n" + solver_text.rstrip("\n"))

    def training_net(self, net_file: str) -> None:
        self.info("solver.cpp:88", f"Creating training net from net file: {net_file}")

    def finetuning(self, weights: str) -> None:
        self.info("caffe.cpp:155", f"Finetuning from {weights}")

    def resuming(self, solverstate: str) -> None:
        self.info("caffe.cpp:242", f"Resuming from {solverstate}")

    def solving(self, net_name: str, lr_policy: str) -> None:
        self.info("caffe.cpp:248", "Starting Optimization")
        self.info("solver.cpp:272", f"Solving {net_name}")
        self.info("solver.cpp:273", f"Learning Rate Policy: {lr_policy}")

    def restoring(self, solverstate: str) -> None:
        self.info("solver.cpp:279", f"Restoring previous solver status from {solverstate}")

    # --- every `display` iterations --------------------------------------------
    def iteration(self, it: int, iters_per_s: float, seconds: float, display: int, smoothed_loss: float) -> None:
        self.info("solver.cpp:218", f"Iteration {it} ({cpp_number(iters_per_s)} iter/s, "
                                    f"{cpp_number(seconds)}s/{display} iters), loss = {cpp_number(smoothed_loss)}")

    def net_outputs(self, outputs: Sequence[Tuple[str, float, float]], test: bool = False) -> None:
        """One line per output value: (blob name, value, loss weight)."""
        source, kind = ("solver.cpp:397", "Test") if test else ("solver.cpp:237", "Train")
        for k, (name, value, weight) in enumerate(outputs):
            loss = f" (* {cpp_number(weight)} = {cpp_number(weight * value)} loss)" if weight else ""
            self.info(source, f"    {kind} net output #{k}: {name} = {cpp_number(value)}{loss}")

    def learning_rate(self, it: int, rate: float) -> None:
        self.info("sgd_solver.cpp:105", f"Iteration {it}, lr = {cpp_number(rate)}")

    def testing(self, it: int, test_net: int) -> None:
        self.info("solver.cpp:330", f"Iteration {it}, Testing net (#{test_net})")

    def multistep(self, it: int, step: int) -> None:
        self.info("sgd_solver.cpp:46", f"MultiStep Status: Iteration {it}, step = {step}")

    def clipping(self, norm: float, clip: float, scale: float) -> None:
        self.info("sgd_solver.cpp:92", f"Gradient clipping: scaling down gradients (L2 norm "
                                       f"{cpp_number(norm)} > {cpp_number(clip)}) by scale factor {cpp_number(scale)}")

    # --- snapshots and the end -------------------------------------------------
    def snapshot(self, caffemodel: str, solverstate: str) -> None:
        self.info("solver.cpp:447", f"Snapshotting to binary proto file {caffemodel}")
        self.info("sgd_solver.cpp:273", f"Snapshotting solver state to binary proto file {solverstate}")

    def final_loss(self, it: int, smoothed_loss: float) -> None:
        self.info("solver.cpp:310", f"Iteration {it}, loss = {cpp_number(smoothed_loss)}")

    def done(self) -> None:
        self.info("solver.cpp:315", "Optimization Done.")
        self.info("caffe.cpp:259", "Optimization Done.")


def caffe_log_losses(lines: Iterable[str]) -> List[Tuple[int, float]]:
    """(iteration, smoothed loss) of each `Iteration N (...), loss = X` line of a
    Caffe log (glog prefix or not), in file order."""
    found = []
    for line in lines:
        m = CAFFE_LOSS_LINE.search(line)
        if m:
            found.append((int(m.group(1)), float(m.group(2))))
    return found
