"""Two corners of Caffe's net format, against real Caffe (pycaffe and
`caffe train` in the Caffe root compute every reference at test time).

1. PReLU `channel_shared: true`. Caffe keeps the one slope in a 0-axis blob
   (shape `{}`, one value) and Blob::ToProto writes it with no `shape` field
   at all. Weights written by `caffe train` load in our engine (load_deploy,
   train --weights, train --snapshot) and ours load in Caffe (pycaffe,
   `caffe train --snapshot`), each giving what the other engine gives; the
   default per-channel PReLU runs beside it as the control.
2. A loss layer written without `top`. Net::Init gives every layer whose
   AutoTopBlobs() is true (the loss layers) the tops it needs, named
   "(automatic)": they count in the loss (weight 1, or the layer's
   loss_weight) but are no net output and no later layer's bottom. `caffe
   train` and ours agree on the loss of every iteration and on the weights
   after 20.

As in test_caffe_training.py, a blob's difference is relative to its scale,
max|ours - caffe| / max|caffe|. Forward outputs must agree within 1e-5,
weights within 1e-4 and solver history within 3e-4, as there."""

from pathlib import Path

import h5py
import numpy as np
import pytest

import tiny_nets
from tiny_nets import relative_difference
from plaquenet.caffe.log import caffe_log_losses
from plaquenet.caffe.snapshot import (blob_array, blob_shape, caffemodel_weights, read_caffemodel,
                                      read_solverstate, write_caffemodel)
from plaquenet.engines.torch.net import load_deploy
from plaquenet.engines.torch.train import train

OUTPUT_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4
HISTORY_TOLERANCE = 3e-4
# Both logs print the loss with 6 significant digits (%g): each is within
# 5e-6 of its value from rounding alone.
LOGGED_LOSS_TOLERANCE = 2e-5
BATCH, TILE, ROWS = 4, 12, 8   # 8 rows in batches of 4: every second iteration starts again at row 0


def _write_tiles(folder: Path) -> None:
    """d.h5 (ROWS tiles, label: the bright pixels) and list.txt naming it."""
    image = np.random.default_rng(1).normal(0, 1, (ROWS, 1, TILE, TILE)).astype(np.float32)
    with h5py.File(folder / "d.h5", "w") as f:
        f["data"] = image
        f["label"] = (image > 0.8).astype(np.float32)
    (folder / "list.txt").write_text("d.h5\n")


def _snapshot_differences(ours: Path, theirs: Path) -> dict:
    """Worst weight and history difference of two snapshots <x>.caffemodel/.solverstate
    (paths without the suffix), after checking that they hold the same blobs."""
    a, b = (caffemodel_weights(read_caffemodel(p.with_suffix(".caffemodel"))) for p in (ours, theirs))
    assert a.keys() == b.keys()
    sa, sb = (read_solverstate(p.with_suffix(".solverstate")) for p in (ours, theirs))
    assert (sa.iter, sa.current_step, len(sa.history)) == (sb.iter, sb.current_step, len(sb.history))
    for x, y in zip(sa.history, sb.history):
        assert blob_shape(x) == blob_shape(y)
    return {"weights": max(relative_difference(x, y) for k in b for x, y in zip(a[k], b[k])),
            "history": max(relative_difference(blob_array(x), blob_array(y)) for x, y in zip(sa.history, sb.history))}


def _assert_within(differences: dict) -> None:
    print({k: f"{v:.1e}" for k, v in differences.items()})
    assert differences["weights"] <= WEIGHT_TOLERANCE, differences
    assert differences["history"] <= HISTORY_TOLERANCE, differences


# --- 1. PReLU channel_shared ---------------------------------------------------

SHARED = {"shared": True, "per_channel": False}
PRELU_SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" '
                'max_iter: 4 snapshot: 2 snapshot_prefix: "snap/m" display: 0 random_seed: 0\n')
# Fine-tuning from iteration 2's weights: a fresh solver, two iterations.
FINETUNE_SOLVER = PRELU_SOLVER.replace("max_iter: 4", "max_iter: 2").replace("snap/m", "ft/m")


def _prelu_layers(shared: bool) -> str:
    """conv1 (4 @ 5x5, msra) -> PReLU prelu1 -> conv2 (1 @ 3x3, msra) -> Sigmoid prob."""
    param = " prelu_param { channel_shared: true }" if shared else ""
    return (tiny_nets.convolution("conv1", "data", 4, 5, filler="msra") +
            f'layer {{ name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1"{param} }}\n' +
            tiny_nets.convolution("conv2", "conv1", 1, 3, filler="msra") + tiny_nets.PROB)


def _write_prelu_inputs(folder: Path, shared: bool) -> Path:
    """net.prototxt (HDF5Data, the layers, EuclideanLoss), deploy.prototxt
    (Input 12x12, the layers), the tiles, both solvers and the snapshot folders."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.prototxt").write_text('name: "tiny"\n' + tiny_nets.hdf5_data_layer("list.txt", BATCH) +
                                         _prelu_layers(shared) + tiny_nets.EUCLIDEAN_LOSS)
    (folder / "deploy.prototxt").write_text('name: "tiny"\n' + tiny_nets.input_layer((1, 1, TILE, TILE)) +
                                            _prelu_layers(shared))
    _write_tiles(folder)
    (folder / "solver.prototxt").write_text(PRELU_SOLVER)
    (folder / "finetune.prototxt").write_text(FINETUNE_SOLVER)
    for snapshots in ("snap", "ft"):
        (folder / snapshots).mkdir(exist_ok=True)
    return folder


def _caffe_prelu_run(caffe, tmp_path: Path, shared: bool) -> Path:
    """`caffe train` from Caffe's own fillers, 4 iterations: snap/m_iter_{2,4}.
    Returns its folder (in the Caffe scratch, as "run")."""
    src = _write_prelu_inputs(tmp_path / "inputs", shared)
    caffe.put(src, "run")
    caffe.run("train", "run", "--solver=solver.prototxt")
    return caffe.scratch / "run"


def _copy_snapshot(src: Path, dst: Path) -> None:
    """<src>.caffemodel and <src>.solverstate as <dst>.caffemodel and <dst>.solverstate."""
    for suffix in (".caffemodel", ".solverstate"):
        dst.with_suffix(suffix).write_bytes(src.with_suffix(suffix).read_bytes())


def _blob_fields(snapshot: Path) -> list:
    """(has a `shape` field, its dims, the number of values) of every blob of
    <snapshot>.caffemodel, then of every history blob of <snapshot>.solverstate."""
    model = read_caffemodel(snapshot.with_suffix(".caffemodel"))
    blobs = [b for layer in model.layer for b in layer.blobs]
    blobs += list(read_solverstate(snapshot.with_suffix(".solverstate")).history)
    return [(b.HasField("shape"), list(b.shape.dim), len(b.data)) for b in blobs]


def _slope_blob(caffemodel: Path):
    (layer,) = [layer for layer in read_caffemodel(caffemodel).layer if layer.name == "prelu1"]
    (blob,) = layer.blobs
    return blob


def _pycaffe_deploy(caffe, folder: str, weights: str, image: np.ndarray) -> np.ndarray:
    """pycaffe's full-scan forward of folder/deploy.prototxt with `weights` (relative to folder)."""
    np.save(caffe.scratch / folder / "in.npy", image)
    caffe.run("deploy", f"{folder}/deploy.prototxt", f"{folder}/{weights}", f"{folder}/in.npy", f"{folder}/out.npy")
    return np.load(caffe.scratch / folder / "out.npy")


IMAGE = np.random.default_rng(5).normal(0, 1, (20, 17)).astype(np.float32)   # not the Input's 12x12


@pytest.mark.parametrize("kind", sorted(SHARED))
def test_caffes_prelu_weights_give_pycaffes_output_in_load_deploy(kind, caffe, tmp_path):
    shared = SHARED[kind]
    theirs = _caffe_prelu_run(caffe, tmp_path, shared)
    model = theirs / "snap/m_iter_4.caffemodel"
    blob = _slope_blob(model)
    # What Caffe writes: a shared slope is one value and no `shape` field; per channel, shape {dim: 4}.
    assert (blob.HasField("shape"), list(blob.shape.dim), len(blob.data)) == \
           ((False, [], 1) if shared else (True, [4], 4))
    slopes = blob_array(blob)
    assert np.abs(slopes - 0.25).max() > 1e-3   # trained away from the default: loading it shows

    forward = load_deploy(theirs / "deploy.prototxt", model)
    assert tuple(forward.net.layers[2].blobs[0].shape) == (() if shared else (4,))
    ours = forward(IMAGE)
    reference = _pycaffe_deploy(caffe, "run", "snap/m_iter_4.caffemodel", IMAGE)
    assert reference.std() > 1e-3
    print(f"{kind}: load_deploy vs pycaffe {relative_difference(ours, reference):.1e}")
    assert relative_difference(ours, reference) <= OUTPUT_TOLERANCE


@pytest.mark.parametrize("kind", sorted(SHARED))
def test_training_goes_on_from_caffes_prelu_snapshot_as_in_caffe(kind, caffe, tmp_path, monkeypatch):
    """Ours resumed from Caffe's iteration-2 snapshot ends where Caffe's
    uninterrupted run ends; ours fine-tuned from Caffe's iteration-2 weights
    ends where `caffe train --weights` ends."""
    shared = SHARED[kind]
    theirs = _caffe_prelu_run(caffe, tmp_path, shared)
    caffe.run("train", "run", "--solver=finetune.prototxt", "--weights=snap/m_iter_2.caffemodel")

    ours = _write_prelu_inputs(tmp_path / "ours", shared)
    _copy_snapshot(theirs / "snap/m_iter_2", ours / "snap/m_iter_2")
    monkeypatch.chdir(ours)
    assert train("solver.prototxt", snapshot="snap/m_iter_2.solverstate").iterations == 4
    resumed = _snapshot_differences(ours / "snap/m_iter_4", theirs / "snap/m_iter_4")
    assert train("finetune.prototxt", weights="snap/m_iter_2.caffemodel").iterations == 2
    finetuned = _snapshot_differences(ours / "ft/m_iter_2", theirs / "ft/m_iter_2")
    print(kind, "resumed:", end=" ")
    _assert_within(resumed)
    print(kind, "fine-tuned:", end=" ")
    _assert_within(finetuned)


@pytest.mark.parametrize("kind", sorted(SHARED))
def test_our_prelu_snapshot_is_caffes_format_and_caffe_reads_it(kind, caffe, tmp_path, monkeypatch):
    """Our iteration-2 snapshot (from our own fillers) holds every blob as
    Caffe writes it; pycaffe's forward of our weights is ours, and `caffe
    train --snapshot` from it ends where our uninterrupted run ends."""
    shared = SHARED[kind]
    theirs = _caffe_prelu_run(caffe, tmp_path, shared)
    ours = _write_prelu_inputs(tmp_path / "ours", shared)
    monkeypatch.chdir(ours)
    train("solver.prototxt")

    # Every blob, weights and history: `shape` present or absent as in Caffe's, the same dims and count.
    assert _blob_fields(ours / "snap/m_iter_2") == _blob_fields(theirs / "snap/m_iter_2")
    assert _slope_blob(ours / "snap/m_iter_2.caffemodel").HasField("shape") == (not shared)

    _copy_snapshot(ours / "snap/m_iter_2", theirs / "snap/ours_iter_2")
    reference = _pycaffe_deploy(caffe, "run", "snap/ours_iter_2.caffemodel", IMAGE)
    mine = load_deploy("deploy.prototxt", "snap/m_iter_2.caffemodel")(IMAGE)
    print(f"{kind}: pycaffe on our weights vs ours {relative_difference(mine, reference):.1e}")
    assert relative_difference(mine, reference) <= OUTPUT_TOLERANCE

    # Caffe resumes our snapshot (its learned_net, snap/m_iter_2.caffemodel, is ours too).
    _copy_snapshot(ours / "snap/m_iter_2", theirs / "snap/m_iter_2")
    for suffix in (".caffemodel", ".solverstate"):
        (theirs / f"snap/m_iter_4{suffix}").unlink()
    caffe.run("train", "run", "--solver=solver.prototxt", "--snapshot=snap/m_iter_2.solverstate")
    assert "Resuming from snap/m_iter_2.solverstate" in (theirs / "caffe.log").read_text()
    print(kind, "Caffe resumed from ours:", end=" ")
    _assert_within(_snapshot_differences(theirs / "snap/m_iter_4", ours / "snap/m_iter_4"))


# --- 2. loss layers without a top ---------------------------------------------

EUCLIDEAN_NO_TOP = 'layer { name: "loss" type: "EuclideanLoss" bottom: "prob" bottom: "label" }\n'
HEADS = {
    "euclidean": tiny_nets.PROB + EUCLIDEAN_NO_TOP,
    "cross_entropy": tiny_nets.PROB + 'layer { name: "quiet" type: "Silence" bottom: "prob" }\n'
                     'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "conv2" bottom: "label" }\n',
    # Two anonymous tops, both "(automatic)", the second weighted 0.5.
    "both": tiny_nets.PROB + EUCLIDEAN_NO_TOP +
            'layer { name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "conv2" bottom: "label" '
            'loss_weight: 0.5 }\n',
}
LOSS_SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: {lr} momentum: 0.9 lr_policy: "fixed" '
               'max_iter: 20 snapshot: 10 snapshot_prefix: "snap/m" display: 1 random_seed: 0\n')
# Cross-entropy divided by the batch only has large gradients here: at 0.02
# alone it diverges (NaN by iteration 10) and beside the Euclidean loss the
# loss jumps about (13 -> 38 -> 17): float rounding then shows in the 6th
# logged digit. Both logs print the same digits at these rates.
BASE_LR = {"euclidean": 0.02, "cross_entropy": 0.002, "both": 0.01}


def _write_loss_inputs(folder: Path, head: str) -> Path:
    """net.prototxt (HDF5Data, conv1 4 @ 5x5, PReLU, conv2 1 @ 3x3, the head),
    the tiles, the solver, w0.caffemodel (conv2's bias below 0: the first
    sigmoid outputs are not all 0.5) and snap/."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.prototxt").write_text(tiny_nets.two_conv_train("list.txt", BATCH, channels=4, kernel_size=5,
                                                                  head=HEADS[head]))
    _write_tiles(folder)
    (folder / "solver.prototxt").write_text(LOSS_SOLVER.format(lr=BASE_LR[head]))
    rng = np.random.default_rng(7)
    write_caffemodel(folder / "w0.caffemodel", tiny_nets.tiny_weights({
        "conv1": [rng.normal(0, np.sqrt(2 / 25), (4, 1, 5, 5)), rng.uniform(-0.1, 0.1, 4)],
        "prelu1": [rng.uniform(-0.1, 0.4, 4)],
        "conv2": [rng.normal(0, np.sqrt(2 / 36), (1, 4, 3, 3)), rng.uniform(-1.2, -0.8, 1)]}))
    (folder / "snap").mkdir(exist_ok=True)
    return folder


@pytest.mark.parametrize("head", sorted(HEADS))
def test_a_loss_without_top_trains_as_in_caffe(head, caffe, tmp_path, monkeypatch):
    ours = _write_loss_inputs(tmp_path / "ours", head)
    caffe.put(ours, "run")
    caffe.run("train", "run", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    theirs = caffe.scratch / "run"
    caffe_log = (theirs / "caffe.log").read_text()
    # What Caffe does with it: an anonymous top, weighted 1 (or its loss_weight).
    weights = {"euclidean": [1], "cross_entropy": [1], "both": [1, 0.5]}[head]
    assert caffe_log.count("-> (automatic)") == len(weights)
    assert [f"with loss weight {w:g}" in caffe_log for w in weights] == [True] * len(weights)

    monkeypatch.chdir(ours)
    assert train("solver.prototxt", weights="w0.caffemodel").iterations == 20
    our_log = (ours / "snap/train.log").read_text()
    # No "Train net output" line in either: an anonymous top is no net output.
    assert caffe_log.count("Train net output") == our_log.count("Train net output") == 0
    caffe_losses, our_losses = (caffe_log_losses(log.splitlines()) for log in (caffe_log, our_log))
    assert [i for i, _ in our_losses] == [i for i, _ in caffe_losses] == list(range(20)) + [20]
    loss_error = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(our_losses, caffe_losses))
    differences = {n: _snapshot_differences(ours / f"snap/m_iter_{n}", theirs / f"snap/m_iter_{n}")
                   for n in (10, 20)}
    first, last = caffe_losses[0][1], caffe_losses[-1][1]
    print(f"{head}: loss {first:g} -> {last:g}, logged losses within {loss_error:.1e}")
    assert last < 0.9 * first   # training went somewhere
    assert loss_error <= LOGGED_LOSS_TOLERANCE
    for n, d in differences.items():
        print(f"iteration {n}:", end=" ")
        _assert_within(d)
