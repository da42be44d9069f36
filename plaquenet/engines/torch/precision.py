"""The torch engine's arithmetic: Caffe's float32 by default, faster modes opt-in.

    fp32  Caffe's numerics (the default): float32 everywhere, TF32 off on CUDA
          (set_numerics); what the conformance tests hold against real Caffe.
    bf16  convolutions (and matrix products) in bfloat16 through torch.autocast,
          on the CPU (AVX512_BF16 / AMX, where present: oneDNN) and on CUDA.
          Weights, their gradients, the solver's update and every layer with a
          loss weight stay float32 (the loss layer's bottoms are cast back), so
          only the products are rounded: an 8-bit mantissa instead of 24.
    tf32  CUDA only: float32 storage, TF32 products in convolutions and matrix
          products (10-bit mantissa), cuDNN autotuning on.

Neither faster mode is Caffe's arithmetic: a run trained or scored with one
says so (train.log, results.json), and the README ("Measured", Precision)
gives its effect on the loss curve and test F-measure beside its speed."""

import contextlib
from typing import ContextManager, Optional

import torch

from ...errors import InputError
from .. import PRECISIONS

AUTOCAST = {"bf16": torch.bfloat16}


def check_precision(precision: str, device: torch.device) -> str:
    """`precision` if this engine can compute in it on `device`; InputError (one line) otherwise."""
    if precision not in PRECISIONS:
        raise InputError("--precision", f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "tf32" and device.type != "cuda":
        raise InputError("--precision", "tf32 is a mode of NVIDIA GPUs (Ampere and later); on a CPU use fp32 "
                                        "(Caffe's numerics) or bf16")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise InputError("--precision", "bf16 needs a CPU with bfloat16 arithmetic (AVX512_BF16, AMX or Arm's "
                                        "BF16), which this one lacks: emulated it would be slower than fp32")
    return precision


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (oneDNN's own probe)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def set_numerics(precision: str) -> None:
    """Torch's global switches for `precision`. For fp32 (and bf16, whose
    float32 parts stay float32) Caffe's arithmetic on every device: on CUDA
    that needs two of torch's defaults changed: TF32 (10-bit mantissa
    products, about 1e-3 relative error) off for convolutions and matrix
    products, and cuDNN picking its algorithms deterministically (no
    autotuning, deterministic kernels), so a GPU run repeats itself; results
    still differ from the CPU's in the last bits (other summation orders).
    For tf32 the reverse. No effect on CPU arithmetic."""
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = tf32
    torch.backends.cudnn.deterministic = not tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")


def autocast(precision: str, device: torch.device) -> ContextManager[None]:
    """The autocast region a net's layers run in (a no-op for fp32 and tf32)."""
    dtype = AUTOCAST.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def full_precision(device: torch.device) -> ContextManager[None]:
    """A region inside autocast that computes in the inputs' own dtype (the loss layers)."""
    return torch.autocast(device_type=device.type, enabled=False)


def autocast_dtype(precision: str) -> Optional[torch.dtype]:
    return AUTOCAST.get(precision)
