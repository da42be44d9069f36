"""The torch engine's native Python layers (plaquenet/engines/torch/python_layers.py)
and the Caffe Python layers they stand for (plaquenet/caffe_layers.py), on
arrays a few pixels big: values by hand, gradients against autograd's
finite differences in float64, and the prototxt pair built on them."""

from pathlib import Path

import numpy as np
import pytest
import torch

from plaquenet import caffe_layers
from plaquenet.caffe.prototxt import read_net
from plaquenet.engines.torch.net import TRAIN, Net
from plaquenet.engines.torch.python_layers import LOSSES
from plaquenet.errors import InputError
from tiny_nets import input_layer, net_of

REPO = Path(__file__).resolve().parents[4]


def python_loss(layer: str, bottom: str = "p", param_str: str = "", extra: str = " loss_weight: 1") -> str:
    return (f'layer {{ name: "loss" type: "Python" bottom: "{bottom}" bottom: "y" top: "loss"{extra}\n'
            f'  python_param {{ module: "plaquenet.caffe_layers" layer: "{layer}" param_str: "{param_str}" }} }}\n')


def two_inputs(shape=(2, 1, 1, 2)) -> str:
    return input_layer(shape, "p") + input_layer(shape, "y")


def test_soft_dice_value_by_hand_and_its_gradient():
    net = net_of(two_inputs() + python_loss("SoftDiceLoss", param_str="eps=1"))
    p = torch.tensor([[[[0.5, 1.0]]], [[[0.0, 0.25]]]], requires_grad=True)
    y = torch.tensor([[[[1.0, 1.0]]], [[[0.0, 0.0]]]])
    blobs, loss = net({"p": p, "y": y})
    # sum(p y) = 1.5, sum(p) = 1.75, sum(y) = 2: 1 - (3 + 1) / (3.75 + 1)
    assert loss.item() == pytest.approx(1 - 4 / 4.75)
    assert blobs["loss"].shape == ()            # one value, no axes, as Caffe's losses
    loss.backward()
    # -(2 y (S + eps) - (2 I + eps)) / (S + eps)^2, S + eps = 4.75, 2 I + eps = 4
    expected = -(2 * y.numpy() * 4.75 - 4) / 4.75 ** 2
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-6)


def test_soft_dice_of_an_empty_batch_with_no_output_is_zero():
    net = net_of(two_inputs() + python_loss("SoftDiceLoss"))
    _, loss = net({"p": torch.zeros(2, 1, 1, 2), "y": torch.zeros(2, 1, 1, 2)})
    assert loss.item() == 0.0   # eps / eps: nothing to find, nothing found


def test_weighted_cross_entropy_value_by_hand_and_its_gradient():
    net = net_of(two_inputs() + python_loss("WeightedSigmoidCrossEntropyLoss", "x", "pos_weight=3")
                 .replace('bottom: "x"', 'bottom: "p"'))
    x = torch.tensor([[[[0.0, 2.0]]], [[[-1.0, 0.0]]]], requires_grad=True)
    y = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])
    _, loss = net({"p": x, "y": y})
    s = 1 / (1 + np.exp(-np.array([0.0, 2.0, -1.0, 0.0])))
    t = np.array([1.0, 0.0, 0.0, 1.0])
    by_hand = np.sum(-3 * t * np.log(s) - (1 - t) * np.log(1 - s)) / 2   # / N, the batch of 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy().ravel(), (s * (3 * t + 1 - t) - 3 * t) / 2, rtol=1e-6)


def test_weighted_cross_entropy_with_weight_1_is_caffes_sigmoid_cross_entropy():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(0, 4, (3, 1, 4, 4)).astype(np.float32))
    y = torch.from_numpy((rng.uniform(0, 1, (3, 1, 4, 4)) > 0.8).astype(np.float32))
    ours = net_of(two_inputs((3, 1, 4, 4)) + python_loss("WeightedSigmoidCrossEntropyLoss"))
    caffes = net_of(two_inputs((3, 1, 4, 4)) +
                    'layer { name: "loss" type: "SigmoidCrossEntropyLoss" bottom: "p" bottom: "y" top: "loss" }')
    grads = []
    for net in (ours, caffes):
        xg = x.clone().requires_grad_(True)
        _, loss = net({"p": xg, "y": y})
        loss.backward()
        grads.append((loss.item(), xg.grad.numpy()))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-6)
    np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-6, atol=1e-9)


def test_large_logits_give_finite_loss_and_gradient():
    net = net_of(two_inputs() + python_loss("WeightedSigmoidCrossEntropyLoss", param_str="pos_weight=10"))
    x = torch.tensor([[[[200.0, -200.0]]], [[[-90.0, 90.0]]]], requires_grad=True)
    _, loss = net({"p": x, "y": torch.tensor([[[[0.0, 1.0]]], [[[1.0, 0.0]]]])})
    loss.backward()
    # all wrong by a mile: 200 + 10 * 200 + 10 * 90 + 90, over the batch of 2
    assert loss.item() == pytest.approx(3190 / 2) and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("layer", sorted(LOSSES))
def test_gradient_matches_finite_differences_in_float64(layer):
    fn, key = LOSSES[layer]
    rng = np.random.default_rng(1)
    prediction = torch.tensor(rng.uniform(0.05, 0.95, (2, 1, 3, 3)), dtype=torch.float64, requires_grad=True)
    label = torch.tensor((rng.uniform(0, 1, (2, 1, 3, 3)) > 0.6).astype(np.float64))
    value = 2.5

    from plaquenet.engines.torch.python_layers import _PairLoss
    assert torch.autograd.gradcheck(lambda p: _PairLoss.apply(p, label, fn, value), (prediction,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("layer", sorted(LOSSES))
def test_torch_layers_compute_what_the_caffe_layers_compute(layer):
    """The Caffe classes run here on stand-in blobs (numpy .data/.diff): the
    numbers pycaffe gets (the conformance test runs them in real Caffe)."""
    rng = np.random.default_rng(2)
    shape = (3, 1, 5, 5)
    prediction = rng.uniform(0, 1, shape).astype(np.float32)
    label = (rng.uniform(0, 1, shape) > 0.7).astype(np.float32)
    net = net_of(two_inputs(shape) + python_loss(layer, extra=" loss_weight: 2"))
    p = torch.from_numpy(prediction).requires_grad_(True)
    _, loss = net({"p": p, "y": torch.from_numpy(label)})
    loss.backward()

    class Blob:
        def __init__(self, data):
            self.data, self.diff, self.count = data, np.zeros_like(data), data.size

        def reshape(self, *shape):
            self.data, self.diff = np.zeros(shape, np.float32), np.full(shape, 2.0, np.float32)  # loss_weight 2

    caffe_layer = getattr(caffe_layers, layer)()
    caffe_layer.param_str = ""
    bottom, top = [Blob(prediction), Blob(label)], [Blob(np.zeros(()))]
    caffe_layer.setup(bottom, top)
    caffe_layer.reshape(bottom, top)
    caffe_layer.forward(bottom, top)
    caffe_layer.backward(top, [True, False], bottom)
    assert 2 * float(top[0].data) == pytest.approx(loss.item(), rel=1e-7)
    np.testing.assert_allclose(bottom[0].diff, p.grad.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="cannot backpropagate to label inputs"):
        caffe_layer.backward(top, [True, True], bottom)


def test_without_loss_weight_a_python_layer_is_an_output_not_a_loss():
    # Caffe's Python layer is no LossLayer: its weight is 0 unless the prototxt gives one.
    net = net_of(two_inputs() + python_loss("SoftDiceLoss", extra=""))
    blobs, loss = net({"p": torch.full((2, 1, 1, 2), 0.5), "y": torch.ones(2, 1, 1, 2)})
    assert loss is None and net.outputs == ["loss"] and blobs["loss"].item() > 0


def test_a_label_that_needs_a_gradient_is_refused_as_caffes_layer_refuses_it():
    # Caffe's PythonLayer allows force_backward into every bottom (Layer::AllowForceBackward),
    # and force_backward overrides propagate_down: false; our Caffe class then raises.
    plain = two_inputs() + python_loss("SoftDiceLoss")
    assert net_of(plain, TRAIN).backward_refusal is None
    learned_label = (two_inputs() + 'layer { name: "c" type: "Convolution" bottom: "y" top: "yc" '
                     'convolution_param { num_output: 1 kernel_size: 1 } }\n' +
                     python_loss("SoftDiceLoss").replace('bottom: "y"', 'bottom: "yc"'))
    for text in ("force_backward: true\n" + plain, learned_label):
        with pytest.raises(InputError, match=r"tiny.prototxt: layer 'loss' \(Python\): bottom 'yc?' needs a gradient"):
            net_of(text, TRAIN)({"p": torch.zeros(2, 1, 1, 2), "y": torch.zeros(2, 1, 1, 2)})


@pytest.mark.parametrize("python_param, message", [
    ('module: "my_losses" layer: "SoftDiceLoss"', "module 'my_losses' layer 'SoftDiceLoss': the torch engine runs "
                                                  "only module 'plaquenet.caffe_layers'"),
    ('module: "plaquenet.caffe_layers" layer: "FocalLoss"', "layer 'FocalLoss'"),
    ('module: "plaquenet.caffe_layers" layer: "SoftDiceLoss" param_str: "smooth=1"', "'smooth=1' is not key=value"),
    ('module: "plaquenet.caffe_layers" layer: "SoftDiceLoss" param_str: "eps=one"', "eps = 'one' is not a number"),
    ('module: "plaquenet.caffe_layers" layer: "SoftDiceLoss" param_str: "eps=0"', "eps = 0.0 must be > 0"),
    ('module: "plaquenet.caffe_layers" layer: "WeightedSigmoidCrossEntropyLoss" param_str: "pos_weight=-1"',
     "pos_weight = -1.0 must be >= 0"),
])
def test_bad_python_layers_are_one_line_naming_file_and_layer(python_param, message):
    text = (two_inputs() + 'layer { name: "loss" type: "Python" bottom: "p" bottom: "y" top: "loss" loss_weight: 1 '
            f'python_param {{ {python_param} }} }}')
    with pytest.raises(InputError) as caught:
        net_of(text)
    assert str(caught.value).startswith("tiny.prototxt: layer 'loss' (Python): ")
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bottoms_of_another_count_are_refused():
    with pytest.raises(InputError, match="must have the same count"):
        net_of(input_layer((2, 1, 1, 2), "p") + input_layer((2, 1, 1, 3), "y") + python_loss("SoftDiceLoss"))


def test_param_str_takes_spaces_or_commas_and_keeps_defaults():
    assert caffe_layers.parse_param_str("", {"eps": 1.0}) == {"eps": 1.0}
    assert caffe_layers.parse_param_str(" a=2, b=3e-1 ", {"a": 0.0, "b": 0.0}) == {"a": 2.0, "b": 0.3}


def test_the_100_dice_net_builds_in_the_torch_engine(tmp_path, monkeypatch):
    """prototxt/plaquenet_train_100_dice.prototxt as `plaquenet train` builds it:
    HDF5Data of 100x100 tiles from data/current/tiles_100/train.txt, the soft
    Dice loss as a native layer, loss weight 1; and its solver names it."""
    import h5py
    from plaquenet.caffe.prototxt import read_solver

    solver = read_solver(REPO / "prototxt/solver_100_dice.prototxt")
    assert solver.net == "prototxt/plaquenet_train_100_dice.prototxt"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data/current/tiles_100").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "data/current/tiles_100/train_000.h5", "w") as f:
        f["data"] = rng.uniform(0, 1, (3, 1, 100, 100)).astype(np.float32)
        f["label"] = (rng.uniform(0, 1, (3, 1, 100, 100)) > 0.95).astype(np.float32)
    (tmp_path / "data/current/tiles_100/train.txt").write_text("data/current/tiles_100/train_000.h5\n")
    net = Net(read_net(REPO / solver.net), TRAIN, source=solver.net, seed=0)
    assert net.blob_shapes["data"] == (100, 1, 100, 100) and net.blob_shapes["prob"] == (100, 1, 100, 100)
    (index,) = [i for i, p in enumerate(net.layer_params) if p.type == "Python"]
    assert net.loss_weights[index] == [1.0]
    assert net.backward_refusal is None
