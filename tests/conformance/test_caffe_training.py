"""Training in the torch engine against real Caffe (pycaffe and `caffe
train` in the Caffe root compute every reference at test time).

A small net of the paper's family (HDF5Data, padded Convolution, PReLU,
Convolution, Sigmoid, EuclideanLoss; 12x12 tiles, batches of 4) starts in
both engines from the same .caffemodel of random values written by us, and
reads the same two HDF5 files (5 + 6 rows, so batches span files and the
wrap-around; 11 iterations of 4 rows end exactly at a wrap). Gradients are
also checked with a SigmoidCrossEntropyLoss head (plus Silence), and the
paper's own TRAIN net, as shipped, with one forward of a 100-tile batch.

Throughout, the difference of two blobs is relative to the blob's scale:
max|ours - caffe| / max|caffe| over the blob's elements, so that elements
near zero do not inflate it. Gradients must agree within 1e-5, weights
after training within 1e-4, solver history (momentum, Adam's moments)
within 3e-4."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import tiny_nets
from tiny_nets import relative_difference
from plaquenet.caffe.prototxt import read_net
from plaquenet.caffe.snapshot import (blob_array, caffemodel_weights, read_caffemodel, read_solverstate,
                                      write_caffemodel)
from plaquenet.engines.torch.net import TRAIN, Net, copy_trained_layers
from plaquenet.engines.torch.train import train

GRADIENT_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4
# The history is a running sum whose terms cancel as training settles, so
# float32 rounding weighs more in it: 4.0e-5 at most measured here over 50
# iterations (2 cores), while a gradient 1e-4 off in one blob shows as 1e-4
# to 2e-3.
HISTORY_TOLERANCE = 3e-4
ROWS_PER_FILE = (5, 6)
BATCH, TILE = 4, 12


# The loss head: the paper's (Sigmoid + EuclideanLoss), or cross-entropy on
# conv2's logits with loss_weight 0.5 and the unused probabilities silenced.
HEADS = {
    "euclidean": tiny_nets.PROB + tiny_nets.EUCLIDEAN_LOSS,
    "cross_entropy": tiny_nets.PROB +
                     'layer { name: "quiet" type: "Silence" bottom: "prob" }\n'
                     'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "conv2" bottom: "label" '
                     'top: "loss" loss_weight: 0.5 }\n',
}


def _net_prototxt(bias_mults: bool = False, head: str = "euclidean") -> str:
    """tiny_nets' two-convolution net: conv1 4 @ 5x5, PReLU, conv2 1 @ 3x3, on HDF5Data list.txt."""
    # bias_mults: the common Caffe recipe, biases learn twice as fast and are not decayed.
    specs = "param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }" if bias_mults else ""
    return tiny_nets.two_conv_train("list.txt", BATCH, channels=4, kernel_size=5, params=specs, head=HEADS[head])


def _initial_weights():
    """He-scaled Gaussian filters, small random biases and PReLU slopes (some
    negative), conv2's bias below 0 so the first sigmoid outputs are not 0.5."""
    rng = np.random.default_rng(7)
    weights = {
        "conv1": [rng.normal(0, np.sqrt(2 / 25), (4, 1, 5, 5)), rng.uniform(-0.1, 0.1, 4)],
        "prelu1": [rng.uniform(-0.1, 0.4, 4)],
        "conv2": [rng.normal(0, np.sqrt(2 / 36), (1, 4, 3, 3)), rng.uniform(-1.2, -0.8, 1)],
    }
    return tiny_nets.tiny_weights(weights)


def _write_inputs(folder: Path, solver_text: str = "", bias_mults: bool = False, head: str = "euclidean"):
    """net.prototxt, the HDF5 files and their list, w0.caffemodel, solver.prototxt
    and an empty snap/ (Caffe checks the snapshot prefix is writable at start)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.prototxt").write_text(_net_prototxt(bias_mults, head))
    rng = np.random.default_rng(1)
    for i, rows in enumerate(ROWS_PER_FILE):
        image = rng.normal(0, 1, (rows, 1, TILE, TILE)).astype(np.float32)
        with h5py.File(folder / f"d{i}.h5", "w") as f:
            f["data"] = image
            f["label"] = (image > 0.8).astype(np.float32)   # learnable: bright pixels are "plaque"
    (folder / "list.txt").write_text("".join(f"d{i}.h5\n" for i in range(len(ROWS_PER_FILE))))
    write_caffemodel(folder / "w0.caffemodel", _initial_weights())
    (folder / "solver.prototxt").write_text(solver_text)
    (folder / "snap").mkdir(exist_ok=True)


INPUTS = ("net.prototxt", "list.txt", "d0.h5", "d1.h5", "w0.caffemodel", "solver.prototxt")


def _caffe_folder(caffe, src: Path, name: str) -> Path:
    """A folder `name` in the Caffe scratch holding the inputs written in `src`."""
    for f in INPUTS:
        caffe.put(src / f, f"{name}/{f}")
    (caffe.scratch / name / "snap").mkdir()
    return caffe.scratch / name


# --- 1. gradients ------------------------------------------------------------

def _compare_gradients(caffe, name: str, weights: str, monkeypatch):
    """Our Net and pycaffe, one forward+backward of the first batch from
    `weights`, in the Caffe scratch folder `name`. Returns the differences."""
    caffe.run("grads", name, "net.prototxt", weights, "grads.npz")
    folder = caffe.scratch / name
    theirs = np.load(folder / "grads.npz")
    monkeypatch.chdir(folder)   # HDF5Data's source is relative to the working directory
    net = Net(read_net("net.prototxt"), TRAIN, source="net.prototxt", fill=False)
    copy_trained_layers(net, read_caffemodel(weights), weights, require_all=True)
    blobs, loss = net()
    loss.backward()

    # pycaffe's outputs are the loss tops, before loss_weight (which the gradients carry).
    top = blobs["loss"].item()
    differences = {"loss": abs(top - float(theirs["out/loss"])) / abs(float(theirs["out/loss"]))}
    for blob in ("data", "label", "conv1", "prob"):
        differences[f"blob {blob}"] = relative_difference(blobs[blob].detach().numpy(), theirs[f"blob/{blob}"])
    diff_keys = sorted(k for k in theirs.files if k.startswith("diff/"))
    assert diff_keys == sorted(f"diff/{p.layer}/{p.index}" for p in net.learnable)
    for p in net.learnable:
        differences[f"diff {p.layer}/{p.index}"] = relative_difference(p.blob.grad.numpy(),
                                                              theirs[f"diff/{p.layer}/{p.index}"])
    return differences


@pytest.mark.parametrize("head", sorted(HEADS))
def test_every_parameter_gradient_matches_pycaffe(head, caffe, tmp_path, monkeypatch):
    _write_inputs(tmp_path, head=head)
    _caffe_folder(caffe, tmp_path, "grads")
    differences = _compare_gradients(caffe, "grads", "w0.caffemodel", monkeypatch)
    print("\n".join(f"{k}: {v:.2e}" for k, v in differences.items()))
    assert len([k for k in differences if k.startswith("diff ")]) == 5   # conv1 w b, prelu1 slopes, conv2 w b
    assert max(differences.values()) <= GRADIENT_TOLERANCE, differences


# --- 2. solver iterations ------------------------------------------------------

ITERATIONS = 50
COMMON = (f'net: "net.prototxt" max_iter: {ITERATIONS} snapshot: 10 snapshot_prefix: "snap/m" display: 5 '
          'random_seed: 0\n')
# base_lr 0.02, not 0.05, where 0.05 makes training chaotic on this tiny net:
# with 0.05, l2_decay_bias_mults and iter_size_2 agree with Caffe to 1e-6
# through iteration 20, then the float32 rounding differences grow about
# tenfold every 10 iterations (weights 3.6e-4 and 6.5e-5 apart, history
# 7e-3 and 5e-3, at iteration 50). With 0.02: 4e-7 (weights) and 4e-5
# (history) at iteration 50, and training still moves every blob.
SOLVERS = {
    # name: (solver settings, biases with lr_mult 2 / decay_mult 0)
    "sgd_momentum_step": ('type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "step" gamma: 0.5 stepsize: 8',
                          False),
    "l2_decay_bias_mults": ('type: "SGD" base_lr: 0.02 momentum: 0.9 lr_policy: "fixed" weight_decay: 0.05',
                            True),
    "iter_size_2": ('type: "SGD" base_lr: 0.02 momentum: 0.9 lr_policy: "fixed" iter_size: 2 average_loss: 3',
                    False),
    "clip_gradients": ('type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "fixed" clip_gradients: 0.5', False),
    "multistep": ('type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "multistep" gamma: 0.5 '
                  'stepvalue: 3 stepvalue: 12 stepvalue: 20', False),
    "adam": ('type: "Adam" base_lr: 0.01 momentum: 0.9 momentum2: 0.999 delta: 1e-8 lr_policy: "fixed" '
             'weight_decay: 0.01', False),
    "nesterov": ('type: "Nesterov" base_lr: 0.05 momentum: 0.9 lr_policy: "step" gamma: 0.5 stepsize: 10',
                 False),
}


def _snapshots(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".caffemodel", ".solverstate"))


def _compare_snapshots(ours: Path, reference: Path, names=None):
    """Same snapshot names in both folders; for each of `names` (default:
    all) the worst weight or history difference, asserted within tolerance;
    the solverstate fields that must be equal (iter,
    current_step, learned_net) and the history count are asserted equal."""
    assert _snapshots(ours) == _snapshots(reference)
    worst = {}
    for name in names or _snapshots(reference):
        if name.endswith(".caffemodel"):
            a, b = (caffemodel_weights(read_caffemodel(d / name)) for d in (ours, reference))
            assert a.keys() == b.keys()
            worst[name] = max(relative_difference(x, y) for k in b for x, y in zip(a[k], b[k]))
        else:
            a, b = read_solverstate(ours / name), read_solverstate(reference / name)
            assert (a.iter, a.current_step, a.learned_net) == (b.iter, b.current_step, b.learned_net)
            assert len(a.history) == len(b.history)
            worst[name] = max(relative_difference(blob_array(x), blob_array(y)) for x, y in zip(a.history, b.history))
    print(ours, "vs", reference, {k: f"{v:.1e}" for k, v in worst.items()})
    weights = {k: v for k, v in worst.items() if k.endswith(".caffemodel")}
    history = {k: v for k, v in worst.items() if k.endswith(".solverstate")}
    assert max(weights.values()) <= WEIGHT_TOLERANCE, weights
    assert max(history.values()) <= HISTORY_TOLERANCE, history
    return worst


def _smallest_change(w0: Path, trained: Path) -> float:
    """How far training moved the least-moved blob (relative to its start)."""
    a, b = caffemodel_weights(read_caffemodel(trained)), caffemodel_weights(read_caffemodel(w0))
    return min(relative_difference(x, y) for k in b for x, y in zip(a[k], b[k]))


@pytest.mark.parametrize("setting", sorted(SOLVERS))
def test_solver_iterations_match_caffe_train(setting, caffe, tmp_path, monkeypatch):
    settings, bias_mults = SOLVERS[setting]
    _write_inputs(tmp_path, COMMON + settings + "\n", bias_mults)
    theirs = _caffe_folder(caffe, tmp_path, "run")
    caffe.run("train", "run", "--solver=solver.prototxt", "--weights=w0.caffemodel")

    monkeypatch.chdir(tmp_path)
    result = train("solver.prototxt", weights="w0.caffemodel")
    assert result.iterations == ITERATIONS

    snapshots_at = range(10, ITERATIONS + 1, 10)
    expected = [f"m_iter_{n}.{kind}" for n in snapshots_at for kind in ("caffemodel", "solverstate")]
    assert _snapshots(theirs / "snap") == sorted(expected)
    _compare_snapshots(tmp_path / "snap", theirs / "snap")
    # Agreement means something only if training went somewhere.
    moved = _smallest_change(tmp_path / "w0.caffemodel", theirs / f"snap/m_iter_{ITERATIONS}.caffemodel")
    assert moved > 100 * WEIGHT_TOLERANCE, moved
    if setting == "multistep":
        assert read_solverstate(tmp_path / f"snap/m_iter_{ITERATIONS}.solverstate").current_step == 3
    if setting == "clip_gradients":
        # The setting must bite, in Caffe and in ours, as often.
        caffe_clips = (theirs / "caffe.log").read_text().count("Gradient clipping")
        our_clips = (tmp_path / "snap" / "train.log").read_text().count("Gradient clipping")
        assert 5 <= caffe_clips == our_clips, (caffe_clips, our_clips)


# --- 3. snapshot interchange ---------------------------------------------------

RESUME = 'net: "net.prototxt" max_iter: 22 snapshot: 11 snapshot_prefix: "snap/m" display: 0 random_seed: 0\n'
RESUME_SOLVERS = {
    "sgd_multistep_l2": 'type: "SGD" base_lr: 0.05 momentum: 0.9 lr_policy: "multistep" gamma: 0.5 '
                        'stepvalue: 4 stepvalue: 15 weight_decay: 0.02',
    "adam": 'type: "Adam" base_lr: 0.01 momentum: 0.9 momentum2: 0.999 lr_policy: "fixed"',
}


@pytest.mark.parametrize("setting", sorted(RESUME_SOLVERS))
def test_snapshots_resume_across_engines(setting, caffe, tmp_path, monkeypatch):
    """Caffe's iteration-11 snapshot resumed by us, and ours resumed by
    `caffe train --snapshot`, end where the other engine's uninterrupted run
    ends (11 iterations of 4 rows are 4 passes over the 11 rows: the data
    layer, which a resume restarts at row 0, is at row 0 there anyway). Our
    iteration-11 .caffemodel also gives pycaffe our forward pass and gradients."""
    solver_text = RESUME + RESUME_SOLVERS[setting] + "\n"
    halves = sorted(f"m_iter_{n}.{k}" for n in (11, 22) for k in ("caffemodel", "solverstate"))
    last = ["m_iter_22.caffemodel", "m_iter_22.solverstate"]
    ours_full = tmp_path / "full"
    _write_inputs(ours_full, solver_text)
    theirs_full = _caffe_folder(caffe, ours_full, "full")
    caffe.run("train", "full", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    assert _snapshots(theirs_full / "snap") == halves
    monkeypatch.chdir(ours_full)
    train("solver.prototxt", weights="w0.caffemodel")

    # Ours, resumed from Caffe's snapshot.
    ours_resumed = tmp_path / "resumed"
    _write_inputs(ours_resumed, solver_text)
    for kind in ("caffemodel", "solverstate"):
        shutil.copy(theirs_full / "snap" / f"m_iter_11.{kind}", ours_resumed / "snap")
    monkeypatch.chdir(ours_resumed)
    assert train("solver.prototxt", snapshot="snap/m_iter_11.solverstate").iterations == 22
    _compare_snapshots(ours_resumed / "snap", theirs_full / "snap", last)

    # Caffe, resumed from our snapshot.
    theirs_resumed = _caffe_folder(caffe, ours_full, "resumed")
    for kind in ("caffemodel", "solverstate"):
        shutil.copy(ours_full / "snap" / f"m_iter_11.{kind}", theirs_resumed / "snap")
    caffe.run("train", "resumed", "--solver=solver.prototxt", "--snapshot=snap/m_iter_11.solverstate")
    assert "Resuming from snap/m_iter_11.solverstate" in (theirs_resumed / "caffe.log").read_text()
    _compare_snapshots(theirs_resumed / "snap", ours_full / "snap", last)

    # Our .caffemodel, read by pycaffe: the same forward pass and gradients.
    caffe.put(ours_full / "snap" / "m_iter_11.caffemodel", "resumed/ours_iter_11.caffemodel")
    differences = _compare_gradients(caffe, "resumed", "ours_iter_11.caffemodel", monkeypatch)
    assert max(differences.values()) <= GRADIENT_TOLERANCE, differences


# --- 4. the paper's TRAIN net --------------------------------------------------

def test_paper_train_net_forward_matches_pycaffe(caffe, tmp_path, monkeypatch):
    """prototxt/plaquenet_train.prototxt as shipped (HDF5Data, batch 100 of
    50x50 tiles): one forward from the same .caffemodel in both engines; the
    loss and the sigmoid outputs within 1e-5 (float32 throughout)."""
    folder = tmp_path / "paper"
    tiles = folder / "data/current/tiles"   # the prototxt's source, relative to the working directory
    tiles.mkdir(parents=True)
    shutil.copy(Path(__file__).resolve().parents[2] / "prototxt/plaquenet_train.prototxt", folder / "net.prototxt")
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1, (100, 1, 50, 50)).astype(np.float32)
    with h5py.File(tiles / "tiles.h5", "w") as f:
        f["data"] = image
        f["label"] = (image > 1.2).astype(np.float32)
    (tiles / "train.txt").write_text("data/current/tiles/tiles.h5\n")
    write_caffemodel(folder / "w.caffemodel", tiny_nets.paper_weights())
    caffe.put(folder, "paper")
    caffe.run("forward", "paper", "net.prototxt", "w.caffemodel", "out.npz", "data", "prob")
    theirs = np.load(caffe.scratch / "paper/out.npz")

    monkeypatch.chdir(folder)
    net = Net(read_net("net.prototxt"), TRAIN, source="net.prototxt", fill=False)
    copy_trained_layers(net, read_caffemodel("w.caffemodel"), "w.caffemodel", require_all=True)
    with torch.no_grad():
        blobs, loss = net()
    np.testing.assert_array_equal(blobs["data"].numpy(), theirs["blob/data"])
    prob = blobs["prob"].numpy()
    assert prob.shape == (100, 1, 50, 50) and 0.01 < prob.std()   # not saturated: the comparison means something
    loss_error = abs(loss.item() - float(theirs["out/loss"])) / float(theirs["out/loss"])
    prob_error = relative_difference(prob, theirs["blob/prob"])
    print(f"paper net: loss {loss.item():.6g} vs {float(theirs['out/loss']):.6g} ({loss_error:.1e}), "
          f"prob {prob_error:.1e}, elementwise {np.max(np.abs(prob - theirs['blob/prob']) / theirs['blob/prob']):.1e}")
    assert loss_error <= 1e-5 and prob_error <= 1e-5, (loss_error, prob_error)
