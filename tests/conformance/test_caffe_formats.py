"""The foundation's files, read by real Caffe: the prototxt files parse and
build, the tiles stage's HDF5 files feed Caffe's HDF5Data the rows we think,
and a .caffemodel written by us gives, in pycaffe, the same full-scan output
as our engine."""

import os
from pathlib import Path

import numpy as np

from plaquenet.caffe.prototxt import read_net
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.cohort import Scan, normalise_intensity, write_cohort
from plaquenet.engines.torch.net import TEST, TRAIN, Net, load_deploy, net_to_proto
from plaquenet.phantom import phantom_patient
from plaquenet.tiles import make_tiles

REPO = Path(__file__).resolve().parents[2]
PROTOTXT = REPO / "prototxt"


def test_prototxt_files_parse_in_real_caffe(caffe):
    names = sorted(p.name for p in PROTOTXT.glob("*.prototxt"))
    assert {"plaquenet_train.prototxt", "plaquenet_deploy.prototxt", "solver.prototxt",
            "solver_demo.prototxt"} <= set(names)
    for name in names:
        caffe.put(PROTOTXT / name, f"prototxt/{name}")
    out = caffe.run("parse", *[f"prototxt/{n}" for n in names])
    assert out.count("parsed ") == len(names)


def _tiny_cohort(tmp_path) -> Path:
    scans = []
    for i in range(2):
        p = phantom_patient(seed=3, n_slices=6, patient=i)
        scans.append(Scan(f"P00{i + 1}", p.flair_shw, p.mask_shw, p.voxel_mm, p.affine_whs))
    write_cohort(tmp_path / "cohort", scans)
    return tmp_path / "cohort"


def test_hdf5_tiles_feed_real_caffe_in_our_row_order(caffe, tmp_path, monkeypatch):
    # The paper's train prototxt unchanged: its source, data/current/tiles/train.txt,
    # is resolved against the working directory, as the tiles stage writes it.
    cohort = _tiny_cohort(tmp_path)
    monkeypatch.chdir(caffe.scratch)
    os.makedirs("data", exist_ok=True)
    os.symlink(cohort, "data/current")
    summary = make_tiles("data/current", "data/current/tiles", seed=0)
    assert summary.tiles < 100  # so that the batch of 100 wraps around the file
    caffe.put(PROTOTXT / "plaquenet_train.prototxt", "prototxt/plaquenet_train.prototxt")
    os.unlink("data/current")
    caffe.put(cohort, "data/current")  # a real folder: the chroot cannot follow our symlink
    caffe.run("batch", "prototxt/plaquenet_train.prototxt", "data.npy", "label.npy")

    import h5py

    (h5,) = (caffe.scratch / "data/current/tiles").glob("train_*.h5")
    with h5py.File(h5, "r") as f:
        rows = len(f["data"])
    # Our own reader, built from the same prototxt in the same working directory.
    net = Net(read_net("prototxt/plaquenet_train.prototxt"), TRAIN, fill=False)
    (reader,) = [m for p, m in zip(net.layer_params, net.layers) if p.type == "HDF5Data"]
    data, label = (t.numpy() for t in reader())
    assert data.shape == (100, 1, 50, 50) and rows < 100   # the batch wraps around the file
    np.testing.assert_array_equal(data, np.load(caffe.scratch / "data.npy"))
    np.testing.assert_array_equal(label, np.load(caffe.scratch / "label.npy"))


def _random_weights(deploy):
    """The deploy net's parameters, He-scaled Gaussian weights and small random
    biases and PReLU slopes (a deploy prototxt has no fillers)."""
    weights = net_to_proto(Net(read_net(deploy), phase=TEST, source=deploy, fill=False))
    rng = np.random.default_rng(0)
    for layer in weights.layer:
        for i, blob in enumerate(layer.blobs):
            shape = tuple(blob.shape.dim)
            if layer.type == "Convolution" and i == 0:
                values = rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape)
            else:
                values = rng.uniform(-0.1, 0.3, shape)
            blob.ClearField("data")
            blob.data.extend(values.astype(np.float32).ravel().tolist())
    return weights


def test_our_caffemodel_gives_the_same_full_scan_output_in_real_caffe(caffe, tmp_path):
    deploy = PROTOTXT / "plaquenet_deploy.prototxt"
    write_caffemodel(tmp_path / "w.caffemodel", _random_weights(deploy))
    p = phantom_patient(seed=1, n_slices=6, patient=0)
    image = normalise_intensity(p.flair_shw)[3]  # one full 448x512 scan
    assert image.shape == (448, 512)

    ours = load_deploy(deploy, tmp_path / "w.caffemodel")(image)
    caffe.put(deploy, "deploy.prototxt")
    caffe.put(tmp_path / "w.caffemodel")
    np.save(caffe.scratch / "in.npy", image)
    caffe.run("deploy", "deploy.prototxt", "w.caffemodel", "in.npy", "out.npy")
    theirs = np.load(caffe.scratch / "out.npy")

    assert theirs.shape == ours.shape == (448, 512)
    assert theirs.std() > 1e-3  # a non-trivial output, not a constant map
    relative = np.abs(ours - theirs) / np.maximum(np.abs(theirs), 1e-3)
    print(f"max relative error {relative.max():.2e}, output std {theirs.std():.3f}")
    assert relative.max() <= 1e-5, relative.max()
