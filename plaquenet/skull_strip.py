"""Which input a net was trained on, skull-stripped or not (paper §6: "remove
everything but the brain"), so that score and segment feed it the same.

`plaquenet tiles --skull-strip` cuts the tiles from `cohort.network_input` with
the brain mask (everything further than brain.GROW_MM from the brain set to 0)
and records `"skull_strip": true` in tiles.json's parameters; `score` writes the
choice into results.json ("input"). Where a run's choice is recorded:

    RUN/*train*.prototxt   the HDF5Data source (TILES/train.txt, relative to the
                           working directory, as Caffe reads it) -> TILES/tiles.json
    --tiles TILES          score's tiles for the §4.3 threshold (default COHORT/tiles)
    RUN/score/results.json "input": {"skull_strip": ...}; travels with the run folder

A tiles.json or results.json written before the option existed records
unstripped input (False). The records found must agree with each other and with
an explicit `--skull-strip`; otherwise one line, exit 2 (`resolve`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .errors import InputError
from .typing import PathLike

KEY = "skull_strip"  # in tiles.json "parameters" and results.json "input"
TILES_DESCRIPTION = "tiles.json"

Record = Tuple[str, bool]  # (where it is recorded, skull-stripped)


def tiles_record(tiles: PathLike) -> Optional[Record]:
    """A tile folder (or its train.txt) -> (its tiles.json, skull-stripped); None
    without a readable tiles.json."""
    tiles = Path(tiles)
    description = (tiles.parent if tiles.is_file() or tiles.suffix == ".txt" else tiles) / TILES_DESCRIPTION
    try:
        parameters = json.loads(description.read_text()).get("parameters", {})
    except (OSError, ValueError, AttributeError):
        return None
    return str(description), bool(parameters.get(KEY, False))


def run_tile_lists(run_dir: PathLike) -> List[Path]:
    """The HDF5Data sources of the train nets copied into a run folder (train.txt paths)."""
    from .caffe.prototxt import read_net

    sources = []
    for net_file in sorted(Path(run_dir).glob("*train*.prototxt")):
        try:
            net = read_net(net_file)
        except InputError:
            continue
        sources += [Path(layer.hdf5_data_param.source) for layer in net.layer if layer.type == "HDF5Data"]
    return sources


def run_records(run_dir: PathLike) -> List[Record]:
    """What the tiles of a run's train nets record (those found from the working directory)."""
    found = (tiles_record(source) for source in run_tile_lists(run_dir))
    return [record for record in found if record is not None]


def results_record(results_json: PathLike) -> Optional[Record]:
    """score's results.json -> (it, skull-stripped); None without a readable file."""
    try:
        results = json.loads(Path(results_json).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict):
        return None
    return str(results_json), bool((results.get("input") or {}).get(KEY, False))


def describe(stripped: bool) -> str:
    return "skull-stripped input" if stripped else "unstripped input"


def resolve(records: Sequence[Record], option: Optional[bool] = None) -> Tuple[bool, str]:
    """(skull-stripped, where that comes from): the records, which must agree
    with each other and with `option` (an explicit --skull-strip); `option` or
    unstripped when nothing is recorded. InputError on a mismatch."""
    for where, stripped in records[1:]:
        if stripped != records[0][1]:
            raise InputError(where, f"records {describe(stripped)}, but {records[0][0]} records "
                                    f"{describe(records[0][1])}: give the tiles the run was trained on (--tiles)")
    if records and option is not None and option != records[0][1]:
        flag = "--skull-strip given" if option else "no --skull-strip"
        raise InputError(records[0][0], f"the net was trained on {describe(records[0][1])}, {flag}: "
                                        f"{'drop --skull-strip' if option else 'give --skull-strip'} or use another run")
    if records:
        return records[0][1], records[0][0]
    return bool(option), "--skull-strip" if option else "no record found: unstripped"
