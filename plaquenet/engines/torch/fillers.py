"""Caffe's weight fillers (include/caffe/filler.hpp, as in the 1.0 tag; the oracle, Debian's
1.0.0+git20180821.99bd997, differs on 0-axis blobs and the bilinear filler: docs/CAFFE_ORACLE.md) on torch tensors.

The distributions and fan formulas are Caffe's; the random numbers are not
(Caffe draws from boost's mt19937), so two engines are compared by loading the
same weights, never by comparing fills."""

import math
from typing import TYPE_CHECKING, Sequence, Tuple

import torch

if TYPE_CHECKING:
    from ...caffe import caffe_pb2



def _legacy_num_channels(shape: Sequence[int]) -> Tuple[int, int]:
    # Blob::num() and channels() are shape(0) and shape(1), or 1 where the
    # blob has fewer axes (a PReLU slope blob (C,) has fan_in 1, fan_out C).
    num = shape[0] if len(shape) >= 1 else 1
    channels = shape[1] if len(shape) >= 2 else 1
    return num, channels


def fan(filler: "caffe_pb2.FillerParameter", shape: Sequence[int]) -> float:
    """n of the xavier/msra fillers: fan_in = count/num (default), fan_out =
    count/channels, or their mean (variance_norm AVERAGE). Integer division
    as in Caffe. For a conv weight (O, C/g, kh, kw): fan_in = C/g*kh*kw,
    fan_out = O*kh*kw."""
    count = math.prod(shape)
    num, channels = _legacy_num_channels(shape)
    fan_in, fan_out = count // num, count // channels
    norm = filler.variance_norm
    if norm == filler.AVERAGE:
        return (fan_in + fan_out) / 2.0
    if norm == filler.FAN_OUT:
        return float(fan_out)
    return float(fan_in)


def fill(filler: "caffe_pb2.FillerParameter", shape: Sequence[int], generator: torch.Generator,
         where: str = "") -> torch.Tensor:
    """A float32 CPU tensor of `shape` filled as Caffe's FillerParameter says.
    A filler Caffe would reject is a ValueError prefixed by `where`."""
    shape = tuple(int(d) for d in shape)
    kind = filler.type
    if filler.sparse != -1 and kind != "gaussian":
        raise ValueError(f"{where}filler '{kind}' does not support `sparse`")
    out = torch.empty(shape, dtype=torch.float32)
    if kind == "constant":
        return out.fill_(filler.value)
    if kind == "uniform":
        return out.uniform_(filler.min, filler.max, generator=generator)
    if kind == "gaussian":
        out.normal_(filler.mean, filler.std, generator=generator)
        if filler.sparse >= 0:
            # Each weight is kept with probability sparse / num_outputs.
            keep = torch.empty(shape).bernoulli_(filler.sparse / shape[0], generator=generator)
            out *= keep
        return out
    if kind == "xavier":
        scale = math.sqrt(3.0 / fan(filler, shape))
        return out.uniform_(-scale, scale, generator=generator)
    if kind == "msra":
        return out.normal_(0.0, math.sqrt(2.0 / fan(filler, shape)), generator=generator)
    if kind == "positive_unitball":
        out.uniform_(0.0, 1.0, generator=generator)
        rows = out.reshape(shape[0], -1)
        return (rows / rows.sum(dim=1, keepdim=True)).reshape(shape)
    if kind == "bilinear":
        return _bilinear(shape, where)
    raise ValueError(f"{where}unknown filler type '{kind}'")


def _bilinear(shape: Tuple[int, ...], where: str) -> torch.Tensor:
    if len(shape) != 4 or shape[2] != shape[3]:
        raise ValueError(f"{where}the bilinear filler needs a 4-D blob with square kernels")
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = (2 * f - 1 - f % 2) / (2.0 * f)
    x = torch.arange(k, dtype=torch.float64)
    profile = 1 - torch.abs(x / f - c)
    kernel = (profile[:, None] * profile[None, :]).to(torch.float32)
    return kernel.expand(shape).contiguous()
