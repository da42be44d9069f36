"""`plaquenet train` killed with SIGKILL at a random moment and resumed from
its last snapshot ends bit for bit where the uninterrupted run ends (issue
#12, item 6): weights, solver history and the rows read after the snapshot.

The tiny net reads shuffled HDF5Data in its train net (files of 5, 3 and 4
rows, batches of 4, iter_size 2) and its test net (files of 2 and 6 rows,
batches of 3), so that most snapshots fall in the middle of a file and of
a shuffled order. The moment of the kill is drawn anew at every run of the
test and printed, with the snapshot the run was resumed from."""

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

import tiny_nets
from plaquenet.caffe.snapshot import blob_array, caffemodel_weights, read_caffemodel, read_solverstate

MAX_ITER, SNAPSHOT = 40, 3
SOLVER = (f'net: "net.prototxt" type: "SGD" base_lr: 0.2 momentum: 0.9 weight_decay: 0.001 lr_policy: "fixed" '
          f'iter_size: 2 test_interval: 5 test_iter: 2 max_iter: {MAX_ITER} snapshot: {SNAPSHOT} '
          f'snapshot_prefix: "snap/m" display: 10 random_seed: 4\n')


def _net() -> str:
    text = ('name: "tiny"\n' + tiny_nets.hdf5_data_layer("train.txt", 4, "TRAIN") +
            tiny_nets.hdf5_data_layer("test.txt", 3, "TEST") + tiny_nets.two_conv_layers() +
            tiny_nets.PROB + tiny_nets.EUCLIDEAN_LOSS)
    return text.replace("batch_size: 4 }", "batch_size: 4 shuffle: true }").replace(
        "batch_size: 3 }", "batch_size: 3 shuffle: true }")


def _write_inputs(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(2)
    for name, sizes in (("train", (5, 3, 4)), ("test", (2, 6))):
        for i, rows in enumerate(sizes):
            label = (rng.random((rows, 1, 8, 8)) > 0.7).astype(np.float32)
            with h5py.File(folder / f"{name}{i}.h5", "w") as f:
                f["data"] = (label + rng.normal(0, 0.4, label.shape)).astype(np.float32)
                f["label"] = label
        (folder / f"{name}.txt").write_text("".join(f"{name}{i}.h5\n" for i in range(len(sizes))))
    (folder / "net.prototxt").write_text(_net())
    (folder / "solver.prototxt").write_text(SOLVER)
    return folder


def _plaquenet_train(folder: Path, *flags: str) -> subprocess.Popen:
    command = [sys.executable, "-c", "import sys; from plaquenet.cli import main; sys.exit(main())",
               "train", "--solver", "solver.prototxt", *flags]
    return subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]


def _snapshots(folder: Path):
    """The iterations of the .solverstate files in snap/ (hidden partial files are not snapshots)."""
    return sorted(int(m.group(1)) for p in (folder / "snap").glob("m_iter_*.solverstate")
                  for m in [re.fullmatch(r"m_iter_(\d+)\.solverstate", p.name)] if m)


def _arrays(snapshot: Path):
    weights = caffemodel_weights(read_caffemodel(snapshot.with_suffix(".caffemodel")))
    history = read_solverstate(snapshot.with_suffix(".solverstate")).history
    return [a for k in sorted(weights) for a in weights[k]] + [blob_array(b) for b in history]


def _first_snapshot(folder: Path, process: subprocess.Popen) -> None:
    while not _snapshots(folder):
        assert process.poll() is None, process.communicate()[1][-3000:]
        time.sleep(0.002)


def _uninterrupted(folder: Path) -> float:
    """Run to the end; the seconds from the first snapshot to the last one.
    Not to the process's exit: the interpreter's teardown after the last
    snapshot can take longer than the training itself, and a kill drawn in
    it comes too late."""
    process = _plaquenet_train(folder)
    _first_snapshot(folder, process)
    first = time.perf_counter()
    while MAX_ITER not in _snapshots(folder) and process.poll() is None:
        time.sleep(0.002)
    last = time.perf_counter()
    _finish(process)
    return last - first


def _kill(folder: Path, delay: float) -> bool:
    """Start a run, SIGKILL it `delay` seconds after its first snapshot;
    whether the kill came before the run had ended."""
    process = _plaquenet_train(folder)
    _first_snapshot(folder, process)
    time.sleep(delay)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    return process.returncode == -signal.SIGKILL


def test_a_run_killed_at_a_random_moment_resumes_to_the_same_weights(tmp_path):
    full = _write_inputs(tmp_path / "full")
    window = _uninterrupted(full)
    print(f"uninterrupted run: {window:.2f} s from its first snapshot to its last")
    final = _arrays(full / f"snap/m_iter_{MAX_ITER}")

    seed = int.from_bytes(os.urandom(4), "little")
    draw = random.Random(seed)
    for attempt in range(1, 6):   # a kill that came too late is drawn again, from half the window
        killed = _write_inputs(tmp_path / f"killed{attempt}")
        delay = draw.uniform(0, 0.9 * window / 2 ** (attempt - 1))
        in_time = _kill(killed, delay)
        done = _snapshots(killed)
        print(f"kill seed {seed}, attempt {attempt}: SIGKILL {delay:.3f} s after the first snapshot; "
              f"snapshots {done}")
        if in_time and done[-1] < MAX_ITER:
            break
    assert in_time and done[-1] < MAX_ITER, "every kill came too late"
    for n in done:   # wherever the kill landed, no .solverstate without its data position
        assert (killed / f"snap/m_iter_{n}.data_position.json").is_file(), n

    _finish(_plaquenet_train(killed, "--snapshot", f"snap/m_iter_{done[-1]}.solverstate"))
    log = (killed / "snap/train.log").read_text()
    assert f"Data position restored from snap/m_iter_{done[-1]}.data_position.json" in log
    resumed = _arrays(killed / f"snap/m_iter_{MAX_ITER}")
    assert len(resumed) == len(final) == 10   # 5 weight blobs, 5 momentum blobs
    for ours, uninterrupted in zip(resumed, final):
        np.testing.assert_array_equal(ours, uninterrupted)
