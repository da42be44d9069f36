"""Caffe layer types as torch modules, one builder per type in `LAYERS`.

A builder gets the LayerParameter, the bottom shapes and a `Build` context,
and returns the module and its top shapes. A module keeps its learnable blobs
in Caffe's order in `blobs` (weight, then bias) and maps bottoms to tops in
`forward(*bottoms) -> tuple`. Whatever Caffe would compute differently from
what we implement is a ValueError naming the field; the net turns it into an
InputError naming the file and the layer.

Convolution goes through a swappable function (`ConvFn`): `Build.conv_for`
picks one per layer, and `Convolution.impl` may be replaced later."""

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...caffe import caffe_pb2
from .conv import caffe_order_conv2d
from .data import DataStream, HDF5Rows
from .fillers import check_filler, fill

Shape = Tuple[int, ...]
Pair = Tuple[int, int]   # (h, w)
Tops = Tuple[torch.Tensor, ...]

# conv(x (N,C,H,W), weight (O,C/g,kh,kw), bias (O,) or None, stride, pad,
#      dilation (each an (h, w) pair), groups) -> (N,O,H',W')
ConvFn = Callable[..., torch.Tensor]


def torch_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair, pad: Pair,
                 dilation: Pair, groups: int) -> torch.Tensor:
    """Caffe's convolution is cross-correlation with symmetric zero padding,
    which is exactly torch's conv2d (same weight layout); its backward sums
    over the batch in Caffe's order (conv.py)."""
    return caffe_order_conv2d(x, weight, bias, stride, pad, dilation, groups)


@dataclass
class Build:
    """What builders need besides the layer itself."""
    generator: torch.Generator                      # for the fillers
    conv_for: Callable[["caffe_pb2.LayerParameter"], ConvFn] = lambda layer: torch_conv2d
    fill: bool = True                               # False: zeros (weights come from a file)
    data: Optional[DataStream] = None               # HDF5Data readers and their rand() (None: a new one)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))


class BlobData:
    """A blob's data as Caffe's Backward reads it. Caffe runs every Backward
    after the whole forward pass, so a layer that reads a blob's data then
    sees what the last in-place layer (top i = bottom i) on that blob wrote,
    not what it saw itself. The net updates `data` as those layers run."""

    def __init__(self) -> None:
        self.data: Optional[torch.Tensor] = None


class Layer(nn.Module):
    """A Caffe layer: learnable `blobs` in Caffe's order, forward(*bottoms) -> tops."""
    is_data = False           # data layers take no bottoms and are fed by the net
    default_loss_weight = 0.0
    auto_top_blobs = False    # Caffe's AutoTopBlobs(): the net adds the tops the prototxt leaves out
    # Backward reads top 0's data (Sigmoid; an in-place ReLU's bottom is its top):
    # the net calls forward(*bottoms, late=BlobData()).
    reads_top_in_backward = False
    no_backward_to: Tuple[int, ...] = ()   # bottoms whose gradient Caffe's Backward refuses (LOG(FATAL))

    def __init__(self, blobs: Sequence[torch.Tensor] = ()) -> None:
        super().__init__()
        self.blobs = nn.ParameterList([nn.Parameter(b) for b in blobs])

    def allow_force_backward(self, bottom: int) -> bool:
        """Layer::AllowForceBackward: whether `force_backward` asks for this bottom's gradient."""
        return True


def _filled(build: Build, filler: "caffe_pb2.FillerParameter", shape: Shape, where: str) -> torch.Tensor:
    # Caffe fills (and so checks the filler) even when a weight file follows.
    check_filler(filler, shape, where)
    blob = fill(filler, shape, build.generator, where) if build.fill else torch.zeros(shape)
    return blob.to(build.device)


def _pairs(repeated: Sequence[int], single_h: int, single_w: int, has_h: bool, name: str, default: int) -> Pair:
    """Caffe's (h, w) from a repeated field given 0, 1 or 2 times, or *_h/*_w."""
    if has_h:
        if len(repeated):
            raise ValueError(f"give either {name} or {name}_h/{name}_w, not both")
        return (int(single_h), int(single_w))
    values = list(repeated)
    if len(values) == 0:
        return (default, default)
    if len(values) == 1:
        return (values[0], values[0])
    if len(values) == 2:
        return (values[0], values[1])
    raise ValueError(f"{name} given {len(values)} times: only 2-D convolution is supported")


# --- Convolution -----------------------------------------------------------

class Convolution(Layer):
    def __init__(self, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair, pad: Pair, dilation: Pair,
                 groups: int, impl: ConvFn) -> None:
        super().__init__([weight] + ([bias] if bias is not None else []))
        self.stride, self.pad, self.dilation, self.groups = stride, pad, dilation, groups
        self.impl = impl

    def forward(self, x: torch.Tensor) -> Tops:
        bias = self.blobs[1] if len(self.blobs) > 1 else None
        return (self.impl(x, self.blobs[0], bias, self.stride, self.pad, self.dilation, self.groups),)


def build_convolution(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                      build: Build) -> Tuple[Layer, List[Shape]]:
    p = layer.convolution_param
    if p.axis != 1:
        raise ValueError(f"convolution_param.axis = {p.axis}: only axis 1 (N, C, H, W) is supported")
    (shape,) = bottoms
    if len(shape) != 4:
        raise ValueError(f"bottom shape {shape}: only 2-D convolution of (N, C, H, W) blobs is supported")
    if not p.num_output:
        raise ValueError("convolution_param.num_output must be set")
    kernel = _pairs(p.kernel_size, p.kernel_h, p.kernel_w, p.HasField("kernel_h") or p.HasField("kernel_w"),
                    "kernel", 0)
    if 0 in kernel:  # not given, or given as 0
        raise ValueError("convolution_param.kernel_size (or kernel_h and kernel_w) must be set and > 0")
    pad = _pairs(p.pad, p.pad_h, p.pad_w, p.HasField("pad_h") or p.HasField("pad_w"), "pad", 0)
    stride = _pairs(p.stride, p.stride_h, p.stride_w, p.HasField("stride_h") or p.HasField("stride_w"),
                    "stride", 1)
    dilation = _pairs(p.dilation, 0, 0, False, "dilation", 1)
    if 0 in stride or 0 in dilation:
        raise ValueError("convolution_param stride and dilation must be > 0")
    n, c, h, w = shape
    groups, out = p.group, p.num_output
    if c % groups or out % groups:
        raise ValueError(f"group {groups} must divide the input channels {c} and num_output {out}")
    weight = _filled(build, p.weight_filler, (out, c // groups) + kernel, "weight_filler: ")
    bias = _filled(build, p.bias_filler, (out,), "bias_filler: ") if p.bias_term else None
    size = [(x + 2 * pd - (dl * (k - 1) + 1)) // st + 1
            for x, pd, dl, k, st in zip((h, w), pad, dilation, kernel, stride)]
    if min(size) < 1:
        raise ValueError(f"input {h}x{w} is too small for the kernel: output would be {size[0]}x{size[1]}")
    module = Convolution(weight, bias, stride, pad, dilation, groups, build.conv_for(layer))
    return module, [(n, out, size[0], size[1])]


# --- activations -----------------------------------------------------------

class PReLU(Layer):
    """y = max(x, 0) + a * min(x, 0), a per channel (or one shared);
    at x = 0 the slope side's gradient is used, as in Caffe."""

    def forward(self, x: torch.Tensor) -> Tops:
        return (F.prelu(x, self.blobs[0].reshape(-1)),)


def build_prelu(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape], build: Build) -> Tuple[Layer, List[Shape]]:
    p = layer.prelu_param
    (shape,) = bottoms
    if len(shape) < 2:
        raise ValueError(f"bottom shape {shape}: PReLU needs at least 2 axes")
    # Caffe: a shared slope is a 0-axis blob, else one slope per channel.
    slope_shape = () if p.channel_shared else (shape[1],)
    if p.HasField("filler"):
        slopes = _filled(build, p.filler, slope_shape, "prelu_param.filler: ")
    else:
        slopes = torch.full(slope_shape, 0.25, device=build.device)
    return PReLU([slopes]), [shape]


class _CaffeReLU(torch.autograd.Function):
    """Caffe's ReLU: y = max(x, 0) + slope min(x, 0) (torch's leaky_relu, the
    same floats); backward dy ((b > 0) + slope (b <= 0)), b the bottom's data
    when Backward runs. Not in place, b = x. In place, b is the blob after the
    forward pass: with a negative slope y = slope x > 0 for x < 0, so Caffe
    passes dy there unscaled (measured in the oracle: not the mathematical
    gradient, but Caffe's), and a later in-place layer changes b again."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, slope: float, late: Optional[BlobData]) -> torch.Tensor:
        y = F.relu(x) if slope == 0 else F.leaky_relu(x, slope)
        ctx.slope, ctx.late = slope, late
        if late is None:
            ctx.save_for_backward(x)
        else:
            late.data = y.detach()   # not y: a reference cycle through the graph
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[torch.Tensor, None, None]:
        b = ctx.saved_tensors[0] if ctx.late is None else ctx.late.data
        return dy * ((b > 0).to(dy.dtype) + ctx.slope * (b <= 0).to(dy.dtype)), None, None


class ReLU(Layer):
    def __init__(self, negative_slope: float, in_place: bool) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.reads_top_in_backward = in_place   # its bottom is its top

    def forward(self, x: torch.Tensor, late: Optional[BlobData] = None) -> Tops:
        if self.reads_top_in_backward and late is None:
            late = BlobData()   # run alone: no later layer overwrites the blob
        return (_CaffeReLU.apply(x, self.negative_slope, late),)


def build_relu(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape], build: Build) -> Tuple[Layer, List[Shape]]:
    if len(bottoms) != 1:
        raise ValueError(f"ReLU takes 1 bottom, got {len(bottoms)}")
    in_place = layer.top[:1] == layer.bottom[:1]
    return ReLU(layer.relu_param.negative_slope, in_place), list(bottoms)


class _CaffeSigmoid(torch.autograd.Function):
    """Caffe's sigmoid `0.5 * tanh(0.5 * x) + 0.5` and its backward
    `dy * y * (1. - y)`, y the top's data when Backward runs (a later
    in-place layer may have overwritten it: BlobData). The C++ double
    literals make both evaluate in double and round once to float; so do we
    (one channel: the cost is nil)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, late: Optional[BlobData]) -> torch.Tensor:
        y = (torch.tanh(x.double() * 0.5) * 0.5 + 0.5).to(x.dtype)
        ctx.late = late
        if late is None:
            ctx.save_for_backward(y)
        else:
            late.data = y.detach()   # not y: a reference cycle through the graph
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[torch.Tensor, None]:
        y = ctx.saved_tensors[0] if ctx.late is None else ctx.late.data
        return ((dy * y).double() * (1.0 - y.double())).to(dy.dtype), None


class Sigmoid(Layer):
    reads_top_in_backward = True

    def forward(self, x: torch.Tensor, late: Optional[BlobData] = None) -> Tops:
        return (_CaffeSigmoid.apply(x, late),)


def build_sigmoid(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                  build: Build) -> Tuple[Layer, List[Shape]]:
    return Sigmoid(), list(bottoms)


# --- loss ------------------------------------------------------------------

class _EuclideanLoss(torch.autograd.Function):
    """sum((a - b)^2) / (2 N), N = a.shape[0] (the batch, not the element
    count); gradient +-(a - b) / N times the top's gradient (its loss weight)."""

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        diff = a - b.reshape(a.shape)
        ctx.save_for_backward(diff)
        ctx.b_shape = b.shape
        return (diff * diff).sum() / a.shape[0] / 2

    @staticmethod
    def backward(ctx: Any, dloss: torch.Tensor) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        (diff,) = ctx.saved_tensors
        alpha = dloss / diff.shape[0]
        grad_a = alpha * diff if ctx.needs_input_grad[0] else None
        grad_b = (-alpha * diff).reshape(ctx.b_shape) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class LossLayer(Layer):
    """Caffe's LossLayer: one top, weight 1 unless `loss_weight` says otherwise
    (LossLayer::LayerSetUp), and created even when the prototxt names no top
    (AutoTopBlobs() true, ExactNumTopBlobs() 1)."""
    default_loss_weight = 1.0
    auto_top_blobs = True

    def allow_force_backward(self, bottom: int) -> bool:
        return bottom != 1   # LossLayer: not into the label


class EuclideanLoss(LossLayer):
    def allow_force_backward(self, bottom: int) -> bool:
        return True          # EuclideanLossLayer: both bottoms get a gradient

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> Tops:
        return (_EuclideanLoss.apply(a, b),)


def build_euclidean_loss(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                         build: Build) -> Tuple[Layer, List[Shape]]:
    if len(bottoms) != 2:
        raise ValueError(f"EuclideanLoss takes 2 bottoms, got {len(bottoms)}")
    a, b = bottoms
    if math.prod(a[1:]) != math.prod(b[1:]) or a[0] != b[0]:
        raise ValueError(f"bottoms {a} and {b} must have the same shape (Caffe: same count per item)")
    # loss_param (normalization, ignore_label) is ignored by Caffe's EuclideanLoss too.
    return EuclideanLoss(), [()]


class _SigmoidCrossEntropyLoss(torch.autograd.Function):
    """Caffe's numerically stable cross-entropy of sigmoid(x) against target
    t: sum(max(x, 0) - x t + log(1 + exp(-|x|))) / normalizer over the kept
    elements (t != ignore_label); gradient (sigmoid(x) - t) / normalizer times
    the top's gradient (its loss weight), 0 where ignored. Computed in double
    and rounded once to float (Caffe sums floats: within float rounding)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, t: torch.Tensor, normalizer: float,
                ignore: Optional[int]) -> torch.Tensor:
        x64, t64 = x.double(), t.reshape(x.shape).double()
        # Caffe compares static_cast<int>(target) (truncation) with ignore_label.
        keep = torch.ones_like(x64) if ignore is None else (torch.trunc(t64) != ignore).double()
        terms = torch.clamp(x64, min=0) - x64 * t64 + torch.log1p(torch.exp(-x64.abs()))
        ctx.save_for_backward(x64, t64, keep)
        ctx.normalizer = normalizer
        return ((terms * keep).sum() / normalizer).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, dloss: torch.Tensor) -> Tuple[torch.Tensor, None, None, None]:
        x64, t64, keep = ctx.saved_tensors
        prob = torch.tanh(x64 * 0.5) * 0.5 + 0.5
        grad = (prob - t64) * keep * (dloss.double() / ctx.normalizer)
        return grad.to(dloss.dtype), None, None, None


class SigmoidCrossEntropyLoss(LossLayer):
    # Backward_cpu: "SigmoidCrossEntropyLoss Layer cannot backpropagate to label
    # inputs." The net refuses to train where Caffe would ask (Net.backward_refusal).
    no_backward_to = (1,)

    def __init__(self, normalization: str, ignore: Optional[int]) -> None:
        super().__init__()
        self.normalization, self.ignore = normalization, ignore

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> Tops:
        t = t.detach()
        if self.normalization == "NONE":
            normalizer = 1.0
        elif self.normalization == "BATCH_SIZE":
            normalizer = x.shape[0]
        elif self.normalization == "FULL" or self.ignore is None:
            normalizer = x.numel()
        else:   # VALID with ignore_label: the kept elements
            normalizer = int((torch.trunc(t) != self.ignore).sum())
        return (_SigmoidCrossEntropyLoss.apply(x, t, max(1.0, float(normalizer)), self.ignore),)


def build_sigmoid_cross_entropy_loss(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                                     build: Build) -> Tuple[Layer, List[Shape]]:
    if len(bottoms) != 2:
        raise ValueError(f"SigmoidCrossEntropyLoss takes 2 bottoms, got {len(bottoms)}")
    a, b = bottoms
    if math.prod(a) != math.prod(b):
        raise ValueError(f"bottoms {a} and {b} must have the same count")
    p = layer.loss_param
    # Caffe (checked against the Debian bullseye build, the oracle): unlike the other
    # losses, an unset `normalization` means BATCH_SIZE here (the layer's old
    # divide-by-num), not the field's declared default VALID; the legacy
    # `normalize: true/false` means VALID/BATCH_SIZE. The divisor is at least 1.
    if p.HasField("normalization"):
        mode = caffe_pb2.LossParameter.NormalizationMode.Name(p.normalization)
    elif p.HasField("normalize"):
        mode = "VALID" if p.normalize else "BATCH_SIZE"
    else:
        mode = "BATCH_SIZE"
    ignore = p.ignore_label if p.HasField("ignore_label") else None
    return SigmoidCrossEntropyLoss(mode, ignore), [()]


class Silence(Layer):
    """Consumes its bottoms (so they are not net outputs); no tops, zero gradient."""

    def forward(self, *bottoms: torch.Tensor) -> Tops:
        return ()


def build_silence(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                  build: Build) -> Tuple[Layer, List[Shape]]:
    if layer.top:
        raise ValueError("Silence has no tops")
    return Silence(), []


def build_python(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape], build: Build) -> Tuple[Layer, List[Shape]]:
    """`type: "Python"`: the losses of plaquenet/caffe_layers.py, natively (python_layers.py)."""
    from .python_layers import build_python_layer   # here: python_layers imports this module
    return build_python_layer(layer, bottoms, build)


# --- data ------------------------------------------------------------------

class Input(Layer):
    """Tops given by the caller (deploy nets); shapes are only defaults."""
    is_data = True

    def __init__(self, tops: List[str]) -> None:
        super().__init__()
        self.tops = tops

    def forward(self, feed: Dict[str, torch.Tensor]) -> Tops:
        missing = [t for t in self.tops if t not in feed]
        if missing:
            raise KeyError(f"Input blobs {missing} were not fed")
        return tuple(feed[t] for t in self.tops)


def build_input(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape], build: Build) -> Tuple[Layer, List[Shape]]:
    shapes = [tuple(s.dim) for s in layer.input_param.shape]
    tops = list(layer.top)
    if len(shapes) == 1:
        shapes = shapes * len(tops)
    if len(shapes) != len(tops):
        raise ValueError(f"input_param has {len(shapes)} shapes for {len(tops)} tops (give 1 or one per top)")
    return Input(tops), shapes


class HDF5Data(Layer):
    """The rows `HDF5Rows` picks, as tensors on the net's device. On a GPU
    (`resident`) each file's datasets are copied to the device once, when the
    reader first takes rows from it, and every batch is gathered there: only
    the row indices cross the bus, so no iteration waits for a host copy. The
    paper's 7,856 tiles of 50x50 with their labels are 157 MB in float32."""
    is_data = True

    def __init__(self, rows: HDF5Rows, device: torch.device, resident: Optional[bool] = None) -> None:
        super().__init__()
        self.rows, self.device = rows, device
        self.resident = device.type != "cpu" if resident is None else resident
        self._on_device: Dict[int, List[torch.Tensor]] = {}

    def forward(self, feed: Optional[Dict[str, torch.Tensor]] = None) -> Tops:
        if not self.resident:
            return tuple(torch.from_numpy(a).to(self.device, non_blocking=True) for a in self.rows.next_batch())
        parts = [(self._file_on_device(file, arrays), self._indices(rows)) for file, arrays, rows in self.rows.next_parts()]
        tops = []
        for top in range(len(self.rows.tops)):
            pieces = [tensors[top].index_select(0, rows) for tensors, rows in parts]
            tops.append(pieces[0] if len(pieces) == 1 else torch.cat(pieces))
        return tuple(tops)

    def _file_on_device(self, file: int, arrays: List[np.ndarray]) -> List[torch.Tensor]:
        if file not in self._on_device:
            self._on_device[file] = [torch.from_numpy(a).to(self.device) for a in arrays]
        return self._on_device[file]

    def _indices(self, rows: np.ndarray) -> torch.Tensor:
        indices = torch.from_numpy(rows.astype(np.int64))
        if self.device.type == "cuda":
            indices = indices.pin_memory()   # an asynchronous copy: the host goes on
        return indices.to(self.device, non_blocking=True)


def build_hdf5_data(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                    build: Build) -> Tuple[Layer, List[Shape]]:
    p = layer.hdf5_data_param
    if layer.HasField("transform_param"):
        raise ValueError("transform_param: HDF5Data does not transform data (Caffe refuses it too)")
    if not p.source:
        raise ValueError("hdf5_data_param.source must be set")
    if not p.batch_size:
        raise ValueError("hdf5_data_param.batch_size must be set")
    data = build.data or DataStream()
    rows = data.reader(layer.name, p.source, layer.top, p.batch_size, shuffle=p.shuffle)
    return HDF5Data(rows, build.device), rows.top_shapes


# Layer type (as in prototxt) -> builder(layer, bottom shapes, build) -> (module, top shapes)
Builder = Callable[["caffe_pb2.LayerParameter", List[Shape], Build], Tuple[Layer, List[Shape]]]
LAYERS: Dict[str, Builder] = {
    "Input": build_input,
    "HDF5Data": build_hdf5_data,
    "Convolution": build_convolution,
    "PReLU": build_prelu,
    "ReLU": build_relu,
    "Sigmoid": build_sigmoid,
    "EuclideanLoss": build_euclidean_loss,
    "SigmoidCrossEntropyLoss": build_sigmoid_cross_entropy_loss,
    "Python": build_python,
    "Silence": build_silence,
}
