"""`plaquenet train`: `caffe train` with either engine (paper §4.2).

    train("prototxt/solver.prototxt")                          # the paper's SGD
    train(solver, engine="caffe")                              # real `caffe train`
    train(solver, snapshot="runs/paper/plaquenet_iter_500.solverstate")   # resume

The solver names everything (the train net, the schedule, `snapshot_prefix`,
whose folder is the run folder; `engines.run.effective_snapshot_prefix` reads
it as Caffe does, unset or a directory); paths in it are relative to the working
directory, as in Caffe. This stage adds what `caffe train` does not: it
refuses to write over an earlier run (unless `force`, which first removes that
run's snapshots, train.log and train.csv, or a resume from one of its
snapshots), and it prints how long the schedule will take once the first
iterations are timed (`engines.run.estimate_line`).

SIGINT (Ctrl-C) and SIGHUP act as in `caffe train` (`engines.signals`):
by default SIGINT snapshots and stops the run, SIGHUP snapshots and goes on;
a stopped run is resumed with `snapshot`.

`devices=N` (torch engine) trains on N workers with Caffe's multi-GPU
semantics (engines/torch/distributed.py): each reads its own batch_size
tiles, gradients are averaged before the update, one log and one set of
snapshots. Started by torchrun instead, every worker runs this stage;
rank 0 alone checks and replaces the earlier run.
"""

import glob
import os
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from .caffe.prototxt import read_solver
from .engines import get_engine
from .engines.run import TrainResult, effective_snapshot_prefix, snapshot_folder
from .engines.signals import SIGHUP_EFFECT, SIGINT_EFFECT, check_effect
from .errors import InputError
from .typing import PathLike

RUN_FILES = ("train.log", "train.csv")


def train(solver: PathLike, engine: str = "torch", weights: Optional[PathLike] = None,
          snapshot: Optional[PathLike] = None, device: str = "cpu", force: bool = False,
          on_estimate: Optional[Callable[[str], None]] = None, level: int = 0, stages: Sequence[str] = (),
          sigint_effect: str = SIGINT_EFFECT, sighup_effect: str = SIGHUP_EFFECT, devices: int = 1,
          **options: Any) -> TrainResult:
    """Train with `engine` ("torch" or "caffe"); see the module docstring.
    `level` and `stages` are `caffe train`'s --level and --stage: the train
    net's NetState level and extra stages (no stages: one empty stage ""),
    overriding the solver's train_state as `caffe train` does.
    `sigint_effect`, `sighup_effect`: what SIGINT and SIGHUP do, "stop",
    "snapshot" or "none" (`caffe train`'s --sigint_effect, --sighup_effect).
    `on_estimate` gets the time estimate (default: printed to stderr);
    `devices`: workers on this machine (torch engine; see the module docstring).
    `options` go to the engine (torch: conv, channels_last, precision; caffe: precision fp32 only)."""
    check_effect("--sigint-effect", sigint_effect)
    check_effect("--sighup-effect", sighup_effect)
    solver = Path(solver)
    chosen = get_engine(engine)
    device = chosen.check_device(device)
    if devices < 1:
        raise InputError("--devices", f"must be at least 1, got {devices}")
    if devices > 1:
        if chosen.name != "torch":
            raise InputError("--devices", f"{devices}: the {chosen.name} engine trains on one device (Debian's "
                                          f"Caffe is a CPU build, without NCCL); use --engine torch")
        options["devices"] = devices
    param = read_solver(solver)
    earlier = earlier_run_files(effective_snapshot_prefix(param, solver))
    if os.environ.get("RANK", "0") != "0":   # a torchrun worker other than rank 0: rank 0 checks and replaces
        earlier = []
    if earlier and snapshot is None:
        if not force:
            raise InputError(earlier[0].parent, f"holds an earlier run ({earlier[0].name}, ...): resume it with "
                                                f"--snapshot, or --force to replace it")
        for path in earlier:
            path.unlink()
    report = on_estimate or print_estimate
    return chosen.train(solver, weights=weights, snapshot=snapshot, device=device, on_estimate=report,
                        level=level, stages=list(stages), sigint_effect=sigint_effect,
                        sighup_effect=sighup_effect, **options)


def print_estimate(line: str) -> None:
    """The time estimate on stderr (module-level: launched workers receive it pickled)."""
    print(f"plaquenet train: {line}", file=sys.stderr, flush=True)


def earlier_run_files(snapshot_prefix: PathLike) -> List[Path]:
    """What a run with this (effective) `snapshot_prefix` would write over: its
    snapshots (with the data positions beside our .solverstate files), train.log
    and train.csv (nothing else of the run folder is touched)."""
    folder = snapshot_folder(str(snapshot_prefix))
    if not folder.is_dir():
        return []
    name = glob.escape(os.path.basename(snapshot_prefix))
    snapshots = [p for pattern in ("_iter_*.caffemodel", "_iter_*.solverstate", "_iter_*.data_position.json")
                 for p in folder.glob(name + pattern)]
    return sorted(snapshots + [folder / name for name in RUN_FILES if (folder / name).is_file()])
