"""What every engine's `train` shares, without torch or Caffe: the train net a
solver names, the run folder (the folder of `snapshot_prefix`) with copies of
the solver, the train net and its deploy net, the time estimate printed
before long runs, and the result record.

    param = read_solver(solver_path)
    run_dir, net_file = prepare_run_dir(param, solver_path)
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Tuple

from ..errors import InputError
from ..typing import PathLike
from .snapshots import deploy_beside

if TYPE_CHECKING:
    from ..caffe import caffe_pb2


@dataclass
class TrainResult:
    run_dir: Path
    last_snapshot: Optional[Path]      # the last .caffemodel written
    iterations: int                    # iterations done in total
    final_loss: Optional[float]        # smoothed loss of the last iteration run
    seconds: float                     # wall time of this call
    stopped_early: bool = False        # a signal stopped it ("Optimization stopped early.", engines.signals)

    def __str__(self) -> str:
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.6g}"
        done = "stopped early (a signal) at iteration" if self.stopped_early else "trained to iteration"
        resume = "; resume it with --snapshot" if self.stopped_early and self.last_snapshot else ""
        return (f"{done} {self.iterations} in {self.seconds:.0f} s, final loss {loss}; "
                f"run {self.run_dir}, last snapshot {self.last_snapshot}{resume}")


def train_net(param: "caffe_pb2.SolverParameter",
              solver_path: PathLike) -> Tuple["caffe_pb2.NetParameter", Optional[Path]]:
    """(NetParameter, file or None) of the one train net the solver names."""
    from ..caffe.prototxt import read_net

    given = [f for f in ("net", "net_param", "train_net", "train_net_param") if param.HasField(f)]
    if len(given) != 1:
        raise InputError(solver_path, f"give exactly one of net, net_param, train_net, train_net_param "
                                      f"(found {given or 'none'})")
    if given[0] in ("net", "train_net"):
        path = Path(getattr(param, given[0]))
        return read_net(path), path
    return getattr(param, given[0]), None


def prepare_run_dir(param: "caffe_pb2.SolverParameter", solver_path: PathLike) -> Tuple[Path, Optional[Path]]:
    """Create the run folder (the folder of `snapshot_prefix`) and copy the
    solver, its train net file and that net's deploy net (`deploy_beside`:
    score and segment then find it from any working directory) into it;
    return (run folder, net file or None).

    The folder is created where it is missing, which `caffe train` never does:
    it aborts (with snapshot > 0 at once, `Cannot write to snapshot prefix`;
    with snapshot 0 at the snapshot after the last iteration). plaquenet makes
    the run folder in both engines, as `runs/` starts empty (docs/CAFFE_ORACLE.md)."""
    _, net_file = train_net(param, solver_path)
    run_dir = snapshot_folder(effective_snapshot_prefix(param, solver_path))
    run_dir.mkdir(parents=True, exist_ok=True)
    copy_into(solver_path, run_dir)
    if net_file:
        copy_into(net_file, run_dir)
        deploy = deploy_beside(net_file)
        if deploy:
            copy_into(deploy, run_dir)
    return run_dir, net_file


def effective_snapshot_prefix(param: "caffe_pb2.SolverParameter", solver_path: PathLike) -> str:
    """`snapshot_prefix` as the oracle reads it (99bd997's UpgradeSnapshotPrefixProperty,
    upgrade_proto.cpp:1100-1116; Caffe 1.0 takes it as written): unset, the solver
    file's path without its extension (`solvers/a.prototxt` -> `solvers/a`); naming an
    existing directory, that directory joined with the solver file's stem (`out` ->
    `out/a`); else as written. Relative paths are relative to the working directory.
    Boost filesystem v3's extension is everything from the file name's last dot."""
    solver = str(solver_path)
    name = os.path.basename(solver)
    stem = name if name in (".", "..") or "." not in name else name[:name.rindex(".")]
    upgrade = snapshot_prefix_upgrade(param)
    if upgrade == "unset":
        return solver[:len(solver) - len(name)] + stem
    if upgrade == "directory":
        return os.path.join(param.snapshot_prefix, stem)
    return param.snapshot_prefix


def snapshot_prefix_upgrade(param: "caffe_pb2.SolverParameter") -> Optional[str]:
    """Which of UpgradeSnapshotPrefixProperty's rewrites `effective_snapshot_prefix`
    makes: "unset", "directory" or None (taken as written). Each rewrite is a
    line of the oracle's log (`CaffeLog.snapshot_prefix_upgraded`). Ask before
    the run folder is created: a prefix `out/` names a directory once `out` exists."""
    if not param.HasField("snapshot_prefix"):
        return "unset"
    return "directory" if os.path.isdir(param.snapshot_prefix) else None


def snapshot_folder(prefix: str) -> Path:
    """The folder snapshots `<prefix>_iter_<N>.*` are written to (`out/` -> out)."""
    return Path(os.path.dirname(prefix) or ".")


def estimate_line(seconds_per_iter: float, remaining: int, device: str) -> str:
    """What `train` prints once the first iterations are timed: the time the
    rest of the schedule will take here, and how to shorten it."""
    total = seconds_per_iter * remaining
    when = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    advice = "" if total < 600 else (" (shorten it with max_iter in the solver, or train on a GPU: "
                                     "--device cuda)" if device == "cpu" else " (shorten it with max_iter in the solver)")
    return (f"estimate: {seconds_per_iter:.3g} s per iteration on {device}, about {when} "
            f"for the remaining {remaining:,} iterations{advice}")


def copy_into(path: PathLike, run_dir: PathLike) -> None:
    path, target = Path(path), Path(run_dir) / Path(path).name
    if not target.exists() or not target.samefile(path):
        shutil.copyfile(path, target)
