"""The imbalance-aware losses (plaquenet/caffe_layers.py) in real Caffe and in
the torch engine. Real Caffe runs the module as Python layers: pycaffe's
Python 3.9 imports it from a copy of plaquenet holding only `__init__.py` and
`caffe_layers.py` (so it needs nothing but numpy), on PYTHONPATH inside the
root; `caffe train` (through tools/caffe_reference.py) inherits that
PYTHONPATH. The torch engine runs its native layers (python_layers.py).

1. One forward and backward in pycaffe and in our Net: Input -> 3x3
   Convolution (constant filler: the same weights in both) -> [Sigmoid] ->
   the loss with loss_weight 1.5 and a non-default param_str. The loss top,
   the gradient of the loss's bottom and the convolution's weight
   gradients agree within 1e-5 relative (max|ours - caffe| / max|caffe|),
   the tolerance of test_caffe_training.py.
2. `caffe train` and ours, 3 iterations of SGD from the same .caffemodel
   on HDF5Data tiles: every logged loss within 2e-5 (6 significant digits
   printed), and the weights after 3 iterations within 1e-4."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_nets
from tiny_nets import relative_difference
from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.log import caffe_log_losses
from plaquenet.caffe.prototxt import parse_prototxt
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, write_caffemodel
from plaquenet.engines.torch.net import TRAIN, Net
from plaquenet.engines.torch.train import train

REPO = Path(__file__).resolve().parents[2]
GRADIENT_TOLERANCE = 1e-5
LOGGED_LOSS_TOLERANCE = 2e-5
WEIGHT_TOLERANCE = 1e-4
SHAPE = (3, 1, 6, 6)


def _python_loss(layer: str, bottom: str, param_str: str, weight: float) -> str:
    return (f'layer {{ name: "loss" type: "Python" bottom: "{bottom}" bottom: "label" top: "loss" '
            f'loss_weight: {weight}\n  python_param {{ module: "plaquenet.caffe_layers" layer: "{layer}" '
            f'param_str: "{param_str}" }} }}\n')


# loss -> (its Python layer on the conv's logits or on the Sigmoid's probabilities, the blob it reads)
LOSSES = {
    "dice": ('layer { name: "prob" type: "Sigmoid" bottom: "c" top: "prob" }\n' +
             _python_loss("SoftDiceLoss", "prob", "eps=0.5", 1.5), "prob"),
    "weighted_ce": (_python_loss("WeightedSigmoidCrossEntropyLoss", "c", "pos_weight=4", 1.5), "c"),
}

INPUT_NET = (tiny_nets.input_layer(SHAPE, "x") + tiny_nets.input_layer(SHAPE, "label") +
             'layer { name: "c" type: "Convolution" bottom: "x" top: "c" convolution_param { num_output: 1 '
             'kernel_size: 3 pad: 1 weight_filler { type: "constant" value: 0.3 } '
             'bias_filler { type: "constant" value: -0.4 } } }\n')

# Runs in the root: one forward and backward of net.prototxt fed inputs.npz;
# writes the loss top, the named blob's diff and conv c's diffs.
PYCAFFE_SIDE = r'''
import sys
import numpy as np
import caffe

blob = sys.argv[1]
caffe.set_mode_cpu()
net = caffe.Net("net.prototxt", caffe.TRAIN)
inputs = np.load("inputs.npz")
for name in ("x", "label"):
    net.blobs[name].data[...] = inputs[name]
out = net.forward()
net.backward()
np.savez("out.npz", loss=out["loss"].copy(), bottom_diff=net.blobs[blob].diff.copy(),
         weight_diff=net.params["c"][0].diff.copy(), bias_diff=net.params["c"][1].diff.copy())
assert "torch" not in sys.modules
'''


def _put_python_layers(caffe) -> None:
    """plaquenet/__init__.py and caffe_layers.py alone, in the scratch folder (on PYTHONPATH)."""
    (caffe.scratch / "plaquenet").mkdir()
    for name in ("__init__.py", "caffe_layers.py"):
        shutil.copy(REPO / "plaquenet" / name, caffe.scratch / "plaquenet" / name)


def _in_root(caffe, command: str) -> None:
    """`command` in the scratch folder with it on PYTHONPATH (absolute: `caffe train` runs elsewhere)."""
    scratch = caffe.inside(".")
    done = subprocess.run(["chroot", str(caffe.root), "sh", "-c",
                           f"cd {scratch} && GLOG_minloglevel=2 PYTHONPATH={scratch} {command}"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"real Caffe failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-3000:]}"


def _inputs() -> dict:
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.5, SHAPE).astype(np.float32)
    return {"x": x, "label": (rng.uniform(0, 1, SHAPE) > 0.8).astype(np.float32)}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_loss_and_gradients_match_pycaffe(loss, caffe):
    head, blob = LOSSES[loss]
    text = INPUT_NET + head
    _put_python_layers(caffe)
    (caffe.scratch / "net.prototxt").write_text(text)
    (caffe.scratch / "pycaffe_side.py").write_text(PYCAFFE_SIDE)
    inputs = _inputs()
    np.savez(caffe.scratch / "inputs.npz", **inputs)
    _in_root(caffe, f"python3 pycaffe_side.py {blob}")
    theirs = np.load(caffe.scratch / "out.npz")

    net = Net(parse_prototxt(text, caffe_pb2.NetParameter()), TRAIN, source="net.prototxt", seed=0)
    blobs, total = net({name: torch.from_numpy(a) for name, a in inputs.items()})
    blobs[blob].retain_grad()
    total.backward()
    weight, bias = (p.blob.grad.numpy() for p in net.learnable)
    differences = {
        "loss": abs(blobs["loss"].item() - float(theirs["loss"])) / abs(float(theirs["loss"])),
        f"diff {blob}": relative_difference(blobs[blob].grad.numpy(), theirs["bottom_diff"]),
        "diff c/0": relative_difference(weight, theirs["weight_diff"]),
        "diff c/1": relative_difference(bias, theirs["bias_diff"]),
    }
    print(loss, {k: f"{v:.1e}" for k, v in differences.items()})
    assert total.item() == pytest.approx(1.5 * blobs["loss"].item())   # the loss_weight counts
    assert max(differences.values()) <= GRADIENT_TOLERANCE, differences


# loss -> (the head on conv2, a learning rate that moves the loss without diverging)
TRAIN_HEADS = {
    "dice": (tiny_nets.PROB + _python_loss("SoftDiceLoss", "prob", "eps=1", 1), 0.5),
    "weighted_ce": (_python_loss("WeightedSigmoidCrossEntropyLoss", "conv2", "pos_weight=5", 1), 0.002),
}
SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: {lr} momentum: 0.9 lr_policy: "fixed" max_iter: 3 '
          'display: 1 snapshot: 0 snapshot_prefix: "snap/m" random_seed: 0\n')


@pytest.mark.parametrize("loss", sorted(TRAIN_HEADS))
def test_caffe_train_with_a_python_loss_logs_our_losses(loss, caffe, tmp_path, monkeypatch):
    head, lr = TRAIN_HEADS[loss]
    net = tiny_nets.two_conv_train("list.txt", 4, channels=4, kernel_size=5, head=head)
    ours = tiny_nets.write_run_folder(tmp_path / "ours", SOLVER.format(lr=lr), net, rows=6, tile=12)
    write_caffemodel(ours / "w0.caffemodel", tiny_nets.tiny_weights(tiny_nets.random_two_conv_weights(4)))
    _put_python_layers(caffe)
    theirs = caffe.put(ours, "run")
    _in_root(caffe, "python3 caffe_reference.py train run --solver=solver.prototxt --weights=w0.caffemodel")

    monkeypatch.chdir(ours)
    assert train("solver.prototxt", weights="w0.caffemodel").iterations == 3
    their_log = (theirs / "caffe.log").read_text()
    their_losses = caffe_log_losses(their_log.splitlines())
    our_losses = caffe_log_losses((ours / "snap" / "train.log").read_text().splitlines())
    assert [i for i, _ in our_losses] == [i for i, _ in their_losses] == [0, 1, 2, 3]
    worst = max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(our_losses, their_losses))
    a, b = (caffemodel_weights(read_caffemodel(f / "snap/m_iter_3.caffemodel")) for f in (ours, theirs))
    weights = max(relative_difference(x, y) for k in b for x, y in zip(a[k], b[k]))
    print(loss, "caffe", their_losses, "ours", our_losses, f"loss {worst:.1e} weights {weights:.1e}")
    assert their_losses[-1][1] < their_losses[0][1]   # it trained
    assert worst <= LOGGED_LOSS_TOLERANCE and weights <= WEIGHT_TOLERANCE, (worst, weights)


def test_plaquenet_train_engine_caffe_finds_the_python_layers_without_pythonpath(caffe, tmp_path, monkeypatch):
    """`python3 -m plaquenet.cli train --engine caffe` from a source checkout
    (the package and pyproject.toml) with no PYTHONPATH: the engine gives
    `caffe train` the checkout's root, where Caffe's Python finds the layer
    (plaquenet.engines.caffe.python_layer_path); its losses are ours."""
    head, lr = TRAIN_HEADS["dice"]
    net = tiny_nets.two_conv_train("list.txt", 4, channels=4, kernel_size=5, head=head)
    solver = SOLVER.format(lr=lr).replace("snap/m", "runs/dice/m")
    ours = tiny_nets.write_run_folder(tmp_path / "ours", solver, net, rows=6, tile=12)
    write_caffemodel(ours / "w0.caffemodel", tiny_nets.tiny_weights(tiny_nets.random_two_conv_weights(4)))
    checkout = caffe.put(ours, "checkout")
    shutil.copytree(REPO / "plaquenet", checkout / "plaquenet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", checkout)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    done = subprocess.run(["chroot", str(caffe.root), "sh", "-c",
                           f"cd {caffe.inside('checkout')} && python3 -m plaquenet.cli train --engine caffe "
                           f"--solver solver.prototxt --weights w0.caffemodel"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    monkeypatch.chdir(ours)
    train("solver.prototxt", weights="w0.caffemodel")
    theirs, mine = (caffe_log_losses((f / "runs/dice/train.log").read_text().splitlines()) for f in (checkout, ours))
    assert [i for i, _ in theirs] == [i for i, _ in mine] == [0, 1, 2, 3]
    assert max(abs(a - b) / abs(b) for (_, a), (_, b) in zip(mine, theirs)) <= LOGGED_LOSS_TOLERANCE


def test_the_100_dice_prototxt_builds_in_pycaffe(caffe):
    """prototxt/plaquenet_train_100_dice.prototxt as shipped: real Caffe imports
    its Python layer, sets it up on 100x100 tiles and gives it loss weight 1
    (pycaffe builds the net; no forward pass: a batch of 100 such tiles takes
    Caffe many seconds on the CPU)."""
    import h5py

    _put_python_layers(caffe)
    caffe.put(REPO / "prototxt/plaquenet_train_100_dice.prototxt", "prototxt/plaquenet_train_100_dice.prototxt")
    tiles = caffe.scratch / "data/current/tiles_100"
    tiles.mkdir(parents=True)
    with h5py.File(tiles / "train_000.h5", "w") as f:
        f["data"] = np.zeros((2, 1, 100, 100), np.float32)
        f["label"] = np.zeros((2, 1, 100, 100), np.float32)
    (tiles / "train.txt").write_text("data/current/tiles_100/train_000.h5\n")
    (caffe.scratch / "build.py").write_text(
        "import caffe\n"
        "net = caffe.Net('prototxt/plaquenet_train_100_dice.prototxt', caffe.TRAIN)\n"
        "layer = net.layers[list(net._layer_names).index('loss')]\n"
        "print(layer.type, type(layer).__name__, net.blobs['prob'].data.shape, net.blobs['loss'].data.shape,\n"
        "      float(net.blobs['loss'].diff))\n")  # Layer::SetLossWeights writes the weight into the top's diff
    scratch = caffe.inside(".")
    done = subprocess.run(["chroot", str(caffe.root), "sh", "-c",
                           f"cd {scratch} && GLOG_minloglevel=2 PYTHONPATH={scratch} python3 build.py"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["Python", "SoftDiceLoss", "(100,", "1,", "100,", "100)", "()", "1.0"]
