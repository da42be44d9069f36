"""The deploy net with a snapshot's weights as a file that runs without plaquenet:
ONNX (onnxruntime and the like) or TorchScript (`torch.jit.load`), for any
batch, height and width.

    export_deploy("prototxt/plaquenet_deploy.prototxt", "runs/x/net_iter_80.caffemodel",
                  "onnx", "net.onnx", {"threshold": 0.42})

Both formats are traced from `InferenceNet`: the engine's deploy Net (the
layers and weights `load_deploy` runs, so a snapshot that does not fit the
deploy net is refused the same way) walked in inference mode. The layers
whose forward is a torch.autograd.Function, kept for Caffe's backward
(Sigmoid, ReLU), are called through that Function's forward directly: the
graph then holds plain operators with the engine's arithmetic (Caffe's
double-precision sigmoid included), where a traced Function would be a
Python call that neither format can store. The convolutions are torch's
conv2d (an ONNX Conv), not the NNPACK call the engine scores with on the CPU
(conv.py), which neither format has."""

import contextlib
import json
import logging
import warnings
from typing import Any, Iterator, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError
from ...typing import PathLike
from .. import EXPORT_FORMATS
from .layers import ReLU, Sigmoid, _CaffeReLU, _CaffeSigmoid
from .net import Net, load_deploy

# ONNX opset 17 and IR version 8, ONNX 1.12's (2022): read by onnxruntime since
# 1.12 and by most other runtimes (the exporter writes IR 10, which older
# runtimes refuse although this graph uses nothing newer: Conv, PRelu, Cast,
# Mul, Tanh, Add).
ONNX_OPSET = 17
ONNX_IR_VERSION = 8
TORCHSCRIPT_METADATA = "plaquenet.json"   # the _extra_files entry holding the metadata
# Layer types a deploy net may hold to be exported (no data or loss layers: nothing to feed them).
EXPORTABLE = ("Input", "Convolution", "PReLU", "ReLU", "Sigmoid", "Silence")
# The example the graph is traced with: any size works; a batch of 2 and unequal
# sides keep torch.export from specialising a dimension to 1 or tying H to W.
EXAMPLE_NCHW = (2, 1, 40, 48)


class _NoBackward:
    """The `ctx` of an autograd.Function called outside autograd: what its
    forward saves for the backward pass is dropped."""

    def save_for_backward(self, *tensors: torch.Tensor) -> None:
        pass


class InferenceNet(nn.Module):
    """forward(data float32 (N, 1, H, W)) -> the net's one output (N, 1, H, W),
    through the layers of a loaded deploy Net, without autograd."""

    def __init__(self, net: Net) -> None:
        super().__init__()
        for param in net.layer_params:
            if param.type not in EXPORTABLE:
                raise InputError(net.source, f"layer '{param.name}' ({param.type}) cannot be exported "
                                             f"(deploy nets of {', '.join(EXPORTABLE)} can)")
        self.net = net
        (self.input_name,), (self.output_name,) = net.input_names, net.outputs

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        blobs = {self.input_name: data}
        for param, module in zip(self.net.layer_params, self.net.layers):
            if not module.is_data:
                blobs.update(zip(param.top, _infer(module, [blobs[b] for b in param.bottom])))
        return blobs[self.output_name]


def _infer(module: nn.Module, bottoms: List[torch.Tensor]) -> Tuple[torch.Tensor, ...]:
    if isinstance(module, Sigmoid):
        return (_CaffeSigmoid.forward(_NoBackward(), bottoms[0], None),)
    if isinstance(module, ReLU):
        return (_CaffeReLU.forward(_NoBackward(), bottoms[0], module.negative_slope, None),)
    return tuple(module(*bottoms))


def portable_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Tuple[int, int],
                    pad: Tuple[int, int], dilation: Tuple[int, int], groups: int) -> torch.Tensor:
    """The convolution as torch's conv2d: an operator both formats store."""
    return F.conv2d(x, weight, bias, stride, pad, dilation, groups)


def inference_net(deploy: PathLike, snapshot: PathLike) -> InferenceNet:
    """The deploy net with the snapshot's weights, on the CPU, in eval mode."""
    forward = load_deploy(deploy, snapshot, device="cpu", conv=lambda layer: portable_conv2d)
    module = InferenceNet(forward.net)  # type: ignore[attr-defined]
    module.eval()
    for blob in module.parameters():
        blob.requires_grad_(False)
    return module


def export_deploy(deploy: PathLike, snapshot: PathLike, fmt: str, out: PathLike,
                  metadata: Mapping[str, Any]) -> None:
    """Write `out` (the path itself: the caller makes the write atomic) in
    `fmt` ("onnx" or "torchscript"), input named as the deploy net's Input top
    (float32 (N, 1, H, W), every axis but the channel dynamic), output as its
    output blob. `metadata` (JSON values): ONNX metadata_props, one per key,
    a string as is and anything else as JSON text; TorchScript: the whole
    dict as JSON in the extra file TORCHSCRIPT_METADATA."""
    if fmt not in EXPORT_FORMATS:
        raise InputError("--format", f"unknown format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    module = inference_net(deploy, snapshot)
    example = torch.rand(EXAMPLE_NCHW, generator=torch.Generator().manual_seed(0))
    with _quiet():
        if fmt == "onnx":
            _write_onnx(module, example, out, metadata)
        else:
            _write_torchscript(module, example, out, metadata)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' notices, which are not the user's concern: torch's ONNX
    exporter converting its opset-18 graph down to ONNX_OPSET, the torchvision
    ops it skips, the deprecations of torch.jit.save (TorchScript still loads
    in torch 2.13) and of torch.utils._pytree internals. Errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def _write_torchscript(module: InferenceNet, example: torch.Tensor, out: PathLike,
                       metadata: Mapping[str, Any]) -> None:
    with torch.no_grad():
        traced = torch.jit.trace(module, (example,))
    torch.jit.save(traced, str(out), _extra_files={TORCHSCRIPT_METADATA: json.dumps(dict(metadata), indent=2)})


def _write_onnx(module: InferenceNet, example: torch.Tensor, out: PathLike, metadata: Mapping[str, Any]) -> None:
    try:
        import onnx
        import onnxscript  # noqa: F401  (torch.onnx's exporter needs it; fail here in one line, not deep inside)
    except ImportError as e:
        raise InputError("--format onnx", f"needs the packages onnx and onnxscript ({e}): "
                                          f"pip install 'plaquenet[export]'") from None
    dims = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    program = torch.onnx.export(module, (example,), dynamo=True, input_names=[module.input_name],
                                output_names=[module.output_name], opset_version=ONNX_OPSET,
                                dynamic_shapes=(dims,), verbose=False)
    assert program is not None, "torch.onnx.export(dynamo=True) returns the program"
    model = program.model_proto
    model.ir_version = min(model.ir_version, ONNX_IR_VERSION)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save_model(model, str(out))

