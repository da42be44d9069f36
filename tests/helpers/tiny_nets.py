"""The tiny nets of the paper's family as prototxt text, and their weights
(`import tiny_nets`: tests/helpers is on pytest's path). The one home of these
nets: unit, integration and conformance tests build them here.

The paper's net (prototxt/plaquenet_*.prototxt, §4.2) is padded convolutions
with a PReLU after each but the last, and a Sigmoid "prob" on top; trained
on HDF5Data tiles with an EuclideanLoss. The tests use the same layers, a
few pixels and channels big:

    one_conv_deploy()      Input -> conv (1 @ 3x3) -> Sigmoid prob
    two_conv_deploy(h, w)  Input -> conv1 (C @ kxk) -> PReLU prelu1 -> conv2 (1 @ 3x3) -> Sigmoid prob
    two_conv_train(src, n) the same on HDF5Data, with the paper's EuclideanLoss (or another head)

Every convolution is padded to keep the size, as in the paper."""

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import h5py
import numpy as np

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import parse_prototxt
from plaquenet.caffe.snapshot import weights_net, write_caffemodel
from plaquenet.engines.torch.net import TEST, Net

# The type of every layer that holds weights in these nets (a .caffemodel names both).
LAYER_TYPES = {"conv": "Convolution", "conv1": "Convolution", "prelu1": "PReLU", "conv2": "Convolution"}

PROB = 'layer { name: "prob" type: "Sigmoid" bottom: "conv2" top: "prob" }\n'
EUCLIDEAN_LOSS = 'layer { name: "loss" type: "EuclideanLoss" bottom: "prob" bottom: "label" top: "loss" }\n'


def input_layer(shape: Sequence[int], top: str = "data") -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{top}" type: "Input" top: "{top}" input_param {{ shape {{ {dims} }} }} }}\n'


def hdf5_data_layer(source: str, batch_size: int, phase: Optional[str] = None) -> str:
    """HDF5Data with tops data and label; `phase` "TRAIN"/"TEST": only in that phase."""
    include = f" include {{ phase: {phase} }}" if phase else ""
    return (f'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"{include}\n'
            f'  hdf5_data_param {{ source: "{source}" batch_size: {batch_size} }} }}\n')


def convolution(name: str, bottom: str, num_output: int, kernel_size: int, params: str = "",
                filler: Optional[str] = None) -> str:
    """A Convolution padded to keep the size; `params`: its param { } specs."""
    fill = f' weight_filler {{ type: "{filler}" }}' if filler else ""
    params = f" {params}" if params else ""
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"{params}\n'
            f'  convolution_param {{ num_output: {num_output} kernel_size: {kernel_size} '
            f'pad: {kernel_size // 2}{fill} }} }}\n')


def one_conv_deploy(height: int = 16, width: int = 16) -> str:
    """The smallest deploy net: one 3x3 convolution `conv` and the Sigmoid `prob`
    (weights: `write_one_conv_snapshot`). Any slice size: the Input shape is a default."""
    return (input_layer((1, 1, height, width)) + convolution("conv", "data", 1, 3) +
            'layer { name: "prob" type: "Sigmoid" bottom: "conv" top: "prob" }\n')


def two_conv_layers(channels: int = 3, kernel_size: int = 3, params: str = "") -> str:
    """conv1 (`channels` @ kernel_size) -> PReLU prelu1 (in place) -> conv2 (1 @ 3x3), msra fillers; no head."""
    return (convolution("conv1", "data", channels, kernel_size, params, filler="msra") +
            'layer { name: "prelu1" type: "PReLU" bottom: "conv1" top: "conv1" }\n' +
            convolution("conv2", "conv1", 1, 3, params, filler="msra"))


def two_conv_deploy(height: int, width: int, channels: int = 3, kernel_size: int = 3) -> str:
    return 'name: "tiny"\n' + input_layer((1, 1, height, width)) + two_conv_layers(channels, kernel_size) + PROB


def two_conv_train(source: str, batch_size: int, channels: int = 3, kernel_size: int = 3, params: str = "",
                   head: str = PROB + EUCLIDEAN_LOSS, phase: Optional[str] = None) -> str:
    """The train net of `two_conv_deploy`: HDF5Data (`phase`: only in that phase) and the `head` on conv2."""
    return ('name: "tiny"\n' + hdf5_data_layer(source, batch_size, phase) +
            two_conv_layers(channels, kernel_size, params) + head)


def tiny_weights(weights: Dict[str, Sequence[np.ndarray]]) -> "caffe_pb2.NetParameter":
    """The NetParameter of a .caffemodel: layer name -> its arrays (types from LAYER_TYPES)."""
    return weights_net(weights, LAYER_TYPES)


def write_one_conv_snapshot(path: Path, kernel_33, bias) -> Path:
    """A .caffemodel for `one_conv_deploy`: conv's 3x3 kernel and its bias, as float32."""
    kernel = np.asarray(kernel_33, np.float32).reshape(1, 1, 3, 3)
    write_caffemodel(path, tiny_weights({"conv": [kernel, np.asarray(bias, np.float32).reshape(1)]}))
    return Path(path)


def net_of(text: str, phase=TEST, **kw) -> Net:
    """The torch engine's Net of a prototxt string (named "tiny.prototxt" in its errors; seed 0)."""
    return Net(parse_prototxt(text, caffe_pb2.NetParameter()), phase, source="tiny.prototxt", seed=0, **kw)


def random_two_conv_weights(seed: int) -> Dict[str, List[np.ndarray]]:
    """Seeded random float32 values for `two_conv_*` with 4 channels of 5x5:
    conv1 (weight, bias), prelu1 (slopes), conv2 (weight, bias)."""
    rng = np.random.default_rng(seed)
    arrays = {"conv1": [rng.normal(0, 0.3, (4, 1, 5, 5)), rng.uniform(-0.1, 0.1, 4)],
              "prelu1": [rng.uniform(0, 0.4, 4)],
              "conv2": [rng.normal(0, 0.3, (1, 4, 3, 3)), rng.uniform(-1, 0, 1)]}
    return {k: [a.astype(np.float32) for a in v] for k, v in arrays.items()}


def relative_difference(ours: np.ndarray, theirs: np.ndarray) -> float:
    """max |ours - theirs| / max |theirs| (in float64), the measure the
    conformance tests state their tolerances in; same shapes required."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = np.abs(theirs).max()
    assert scale > 0, "an all-zero reference blob compares nothing"
    return float(np.abs(ours - theirs).max() / scale)


PAPER_LAYERS = {"conv1": (20, 1, 5), "conv2": (20, 20, 7), "conv3": (40, 20, 9), "conv4": (60, 40, 7),
                "conv5": (20, 60, 5), "conv6": (1, 20, 5)}


def paper_weights() -> "caffe_pb2.NetParameter":
    """Weights for the paper's six convolutions and five PReLUs (PAPER_LAYERS: out, in, k):
    He-scaled filters, small biases, PReLU slopes around Caffe's 0.25, and
    conv6's bias -3 (as the prototxt's filler), so the outputs spread over (0, 1)."""
    rng = np.random.default_rng(11)
    weights, types = {}, {}
    for i, (name, (out, inp, k)) in enumerate(PAPER_LAYERS.items(), 1):
        bias = np.full(out, -3.0) if name == "conv6" else rng.uniform(-0.05, 0.05, out)
        weights[name] = [rng.normal(0, np.sqrt(2 / (inp * k * k)), (out, inp, k, k)), bias]
        types[name] = "Convolution"
        if name != "conv6":
            weights[f"prelu{i}"] = [rng.uniform(0.1, 0.4, out)]
            types[f"prelu{i}"] = "PReLU"
    return weights_net(weights, types)


def write_run_folder(folder: Path, solver: str, net: str, rows: int, tile: int,
                     solver_name: str = "solver.prototxt", data: str = "d0.h5", seed: int = 5,
                     label_above: float = 0.8) -> Path:
    """A `caffe train` working folder: the solver (as `solver_name`), net.prototxt,
    list.txt over `data` (`rows` random tiles of tile x tile drawn with `seed`,
    labels where > `label_above`), and an empty snap/."""
    folder.mkdir(parents=True)
    (folder / solver_name).parent.mkdir(parents=True, exist_ok=True)
    (folder / solver_name).write_text(solver)
    (folder / "net.prototxt").write_text(net)
    image = np.random.default_rng(seed).normal(0, 1, (rows, 1, tile, tile)).astype(np.float32)
    with h5py.File(folder / data, "w") as f:
        f["data"] = image
        f["label"] = (image > label_above).astype(np.float32)
    (folder / "list.txt").write_text(f"{data}\n")
    (folder / "snap").mkdir()
    return folder
