"""Where the HDF5Data layers stand at a snapshot, so that a resumed run reads
on as the uninterrupted one would have, bit for bit.

`caffe train --snapshot` restarts every HDF5Data layer at its first row (the
.solverstate has no place for the data position), so a resumed run reads
other rows than an uninterrupted one. Our snapshots add, beside
`<prefix>_iter_<N>.solverstate`, a JSON file `<prefix>_iter_<N>.data_position.json`:
for every HDF5Data layer of the train and test nets (data.DataStream) the
file, row and both orders, the rand() state, the iteration and the SHA-256 of
the .solverstate it belongs to. The .solverstate itself stays exactly
Caffe's, so `caffe train --snapshot` reads it (and ignores the JSON).

Written in this order, each file by rename (atomic.py): the .solverstate into
a hidden temporary file, the JSON in place, then the .solverstate in place.
A kill at any moment leaves either no new .solverstate, or one whose JSON is
beside it; a JSON is used only if the .solverstate's bytes are those it
names, so a leftover of another run never is. Without a JSON that fits
(Caffe's snapshots, or files changed since), the layers start again at
their first row, as in Caffe. train.log says which, in one line of ours
(tagged `data_position.py:0`, a line Caffe never prints).

With several workers (distributed.py) each one stands elsewhere in the row
stream (its rank's rows; rank 0 alone runs the test nets, whose shuffles
draw from its rand()), so the JSON rank 0 writes holds every worker's
position under "workers" (its own also at the top, as one process writes
it); each worker of the resumed run takes its own. A position saved by
another number of workers does not fit: the layers start again."""

import hashlib
import json
from pathlib import Path
from typing import Callable, List, Optional

from ...atomic import atomic_path
from ...typing import PathLike
from .data import DataStream, Position

FORMAT = "plaquenet HDF5Data position 1"
LOG_TAG = "data_position.py:0"


def data_position_path(solverstate: PathLike) -> Path:
    """x_iter_6.solverstate -> x_iter_6.data_position.json"""
    path = Path(solverstate)
    return path.with_name((path.stem if path.suffix == ".solverstate" else path.name) + ".data_position.json")


def write_with_data_position(solverstate: PathLike, write_solverstate: Callable[[Path], None],
                             data: DataStream, iteration: int, workers: Optional[List[Position]] = None) -> None:
    """Write the .solverstate (`write_solverstate(path)`) and, before it
    appears, the data position of `data` that belongs to it. Without
    HDF5Data layers there is no position: only the .solverstate.
    `workers`: every worker's position, rank 0's first (several workers)."""
    with atomic_path(solverstate) as tmp:
        write_solverstate(tmp)
        if data.readers:
            position = {"format": FORMAT, "iter": iteration, "solverstate_sha256": _sha256(tmp),
                        **(workers[0] if workers else data.position())}
            if workers and len(workers) > 1:
                position["workers"] = workers
            with atomic_path(data_position_path(solverstate)) as json_tmp:
                json_tmp.write_text(json.dumps(position, separators=(",", ":")) + "\n")


def restore_data_position(solverstate: PathLike, data: DataStream, iteration: int, rank: int = 0,
                          workers: int = 1) -> Optional[str]:
    """Put `data` where the snapshot `solverstate` (of `iteration`) left it,
    if its data position is beside it and fits; the line for train.log that
    says what happened, None without HDF5Data layers. `rank` of `workers`:
    which worker's saved position `data` takes."""
    if not data.readers:
        return None
    path = data_position_path(solverstate)
    restart = "the HDF5Data layers start again at their first row, as in Caffe"
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return f"No data position {path} beside the snapshot: {restart}"
    except (OSError, ValueError) as e:
        return f"Data position {path} unreadable ({e}): {restart}"
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        return f"Data position {path} is not a {FORMAT!r} file: {restart}"
    if saved.get("iter") != iteration or saved.get("solverstate_sha256") != _sha256(solverstate):
        return f"Data position {path} belongs to another {Path(solverstate).name}: {restart}"
    saved_by = saved.get("workers")
    saved_count = len(saved_by) if isinstance(saved_by, list) else 1
    if saved_count != workers:
        return f"Data position {path} was saved by {saved_count} worker(s), this run has {workers}: {restart}"
    entry = saved_by[rank] if isinstance(saved_by, list) else saved
    if not isinstance(entry, dict):
        return f"Data position {path} has no position for worker {rank}: {restart}"
    try:
        data.restore(entry)
    except ValueError as e:
        return f"Data position {path} does not fit these nets ({e}): {restart}"
    where = ", ".join(f"'{name}' row {rows.current_row} of {rows.files[rows.file_order[rows.current_file]]}"
                      for name, rows in data.readers)
    return f"Data position restored from {path}: the HDF5Data layers go on where the snapshot left them ({where})"


def _sha256(path: PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
