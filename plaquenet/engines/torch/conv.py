"""The convolution the torch engine runs on the CPU at fp32: NNPACK's FFT convolution wherever it
applies (the forward pass, the input gradient, and scoring), oneDNN in channels-last memory for
the filter gradient.

Caffe's ConvolutionLayer::Forward_cpu (src/caffe/layers/conv_layer.cpp, 99bd997) unfolds each
image with im2col and multiplies by the filters with one SGEMM; no CPU library sums in its order,
so what counts is how far each is from exact arithmetic. On the CPU, torch's conv2d goes to oneDNN
(mkldnn) by default. With oneDNN off, ATen takes NNPACK for a batch of 16 or more (its automatic
choice: FFT on 8x8 tiles for the paper's 5x5 and 7x7 filters, on 16x16 tiles for its 9x9 ones)
and `slow_conv2d`, the same im2col + GEMM as Caffe, below 16 (checked with torch.profiler, torch
2.13). NNPACK is both the faster and the closer to float64 here (`bench/bench_conv.py` prints
both; 2026-12-01, 2 cores): on a 448x512 scan the six layers take 0.26 s against oneDNN's
1.15 s, at most 2.8e-7 from float64 (relative to the output's largest element) against 1.6e-6;
the input gradients of a 100-tile batch 0.39 s against 0.72 s for oneDNN on channels-last
copies, 2.7e-7 against 3.4e-6.

This matters for training more than its size suggests. Measured on the paper's TRAIN net at
its real size (batch 100 of 50x50; tests/conformance/test_caffe_paper_net.py, 2026-11-30): with
oneDNN's forward the parameter gradients of one batch were up to 3.4e-4 (relative to each blob's
largest element) from a reference whose convolutions are summed in float64, while Caffe's were
within 5e-6 of it; with NNPACK's forward, ours came within 1.4e-5. The gradients are sums of large
terms that cancel, and where a pre-activation lies within rounding of zero the PReLU kink flips,
so small forward differences grow in the backward pass.

So, on the CPU at fp32:
  - training forward: ATen's own choice with oneDNN off (NNPACK from a batch of 16, im2col below);
  - input gradient: NNPACK from a batch of 16 (a stride-1 convolution's input gradient is the
    convolution of the output gradient with the flipped, transposed filters, padded by
    kernel - 1 - pad), else oneDNN on channels-last copies;
  - filter and bias gradients: oneDNN on channels-last copies of the operands (on Caffe's NCHW
    layout oneDNN reorders every operand: 35 % slower, 2026-12-01);
  - without autograd (scoring whole scans, any batch): NNPACK where it applies.
NNPACK applies to float32, stride 1, no dilation, one group, kernels up to 16 and padding below
the kernel (NNPACK's own limits), and here not to 3x3 filters (NNPACK computes those by Winograd,
further from float64: `nnpack_applies`); elsewhere torch's conv2d. Not under autocast (--precision bf16,
precision.py): that mode is not Caffe's arithmetic, and oneDNN is what computes bfloat16 fast."""

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

Pair = Tuple[int, int]


NNPACK_MIN_BATCH = 16   # ATen's own threshold for NNPACK in the forward pass (use_nnpack)


def nnpack_applies(x: torch.Tensor, weight: torch.Tensor, stride: Pair, pad: Pair, dilation: Pair,
                   groups: int) -> bool:
    """Whether NNPACK's FFT convolution computes this one: its limits, float32 on the CPU, and
    not a 3x3 filter, for which NNPACK picks Winograd F(6x6, 3x3): up to 7e-6 from float64
    (relative to the output's largest element) where direct convolution stays within 2e-7
    (measured 2026-12-01 on 5x7 to 448x512 images; FFT for 1x1 to 16x16 filters stays within 2.3e-7)."""
    return (x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32 and x.dim() == 4
            and nnpack_geometry(tuple(weight.shape[2:]), stride, pad, dilation, groups))


def nnpack_geometry(kernel: Tuple[int, ...], stride: Pair, pad: Pair, dilation: Pair, groups: int) -> bool:
    """The part of `nnpack_applies` a layer's parameters decide (and NNPACK present)."""
    return (tuple(stride) == (1, 1) and tuple(dilation) == (1, 1) and groups == 1
            and all(k <= 16 and 0 <= p < k for k, p in zip(kernel, pad))
            and tuple(kernel) != (3, 3) and torch._nnpack_available())


# From this many pixels per image NNPACK is faster one image at a time (its inference mode) than
# on the whole batch (its batch mode), measured 2026-12-01 on 2 cores for the 40->60 7x7 layer:
# 4 x 448x512 0.46 s against 0.83 s, 4 x 224x224 0.10 against 0.12, 16 x 100x100 0.08 against
# 0.10; 91 x 50x50 0.16 against 0.13 (the batch mode wins on tiles).
PER_IMAGE_PIXELS = 100 * 100


def nnpack_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], pad: Pair) -> torch.Tensor:
    """NNPACK's stride-1 convolution (no autograd); `nnpack_applies` first (it also
    initialises NNPACK, without which every call fails)."""
    x, weight = x.contiguous(), weight.contiguous()
    if x.shape[0] > 1 and x.shape[2] * x.shape[3] >= PER_IMAGE_PIXELS:
        return torch.cat([torch._nnpack_spatial_convolution(image, weight, bias, list(pad), [1, 1])
                          for image in x.split(1)])
    return torch._nnpack_spatial_convolution(x, weight, bias, list(pad), [1, 1])


class _CaffeForwardConv(torch.autograd.Function):
    """The forward with oneDNN off; the input gradient by NNPACK (from a batch of 16), the
    parameter gradients through oneDNN in channels-last memory."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair,
                pad: Pair, dilation: Pair, groups: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.geometry = (stride, pad, dilation, groups)
        ctx.has_bias = bias is not None
        # Only the `enabled` flag: torch.backends.mkldnn.flags() would also reset its TF32 and
        # determinism settings for the duration.
        was_enabled = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        try:
            return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
        finally:
            torch._C._set_mkldnn_enabled(was_enabled)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, weight = ctx.saved_tensors
        stride, pad, dilation, groups = ctx.geometry
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
        grad_x = None
        kernel = weight.shape[2:]
        if mask[0] and x.shape[0] >= NNPACK_MIN_BATCH and nnpack_applies(grad_out, weight, stride, pad, dilation,
                                                                          groups):
            full = (kernel[0] - 1 - pad[0], kernel[1] - 1 - pad[1])   # >= 0: nnpack_applies wants pad < kernel
            grad_x = nnpack_conv2d(grad_out, weight.flip(2, 3).transpose(0, 1), None, full)
            mask[0] = False
        if any(mask):
            last = torch.channels_last
            other_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out.contiguous(memory_format=last), x.contiguous(memory_format=last),
                weight.contiguous(memory_format=last), [weight.shape[0]] if ctx.has_bias else None,
                list(stride), list(pad), list(dilation), False, [0, 0], groups, mask)
            grad_x = other_x if mask[0] else grad_x
        return (grad_x if ctx.needs_input_grad[0] else None, grad_w.contiguous() if mask[1] else None,
                grad_b if mask[2] else None, None, None, None, None)


def caffe_order_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair,
                       pad: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """Caffe's convolution (cross-correlation with symmetric zero padding: torch's conv2d and
    weight layout), computed as the module docstring says."""
    if x.device.type != "cpu" or torch.is_autocast_enabled("cpu"):
        return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
    params_need_grad = weight.requires_grad or (bias is not None and bias.requires_grad)
    if torch.is_grad_enabled() and params_need_grad:
        return _CaffeForwardConv.apply(x, weight, bias, stride, pad, dilation, groups)
    if not (torch.is_grad_enabled() and (x.requires_grad or params_need_grad)) and \
            nnpack_applies(x, weight, stride, pad, dilation, groups):
        return nnpack_conv2d(x, weight, bias, pad)
    return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
