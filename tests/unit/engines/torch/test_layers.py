"""The torch engine's layers against Caffe's definitions (losses, PReLU, Sigmoid,
Convolution, Silence), on nets a few pixels big written as prototxt strings."""

import numpy as np
import pytest
import torch

from plaquenet.errors import InputError
from tiny_nets import input_layer, net_of


def test_euclidean_loss_value_and_gradient():
    net = net_of(input_layer((2, 1, 1, 2), "a") + input_layer((2, 2), "b") +
                 'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" }')
    a = torch.tensor([[[[1.0, 2.0]]], [[[0.0, -1.0]]]], requires_grad=True)
    b = torch.tensor([[0.5, 2.0], [1.0, 1.0]], requires_grad=True)   # same count per item, other shape
    blobs, loss = net({"a": a, "b": b})
    # sum of squares 0.25 + 0 + 1 + 4 = 5.25, / (2 N), N = 2 (the batch)
    assert loss.item() == pytest.approx(5.25 / 4)
    assert blobs["loss"].item() == loss.item()
    loss.backward()
    diff = np.array([[0.5, 0.0], [-1.0, -2.0]])
    np.testing.assert_allclose(a.grad.numpy().reshape(2, 2), diff / 2)
    np.testing.assert_allclose(b.grad.numpy(), -diff / 2)


def test_loss_weight_scales_loss_and_gradient():
    net = net_of(input_layer((1, 1), "a") + input_layer((1, 1), "b") +
                 'layer { name: "loss" type: "EuclideanLoss" bottom: "a" bottom: "b" top: "loss" loss_weight: 3 }')
    a = torch.tensor([[2.0]], requires_grad=True)
    _, loss = net({"a": a, "b": torch.tensor([[0.0]])})
    loss.backward()
    assert loss.item() == pytest.approx(3 * 4 / 2) and a.grad.item() == pytest.approx(3 * 2)


def test_prelu_forward_and_gradient_at_zero():
    net = net_of(input_layer((1, 2, 1, 3)) +
                 'layer { name: "prelu" type: "PReLU" bottom: "data" top: "data" }')
    slopes = net.layers[1].blobs[0]
    assert tuple(slopes.shape) == (2,) and torch.all(slopes == 0.25)   # Caffe's default 0.25 per channel
    with torch.no_grad():
        slopes.copy_(torch.tensor([0.25, 0.5]))
    x = torch.tensor([[[[-2.0, 0.0, 3.0]], [[-2.0, 0.0, 3.0]]]], requires_grad=True)
    blobs, _ = net({"data": x})
    np.testing.assert_array_equal(blobs["data"].detach().numpy().ravel(), [-0.5, 0, 3, -1, 0, 3])
    blobs["data"].sum().backward()
    # Caffe: dy/dx = 1 where x > 0, the slope where x <= 0 (x = 0 included).
    np.testing.assert_array_equal(x.grad.numpy().ravel(), [0.25, 0.25, 1, 0.5, 0.5, 1])
    np.testing.assert_array_equal(slopes.grad.numpy(), [-2, -2])       # sum of x where x <= 0


def test_prelu_channel_shared_is_a_scalar_blob():
    net = net_of(input_layer((1, 3, 2, 2)) +
                 'layer { name: "p" type: "PReLU" bottom: "data" top: "y" prelu_param { channel_shared: true '
                 'filler { type: "constant" value: 0.1 } } }')
    assert tuple(net.layers[1].blobs[0].shape) == ()
    y, _ = net({"data": -torch.ones(1, 3, 2, 2)})
    assert torch.allclose(y["y"], torch.full((1, 3, 2, 2), -0.1))


def test_prelu_channel_shared_gradient_sums_over_every_channel():
    net = net_of(input_layer((1, 2, 1, 2)) +
                 'layer { name: "p" type: "PReLU" bottom: "data" top: "y" prelu_param { channel_shared: true } }')
    slope = net.layers[1].blobs[0]
    assert tuple(slope.shape) == () and slope.item() == 0.25        # Caffe's default, one for all channels
    y, _ = net({"data": torch.tensor([[[[-1.0, 2.0]], [[-3.0, 0.0]]]])})
    np.testing.assert_array_equal(y["y"].detach().numpy().ravel(), [-0.25, 2, -0.75, 0])
    y["y"].sum().backward()
    assert slope.grad.shape == () and slope.grad.item() == -4.0      # sum of x where x <= 0, both channels


def test_sigmoid_is_caffes_formula():
    net = net_of(input_layer((1, 1, 1, 5)) + 'layer { name: "s" type: "Sigmoid" bottom: "data" top: "p" }')
    x = torch.tensor([-30.0, -1.5, 0.0, 0.7, 12.0]).reshape(1, 1, 1, 5)
    p, _ = net({"data": x})
    expected = (0.5 * np.tanh(0.5 * x.double().numpy()) + 0.5).astype(np.float32)
    np.testing.assert_array_equal(p["p"].numpy(), expected)


def test_convolution_is_cross_correlation_with_caffe_shapes():
    net = net_of(input_layer((1, 2, 5, 6)) +
                 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
                 'num_output: 2 kernel_h: 3 kernel_w: 2 pad: 1 stride: 2 group: 2 '
                 'weight_filler { type: "gaussian" } bias_filler { type: "constant" value: 0.5 } } }')
    weight, bias = net.layers[1].blobs
    assert tuple(weight.shape) == (2, 1, 3, 2) and torch.all(bias == 0.5)
    # Caffe: out = (in + 2 pad - k) / stride + 1 -> (5+2-3)//2+1 = 3, (6+2-2)//2+1 = 4
    assert net.blob_shapes["c"] == (1, 2, 3, 4)
    x = torch.randn(1, 2, 5, 6)
    y, _ = net({"data": x})
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)))
    w = weight.detach().numpy()
    for o in range(2):          # group 2: output o sees input channel o only, no kernel flip
        for i in range(3):
            for j in range(4):
                window = padded[0, o, 2 * i:2 * i + 3, 2 * j:2 * j + 2]
                assert y["c"][0, o, i, j].item() == pytest.approx((window * w[o, 0]).sum() + 0.5, abs=1e-5)


def test_convolution_implementation_is_swappable():
    calls = []

    def traced(x, weight, bias, stride, pad, dilation, groups):
        calls.append((stride, pad, dilation, groups))
        return torch.nn.functional.conv2d(x, weight, bias, stride, pad, dilation, groups)

    net = net_of(input_layer((1, 1, 4, 4)) +
                 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { '
                 'num_output: 1 kernel_size: 3 dilation: 2 pad: 2 } }', conv=lambda layer: traced)
    net({"data": torch.zeros(1, 1, 4, 4)})
    assert calls == [((1, 1), (2, 2), (2, 2), 1)]


def _sce_net(loss_param=""):
    return net_of(input_layer((2, 1, 1, 3), "x") + input_layer((2, 1, 1, 3), "t") +
                  'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" top: "loss" '
                  f'loss_weight: 2 {loss_param} }}')


SCE_X = torch.tensor([[[[-3.0, 0.0, 2.0]]], [[[40.0, -1.0, 0.5]]]])
SCE_T = torch.tensor([[[[0.0, 1.0, 1.0]]], [[[1.0, -1.0, 0.0]]]])   # -1: ignored when ignore_label is -1


@pytest.mark.parametrize("loss_param, divisor, ignored", [
    ("", 2, False),                                                # unset: BATCH_SIZE (the oracle, measured)
    ("loss_param { normalization: VALID }", 6, False),             # no ignore_label: every element
    ("loss_param { normalization: FULL ignore_label: -1 }", 6, True),
    ("loss_param { normalization: NONE }", 1, False),
    ("loss_param { ignore_label: -1 }", 2, True),
    ("loss_param { normalize: true ignore_label: -1 }", 5, True),  # legacy normalize: VALID
])
def test_sigmoid_cross_entropy_loss_normalisation_and_gradient(loss_param, divisor, ignored):
    x = SCE_X.clone().requires_grad_(True)
    blobs, loss = _sce_net(loss_param)({"x": x, "t": SCE_T})
    x64, t64 = SCE_X.double().numpy(), SCE_T.double().numpy()
    p = 1 / (1 + np.exp(-x64))
    # -(t log p + (1 - t) log(1 - p)), in the form that stays finite at x = 40
    terms = np.maximum(x64, 0) - x64 * t64 + np.log1p(np.exp(-np.abs(x64)))
    keep = (t64 != -1) if ignored else np.ones_like(t64)
    assert blobs["loss"].item() == pytest.approx((terms * keep).sum() / divisor, rel=1e-6)
    assert loss.item() == pytest.approx(2 * blobs["loss"].item(), rel=1e-6)   # loss_weight 2
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * (p - t64) * keep / divisor, rtol=1e-6, atol=1e-7)


def test_silence_consumes_its_bottoms():
    net = net_of(input_layer((1, 1, 2, 2)) + 'layer { name: "s" type: "Sigmoid" bottom: "data" top: "p" }\n'
                 'layer { name: "q" type: "ReLU" bottom: "data" top: "r" }\n'
                 'layer { name: "quiet" type: "Silence" bottom: "r" }')
    assert net.outputs == ["p"]
    blobs, loss = net({"data": torch.ones(1, 1, 2, 2)})
    assert loss is None and set(blobs) == {"data", "p", "r"}
    with pytest.raises(InputError, match=r"layer 'quiet' \(Silence\): Silence has no tops"):
        net_of(input_layer((1, 1, 2, 2)) + 'layer { name: "quiet" type: "Silence" bottom: "data" top: "x" }')


def test_an_in_place_relu_with_a_negative_slope_has_caffes_gradient():
    # Caffe's ReLU Backward reads its bottom blob after the forward pass; in
    # place that holds y = slope * x > 0 where x < 0, so dy passes unscaled
    # there: Caffe's gradient, not the textbook's (measured in the oracle).
    x = torch.tensor([-2.0, -0.5, 0.0, 3.0]).reshape(1, 1, 1, 4)
    grads = {}
    for top in ("data", "r"):
        net = net_of(input_layer((1, 1, 1, 4)) + f'layer {{ name: "r" type: "ReLU" bottom: "data" top: "{top}" '
                                                 f'relu_param {{ negative_slope: -0.5 }} }}')
        xi = x.clone().requires_grad_(True)
        blobs, _ = net({"data": xi})
        np.testing.assert_array_equal(blobs[top].detach().numpy().ravel(), [1, 0.25, 0, 3])
        blobs[top].sum().backward()
        grads[top] = xi.grad.numpy().ravel().tolist()
    assert grads == {"data": [1, 1, -0.5, 1], "r": [-0.5, -0.5, -0.5, 1]}


def test_a_layer_before_an_in_place_layer_reads_what_that_layer_wrote():
    # ReLU then Sigmoid, both in place: Caffe's ReLU Backward sees the
    # sigmoid's output, > 0 everywhere, and masks nothing.
    net = net_of(input_layer((1, 1, 1, 3)) + 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n'
                                             'layer { name: "s" type: "Sigmoid" bottom: "data" top: "data" }')
    x = torch.tensor([-1.0, 0.0, 2.0]).reshape(1, 1, 1, 3).requires_grad_(True)
    blobs, _ = net({"data": x})
    blobs["data"].sum().backward()
    y = torch.sigmoid(torch.relu(x.detach()))
    np.testing.assert_allclose(x.grad.numpy(), (y * (1 - y)).numpy(), rtol=1e-6)
