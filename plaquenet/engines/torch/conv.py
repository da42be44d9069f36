"""The convolution the torch engine trains with: Caffe's own algorithm in the forward pass.

Caffe's ConvolutionLayer::Forward_cpu (src/caffe/layers/conv_layer.cpp, 99bd997) unfolds each
image with im2col and multiplies by the filters with one SGEMM. On the CPU, torch's conv2d
goes to oneDNN (mkldnn) by default, whose blocked kernels round differently; with oneDNN off
it takes ATen's `slow_conv2d`, which is the same im2col + GEMM as Caffe.

This matters for training more than its size suggests. Measured on the paper's TRAIN net at
its real size (batch 100 of 50x50, tests/conformance/test_caffe_paper_net.py, 2026-11-30):
with oneDNN's forward the parameter gradients of one batch were up to 3.4e-4 (relative to each
blob's largest element) from a reference whose convolutions are summed in float64, while
Caffe's were within 5e-6 of it; with the im2col forward, ours came within 1.4e-5. The gradients
are sums of large terms that cancel, and where a pre-activation lies within rounding of zero the
PReLU kink flips, so small forward differences grow in the backward pass. The backward pass
keeps torch's dispatch (it measured no difference). On the same batch the im2col forward was
also no slower than oneDNN's on 2 cores (2.6-3.7 s against 4.6-7.0 s per forward+backward, while
the machine was shared). Without a gradient (scoring whole scans) oneDNN stays: there it is 3-5x
faster and its outputs agree with Caffe within 2e-6 (test_caffe_engine.py). Nor under autocast
(--precision bf16, precision.py): that mode is not Caffe's arithmetic, and oneDNN is what
computes bfloat16 fast."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

Pair = Tuple[int, int]


def caffe_order_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Pair,
                       pad: Pair, dilation: Pair, groups: int) -> torch.Tensor:
    """Caffe's convolution (cross-correlation with symmetric zero padding: torch's conv2d and
    weight layout). When a gradient will be taken, on the CPU, through im2col + GEMM as Caffe."""
    if x.device.type == "cpu" and torch.is_grad_enabled() and not torch.is_autocast_enabled("cpu") and \
            (weight.requires_grad or (bias is not None and bias.requires_grad)):
        # Only the `enabled` flag: torch.backends.mkldnn.flags() would also reset its TF32 and
        # determinism settings for the duration.
        was_enabled = torch._C._get_mkldnn_enabled()
        torch._C._set_mkldnn_enabled(False)
        try:
            return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
        finally:
            torch._C._set_mkldnn_enabled(was_enabled)
    return F.conv2d(x, weight, bias, stride, pad, dilation, groups)
