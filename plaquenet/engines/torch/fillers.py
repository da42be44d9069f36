"""Caffe's weight fillers (include/caffe/filler.hpp at the oracle, Debian's
1.0.0+git20180821.99bd997; where it differs from the 1.0 tag, docs/CAFFE_ORACLE.md)
on torch tensors.

The distributions and fan formulas are Caffe's; the random numbers are not
(Caffe draws from boost's mt19937), so two engines are compared by loading the
same weights, never by comparing fills. The bilinear filler draws nothing and
is Caffe's bit for bit. A filler Caffe aborts on (a CHECK in Fill, which Caffe
runs even when weights are loaded afterwards) is refused by `check_filler`."""

import math
from typing import TYPE_CHECKING, Sequence, Tuple

import numpy as np
import torch

if TYPE_CHECKING:
    from ...caffe import caffe_pb2

KNOWN = ("constant", "gaussian", "positive_unitball", "uniform", "xavier", "msra", "bilinear")


def check_filler(filler: "caffe_pb2.FillerParameter", shape: Sequence[int], where: str = "") -> None:
    """A ValueError prefixed by `where` if Caffe's filler aborts on a blob of
    `shape` (filler.hpp at 99bd997): an unknown type; `sparse` other than -1
    except for gaussian, or below -1; an empty blob; a fan or the sparse
    probability taken from axis 0 of a 0-axis blob (PReLU's channel_shared
    slope: "axis 0 out of range for 0-D Blob"); bilinear on a blob that is not
    4-D with square kernels."""
    shape = tuple(int(d) for d in shape)
    kind = filler.type
    if kind not in KNOWN:
        raise ValueError(f"{where}unknown filler type '{kind}'")
    if kind != "bilinear" and math.prod(shape) == 0:
        raise ValueError(f"{where}filler '{kind}' on a blob of shape {shape} with no elements (Caffe aborts)")
    if filler.sparse != -1 and (kind != "gaussian" or filler.sparse < -1):
        raise ValueError(f"{where}`sparse: {filler.sparse}` is only for the gaussian filler, and at least -1")
    uses_axis_0 = kind in ("xavier", "msra", "positive_unitball") or (kind == "gaussian" and filler.sparse >= 0)
    if uses_axis_0 and not shape:
        raise ValueError(f"{where}filler '{kind}' needs axis 0 of the blob, and this blob has no axes "
                         f"(a channel_shared PReLU slope): Caffe aborts")
    if kind == "bilinear" and (len(shape) != 4 or shape[2] != shape[3]):
        raise ValueError(f"{where}the bilinear filler needs a 4-D blob with square kernels, not {shape}")


def fan(filler: "caffe_pb2.FillerParameter", shape: Sequence[int]) -> float:
    """n of the xavier/msra fillers, in float32 as Caffe computes it:
    fan_in = count / shape(0) (default), fan_out = count / shape(1) (count
    for a 1-axis blob), or their mean (variance_norm AVERAGE). Integer
    division as in Caffe. For a conv weight (O, C/g, kh, kw): fan_in =
    C/g*kh*kw, fan_out = O*kh*kw. The blob has at least one axis."""
    count = math.prod(shape)
    fan_in = count // shape[0]
    fan_out = count // shape[1] if len(shape) > 1 else count
    norm = filler.variance_norm
    if norm == filler.AVERAGE:
        return float(np.float32(fan_in + fan_out) / np.float32(2))   # the int sum, then float
    if norm == filler.FAN_OUT:
        return float(np.float32(fan_out))
    return float(np.float32(fan_in))


def fill(filler: "caffe_pb2.FillerParameter", shape: Sequence[int], generator: torch.Generator,
         where: str = "") -> torch.Tensor:
    """A float32 CPU tensor of `shape` filled as Caffe's FillerParameter says.
    A filler Caffe would reject is a ValueError prefixed by `where`."""
    shape = tuple(int(d) for d in shape)
    check_filler(filler, shape, where)
    kind = filler.type
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
    if kind == "xavier":   # Dtype scale = sqrt(Dtype(3) / n)
        scale = float(np.sqrt(np.float32(3) / np.float32(fan(filler, shape))))
        return out.uniform_(-scale, scale, generator=generator)
    if kind == "msra":     # Dtype std = sqrt(Dtype(2) / n)
        return out.normal_(0.0, float(np.sqrt(np.float32(2) / np.float32(fan(filler, shape)))), generator=generator)
    if kind == "positive_unitball":
        out.uniform_(0.0, 1.0, generator=generator)
        rows = out.reshape(shape[0], -1)
        return (rows / rows.sum(dim=1, keepdim=True)).reshape(shape)
    return _bilinear(shape)


def _bilinear(shape: Tuple[int, ...]) -> torch.Tensor:
    """BilinearFiller at 99bd997 (filler.hpp:257-264): f = ceil(K / 2.),
    c = (K - 1) / (2. f) rounded to float, and each value
    (1 - |x / f - c|) (1 - |y / f - c|) in float arithmetic, x the column and
    y the row of the K x K kernel: Caffe's floats, bit for bit, for every K."""
    k = shape[3]
    f = math.ceil(k / 2.0)
    c = np.float32((k - 1) / (2.0 * f))
    x = np.arange(k, dtype=np.float32)
    profile = np.float32(1) - np.abs(x / np.float32(f) - c)
    kernel = torch.from_numpy(profile[:, None] * profile[None, :])   # [y, x]
    return kernel.expand(shape).contiguous()
