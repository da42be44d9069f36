"""What every engine's `train` shares, without torch or Caffe: the train net a
solver names, the run folder (the folder of `snapshot_prefix`) with copies of
the solver and net, and the result record.

    param = read_solver(solver_path)
    run_dir, net_file = prepare_run_dir(param, solver_path)
"""

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from ..errors import InputError


@dataclass
class TrainResult:
    run_dir: Path
    last_snapshot: Optional[Path]      # the last .caffemodel written
    iterations: int                    # iterations done in total
    final_loss: Optional[float]        # smoothed loss of the last iteration run
    seconds: float                     # wall time of this call

    def __str__(self):
        loss = "n/a" if self.final_loss is None else f"{self.final_loss:.6g}"
        return (f"trained to iteration {self.iterations} in {self.seconds:.0f} s, final loss {loss}; "
                f"run {self.run_dir}, last snapshot {self.last_snapshot}")


def train_net(param, solver_path):
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


def prepare_run_dir(param, solver_path) -> Tuple[Path, Optional[Path]]:
    """Create the run folder (the folder of `snapshot_prefix`) and copy the
    solver and its train net file into it; return (run folder, net file or None)."""
    if not param.snapshot_prefix:
        raise InputError(solver_path, "snapshot_prefix is not set")
    _, net_file = train_net(param, solver_path)
    run_dir = Path(param.snapshot_prefix).parent
    run_dir.mkdir(parents=True, exist_ok=True)
    copy_into(solver_path, run_dir)
    if net_file:
        copy_into(net_file, run_dir)
    return run_dir, net_file


def copy_into(path, run_dir):
    path, target = Path(path), Path(run_dir) / Path(path).name
    if not target.exists() or not target.samefile(path):
        shutil.copyfile(path, target)
