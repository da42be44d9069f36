"""Losses that cope with class imbalance (§6 of the paper suggests them: the
plaque pixels are a few percent of a tile), as Caffe Python layers. Real
Caffe runs the classes below (`type: "Python"`, `python_param { module:
"plaquenet.caffe_layers" layer: "SoftDiceLoss" param_str: "eps=1" }`, the
repository root on PYTHONPATH); the torch engine runs the same arithmetic
natively (plaquenet/engines/torch/python_layers.py). This module needs numpy
only (and `caffe` when Caffe runs it): Caffe's own Python 3.9 imports it.

Both layers take two bottoms of the same count, a prediction and the label
(the plaque mask, 0 or 1; values in [0, 1] work too), and give one top of no
axes (one value), like Caffe's own losses. Sums are over the whole batch
(pooled: every tile, channel and pixel), in float64 from the float32 blobs,
rounded once to float32, in both engines.

- **SoftDiceLoss** on probabilities p (the Sigmoid's top, "prob"), label y:

      loss = 1 - (2 sum(p y) + eps) / (sum(p) + sum(y) + eps)
      d loss / d p_i = -(2 y_i (sum(p) + sum(y) + eps) - (2 sum(p y) + eps))
                       / (sum(p) + sum(y) + eps)^2

  eps (param `eps`, default 1) keeps it defined on a batch with no plaque
  and no output (loss 0 there: nothing to find, nothing found). Pooled over
  the batch, not averaged per tile: a third of the tiles hold no plaque
  (§4.1), where a per-tile Dice is all eps.

- **WeightedSigmoidCrossEntropyLoss** on logits x (the blob BEFORE the
  Sigmoid, "conv6" in the paper's net), label t, positive weight w
  (param `pos_weight`, default 1):

      loss = sum(w t softplus(-x) + (1 - t) softplus(x)) / N
           = sum(-w t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))) / N
      d loss / d x_i = (sigmoid(x_i) (w t_i + 1 - t_i) - w t_i) / N

  N = the batch (shape[0]), as Caffe's EuclideanLoss and its
  SigmoidCrossEntropyLoss (normalization unset) divide; with w = 1 it is
  exactly Caffe's SigmoidCrossEntropyLoss. softplus(z) = max(z, 0) +
  log(1 + exp(-|z|)) never overflows. Logits, not probabilities: Caffe's
  float32 Sigmoid gives exactly 1 for x above about 17 (and underflows
  towards 0), where log(1 - p) is -inf and the gradient is lost; the
  paper's Sigmoid is a separate layer (conv6 -> prob), so the train net can
  feed conv6 to this loss while the deploy net keeps its Sigmoid output.

Both multiply their gradient by the top's diff, which Caffe sets to the
layer's `loss_weight`. A Python layer is no LossLayer in Caffe: without a
`loss_weight` in the prototxt its weight is 0 (Layer::SetLossWeights,
layer.hpp: only the given weights are set; LossLayer::LayerSetUp alone
defaults to 1), the top is then a plain net output and nothing is learnt.
Write `loss_weight: 1`. Neither backpropagates into the label (like
SigmoidCrossEntropyLoss): Caffe asks for it only where the label blob needs
a gradient (force_backward, propagate_down), and both engines refuse that.

`param_str` is `key=value` pairs separated by spaces or commas, e.g.
"pos_weight=10"; unknown keys and values that are not numbers are errors."""

import re
from typing import Any, Dict, Tuple

import numpy as np

try:   # Caffe's Python layers must subclass caffe.Layer; elsewhere (tests, the torch engine) a plain class
    import caffe
    _Base: Any = caffe.Layer
except ImportError:
    _Base = object

DICE_DEFAULTS = {"eps": 1.0}
WEIGHTED_CE_DEFAULTS = {"pos_weight": 1.0}


def parse_param_str(param_str: str, defaults: Dict[str, float]) -> Dict[str, float]:
    """`key=value` pairs (spaces or commas between them) over `defaults`;
    a ValueError names an unknown key or a value that is not a number."""
    params = dict(defaults)
    for item in re.split(r"[\s,]+", param_str.strip()):
        if not item:
            continue
        key, equals, value = item.partition("=")
        if not equals or key not in defaults:
            raise ValueError(f"param_str '{param_str}': '{item}' is not key=value with a key of "
                             f"{sorted(defaults)}")
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"param_str '{param_str}': {key} = '{value}' is not a number") from None
    return params


def check_params(layer: str, params: Dict[str, float]) -> None:
    """What each loss needs of its parameters (a ValueError otherwise)."""
    if layer == "SoftDiceLoss" and not params["eps"] > 0:
        raise ValueError(f"eps = {params['eps']} must be > 0 (it keeps an empty batch's loss defined)")
    if layer == "WeightedSigmoidCrossEntropyLoss" and not params["pos_weight"] >= 0:
        raise ValueError(f"pos_weight = {params['pos_weight']} must be >= 0")


def soft_dice(p: np.ndarray, y: np.ndarray, eps: float) -> Tuple[float, np.ndarray]:
    """(loss, d loss / d p) of the module docstring, in float64."""
    p, y = p.astype(np.float64).ravel(), y.astype(np.float64).ravel()
    overlap, total = 2.0 * np.dot(p, y) + eps, p.sum() + y.sum() + eps
    return 1.0 - overlap / total, -(2.0 * y * total - overlap) / (total * total)


def weighted_sigmoid_cross_entropy(x: np.ndarray, t: np.ndarray, pos_weight: float,
                                   batch: int) -> Tuple[float, np.ndarray]:
    """(loss, d loss / d x) of the module docstring, in float64."""
    x, t = x.astype(np.float64).ravel(), t.astype(np.float64).ravel()
    log_term = np.log1p(np.exp(-np.abs(x)))
    softplus_x, softplus_minus_x = np.maximum(x, 0) + log_term, np.maximum(-x, 0) + log_term
    loss = np.sum(pos_weight * t * softplus_minus_x + (1.0 - t) * softplus_x) / batch
    sigmoid = 0.5 * np.tanh(0.5 * x) + 0.5
    return loss, (sigmoid * (pos_weight * t + 1.0 - t) - pos_weight * t) / batch


class _PairLoss(_Base):
    """Two bottoms of one count -> one 0-axis top; the gradient into bottom 0."""
    defaults: Dict[str, float] = {}

    def setup(self, bottom: Any, top: Any) -> None:
        name = type(self).__name__
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError(f"{name} takes 2 bottoms (prediction, label) and 1 top, "
                             f"got {len(bottom)} and {len(top)}")
        self.params = parse_param_str(getattr(self, "param_str", ""), self.defaults)
        check_params(name, self.params)

    def reshape(self, bottom: Any, top: Any) -> None:
        if bottom[0].count != bottom[1].count:
            raise ValueError(f"{type(self).__name__}: bottoms {bottom[0].data.shape} and {bottom[1].data.shape} "
                             f"must have the same count")
        top[0].reshape()   # no axes: one value, as Caffe's losses

    def loss_and_grad(self, prediction: np.ndarray, label: np.ndarray) -> Tuple[float, np.ndarray]:
        raise NotImplementedError

    def forward(self, bottom: Any, top: Any) -> None:
        loss, self.grad = self.loss_and_grad(bottom[0].data, bottom[1].data)
        top[0].data[...] = loss

    def backward(self, top: Any, propagate_down: Any, bottom: Any) -> None:
        if propagate_down[1]:
            raise ValueError(f"{type(self).__name__} cannot backpropagate to label inputs")
        if propagate_down[0]:
            weight = float(np.asarray(top[0].diff).ravel()[0])   # the loss_weight
            bottom[0].diff[...] = (self.grad * weight).reshape(bottom[0].diff.shape)


class SoftDiceLoss(_PairLoss):
    """bottoms: probabilities (N, ...), label (same count); param_str "eps=1"."""
    defaults = DICE_DEFAULTS

    def loss_and_grad(self, prediction: np.ndarray, label: np.ndarray) -> Tuple[float, np.ndarray]:
        return soft_dice(prediction, label, self.params["eps"])


class WeightedSigmoidCrossEntropyLoss(_PairLoss):
    """bottoms: logits (N, ...), label (same count); param_str "pos_weight=1"."""
    defaults = WEIGHTED_CE_DEFAULTS

    def loss_and_grad(self, prediction: np.ndarray, label: np.ndarray) -> Tuple[float, np.ndarray]:
        return weighted_sigmoid_cross_entropy(prediction, label, self.params["pos_weight"], prediction.shape[0])


# layer name in python_param -> the defaults of its param_str keys (the torch engine's table too)
LOSSES = {"SoftDiceLoss": DICE_DEFAULTS, "WeightedSigmoidCrossEntropyLoss": WEIGHTED_CE_DEFAULTS}
