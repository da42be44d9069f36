"""Which library computes each convolution of the torch engine on the CPU, and that every path
gives the convolution and its gradients (plaquenet/engines/torch/conv.py): against the same
convolution summed in float64 by autograd, on tiny tensors."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from plaquenet.engines.torch.conv import NNPACK_MIN_BATCH, caffe_order_conv2d

needs_nnpack = pytest.mark.skipif(not torch._nnpack_available(), reason="this torch has no NNPACK")


def ops_called(step):
    """The names of the aten operators `step()` ran."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    return {event.key for event in prof.key_averages()}


def relative(a, b):
    return float((a.double() - b).abs().max() / b.abs().max())


def tensors(batch, cin, cout, k, size=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, size, size, generator=g)
    w = torch.randn(cout, cin, k, k, generator=g) * 0.2
    b = torch.randn(cout, generator=g)
    return x, w, b


def float64_gradients(x, w, b, stride, pad, grad_out):
    x, w, b = (t.double().requires_grad_() for t in (x, w, b))
    out = torch.nn.functional.conv2d(x, w, b, stride, pad)
    out.backward(grad_out.double())
    return out.detach(), x.grad, w.grad, b.grad


@needs_nnpack
@pytest.mark.parametrize("k, size, by_nnpack", [
    (7, 20, True),   # scoring takes NNPACK at a batch of 1
    (3, 7, False),   # NNPACK computes 3x3 filters by Winograd, up to 7e-6 from float64 on a small image
])
def test_scoring_gives_the_convolution_by_nnpack_except_3x3(k, size, by_nnpack):
    x, w, b = tensors(1, 3, 4, k, size=size)
    pad = (k // 2, k // 2)
    with torch.inference_mode():
        ops = ops_called(lambda: caffe_order_conv2d(x, w, b, (1, 1), pad, (1, 1), 1))
        out = caffe_order_conv2d(x, w, b, (1, 1), pad, (1, 1), 1)
    assert ("aten::_nnpack_spatial_convolution" in ops) == by_nnpack
    assert relative(out, torch.nn.functional.conv2d(x.double(), w.double(), b.double(), 1, pad)) < 1e-6


@pytest.mark.parametrize("batch, k, pad, stride", [
    (NNPACK_MIN_BATCH, 5, 2, 1),   # the paper's padding: NNPACK for the input gradient
    (NNPACK_MIN_BATCH, 5, 1, 1),   # padding below (k - 1) / 2: the output is smaller, the gradient padded by 3
    (NNPACK_MIN_BATCH, 4, 3, 1),   # padding k - 1: the gradient's padding is 0
    (4, 7, 3, 1),                  # below ATen's NNPACK batch: oneDNN for every gradient
    (NNPACK_MIN_BATCH, 3, 1, 2),   # stride 2: not NNPACK's
])
def test_training_gradients_are_the_convolutions(batch, k, pad, stride):
    x, w, b = tensors(batch, 3, 4, k)
    x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
    out = caffe_order_conv2d(x, w, b, (stride, stride), (pad, pad), (1, 1), 1)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    ops = ops_called(lambda: out.backward(grad_out))
    expected = float64_gradients(x.detach(), w.detach(), b.detach(), stride, pad, grad_out)
    for ours, exact in zip((out.detach(), x.grad, w.grad, b.grad), expected):
        assert ours.shape == exact.shape and relative(ours, exact) < 1e-5
    by_nnpack = batch >= NNPACK_MIN_BATCH and stride == 1 and k != 3 and torch._nnpack_available()
    assert ("aten::_nnpack_spatial_convolution" in ops) == by_nnpack


def test_the_first_layers_input_gradient_is_not_computed():
    """The data needs no gradient: only the filters' and the bias's are taken."""
    x, w, b = tensors(NNPACK_MIN_BATCH, 1, 4, 5)
    w.requires_grad_(), b.requires_grad_()
    out = caffe_order_conv2d(x, w, b, (1, 1), (2, 2), (1, 1), 1)
    ops = ops_called(lambda: out.sum().backward())
    assert x.grad is None and w.grad is not None and b.grad is not None
    assert "aten::_nnpack_spatial_convolution" not in ops


@needs_nnpack
@pytest.mark.parametrize("size", [20, 100])   # below and at PER_IMAGE_PIXELS: the batch call, then image by image
def test_a_batch_of_slices_scores_as_each_slice_alone(size):
    x, w, b = tensors(3, 2, 4, 5, size=size)
    with torch.inference_mode():
        together = caffe_order_conv2d(x, w, b, (1, 1), (2, 2), (1, 1), 1)
        alone = torch.cat([caffe_order_conv2d(x[i:i + 1], w, b, (1, 1), (2, 2), (1, 1), 1) for i in range(3)])
    assert together.shape == (3, 4, size, size)
    assert relative(together, alone.double()) < 1e-6
    assert relative(together, torch.nn.functional.conv2d(x.double(), w.double(), b.double(), 1, 2)) < 1e-5
