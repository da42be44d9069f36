"""What Caffe's Net::Init and Solver::Test do to a net beyond its layers,
against the oracle (docs/CAFFE_ORACLE.md), every reference computed in the
Caffe root at test time:

1. which bottoms and blobs need a gradient (net.cpp:88-236):
   SigmoidCrossEntropyLoss's Backward aborts ("cannot backpropagate to label
   inputs") where its label needs one, and our net refuses to train exactly
   the same nets; `force_backward` gives frozen blobs (lr_mult 0) gradients,
   which clip_gradients' norm counts, in both;
2. in-place layers (top = bottom): Caffe's Backward reads the blob after the
   whole forward pass, so an in-place ReLU with a negative slope, or a layer
   before another in-place layer, gets Caffe's gradient, not the textbook's;
   ours is Caffe's, bit for bit;
3. the automatic Split layers (insert_splits.cpp): our InsertSplits names what
   pycaffe's net names, our .caffemodel is the one `caffe train` writes, byte
   for byte, and Caffe's file round-trips through our net unchanged; a top
   produced twice is refused where Caffe refuses it;
4. Net::ShareTrainedLayersWith at each test: where `caffe train` aborts on
   blobs it cannot share, `plaquenet train` stops with one line; where it
   never tests, both train;
5. the fillers each layer runs as it is set up: ours refuses where Caffe's
   CHECKs abort (a 0-axis blob given xavier, msra, ...), weights file or not,
   and the bilinear filler gives Caffe's floats for every K from 1 to 8."""

import json
import shlex
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import h5py
import numpy as np
import pytest
import torch

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import parse_prototxt
from plaquenet.caffe.snapshot import read_caffemodel
from plaquenet.caffe.splits import insert_splits
from plaquenet.cli import main
from plaquenet.engines.torch.net import TRAIN, Net, copy_trained_layers, net_to_proto
from plaquenet.errors import InputError


def _net(text: str) -> "caffe_pb2.NetParameter":
    return parse_prototxt(text, caffe_pb2.NetParameter())


def _caffe_train_each(caffe, cases: Dict[str, Dict[str, str]]) -> Dict[str, Tuple[int, str]]:
    """`caffe train --solver=solver.prototxt` in a folder per case (files:
    name -> text), all in one call into the root: name -> (exit status, log)."""
    for name, files in cases.items():
        for file, text in files.items():
            (caffe.scratch / "cases" / name / file).parent.mkdir(parents=True, exist_ok=True)
            (caffe.scratch / "cases" / name / file).write_text(text)
    loop = ("for d in *; do (cd $d && GLOG_logtostderr=1 caffe train --solver=solver.prototxt > caffe.log 2>&1; "
            "echo $? > status); done")
    subprocess.run(["chroot", str(caffe.root), "sh", "-c", f"cd {caffe.inside('cases')} && {loop}"],
                   check=True, timeout=600)
    folder = caffe.scratch / "cases"
    return {name: (int((folder / name / "status").read_text()), (folder / name / "caffe.log").read_text())
            for name in cases}


def _pycaffe(caffe, script: str, *args: str) -> str:
    """Run `script` with pycaffe in the root's scratch folder; its stdout."""
    (caffe.scratch / "script.py").write_text(script)
    command = f"cd {caffe.inside('.')} && GLOG_minloglevel=2 python3 script.py " + " ".join(map(shlex.quote, args))
    done = subprocess.run(["chroot", str(caffe.root), "sh", "-c", command], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# --- 1. a label that needs a gradient ---------------------------------------------

INPUTS = ('layer { name: "in" type: "Input" top: "data" top: "label" '
          'input_param { shape { dim: 2 dim: 1 dim: 3 dim: 3 } } }\n')


def _conv(name: str, bottom: str, top: str, extra: str = "") -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}" {extra} '
            f'convolution_param {{ num_output: 1 kernel_size: 1 weight_filler {{ type: "gaussian" }} }} }}\n')


def _xent(label: str, extra: str = "") -> str:
    return f'layer {{ name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "{label}" top: "l" {extra} }}\n'


FROZEN = "param { lr_mult: 0 } param { lr_mult: 0 }"
LABEL_NETS = {
    "label_from_input": INPUTS + _conv("c", "data", "x") + _xent("label"),
    "label_from_a_learning_conv": INPUTS + _conv("c", "data", "x") + _conv("lc", "label", "t") + _xent("t"),
    "label_from_a_frozen_conv": INPUTS + _conv("c", "data", "x") + _conv("lc", "label", "t", FROZEN) + _xent("t"),
    "force_backward": "force_backward: true\n" + INPUTS + _conv("c", "data", "x") + _xent("label"),
    "propagate_down_to_the_label": INPUTS + _conv("c", "data", "x") +
                                   _xent("label", "propagate_down: true propagate_down: true"),
    "propagate_down_nothing_learns": INPUTS + _conv("c", "data", "x", FROZEN) +
                                     _xent("label", "propagate_down: false propagate_down: true"),
    "propagate_down_nothing_learns_forced": "force_backward: true\n" + INPUTS + _conv("c", "data", "x", FROZEN) +
                                            _xent("label", "propagate_down: false propagate_down: true"),
    "learning_label_propagate_down_false": INPUTS + _conv("c", "data", "x") + _conv("lc", "label", "t") +
                                           _xent("t", "propagate_down: true propagate_down: false"),
    "learning_label_loss_weight_0": INPUTS + _conv("c", "data", "x") + _conv("lc", "label", "t") +
                                    _xent("t", "loss_weight: 0"),
    "the_prediction_as_label": INPUTS + _conv("c", "data", "x") + _xent("x"),
    "split_label_read_by_a_euclidean_loss_too":
        INPUTS + _conv("c", "data", "x") + _conv("lc", "label", "t") +
        _xent("t", "propagate_down: true propagate_down: false") +
        'layer { name: "l2" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l2" }\n',
    "forced_label_propagate_down_false": "force_backward: true\n" + INPUTS + _conv("c", "data", "x") +
                                         _conv("lc", "label", "t") +
                                         _xent("t", "propagate_down: true propagate_down: false"),
}
ONE_ITERATION = ('net: "net.prototxt" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 display: 1 '
                 'snapshot_after_train: false\n')


def test_ours_refuses_to_train_exactly_where_caffes_backward_stops_at_the_label(caffe):
    theirs = _caffe_train_each(caffe, {name: {"net.prototxt": text, "solver.prototxt": ONE_ITERATION}
                                       for name, text in LABEL_NETS.items()})
    aborted = {name for name, (status, log) in theirs.items()
               if status == 134 and "SigmoidCrossEntropyLoss Layer cannot backpropagate to label inputs." in log}
    assert {name for name, (status, _) in theirs.items() if status != 0} == aborted   # no other failure
    print("Caffe stops at the label in", sorted(aborted))
    assert 0 < len(aborted) < len(LABEL_NETS)   # both kinds are among the cases
    for name, text in LABEL_NETS.items():
        net = Net(_net(text), TRAIN, source=f"{name}.prototxt", seed=0)
        assert (net.backward_refusal is not None) == (name in aborted), name
        feed = {"data": torch.ones(2, 1, 3, 3), "label": torch.ones(2, 1, 3, 3)}
        with torch.no_grad():
            net(feed)                       # a test pass runs: Caffe only stops in Backward
        if name in aborted:
            with pytest.raises(InputError, match=rf"{name}.prototxt: layer 'loss' \(SigmoidCrossEntropyLoss\): "
                                                 r"bottom '\w+' needs a gradient"):
                net(feed)


FROZEN_FIRST = ('name: "n"\n{force}'
                'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label" '
                'hdf5_data_param {{ source: "list.txt" batch_size: 2 }} }}\n'
                'layer {{ name: "c1" type: "Convolution" bottom: "data" top: "h" {frozen} convolution_param {{ '
                'num_output: 2 kernel_size: 1 weight_filler {{ type: "constant" value: 0.5 }} '
                'bias_filler {{ type: "constant" value: 0.1 }} }} }}\n'
                'layer {{ name: "c2" type: "Convolution" bottom: "h" top: "y" convolution_param {{ '
                'num_output: 1 kernel_size: 1 weight_filler {{ type: "constant" value: 0.3 }} }} }}\n'
                'layer {{ name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "label" top: "loss" }}\n')
CLIPPED = ('net: "net.prototxt" base_lr: 0.01 momentum: 0.9 lr_policy: "fixed" max_iter: 3 display: 1 '
           'clip_gradients: 0.001 snapshot_after_train: false\n')


def _clipping_norms(log: str) -> list:
    return [float(line.split("L2 norm ")[1].split()[0]) for line in log.splitlines() if "Gradient clipping" in line]


def test_force_backward_gives_frozen_blobs_gradients_that_clip_gradients_counts(caffe, tmp_path, monkeypatch):
    """force_backward sets every blob's param_propagate_down, lr_mult 0 too:
    their gradients enter clip_gradients' global norm (lr 0 still keeps the
    blobs). Constant fillers: both engines start from the same weights."""
    cases = {f"{force}_{frozen}": {"net.prototxt": FROZEN_FIRST.format(force=f"force_backward: {force}\n",
                                                                       frozen=FROZEN if frozen else ""),
                                   "solver.prototxt": CLIPPED}
             for force in ("true", "false") for frozen in (True, False)}
    for name in cases:
        (caffe.scratch / "cases" / name).mkdir(parents=True)
        _write_tiles(caffe.scratch / "cases" / name)
    theirs = {name: _clipping_norms(log) for name, (status, log) in _caffe_train_each(caffe, cases).items()}
    assert all(len(norms) == 3 for norms in theirs.values()), theirs
    assert theirs["true_True"][0] > 1.01 * theirs["false_True"][0]   # the frozen c1 counts only when forced
    for name, files in cases.items():
        folder = _our_case(tmp_path / name, files)
        monkeypatch.chdir(folder)
        assert main(["train", "--solver", "solver.prototxt"]) == 0
        ours = _clipping_norms((folder / "train.log").read_text())
        # Both logs print 6 significant digits.
        np.testing.assert_allclose(ours, theirs[name], rtol=2e-5, err_msg=name)


# --- 2. in-place layers: Caffe's Backward reads the blob at the end ---------------

IN_PLACE_HEAD = ('force_backward: true\n'
                 'layer { name: "in" type: "Input" top: "data" top: "t" '
                 'input_param { shape { dim: 2 dim: 1 dim: 3 dim: 3 } } }\n'
                 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                 'convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "gaussian" } } }\n')
LOSS_ON = 'layer {{ name: "loss" type: "EuclideanLoss" bottom: "{}" bottom: "t" top: "l" }}\n'
IN_PLACE_NETS = {
    "relu_negative_slope_in_place": 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" '
                                    'relu_param { negative_slope: -0.5 } }\n' + LOSS_ON.format("c"),
    "relu_negative_slope_not_in_place": 'layer { name: "r" type: "ReLU" bottom: "c" top: "r" '
                                        'relu_param { negative_slope: -0.5 } }\n' + LOSS_ON.format("r"),
    "relu_then_sigmoid_in_place": 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" }\n'
                                  'layer { name: "s" type: "Sigmoid" bottom: "c" top: "c" }\n' + LOSS_ON.format("c"),
    "sigmoid_then_sigmoid_in_place": 'layer { name: "s1" type: "Sigmoid" bottom: "c" top: "s" }\n'
                                     'layer { name: "s2" type: "Sigmoid" bottom: "s" top: "s" }\n' +
                                     LOSS_ON.format("s"),
    "relu_then_prelu_negative_in_place": 'layer { name: "r" type: "ReLU" bottom: "c" top: "c" '
                                         'relu_param { negative_slope: 0.5 } }\n'
                                         'layer { name: "p" type: "PReLU" bottom: "c" top: "c" '
                                         'prelu_param { filler { type: "constant" value: -1 } } }\n' +
                                         LOSS_ON.format("c"),
}
GRADIENTS = r'''
import json, sys
import numpy as np
import caffe

caffe.set_mode_cpu()
nets, data, t = json.load(open(sys.argv[1])), np.load(sys.argv[2]), np.load(sys.argv[3])
out = {}
for name, text in nets.items():
    open("n.prototxt", "w").write(text)
    net = caffe.Net("n.prototxt", caffe.TRAIN)
    net.params["c"][0].data[...] = np.load("w.npy")
    net.params["c"][1].data[...] = 0
    net.blobs["data"].data[...] = data
    net.blobs["t"].data[...] = t
    net.forward()
    net.backward()
    out[name + "/data"] = net.blobs["data"].diff.copy()
    for layer, blobs in net.params.items():
        for i, b in enumerate(blobs):
            out[f"{name}/{layer}/{i}"] = b.diff.copy()
np.savez(sys.argv[4], **out)
'''


def test_in_place_backward_reads_the_blob_as_caffe_leaves_it(caffe):
    rng = np.random.default_rng(3)
    # One channel through a 1x1 convolution: every float from the loss down to
    # the data is one product, so both engines must give the same bits.
    data = rng.normal(0, 1, (2, 1, 3, 3)).astype(np.float32)
    target = rng.normal(0, 1, (2, 1, 3, 3)).astype(np.float32)
    weight = np.array(-1.5, np.float32).reshape(1, 1, 1, 1)
    for name, array in (("data", data), ("t", target), ("w", weight)):
        np.save(caffe.scratch / f"{name}.npy", array)
    nets = {name: IN_PLACE_HEAD + text for name, text in IN_PLACE_NETS.items()}
    (caffe.scratch / "nets.json").write_text(json.dumps(nets))
    _pycaffe(caffe, GRADIENTS, "nets.json", "data.npy", "t.npy", "diffs.npz")
    theirs = np.load(caffe.scratch / "diffs.npz")
    for name, text in nets.items():
        net = Net(_net(text), TRAIN, seed=0)
        with torch.no_grad():
            net.layers[1].blobs[0].copy_(torch.from_numpy(weight))
            net.layers[1].blobs[1].zero_()
        x = torch.from_numpy(data).requires_grad_(True)
        _, loss = net({"data": x, "t": torch.from_numpy(target)})
        loss.backward()
        np.testing.assert_array_equal(x.grad.numpy(), theirs[name + "/data"], err_msg=name)
        # Parameter gradients are sums of 18 terms of about 1, in an order that may differ.
        for param, module in zip(net.layer_params, net.layers):
            for i, blob in enumerate(module.blobs):
                np.testing.assert_allclose(blob.grad.numpy(), theirs[f"{name}/{param.name}/{i}"], rtol=1e-5,
                                           atol=1e-6, err_msg=f"{name}/{param.name}/{i}")
    # The in-place case is not the textbook gradient: that is what the control computes.
    assert not np.array_equal(theirs["relu_negative_slope_in_place/data"],
                              theirs["relu_negative_slope_not_in_place/data"])


# --- 3. Split layers -------------------------------------------------------------

SPLIT_NAMES = r'''
import json, sys
import caffe

caffe.set_mode_cpu()
out = {}
for name, text in json.load(open(sys.argv[1])).items():
    open("n.prototxt", "w").write(text)
    net = caffe.Net("n.prototxt", caffe.TRAIN)
    blobs = list(net._blob_names)
    out[name] = [[layer, net.layers[i].type, [blobs[j] for j in net._bottom_ids(i)],
                  [blobs[j] for j in net._top_ids(i)]] for i, layer in enumerate(net._layer_names)]
print(json.dumps(out))
'''
SPLIT_NETS = {
    "shared_input_and_in_place": INPUTS + _conv("c", "data", "x") +
                                 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n' +
                                 _conv("a", "x", "a") + _conv("b", "x", "b") +
                                 'layer { name: "la" type: "EuclideanLoss" bottom: "a" bottom: "label" top: "la" }\n'
                                 'layer { name: "lb" type: "EuclideanLoss" bottom: "b" bottom: "label" top: "lb" }\n',
    # A weighted top that is read: the Split carries the weight (a layer our nets refuse, named all the same).
    "weighted_conv_read": INPUTS + _conv("c", "data", "x", "loss_weight: 2") +
                          'layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "label" top: "l" }\n',
    "weighted_loss_read": INPUTS + _conv("c", "data", "x") +
                          'layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "label" top: "l" '
                          'loss_weight: 3 }\nlayer { name: "s" type: "Silence" bottom: "l" }\n',
}


def test_our_split_layers_are_named_and_wired_as_caffes(caffe):
    (caffe.scratch / "nets.json").write_text(json.dumps(SPLIT_NETS))
    theirs = json.loads(_pycaffe(caffe, SPLIT_NAMES, "nets.json"))
    for name, text in SPLIT_NETS.items():
        ours = [[l.name, l.type, list(l.bottom), list(l.top)] for l in insert_splits(_net(text).layer)]
        assert ours == theirs[name], name
    assert sum(l[1] == "Split" for layers in theirs.values() for l in layers) == 4   # x and label, x, l


X_INPUT = 'layer { name: "x" type: "Input" top: "x" input_param { shape { dim: 1 dim: 1 } } }\n'
SIGMOID = 'layer {{ name: "{}" type: "Sigmoid" bottom: "{}" top: "{}" }}\n'
TOP_NETS = {   # name -> (layers, refused)
    "two_producers": (SIGMOID.format("a", "x", "y") + SIGMOID.format("b", "x", "y"), True),
    "in_place_after_another_reader": (SIGMOID.format("a", "x", "y") + SIGMOID.format("b", "x", "x"), True),
    "in_place_as_the_only_reader": (SIGMOID.format("b", "x", "x") + SIGMOID.format("a", "x", "y"), False),
}


def test_a_top_produced_twice_is_refused_where_caffe_refuses_it(caffe):
    theirs = _caffe_train_each(caffe, {name: {"net.prototxt": X_INPUT + layers, "solver.prototxt": ONE_ITERATION}
                                       for name, (layers, _) in TOP_NETS.items()})
    for name, (layers, refused) in TOP_NETS.items():
        status, log = theirs[name]
        assert (status == 134 and "produced by multiple sources" in log) == refused and (status == 0) != refused
        if refused:
            with pytest.raises(InputError, match=r"layer 'b' \(Sigmoid\): top '\w+' is produced by an earlier"):
                Net(_net(X_INPUT + layers), TRAIN)
        else:
            Net(_net(X_INPUT + layers), TRAIN)


SPLIT_TRAIN_NET = """name: "tiny"
layer { name: "data" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "list.txt" batch_size: 2 } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 2 kernel_size: 3 pad: 1 weight_filler { type: "msra" } } }
layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" prelu_param { channel_shared: true } }
layer { name: "a" type: "Convolution" bottom: "conv1" top: "a"
        convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "b" type: "Convolution" bottom: "conv1" top: "b"
        convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "msra" } } }
layer { name: "loss_a" type: "EuclideanLoss" bottom: "a" bottom: "label" top: "loss_a" }
layer { name: "loss_b" type: "SigmoidCrossEntropyLoss" bottom: "b" bottom: "label" top: "loss_b" loss_weight: 0.5 }
"""
SPLIT_SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: 0.01 lr_policy: "fixed" max_iter: 1 snapshot: 1 '
                'snapshot_prefix: "snap/m" display: 0 random_seed: 0\n')


def _our_case(folder: Path, files: Dict[str, str]) -> Path:
    """`folder` made, with the tiles and a case's files, for plaquenet's run."""
    folder.mkdir()
    _write_tiles(folder)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


def _write_tiles(folder: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (4, 1, 6, 6)).astype(np.float32)
    with h5py.File(folder / "d.h5", "w") as f:
        f["data"], f["label"] = image, (image > 0.5).astype(np.float32)
    (folder / "list.txt").write_text("d.h5\n")


def test_our_caffemodel_is_caffes_with_its_split_layers_and_caffes_round_trips(caffe, tmp_path, monkeypatch):
    from plaquenet.engines.torch.train import train

    for folder in (tmp_path / "ours", caffe.scratch / "run"):
        (folder / "snap").mkdir(parents=True)
        (folder / "net.prototxt").write_text(SPLIT_TRAIN_NET)
        (folder / "solver.prototxt").write_text(SPLIT_SOLVER)
        _write_tiles(folder)
    subprocess.run(["chroot", str(caffe.root), "sh", "-c",
                    f"cd {caffe.inside('run')} && GLOG_minloglevel=2 caffe train --solver=solver.prototxt"],
                   check=True, timeout=300)
    theirs = read_caffemodel(caffe.scratch / "run/snap/m_iter_1.caffemodel")
    assert [l.name for l in theirs.layer if l.type == "Split"] == ["label_data_1_split", "conv1_prelu1_0_split"]

    monkeypatch.chdir(tmp_path / "ours")
    train("solver.prototxt")
    ours = read_caffemodel(tmp_path / "ours/snap/m_iter_1.caffemodel")
    # Our own fillers drew other numbers: with Caffe's values put in, the files are the same bytes.
    for our_layer, their_layer in zip(ours.layer, theirs.layer):
        for our_blob, their_blob in zip(our_layer.blobs, their_layer.blobs):
            our_blob.data[:] = their_blob.data
    assert ours.SerializeToString() == theirs.SerializeToString()

    # Caffe's file (Split layers and all) into our net, and out again: unchanged, values included.
    net = Net(_net(SPLIT_TRAIN_NET), TRAIN, source="net.prototxt", fill=False)
    copy_trained_layers(net, theirs, "m_iter_1.caffemodel")
    assert net_to_proto(net).SerializeToString() == theirs.SerializeToString()


# --- 4. sharing the train net's blobs with a test net ------------------------------

def _data_layer() -> str:
    return 'layer { name: "data" type: "HDF5Data" top: "data" top: "label" hdf5_data_param { source: "list.txt" batch_size: 2 } }\n'


def _sharing_conv(name: str, bottom: str, top: str, n: int, phase: str = "", extra: str = "") -> str:
    include = f" include {{ phase: {phase} }}" if phase else ""
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{top}"{include} '
            f'convolution_param {{ num_output: {n} kernel_size: 1 weight_filler {{ type: "gaussian" std: 0.1 }} '
            f'{extra} }} }}\n')


SQUARE = 'layer { name: "loss" type: "EuclideanLoss" bottom: "y" bottom: "label" top: "loss" }\n'
SHARING_NETS = {
    "compatible": _sharing_conv("conv1", "data", "h", 2) + _sharing_conv("conv2", "h", "y", 1),
    "test_layer_without_blobs": _sharing_conv("conv1", "data", "h", 2) +
                                _sharing_conv("conv2", "h", "y", 1, "TRAIN") +
                                'layer { name: "conv2" type: "ReLU" bottom: "h" top: "h2" include { phase: TEST } }\n' +
                                _sharing_conv("conv3", "h2", "y", 1, "TEST"),
    "train_layer_without_blobs": _sharing_conv("conv1", "data", "h", 2) +
                                 'layer { name: "x" type: "ReLU" bottom: "h" top: "h2" include { phase: TRAIN } }\n' +
                                 _sharing_conv("x", "h", "h2", 2, "TEST") + _sharing_conv("conv2", "h2", "y", 1),
    "blob_shape": _sharing_conv("conv1", "data", "h", 2, "TRAIN") + _sharing_conv("conv1", "data", "h", 3, "TEST") +
                  _sharing_conv("conv2", "h", "y", 1),
    "two_test_layers_of_one_name": _sharing_conv("conv1", "data", "h", 2) +
                                   _sharing_conv("conv2", "h", "y", 1, "TRAIN") +
                                   _sharing_conv("conv2", "h", "y0", 1, "TEST") +
                                   _sharing_conv("conv2", "y0", "y", 1, "TEST", "bias_term: false"),
    "two_train_layers_of_one_name": _sharing_conv("conv1", "data", "h", 2) +
                                    _sharing_conv("conv2", "h", "y0", 1, "TRAIN") +
                                    _sharing_conv("conv2", "y0", "y", 1, "TRAIN", "bias_term: false") +
                                    _sharing_conv("conv2", "h", "y", 1, "TEST"),
}
SHARING_SOLVERS = {   # tests at iteration 0 and 2; never tests
    "tested": 'test_iter: 1 test_interval: 2',
    "untested": 'test_iter: 1 test_interval: 3 test_initialization: false',
}


def test_train_stops_where_caffe_cannot_share_blobs_with_the_test_net(caffe, tmp_path, monkeypatch, capsys):
    cases = {}
    for net_name, layers in SHARING_NETS.items():
        for solver_name, test_fields in SHARING_SOLVERS.items():
            cases[f"{net_name}.{solver_name}"] = {
                "net.prototxt": 'name: "n"\n' + _data_layer() + layers + SQUARE,
                "solver.prototxt": f'net: "net.prototxt" {test_fields} base_lr: 0.01 lr_policy: "fixed" '
                                   f'max_iter: 2 display: 1 snapshot_after_train: false\n'}
    for name in cases:
        (caffe.scratch / "cases" / name).mkdir(parents=True)
        _write_tiles(caffe.scratch / "cases" / name)
    theirs = _caffe_train_each(caffe, cases)
    aborted = {name for name, (status, log) in theirs.items() if status != 0}
    assert all(theirs[name][0] == 134 and ("Incompatible number of blobs" in theirs[name][1] or
                                           "Cannot share param 0 weights" in theirs[name][1]) for name in aborted)
    print("caffe train stops in", sorted(aborted))
    assert {n.split(".")[1] for n in aborted} == {"tested"} and len(aborted) == 4

    for name, files in cases.items():
        folder = _our_case(tmp_path / name, files)
        monkeypatch.chdir(folder)
        capsys.readouterr()
        status = main(["train", "--solver", "solver.prototxt"])
        err = capsys.readouterr().err.strip()
        if name in aborted:
            layer = {"test_layer_without_blobs": "conv2", "train_layer_without_blobs": "x", "blob_shape": "conv1",
                     "two_train_layers_of_one_name": "conv2"}[name.split(".")[0]]
            assert status == 2 and err.count("\n") == 0 and f"layer '{layer}'" in err, (name, err)
        else:
            assert status == 0, (name, err)


# --- 5. the fillers Caffe runs as it sets each layer up ----------------------------

FILLER_INPUT = 'layer { name: "in" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'


def _shared_prelu(filler: str) -> str:
    return ('layer { name: "p" type: "PReLU" bottom: "data" top: "p" '
            f'prelu_param {{ channel_shared: true filler {{ {filler} }} }} }}\n')


def _filled_conv(filler: str, kernel: str = "kernel_size: 3") -> str:
    return ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
            f'convolution_param {{ num_output: 2 {kernel} weight_filler {{ {filler} }} }} }}\n')


FILLER_NETS = {   # a channel_shared PReLU slope is a 0-axis blob
    "xavier_0_axis": _shared_prelu('type: "xavier"'),
    "msra_0_axis": _shared_prelu('type: "msra"'),
    "xavier_average_0_axis": _shared_prelu('type: "xavier" variance_norm: AVERAGE'),
    "positive_unitball_0_axis": _shared_prelu('type: "positive_unitball"'),
    "sparse_gaussian_0_axis": _shared_prelu('type: "gaussian" sparse: 1'),
    "constant_0_axis": _shared_prelu('type: "constant" value: 0.5'),
    "gaussian_0_axis": _shared_prelu('type: "gaussian"'),
    "uniform_0_axis": _shared_prelu('type: "uniform"'),
    "xavier_1_axis": 'layer { name: "p" type: "PReLU" bottom: "data" top: "p" prelu_param { filler { type: "xavier" } } }\n',
    "sparse_below_minus_1": _filled_conv('type: "gaussian" sparse: -2'),
    "sparse_uniform": _filled_conv('type: "uniform" sparse: 0'),
    "bilinear_2x3": _filled_conv('type: "bilinear"', "kernel_h: 2 kernel_w: 3"),
    "bilinear_3x3": _filled_conv('type: "bilinear"'),
    "unknown_type": _filled_conv('type: "orthogonal"'),
}


def test_a_filler_caffe_aborts_on_is_refused_with_or_without_weights_to_follow(caffe):
    theirs = _caffe_train_each(caffe, {name: {"net.prototxt": FILLER_INPUT + layer, "solver.prototxt": ONE_ITERATION}
                                       for name, layer in FILLER_NETS.items()})
    aborted = {name for name, (status, log) in theirs.items() if status != 0}
    assert all(theirs[name][0] == 134 and "Check failed" in theirs[name][1] for name in aborted)
    print("Caffe aborts on", sorted(aborted))
    assert {n for n in aborted if n.endswith("_0_axis")} == {"xavier_0_axis", "msra_0_axis", "xavier_average_0_axis",
                                                             "positive_unitball_0_axis", "sparse_gaussian_0_axis"}
    for name, layer in FILLER_NETS.items():
        for fill in (True, False):   # Caffe fills a layer as it sets it up, weights file or not
            if name in aborted:
                with pytest.raises(InputError, match=rf"{name}.prototxt: layer '[pc]' \(\w+\): \w+\.?\w*filler: "):
                    Net(_net(FILLER_INPUT + layer), TRAIN, source=f"{name}.prototxt", seed=0, fill=fill)
            else:
                Net(_net(FILLER_INPUT + layer), TRAIN, source=f"{name}.prototxt", seed=0, fill=fill)


BILINEAR_WEIGHTS = r'''
import sys
import numpy as np
import caffe

caffe.set_mode_cpu()
layers = "".join(
    f'layer {{ name: "k{k}" type: "Convolution" bottom: "data" top: "k{k}" convolution_param {{ num_output: 3 '
    f'kernel_size: {k} bias_term: false weight_filler {{ type: "bilinear" }} }} }}\n' for k in range(1, 9))
open("b.prototxt", "w").write('layer { name: "in" type: "Input" top: "data" '
                              'input_param { shape { dim: 1 dim: 2 dim: 9 dim: 9 } } }\n' + layers)
net = caffe.Net("b.prototxt", caffe.TEST)
np.savez(sys.argv[1], **{name: blobs[0].data.copy() for name, blobs in net.params.items()})
'''


def test_the_bilinear_filler_is_caffes_bit_for_bit_for_every_kernel_size(caffe):
    from plaquenet.engines.torch.fillers import fill

    _pycaffe(caffe, BILINEAR_WEIGHTS, "bilinear.npz")
    theirs = np.load(caffe.scratch / "bilinear.npz")
    for k in range(1, 9):
        ours = fill(caffe_pb2.FillerParameter(type="bilinear"), (3, 2, k, k), torch.Generator()).numpy()
        np.testing.assert_array_equal(ours, theirs[f"k{k}"], err_msg=f"K = {k}")
    # K = 3 is where the 1.0 tag's formula (c = (2f - 1 - f % 2) / 2f) differs most: row 0 is .0625 .1875 .1875.
    np.testing.assert_array_equal(theirs["k3"][0, 0, 0], np.float32([0.25, 0.5, 0.25]))
