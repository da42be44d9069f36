"""HDF5Data's `shuffle: true` and resuming, against `caffe train` (issue #12,
items 5 and 6); every reference is computed by real Caffe at test time.

The net: HDF5Data (train: three files of 5, 3 and 4 rows, batches of 4;
test: two files of 2 and 6 rows, batches of 3; both shuffled), a 3x3
Convolution, Sigmoid, EuclideanLoss. Each row carries its id in a third
top, `rowid` (100 * file + row; test files 10 and 11), which no layer reads:
a net output, so `caffe train` prints every id it fed ("Train/Test net
output #k: rowid = ...") and so does our train.log.

1. Row order: the ids in Caffe's log and in ours, train and test net, in
   the order they are printed, are equal.
2. Resume from our own snapshot (SGD, Nesterov, Adam; iter_size 2; a test
   net; the snapshot in the middle of a file): the resumed run ends bit for
   bit where our uninterrupted run ends, and within tolerance of Caffe's
   uninterrupted run.
3. Resume from Caffe's snapshot: our engine restarts HDF5Data at the first
   row as Caffe does, ending where `caffe train --snapshot` ends, which is
   far from where the uninterrupted run ends.
"""

import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from plaquenet.caffe.snapshot import (blob_array, caffemodel_weights, read_caffemodel, read_solverstate,
                                      weights_net, write_caffemodel)
from plaquenet.engines.torch.train import train
from tiny_nets import relative_difference

TRAIN_ROWS, TEST_ROWS = (5, 3, 4), (2, 6)
TILE = 6
WEIGHT_TOLERANCE = 1e-4   # as test_caffe_training.py: float32 summation order differs between the engines

NET = """name: "shuffled"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" top: "rowid" include { phase: TRAIN }
  hdf5_data_param { source: "train.txt" batch_size: 4 shuffle: true } }
layer { name: "data" type: "HDF5Data" top: "data" top: "label" top: "rowid" include { phase: TEST }
  hdf5_data_param { source: "test.txt" batch_size: 3 shuffle: true } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 1 kernel_size: 3 pad: 1 } }
layer { name: "prob" type: "Sigmoid" bottom: "conv" top: "prob" }
layer { name: "loss" type: "EuclideanLoss" bottom: "prob" bottom: "label" top: "loss" }
"""
INPUTS = ("net.prototxt", "train.txt", "test.txt", "w0.caffemodel", "solver.prototxt",
          *[f"t{i}.h5" for i in range(len(TRAIN_ROWS))], *[f"v{i}.h5" for i in range(len(TEST_ROWS))])


def _write_inputs(folder: Path, solver_text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for prefix, sizes, first in (("t", TRAIN_ROWS, 0), ("v", TEST_ROWS, 10)):
        for i, rows in enumerate(sizes):
            image = rng.normal(0, 1, (rows, 1, TILE, TILE)).astype(np.float32)
            with h5py.File(folder / f"{prefix}{i}.h5", "w") as f:
                f["data"] = image
                f["label"] = (image > 0.5).astype(np.float32)
                f["rowid"] = (100 * (first + i) + np.arange(rows, dtype=np.float32)).reshape(rows, 1)
        (folder / ("train.txt" if prefix == "t" else "test.txt")).write_text(
            "".join(f"{prefix}{i}.h5\n" for i in range(len(sizes))))
    (folder / "net.prototxt").write_text(NET)
    weights = {"conv": [rng.normal(0, 0.5, (1, 1, 3, 3)), np.array([-0.3])]}
    write_caffemodel(folder / "w0.caffemodel", weights_net(weights, {"conv": "Convolution"}))
    (folder / "solver.prototxt").write_text(solver_text)
    (folder / "snap").mkdir(exist_ok=True)
    return folder


def _caffe_folder(caffe, src: Path, name: str) -> Path:
    for f in INPUTS:
        caffe.put(src / f, f"{name}/{f}")
    (caffe.scratch / name / "snap").mkdir()
    return caffe.scratch / name


ROWID = re.compile(r"\] +(Train|Test) net output #\d+: rowid = (\S+)$")


def _rowids(log: Path):
    """(Train or Test, id) for every rowid value the log prints, in its order."""
    return [(m.group(1), int(float(m.group(2)))) for line in log.read_text().splitlines()
            for m in [ROWID.search(line)] if m]


# --- 1. the row order ------------------------------------------------------------

ORDER_SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: 14 '
                'display: 1 test_interval: 2 test_iter: 1 snapshot: 0 snapshot_after_train: false '
                'snapshot_prefix: "snap/m" random_seed: 3\n')


def test_shuffled_rows_are_caffes_in_train_and_test_nets(caffe, tmp_path, monkeypatch):
    """Caffe's order comes from glibc's rand(), one stream for the whole
    process: set-up of the train net, then of the test net, then every wrap
    in the order the nets run."""
    folder = _write_inputs(tmp_path, ORDER_SOLVER)
    theirs = _caffe_folder(caffe, folder, "order")
    caffe.run("train", "order", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    monkeypatch.chdir(folder)
    train("solver.prototxt", weights="w0.caffemodel")

    caffe_ids, our_ids = _rowids(theirs / "caffe.log"), _rowids(folder / "snap" / "train.log")
    train_ids = [i for kind, i in caffe_ids if kind == "Train"]
    test_ids = [i for kind, i in caffe_ids if kind == "Test"]
    print("Caffe's train rows:", train_ids, "\nCaffe's test rows:", test_ids)
    assert len(train_ids) == 14 * 4 and len(test_ids) == 8 * 3   # tests at 0, 2, ..., 14
    assert train_ids[:12] != [0, 1, 2, 3, 4, 100, 101, 102, 200, 201, 202, 203]   # shuffled at all
    assert our_ids == caffe_ids


# --- 2. resuming from our own snapshot ----------------------------------------------

RESUME = ('net: "net.prototxt" max_iter: 12 snapshot: 5 snapshot_prefix: "snap/m" display: 0 random_seed: 0 '
          'iter_size: 2 test_interval: 3 test_iter: 2 lr_policy: "fixed"\n')
SOLVER_TYPES = {
    "SGD": 'type: "SGD" base_lr: 0.5 momentum: 0.9 weight_decay: 0.001',
    "Nesterov": 'type: "Nesterov" base_lr: 0.5 momentum: 0.9',
    "Adam": 'type: "Adam" base_lr: 0.05 momentum: 0.9 momentum2: 0.999',
}


def _weights_and_history(snapshot: Path):
    """The arrays of <snapshot>.caffemodel, then of <snapshot>.solverstate's history."""
    weights = caffemodel_weights(read_caffemodel(snapshot.with_suffix(".caffemodel")))
    history = read_solverstate(snapshot.with_suffix(".solverstate")).history
    return [a for k in sorted(weights) for a in weights[k]] + [blob_array(b) for b in history]


def _worst(a: Path, b: Path) -> float:
    return max(relative_difference(x, y) for x, y in zip(_weights_and_history(a), _weights_and_history(b)))


@pytest.mark.parametrize("kind", sorted(SOLVER_TYPES))
def test_a_run_resumed_from_our_snapshot_ends_as_the_uninterrupted_run(kind, caffe, tmp_path, monkeypatch):
    """At iteration 5 the train net has read 40 rows (3 passes over 12 and 4
    more) and the test net 12 (a pass over 8 and 4 more): both are in the
    middle of a file, so only a restored data position gives the same end."""
    solver_text = RESUME + SOLVER_TYPES[kind] + "\n"
    full = _write_inputs(tmp_path / "full", solver_text)
    theirs = _caffe_folder(caffe, full, "full")
    caffe.run("train", "full", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    monkeypatch.chdir(full)
    train("solver.prototxt", weights="w0.caffemodel")
    assert (full / "snap/m_iter_5.data_position.json").is_file()

    resumed = _write_inputs(tmp_path / "resumed", solver_text)
    for name in ("m_iter_5.caffemodel", "m_iter_5.solverstate", "m_iter_5.data_position.json"):
        shutil.copy(full / "snap" / name, resumed / "snap")
    monkeypatch.chdir(resumed)
    assert train("solver.prototxt", snapshot="snap/m_iter_5.solverstate").iterations == 12
    assert "Data position restored from snap/m_iter_5.data_position.json" in (resumed / "snap/train.log").read_text()

    for ours, uninterrupted in zip(_weights_and_history(resumed / "snap/m_iter_12"),
                                   _weights_and_history(full / "snap/m_iter_12")):
        np.testing.assert_array_equal(ours, uninterrupted)   # bit for bit
    to_caffe = _worst(resumed / "snap/m_iter_12", theirs / "snap/m_iter_12")
    moved = _worst(full / "snap/m_iter_5", full / "snap/m_iter_12")
    print(f"{kind}: resumed vs Caffe's uninterrupted run {to_caffe:.1e}; iterations 5 -> 12 moved {moved:.1e}")
    assert to_caffe <= WEIGHT_TOLERANCE < moved / 100


# --- 3. resuming from Caffe's snapshot -----------------------------------------------

def test_a_run_resumed_from_caffes_snapshot_restarts_the_data_as_caffe_does(caffe, tmp_path, monkeypatch):
    solver_text = RESUME + SOLVER_TYPES["SGD"] + "\n"
    full = _write_inputs(tmp_path / "full", solver_text)
    theirs_full = _caffe_folder(caffe, full, "full")
    caffe.run("train", "full", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    theirs_resumed = _caffe_folder(caffe, full, "resumed")
    for suffix in (".caffemodel", ".solverstate"):
        shutil.copy(theirs_full / f"snap/m_iter_5{suffix}", theirs_resumed / "snap")
    caffe.run("train", "resumed", "--solver=solver.prototxt", "--snapshot=snap/m_iter_5.solverstate")

    ours = _write_inputs(tmp_path / "ours", solver_text)
    for suffix in (".caffemodel", ".solverstate"):
        shutil.copy(theirs_full / f"snap/m_iter_5{suffix}", ours / "snap")
    monkeypatch.chdir(ours)
    train("solver.prototxt", snapshot="snap/m_iter_5.solverstate")
    assert ("No data position snap/m_iter_5.data_position.json beside the snapshot: the HDF5Data layers start "
            "again at their first row, as in Caffe") in (ours / "snap/train.log").read_text()

    to_caffe_resumed = _worst(ours / "snap/m_iter_12", theirs_resumed / "snap/m_iter_12")
    resumed_vs_full = _worst(theirs_resumed / "snap/m_iter_12", theirs_full / "snap/m_iter_12")
    print(f"ours vs Caffe, both resumed from Caffe's snapshot: {to_caffe_resumed:.1e}; "
          f"Caffe resumed vs uninterrupted {resumed_vs_full:.1e}")
    assert to_caffe_resumed <= WEIGHT_TOLERANCE < resumed_vs_full / 100
