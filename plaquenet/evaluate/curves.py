"""Training curves (paper Fig. 5): the training loss per iteration above the
test F-measure of each snapshot, to see when training stopped helping.

The loss comes from the run folder: `train.csv` (written by the torch engine:
iter, loss, smoothed_loss, lr, seconds) or, without it, `train.log` in Caffe's
line format, so a run of real `caffe train` gives the same curve. Both give
the *smoothed* loss (Caffe's `average_loss` window): the value Caffe prints as
`Iteration N (... iter/s, ...), loss = X`.

Scoring a snapshot for the curve is `plaquenet.score.snapshot_f_measure`;
this module only reads losses and writes the table (snapshots are found by
`plaquenet.engines.snapshots`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from ..caffe.log import caffe_log_losses
from ..errors import InputError
from ..typing import PathLike


@dataclasses.dataclass
class LossCurve:
    iteration: np.ndarray  # int64 (K,), increasing
    loss: np.ndarray  # float64 (K,), smoothed training loss at each iteration
    source: Path  # the file it was read from


@dataclasses.dataclass
class SnapshotScore:
    """One point of the bottom panel of Fig. 5."""

    iteration: int
    snapshot: str  # path of the .caffemodel
    threshold: float  # best pixel F on the full training scans (§3.3)
    train_f1: float  # pooled pixel F-measure on the training scans at `threshold`
    test_f1: float  # pooled pixel F-measure on the test scans at `threshold`


def read_training_loss(run_dir: PathLike) -> Optional[LossCurve]:
    """The smoothed training loss per iteration from RUN_DIR/train.csv, else
    RUN_DIR/train.log (Caffe's format). An iteration logged twice (a resumed
    run, Caffe's final line) keeps its last value. None when neither file is
    there (`caffe train` logs to stderr unless redirected); InputError when
    the file holds no loss."""
    run_dir = Path(run_dir)
    table, log = run_dir / "train.csv", run_dir / "train.log"
    if table.is_file():
        return _curve(_csv_losses(table), table)
    if log.is_file():
        with open(log, errors="replace") as f:
            return _curve(caffe_log_losses(f), log)
    return None


def _csv_losses(path: Path) -> List[Tuple[int, float]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"iter", "smoothed_loss"} <= set(reader.fieldnames):
            raise InputError(path, f"expected columns iter and smoothed_loss, got {reader.fieldnames}")
        try:
            return [(int(row["iter"]), float(row["smoothed_loss"])) for row in reader]
        except (TypeError, ValueError) as e:
            raise InputError(path, f"line {reader.line_num}: not a number ({e})") from None


def _curve(pairs: List[Tuple[int, float]], source: Path) -> LossCurve:
    if not pairs:
        raise InputError(source, "holds no training loss")
    last = dict(pairs)  # later lines win
    iterations = np.array(sorted(last), dtype=np.int64)
    return LossCurve(iterations, np.array([last[i] for i in iterations], dtype=np.float64), source)


@dataclasses.dataclass
class TrainingCurve:
    """What Fig. 5 shows: the loss and the score of each snapshot."""

    loss: Optional[LossCurve]
    snapshots: List[SnapshotScore]  # by iteration


CURVE_COLUMNS = ["iteration", "snapshot", "threshold", "train_f1", "test_f1"]


def write_curves_csv(path: PathLike, scores: List[SnapshotScore]) -> Path:
    """One row per snapshot, in iteration order; an undefined F-measure is empty."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
        writer.writeheader()
        for score in sorted(scores, key=lambda s: s.iteration):
            row = dataclasses.asdict(score)
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})
    return Path(path)
