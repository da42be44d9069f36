"""--precision (engines/torch/precision.py): bf16 rounds only the products,
the loss and the solver stay float32, fp32 is untouched, and what cannot run
here is refused in one line."""

import numpy as np
import pytest
import torch

import tiny_nets
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel
from plaquenet.engines import get_engine
from plaquenet.engines.caffe import CaffeEngine
from plaquenet.engines.torch import precision
from plaquenet.engines.torch.net import TRAIN
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError


def _two_conv(precision, height=12, width=10):
    net = tiny_nets.net_of(tiny_nets.two_conv_deploy(height, width, channels=4, kernel_size=5), precision=precision)
    for name, arrays in tiny_nets.random_two_conv_weights(7).items():
        module = net.layers[[p.name for p in net.layer_params].index(name)]
        for blob, array in zip(module.blobs, arrays):
            blob.data.copy_(torch.from_numpy(array))
    return net


def test_bf16_rounds_the_convolutions_and_returns_float32_near_fp32():
    image = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 1, 12, 10)).astype(np.float32))
    with torch.no_grad():
        exact = _two_conv("fp32")({"data": image})[0]
        rounded = _two_conv("bf16")({"data": image})[0]
    assert exact["conv1"].dtype == torch.float32 and rounded["conv1"].dtype == torch.bfloat16
    difference = (rounded["prob"].float() - exact["prob"]).abs().max().item()
    assert 0 < difference < 2e-2   # rounded (8-bit mantissa products), but the same net


def test_bf16_keeps_the_loss_and_the_weight_gradients_in_float32():
    text = tiny_nets.two_conv_train("unused.txt", 2).replace(
        tiny_nets.hdf5_data_layer("unused.txt", 2),
        tiny_nets.input_layer((2, 1, 8, 8)) + tiny_nets.input_layer((2, 1, 8, 8), top="label"))
    rng = np.random.default_rng(1)
    feed = {"data": torch.from_numpy(rng.normal(0, 1, (2, 1, 8, 8)).astype(np.float32)),
            "label": torch.from_numpy((rng.random((2, 1, 8, 8)) > 0.7).astype(np.float32))}
    grads = {}
    for precision in ("fp32", "bf16"):
        net = tiny_nets.net_of(text, phase=TRAIN, precision=precision)
        blobs, loss = net(feed)
        assert loss.dtype == torch.float32 and blobs["loss"].dtype == torch.float32
        loss.backward()
        grads[precision] = [learnable.blob.grad for learnable in net.learnable]
        assert all(g.dtype == torch.float32 for g in grads[precision])
    for exact, rounded in zip(grads["fp32"], grads["bf16"]):
        assert torch.allclose(rounded, exact, rtol=0.1, atol=0.05 * exact.abs().max().item())


def test_training_in_bf16_says_so_in_its_log_and_snapshots_float32_weights(train_workdir):
    result = train("solver.prototxt", precision="bf16")
    log = (result.run_dir / "train.log").read_text()
    assert "precision bf16" in log and "not Caffe's float32 arithmetic" in log
    assert result.iterations == 4 and np.isfinite(result.final_loss)
    weights = caffemodel_weights(read_caffemodel(result.last_snapshot))
    assert all(w.dtype == np.float32 and np.isfinite(w).all() for arrays in weights.values() for w in arrays)


@pytest.mark.parametrize("precision, problem", [("fp16", "unknown precision 'fp16'"),
                                                ("tf32", "tf32 is a mode of NVIDIA GPUs")])
def test_a_precision_this_device_cannot_compute_in_is_one_line(precision, problem):
    with pytest.raises(InputError, match=problem) as refused:
        tiny_nets.net_of(tiny_nets.one_conv_deploy(), precision=precision)
    assert "\n" not in str(refused.value)


def test_bf16_on_a_cpu_without_bfloat16_arithmetic_is_one_line(monkeypatch):
    """#15's bad input: emulated bf16 would be slower than fp32, so a CPU without it is refused."""
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False, raising=False)
    assert not precision.cpu_has_bf16()
    with pytest.raises(InputError, match="bf16 needs a CPU with bfloat16 arithmetic") as refused:
        tiny_nets.net_of(tiny_nets.one_conv_deploy(), precision="bf16")
    assert "\n" not in str(refused.value)


def test_real_caffe_refuses_anything_but_fp32_before_it_starts(tmp_path):
    with pytest.raises(InputError, match="real Caffe computes in float32 only"):
        CaffeEngine().load_deploy(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel", precision="bf16")
    with pytest.raises(InputError, match="real Caffe computes in float32 only"):
        CaffeEngine().train(tmp_path / "solver.prototxt", precision="bf16")


def test_the_engine_interface_passes_precision_through(tmp_path):
    tiny_nets.write_one_conv_snapshot(tmp_path / "w.caffemodel", np.full((3, 3), 0.1), 0.2)
    (tmp_path / "deploy.prototxt").write_text(tiny_nets.one_conv_deploy())
    forward = get_engine("torch").load_deploy(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel",
                                              precision="bf16")
    assert forward.net.precision == "bf16"   # type: ignore[attr-defined]
    assert forward(np.ones((5, 7), np.float32)).dtype == np.float32
