"""The convolution the torch engine trains with on the CPU at fp32: oneDNN off in the forward
pass, oneDNN in channels-last memory in the backward pass.

Caffe's ConvolutionLayer::Forward_cpu (src/caffe/layers/conv_layer.cpp, 99bd997) unfolds each
image with im2col and multiplies by the filters with one SGEMM. On the CPU, torch's conv2d goes
to oneDNN (mkldnn) by default, whose blocked kernels round differently. With oneDNN off, ATen
takes NNPACK for a batch of 16 or more (its automatic choice: FFT on 8x8 tiles for the paper's
5x5 and 7x7 filters, on 16x16 tiles for its 9x9 ones) and `slow_conv2d`, the same im2col + GEMM
as Caffe, below 16 (checked with torch.profiler, torch 2.13).

This matters for training more than its size suggests. Measured on the paper's TRAIN net at
its real size (batch 100 of 50x50, so NNPACK; tests/conformance/test_caffe_paper_net.py,
2026-11-30): with oneDNN's forward the parameter gradients of one batch were up to 3.4e-4
(relative to each blob's largest element) from a reference whose convolutions are summed in
float64, while Caffe's were within 5e-6 of it; with oneDNN off in the forward, ours came within
1.4e-5. The gradients are sums of large terms that cancel, and where a pre-activation lies within
rounding of zero the PReLU kink flips, so small forward differences grow in the backward pass.

The backward pass is oneDNN's, on channels-last copies of its operands: the same numbers as
torch's own dispatch within the test's noise (1.4e-5 again, 2026-12-01), and 35 % less time than
oneDNN on Caffe's NCHW layout, which reorders every operand (1.37 s against 2.11 s for the six
layers' backward of a 100-tile batch on 2 cores, `bench/bench_conv_backward.py`; the whole
iteration is in `bench/bench_engine.py`). Its input gradient stays channels-last: the PReLU
backward takes it as it comes, and the next convolution's backward needs it so.

Without a gradient (scoring whole scans) oneDNN stays: there it is 3-5x faster and its outputs
agree with Caffe within 2e-6 (test_caffe_engine.py). Nor under autocast (--precision bf16,
precision.py): that mode is not Caffe's arithmetic, and oneDNN is what computes bfloat16 fast."""

from typing import Any, Optional, Tuple

import torch
import torch.nn.functional as F

Pair = Tuple[int, int]


class _CaffeForwardConv(torch.autograd.Function):
    """The forward with oneDNN off; the backward through oneDNN in channels-last memory."""

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
        last = torch.channels_last
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out.contiguous(memory_format=last), x.contiguous(memory_format=last),
            weight.contiguous(memory_format=last), [weight.shape[0]] if ctx.has_bias else None,
            list(stride), list(pad), list(dilation), False, [0, 0], groups, mask)
        return (grad_x if mask[0] else None, grad_w.contiguous() if mask[1] else None,
                grad_b if mask[2] else None, None, None, None, None)


def caffe_order_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair,
                       pad: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """Caffe's convolution (cross-correlation with symmetric zero padding: torch's conv2d and
    weight layout). When a gradient will be taken, on the CPU, with oneDNN off in the forward."""
    if x.device.type == "cpu" and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu") and \
            (weight.requires_grad or (bias is not None and bias.requires_grad)):
        return _CaffeForwardConv.apply(x, weight, bias, stride, pad, dilation, groups)
    return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
