"""Snapshots and deploy nets of a run folder, for every engine.

A run folder (the folder of the solver's `snapshot_prefix`) holds
`<prefix>_iter_<N>.caffemodel` / `.solverstate`, the copies of the solver and
nets that `train` made, train.log and train.csv.

    latest_snapshot("runs/demo")                 # runs/demo/plaquenet_iter_80.caffemodel
    find_deploy(snapshot)                        # the deploy net to load it with
"""

import re
from pathlib import Path
from typing import List, Optional, Tuple

from .. import paths
from ..errors import InputError
from ..typing import PathLike

SNAPSHOT_NAME = re.compile(r"_iter_(\d+)\.caffemodel$")
DEPLOY_GLOB = "*deploy*.prototxt"


def snapshots_by_iteration(run_dir: PathLike) -> List[Tuple[int, Path]]:
    """(N, path) of every `*_iter_<N>.caffemodel` in `run_dir`, by N (not name
    order: iter_200 before iter_1000); InputError when there is none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(run_dir, "not a run folder (give the folder holding the snapshots)")
    found = sorted((int(m.group(1)), p.name, p) for p in run_dir.glob("*_iter_*.caffemodel")
                   for m in [SNAPSHOT_NAME.search(p.name)] if m)
    if not found:
        raise InputError(run_dir, "no *_iter_<N>.caffemodel snapshot in this run folder")
    return [(n, p) for n, _, p in found]


def latest_snapshot(path: PathLike) -> Path:
    """`path` if it is a .caffemodel; for a run folder its `*_iter_<N>.caffemodel`
    with the largest N (iteration number, not name order: iter_1000 > iter_200)."""
    path = Path(path)
    if path.is_dir():
        return snapshots_by_iteration(path)[-1][1]
    if path.is_file():
        if path.suffix != ".caffemodel":
            raise InputError(path, "not a .caffemodel (give the weights snapshot or its run folder)")
        return path
    raise InputError(path, "no such snapshot file or run folder")


def find_deploy(snapshot: PathLike, deploy: Optional[PathLike] = None) -> Path:
    """The deploy prototxt to load `snapshot` with: `deploy` when given; else
    the copy `train` put in the snapshot's run folder; else `prototxt/plaquenet_deploy.prototxt`
    of the working directory, then of this source checkout. Works from any
    working directory once a run folder holds its deploy copy."""
    if deploy is not None:
        if not Path(deploy).is_file():
            raise InputError(deploy, "no such deploy prototxt")
        return Path(deploy)
    in_run = sorted(Path(snapshot).parent.glob(DEPLOY_GLOB))
    if len(in_run) > 1:
        raise InputError(Path(snapshot).parent, f"{len(in_run)} deploy nets in this run folder "
                                                f"({in_run[0].name}, {in_run[1].name}): give --deploy")
    candidates = in_run + [paths.DEPLOY, paths.CHECKOUT_PROTOTXT / paths.DEPLOY.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise InputError(snapshot, f"no deploy net found (none in its run folder, no {paths.DEPLOY}): give --deploy")


def deploy_beside(net_file: PathLike) -> Optional[Path]:
    """The deploy net that belongs to a train net, in the same folder: the
    same name with `train` replaced by `deploy` (prototxt/plaquenet_train.prototxt
    -> prototxt/plaquenet_deploy.prototxt), else, for a variant of a train net
    (plaquenet_train_100_dice.prototxt), the deploy net of the name up to
    `train` (plaquenet_deploy.prototxt: a variant in tiles or loss has the
    same deploy layers); None when there is none."""
    net_file = Path(net_file)
    if "train" not in net_file.name:
        return None
    stem = net_file.name[:net_file.name.index("train")]
    for name in (net_file.name.replace("train", "deploy"), f"{stem}deploy{net_file.suffix}"):
        candidate = net_file.with_name(name)
        if candidate.is_file() and candidate != net_file:
            return candidate
    return None
