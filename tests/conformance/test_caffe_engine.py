"""`--engine caffe` (plaquenet/engines/caffe.py) against `--engine torch`:
the plaquenet CLI runs inside the Caffe root (a copy of the package in the
scratch folder, PYTHONPATH=.), real `caffe train` and pycaffe underneath.

1. `plaquenet train --engine caffe` writes the run folder `--engine torch`
   writes: the same snapshot names, the solver and net copies, and a
   train.log in Caffe's format that read_training_loss parses; from the same
   --weights both logs show the same losses.
2. `plaquenet score --engine caffe` (pycaffe, inside the root) and
   `--engine torch` (on the host) on one tiny cohort, same snapshot: the
   thresholds and the test pixel F-measure agree."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.cohort import Scan, write_cohort, write_split
from plaquenet.engines.torch.train import train
from plaquenet.caffe.log import caffe_log_losses
from plaquenet.evaluate.curves import read_training_loss
from plaquenet.score import score

REPO = Path(__file__).resolve().parents[2]

TRAIN_NET = tiny_nets.two_conv_train("list.txt", 4, channels=4, kernel_size=5)
DEPLOY_NET = tiny_nets.two_conv_deploy(12, 12, channels=4, kernel_size=5)
SOLVER = ('net: "net.prototxt" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: 6 display: 1\n'
          'snapshot: 4 snapshot_prefix: "{run}/tiny" solver_mode: CPU random_seed: 1\n')


def _weights(seed: int = 7):
    """Random filters, plus a path that makes the output follow the brightness:
    conv1's channel 0 passes the pixel on, conv2 weighs it up against a bias."""
    rng = np.random.default_rng(seed)
    conv1 = rng.normal(0, 0.1, (4, 1, 5, 5))
    conv1[0, 0, 2, 2] = 1.0
    conv2 = rng.normal(0, 0.1, (1, 4, 3, 3))
    conv2[0, 0, 1, 1] = 12.0
    weights = {"conv1": [conv1, rng.uniform(-0.05, 0.05, 4)], "prelu1": [rng.uniform(0.0, 0.3, 4)],
               "conv2": [conv2, np.array([-7.0])]}
    return tiny_nets.tiny_weights(weights)


def _in_root(caffe, *args) -> subprocess.CompletedProcess:
    """`python3 -m plaquenet.cli ARGS` in the Caffe root, in the scratch folder."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "CI": "true",
           "MPLCONFIGDIR": caffe.inside(".mpl"), "LANG": "C.UTF-8"}
    cmd = ["chroot", str(caffe.root), "sh", "-c",
           f"cd {caffe.inside('.')} && PYTHONPATH=. python3 -m plaquenet.cli " + " ".join(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, f"plaquenet in the Caffe root failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def _put_package(caffe):
    shutil.copytree(REPO / "plaquenet", caffe.scratch / "plaquenet",
                    ignore=shutil.ignore_patterns("__pycache__"))


def _tiles(folder: Path):
    rng = np.random.default_rng(1)
    image = rng.normal(0, 1, (8, 1, 12, 12)).astype(np.float32)
    with h5py.File(folder / "d0.h5", "w") as f:
        f["data"], f["label"] = image, (image > 0.8).astype(np.float32)
    (folder / "list.txt").write_text("d0.h5\n")


def test_train_engine_caffe_writes_the_torch_run_folder(caffe, monkeypatch):
    _put_package(caffe)
    folder = caffe.scratch
    _tiles(folder)
    (folder / "net.prototxt").write_text(TRAIN_NET)
    write_caffemodel(folder / "w0.caffemodel", _weights())
    for engine in ("caffe", "torch"):
        (folder / f"solver_{engine}.prototxt").write_text(SOLVER.replace("{run}", f"run_{engine}"))

    done = _in_root(caffe, "train", "--engine", "caffe", "--solver", "solver_caffe.prototxt",
                    "--weights", "w0.caffemodel")
    assert "Optimization Done" in done.stderr   # glog shown, not only logged
    assert "trained to iteration 6" in done.stdout and "run_caffe/tiny_iter_6.caffemodel" in done.stdout
    monkeypatch.chdir(folder)
    train("solver_torch.prototxt", weights="w0.caffemodel")

    caffe_run, torch_run = folder / "run_caffe", folder / "run_torch"
    snapshots = {p.name for p in caffe_run.glob("tiny_iter_*")}
    assert snapshots == {"tiny_iter_4.caffemodel", "tiny_iter_4.solverstate",
                         "tiny_iter_6.caffemodel", "tiny_iter_6.solverstate"}
    # The torch engine adds the data position of its HDF5Data beside each .solverstate (data_position.py).
    assert {p.name for p in torch_run.glob("tiny_iter_*")} == snapshots | {"tiny_iter_4.data_position.json",
                                                                         "tiny_iter_6.data_position.json"}
    for copied in ("solver_caffe.prototxt", "net.prototxt"):
        assert (caffe_run / copied).read_text() == (folder / copied).read_text()

    log = (caffe_run / "train.log").read_text()
    assert log.startswith("I") and "solver.cpp" in log and "Optimization Done" in log
    curve = read_training_loss(caffe_run)
    assert curve.source.name == "train.log"
    assert list(curve.iteration) == list(range(7))   # iterations 0-5 and Caffe's closing line at 6
    with open(torch_run / "train.log") as f:
        torch_losses = dict(caffe_log_losses(f))
    ours = np.array([torch_losses[i] for i in curve.iteration])
    print("losses caffe", curve.loss, "torch", ours)
    np.testing.assert_allclose(ours, curve.loss, rtol=1e-4)   # --weights reached `caffe train`


def _scan(patient: str, lesion_slices, rng) -> Scan:
    """(4, 32, 40) volume of noisy tissue with round plaques brighter than it."""
    flair = rng.uniform(100, 300, (4, 32, 40)).astype(np.float32)
    mask = np.zeros(flair.shape, np.uint8)
    yy, xx = np.mgrid[:32, :40]
    for s in lesion_slices:
        for _ in range(2):
            r, c, radius = rng.integers(6, 26), rng.integers(6, 34), rng.uniform(2, 4)
            mask[s][(yy - r) ** 2 + (xx - c) ** 2 <= radius ** 2] = 1
    flair[mask == 1] += rng.uniform(100, 400, int(mask.sum())).astype(np.float32)
    return Scan(patient, flair, mask, (5.0, 0.5, 0.5), np.eye(4))


def test_score_engine_caffe_agrees_with_torch(caffe):
    _put_package(caffe)
    folder = caffe.scratch
    rng = np.random.default_rng(0)
    cohort = folder / "cohort"
    write_cohort(cohort, [_scan("P001", (1, 2), rng), _scan("P002", (0, 3), rng), _scan("P003", (1, 2, 3), rng)],
                 name="tiny")
    write_split(cohort, {"train": ["P001", "P002"], "test": ["P003"]})
    (folder / "deploy.prototxt").write_text(DEPLOY_NET)
    write_caffemodel(folder / "w.caffemodel", _weights())

    done = _in_root(caffe, "score", "--engine", "caffe", "--snapshot", "w.caffemodel", "--cohort", "cohort",
                    "--deploy", "deploy.prototxt", "--out", "score_caffe")
    assert "test F-measure" in done.stdout
    theirs = json.loads((folder / "score_caffe" / "results.json").read_text())
    ours = score(folder / "w.caffemodel", cohort_dir=cohort, deploy=folder / "deploy.prototxt", engine="torch",
                 out=folder / "score_torch")

    assert theirs["engine"] == "caffe" and ours["engine"] == "torch"
    f_caffe, f_torch = theirs["test"]["pixel"]["f1"], ours["test"]["pixel"]["f1"]
    print(f"threshold caffe {theirs['threshold']!r} torch {ours['threshold']!r}; "
          f"test F caffe {f_caffe!r} torch {f_torch!r}")
    assert 0.2 < f_torch < 1.0   # a threshold that means something, not all or nothing marked
    assert abs(theirs["threshold"] - ours["threshold"]) <= 1e-5
    assert abs(f_caffe - f_torch) <= 1e-3
    assert theirs["test"]["pixel"]["tp"] == ours["test"]["pixel"]["tp"]


def test_engine_caffe_module_imports_without_torch(caffe):
    """The caffe engine and the scoring code it is used from must import in the
    root, where there is no torch (nor should any of them pull it in)."""
    _put_package(caffe)
    script = ("import sys, plaquenet.cli, plaquenet.score, plaquenet.engines.caffe; "
              "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    done = subprocess.run(["chroot", str(caffe.root), "sh", "-c",
                           f"cd {caffe.inside('.')} && PYTHONPATH=. python3 -c \"{script}\""],
                          capture_output=True, text=True, timeout=120, env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_train_engine_caffe_without_the_binary_is_one_input_error(tmp_path, monkeypatch):
    """Needs no Caffe root: the missing binary is named, before the run folder exists."""
    from plaquenet.engines import caffe as engine
    from plaquenet.errors import InputError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.prototxt").write_text(TRAIN_NET)
    (tmp_path / "solver.prototxt").write_text(SOLVER.replace("{run}", "run"))
    with pytest.raises(InputError, match="no-such-caffe-binary: not found on PATH"):
        engine.train("solver.prototxt", caffe_bin="no-such-caffe-binary")
    assert not (tmp_path / "run").exists()
