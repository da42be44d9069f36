"""Where things live by default, relative to the working directory (the
repository root, as for Caffe: the prototxt files name their inputs and
snapshots relative to it). One home for each of these paths.

    data/<cohort>/            cohort.h5, split.json, tiles/   (import, tiles)
    data/current -> <cohort>  the tile set the train prototxt reads
    runs/<name>/              snapshots, train.log, train.csv, score/
"""

from pathlib import Path

from .typing import PathLike

PROTOTXT = Path("prototxt")
DEPLOY = PROTOTXT / "plaquenet_deploy.prototxt"   # the paper's net on whole scans (Input, any H x W)
PAPER_SOLVER = PROTOTXT / "solver.prototxt"        # the paper's SGD (§4.2)
# §6's larger tiles (`plaquenet claims`, C7): the paper's SGD on 100x100 tiles with
# its Euclidean loss, and the same with a soft Dice loss (its "cost function modification")
LARGE_TILE_SOLVER = PROTOTXT / "solver_100.prototxt"
LARGE_TILE_DICE_SOLVER = PROTOTXT / "solver_100_dice.prototxt"
DATA = Path("data")
CURRENT = DATA / "current"                         # the train prototxt's HDF5Data reads CURRENT/tiles/train.txt
SEGMENT_OUT = Path("segment-out")                  # `plaquenet segment`'s default output folder

# The prototxt folder of this source checkout, for commands run elsewhere
# (an installed wheel has none: then the run folder's copy or --deploy serves).
CHECKOUT_PROTOTXT = Path(__file__).resolve().parent.parent / "prototxt"


def point_current_at(cohort_dir: PathLike, current: PathLike = CURRENT) -> Path:
    """Make `current` a symlink to `cohort_dir` (relative when both share a folder),
    replaced atomically, so the train prototxt's `data/current/tiles/train.txt`
    reads this cohort's tiles."""
    cohort_dir, current = Path(cohort_dir), Path(current)
    current.parent.mkdir(parents=True, exist_ok=True)
    if cohort_dir.resolve().parent == current.absolute().parent.resolve():
        target = Path(cohort_dir.name)
    else:
        target = cohort_dir.resolve()
    tmp = current.with_name(f".{current.name}.tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target, target_is_directory=True)
    tmp.replace(current)
    return current
