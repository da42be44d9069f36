"""Caffe's `type: "Python"` layers that plaquenet knows, run natively: the
losses of plaquenet/caffe_layers.py (whose docstring defines them) with the
same forward and backward arithmetic (float64, rounded once to float32).
Caffe would import the module and run its class; here any other module or
class is a ValueError (the net makes it one line naming file and layer)."""

import math
from typing import Any, Callable, Dict, List, Tuple

import torch

from ...caffe import caffe_pb2
from ... import caffe_layers
from .layers import Build, Layer, Shape, Tops

MODULE = "plaquenet.caffe_layers"


def _soft_dice(p: torch.Tensor, y: torch.Tensor, eps: float) -> Tuple[torch.Tensor, torch.Tensor]:
    p, y = p.double().reshape(-1), y.double().reshape(-1)
    overlap, total = 2.0 * torch.dot(p, y) + eps, p.sum() + y.sum() + eps
    return 1.0 - overlap / total, -(2.0 * y * total - overlap) / (total * total)


def _weighted_sigmoid_cross_entropy(x: torch.Tensor, t: torch.Tensor,
                                    pos_weight: float) -> Tuple[torch.Tensor, torch.Tensor]:
    batch = x.shape[0]
    x, t = x.double().reshape(-1), t.double().reshape(-1)
    log_term = torch.log1p(torch.exp(-x.abs()))
    softplus_x, softplus_minus_x = torch.clamp(x, min=0) + log_term, torch.clamp(-x, min=0) + log_term
    loss = torch.sum(pos_weight * t * softplus_minus_x + (1.0 - t) * softplus_x) / batch
    sigmoid = torch.tanh(x * 0.5) * 0.5 + 0.5
    return loss, (sigmoid * (pos_weight * t + 1.0 - t) - pos_weight * t) / batch


LossFn = Callable[[torch.Tensor, torch.Tensor, float], Tuple[torch.Tensor, torch.Tensor]]
# python_param.layer -> (loss and gradient in float64, the param_str key it takes)
LOSSES: Dict[str, Tuple[LossFn, str]] = {
    "SoftDiceLoss": (_soft_dice, "eps"),
    "WeightedSigmoidCrossEntropyLoss": (_weighted_sigmoid_cross_entropy, "pos_weight"),
}


class _PairLoss(torch.autograd.Function):
    """loss(prediction, label) from a LossFn; backward: its gradient times the
    top's gradient (the loss weight), into the prediction only."""

    @staticmethod
    def forward(ctx: Any, prediction: torch.Tensor, label: torch.Tensor, fn: LossFn, value: float) -> torch.Tensor:
        loss, grad = fn(prediction, label, value)
        ctx.save_for_backward(grad)
        ctx.shape = prediction.shape
        return loss.to(prediction.dtype)

    @staticmethod
    def backward(ctx: Any, dloss: torch.Tensor) -> Tuple[torch.Tensor, None, None, None]:
        (grad,) = ctx.saved_tensors
        return (grad * dloss.double()).to(dloss.dtype).reshape(ctx.shape), None, None, None


class PythonLoss(Layer):
    """A Caffe Python layer: no LossLayer, so its loss weight is 0 unless the
    prototxt gives one (Layer::SetLossWeights), and the net adds no top the
    prototxt leaves out. Its Backward refuses the label, as Caffe's does
    (caffe_layers._PairLoss.backward); every bottom may be forced."""
    no_backward_to = (1,)

    def __init__(self, fn: LossFn, value: float) -> None:
        super().__init__()
        self.fn, self.value = fn, value

    def forward(self, prediction: torch.Tensor, label: torch.Tensor) -> Tops:
        return (_PairLoss.apply(prediction, label.detach(), self.fn, self.value),)


def build_python_layer(layer: "caffe_pb2.LayerParameter", bottoms: List[Shape],
                       build: Build) -> Tuple[Layer, List[Shape]]:
    p = layer.python_param
    if p.module != MODULE or p.layer not in LOSSES:
        raise ValueError(f"python_param module '{p.module}' layer '{p.layer}': the torch engine runs only "
                         f"module '{MODULE}' with layer {' or '.join(sorted(LOSSES))} "
                         f"(use --engine caffe for other Python layers)")
    fn, key = LOSSES[p.layer]
    params = caffe_layers.parse_param_str(p.param_str, caffe_layers.LOSSES[p.layer])
    caffe_layers.check_params(p.layer, params)
    if len(bottoms) != 2 or len(layer.top) != 1:
        raise ValueError(f"{p.layer} takes 2 bottoms (prediction, label) and 1 top, "
                         f"got {len(bottoms)} and {len(layer.top)}")
    a, b = bottoms
    if math.prod(a) != math.prod(b):
        raise ValueError(f"bottoms {a} and {b} must have the same count")
    return PythonLoss(fn, params[key]), [()]
