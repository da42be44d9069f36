"""A Caffe net built from a NetParameter (the prototxt is the model), Caffe's
weight files in and out, and the deploy forward pass used for scoring.

    net = Net(read_net("prototxt/plaquenet_train.prototxt"), phase=TRAIN)
    blobs, loss = net()                       # data layers read their own batch
    forward = load_deploy("prototxt/plaquenet_deploy.prototxt", "x.caffemodel")
    prob_hw = forward(flair_hw)               # any H x W

Layers are included or excluded by Caffe's NetStateRule logic; the loss is
the sum over tops of loss_weight * sum(top) (loss layers: weight 1 by
default, and a top named "(automatic)" when the prototxt gives none); the
net's outputs are the named blobs no later layer consumes."""

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple, Union, cast

import numpy as np
import torch
from torch import nn

from ...caffe import caffe_pb2
from ...caffe.prototxt import read_net
from ...caffe.snapshot import blob_array, blob_proto, blob_shape, read_caffemodel
from ...caffe.splits import insert_splits
from ...errors import InputError
from .. import SLICE_PIXELS
from ...typing import PathLike
from .data import DataStream
from .backward import Node, backward_needs
from .conv import nnpack_geometry
from .layers import LAYERS, BlobData, Build, ConvFn, Convolution, Layer, LossLayer, Shape, torch_conv2d
from .precision import autocast, autocast_dtype, check_precision, full_precision

TRAIN, TEST = caffe_pb2.TRAIN, caffe_pb2.TEST
# Net::AppendTop's name for a top the layer needs but the prototxt leaves out
# (a loss layer without `top`): it counts in the loss, no layer can read it,
# and it is not a net output.
ANONYMOUS_TOP = "(automatic)"


@dataclass
class Learnable:
    """One learnable blob, in Caffe's learnable_params order."""
    layer: str
    index: int            # 0 weight, 1 bias, ...
    blob: nn.Parameter
    lr_mult: float
    decay_mult: float


# --- which layers: NetState and NetStateRule --------------------------------

def state_meets_rule(state: "caffe_pb2.NetState", rule: "caffe_pb2.NetStateRule") -> bool:
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def included_layers(net_param: "caffe_pb2.NetParameter", state: "caffe_pb2.NetState",
                    source: PathLike = "<net>") -> List["caffe_pb2.LayerParameter"]:
    """The layers of `net_param` that `state` keeps (Caffe's Net::FilterNet);
    each copied, with its phase set to the state's unless given."""
    kept = []
    for layer in net_param.layer:
        if layer.include and layer.exclude:
            raise InputError(source, f"layer '{layer.name}': give include or exclude rules, not both")
        if layer.include:
            keep = any(state_meets_rule(state, r) for r in layer.include)
        else:
            keep = not any(state_meets_rule(state, r) for r in layer.exclude)
        if keep:
            copy = caffe_pb2.LayerParameter()
            copy.CopyFrom(layer)
            if not copy.HasField("phase"):
                copy.phase = state.phase
            kept.append(copy)
    return kept


def net_state(net_param: "caffe_pb2.NetParameter", phase: "caffe_pb2.Phase",
              extra: Optional["caffe_pb2.NetState"] = None) -> "caffe_pb2.NetState":
    """The net's state: its own `state`, then `extra` (a solver's
    train_state/test_state) merged in, with `phase` (Caffe's order)."""
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if extra is not None:
        state.MergeFrom(extra)
    state.phase = phase
    return state


def _legacy_input_layer(net_param: "caffe_pb2.NetParameter", source: PathLike) -> "caffe_pb2.LayerParameter":
    # Old deploy files declare `input: "data"` + input_shape/input_dim instead of an Input layer.
    layer = caffe_pb2.LayerParameter(name="input", type="Input", top=list(net_param.input))
    if net_param.input_shape:
        layer.input_param.shape.extend(net_param.input_shape)
    elif net_param.input_dim:
        dims = list(net_param.input_dim)
        if len(dims) != 4 * len(net_param.input):
            raise InputError(source, "input_dim needs 4 values per input")
        for i in range(len(net_param.input)):
            layer.input_param.shape.add(dim=dims[4 * i:4 * i + 4])
    return layer


# --- the net ---------------------------------------------------------------

class Net(nn.Module):
    """The layers of a NetParameter for one phase, as torch modules.

    `conv(layer_param) -> ConvFn` picks each Convolution layer's implementation
    (default: torch's conv2d). `fill=False` skips the fillers (zeros), for nets
    whose weights come from a .caffemodel. `seed` seeds the fillers; None
    draws a fresh seed. `data` holds the HDF5Data readers and the rand()
    stream their shuffles draw from (data.DataStream): one per training
    process, shared by its train and test nets, as in Caffe; None gives this
    net a new one, as a new Caffe process would. It is `self.data`.
    `precision` (precision.py): "fp32" is Caffe's arithmetic; with "bf16" the
    layers run under autocast, except those with a loss weight, which get
    their bottoms in float32 and compute in it."""

    def __init__(self, net_param: "caffe_pb2.NetParameter", phase: "caffe_pb2.Phase" = TRAIN,
                 source: PathLike = "<net>", device: Union[torch.device, str] = "cpu", seed: Optional[int] = None,
                 conv: Optional[Callable[["caffe_pb2.LayerParameter"], ConvFn]] = None,
                 state: Optional["caffe_pb2.NetState"] = None, fill: bool = True, channels_last: bool = False,
                 data: Optional[DataStream] = None, precision: str = "fp32") -> None:
        super().__init__()
        self.source, self.name = str(source), net_param.name
        self.device = torch.device(device)
        self.precision = check_precision(precision, self.device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.data = data or DataStream()
        seed = int(cast(int, np.random.SeedSequence().entropy) % 2**63) if seed is None else int(seed)
        build = Build(generator=torch.Generator().manual_seed(seed), conv_for=conv or (lambda l: torch_conv2d),
                      fill=fill, data=self.data, device=self.device)
        params = list(included_layers(net_param, net_state(net_param, phase, state), self.source))
        if net_param.input:
            params.insert(0, _legacy_input_layer(net_param, self.source))
        self.layer_params: List["caffe_pb2.LayerParameter"] = []
        self.layers = nn.ModuleList()
        self.top_names: List[List[str]] = []      # layer.top, plus the anonymous tops
        self.loss_weights: List[List[float]] = []
        self.propagate: List[List[bool]] = []
        self.blob_shapes: Dict[str, Shape] = {}
        self.learnable: List[Learnable] = []
        self._loss_tops: Set[str] = set()
        self._force_backward = net_param.force_backward
        for layer in params:
            self._add(layer, build)
        self._split_layers = self._with_splits(phase)
        # The net as Caffe's Net holds it (what a .caffemodel lists): Caffe's Split layers (module None) included.
        self.caffe_layers: List[Tuple["caffe_pb2.LayerParameter", Optional[Layer]]] = [
            (param, None if i is None else cast(Layer, self.layers[i])) for param, i in self._split_layers]
        # Raised by forward: with gradients on, where Caffe's first backward pass would stop; always, where
        # Caffe stops when the net first runs (set by train: a test net whose blobs cannot be shared).
        self.backward_refusal = self._backward_refusal(net_param.force_backward)
        self.run_refusal: Optional[InputError] = None
        # Outputs: the blobs no later layer reads, sorted by name (Caffe keeps them in a std::set).
        available: Set[str] = set()
        for layer in self.layer_params:
            available = (available - set(layer.bottom)) | set(layer.top)
        self.outputs = sorted(available)
        self.input_names = [t for p, m in zip(self.layer_params, self.layers)
                            if m.is_data and p.type == "Input" for t in p.top]

    def _fail(self, layer: "caffe_pb2.LayerParameter", problem: str) -> InputError:
        return InputError(self.source, f"layer '{layer.name}' ({layer.type}): {problem}")

    def _add(self, layer: "caffe_pb2.LayerParameter", build: Build) -> None:
        if layer.type not in LAYERS:
            raise InputError(self.source, f"layer '{layer.name}': type '{layer.type}' is not supported "
                                          f"(supported: {', '.join(sorted(LAYERS))})")
        missing = [b for b in layer.bottom if b not in self.blob_shapes]
        if missing:
            raise self._fail(layer, f"bottom '{missing[0]}' is not a top of any earlier layer")
        read = [b for b in layer.bottom if b in self._loss_tops]
        if read:   # InsertSplits counts the loss as a reader: the Split's loss and gradient differ from ours
            raise self._fail(layer, f"bottom '{read[0]}' is a top with a loss weight, which Caffe splits and "
                                    f"weighs in its own way when another layer reads it (not supported)")
        bottoms = [self.blob_shapes[b] for b in layer.bottom]
        try:
            module, top_shapes = LAYERS[layer.type](layer, bottoms, build)
        except ValueError as e:
            raise self._fail(layer, str(e)) from None
        tops = self._tops(layer, module, len(top_shapes))
        self._check_lists(layer, module, len(tops))
        if layer.blobs:
            self._set_blobs(layer, module, [blob_array(b) for b in layer.blobs], self.source)
        for i, blob in enumerate(module.blobs):
            spec = layer.param[i] if i < len(layer.param) else caffe_pb2.ParamSpec()
            # force_backward: Caffe computes every blob's gradient, lr_mult 0 too (it counts in clip_gradients).
            blob.requires_grad_(spec.lr_mult != 0 or self._force_backward)
            self.learnable.append(Learnable(layer.name, i, blob, spec.lr_mult, spec.decay_mult))
        self.blob_shapes.update(zip(layer.top, top_shapes))   # not the anonymous tops: no bottom can name them
        self.layer_params.append(layer)
        self.layers.append(module)
        self.top_names.append(tops)
        self.loss_weights.append(list(layer.loss_weight) or [module.default_loss_weight] * len(tops))
        self.propagate.append(list(layer.propagate_down) or [True] * len(layer.bottom))
        self._loss_tops.update(name for name, w in zip(layer.top, self.loss_weights[-1]) if w)

    def _tops(self, layer: "caffe_pb2.LayerParameter", module: Layer, produced: int) -> List[str]:
        """The layer's top names: as given, then (Net::Init, for AutoTopBlobs()
        layers such as the losses) ANONYMOUS_TOP for each one it produces
        beyond them; any other count is an error (Layer::CheckBlobCounts)."""
        tops = list(layer.top)
        if module.auto_top_blobs and len(tops) < produced:
            tops += [ANONYMOUS_TOP] * (produced - len(tops))
        if len(tops) != produced:
            raise self._fail(layer, f"{len(tops)} tops given, the layer produces {produced}")
        return tops

    def _check_lists(self, layer: "caffe_pb2.LayerParameter", module: Layer, n_tops: int) -> None:
        if len(layer.param) > len(module.blobs):
            raise self._fail(layer, f"{len(layer.param)} param specs for {len(module.blobs)} blobs")
        if any(p.name for p in layer.param):
            raise self._fail(layer, "param.name (sharing blobs between layers) is not supported")
        if layer.loss_weight and len(layer.loss_weight) != n_tops:
            raise self._fail(layer, f"{len(layer.loss_weight)} loss_weight values for {n_tops} tops")
        if layer.propagate_down and len(layer.propagate_down) != len(layer.bottom):
            raise self._fail(layer, f"{len(layer.propagate_down)} propagate_down values "
                                    f"for {len(layer.bottom)} bottoms")

    def _with_splits(self, phase: "caffe_pb2.Phase") -> List[Tuple["caffe_pb2.LayerParameter", Optional[int]]]:
        """The layers after Caffe's InsertSplits, each with its index in
        `layers` (None: a Split, which has no module: our blobs are immutable
        tensors, so a blob read twice needs no copy). Refuses what Net::Init
        refuses on them: a top name produced twice, unless in place (top i =
        bottom i after the splits: a blob that another layer reads too is not
        written in place), and a top named as one of Caffe's Split tops."""
        layers: List[Tuple["caffe_pb2.LayerParameter", Optional[int]]] = []
        index = 0
        for param in insert_splits(self.layer_params):
            if param.type == "Split":   # not a user layer: that type is not supported
                param.phase = phase
                layers.append((param, None))
            else:
                layers.append((param, index))
                index += 1
        split_tops = {top for param, i in layers if i is None for top in param.top}
        produced: Set[str] = set()
        for param, i in layers:
            for j, top in enumerate(param.top):
                in_place = j < len(param.bottom) and param.bottom[j] == top
                if i is not None and top in split_tops:
                    raise self._fail(self.layer_params[i], f"top '{top}' has the name of one of Caffe's "
                                                           f"automatic Split tops")
                if top in produced and not in_place:
                    raise self._fail(self.layer_params[cast(int, i)],
                                     f"top '{top}' is produced by an earlier layer too (Caffe allows that only "
                                     f"in place: top i = bottom i, and no other layer reading that bottom)")
                produced.add(top)
        return layers

    def _backward_refusal(self, force_backward: bool) -> Optional[InputError]:
        """The error for the first layer whose Backward Caffe would ask for a
        bottom's gradient that the layer refuses (backward.py), else None."""
        nodes = []
        for param, i in self._split_layers:
            module = None if i is None else cast(Layer, self.layers[i])
            blobs = 0 if module is None else len(module.blobs)
            nodes.append(Node(
                bottoms=list(param.bottom), tops=list(param.top) if i is None else self.top_names[i],
                named_tops=len(param.top),
                loss_weights=(list(param.loss_weight) or [0.0] * len(param.top)) if i is None else self.loss_weights[i],
                learns=any(j >= len(param.param) or param.param[j].lr_mult != 0 for j in range(blobs)),
                propagate_down=list(param.propagate_down),
                allow_force_backward=(lambda j: True) if module is None else module.allow_force_backward))
        need_layer, need_bottom = backward_needs(nodes, force_backward)
        for (param, i), need, bottoms in zip(self._split_layers, need_layer, need_bottom):
            refused = [] if i is None else [j for j in cast(Layer, self.layers[i]).no_backward_to
                                            if need and j < len(bottoms) and bottoms[j]]
            if refused:
                layer = self.layer_params[cast(int, i)]
                return self._fail(layer, f"bottom '{layer.bottom[refused[0]]}' needs a gradient here (a learning "
                                         f"layer below it, propagate_down or force_backward) and Caffe's Backward "
                                         f"refuses it: 'cannot backpropagate to label inputs' at the first "
                                         f"backward pass")
        return None

    def _set_blobs(self, layer: "caffe_pb2.LayerParameter", module: Layer, arrays: Sequence[np.ndarray],
                   where: PathLike) -> None:
        """Copy arrays into a layer's blobs; count and shapes must match."""
        if len(arrays) != len(module.blobs):
            raise InputError(where, f"layer '{layer.name}': {len(arrays)} blobs in the file, "
                                    f"{len(module.blobs)} in the net")
        for j, (array, blob) in enumerate(zip(arrays, module.blobs)):
            if tuple(array.shape) != tuple(blob.shape):
                raise InputError(where, f"layer '{layer.name}' blob {j}: shape {tuple(array.shape)} in the file, "
                                        f"{tuple(blob.shape)} in the net")
            with torch.no_grad():
                # np.require, not np.ascontiguousarray: that makes a 0-axis blob (a shared PReLU slope) 1-D.
                blob.copy_(torch.from_numpy(np.require(array, np.float32, "C")))

    # --- running -------------------------------------------------------------

    def forward(self, feed: Optional[Dict[str, torch.Tensor]] = None
                ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Run every layer once. Returns (blobs by name, loss): loss is the
        weighted sum of the loss tops, a 0-dim tensor, or None if none."""
        if self.run_refusal is not None:
            raise self.run_refusal
        if self.backward_refusal is not None and torch.is_grad_enabled():
            raise self.backward_refusal
        with autocast(self.precision, self.device):
            return self._forward(feed)

    def _forward(self, feed: Optional[Dict[str, torch.Tensor]]
                 ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        blobs: Dict[str, torch.Tensor] = {}
        loss: Optional[torch.Tensor] = None
        readers: Dict[str, List[BlobData]] = {}   # blob -> whose Backward reads its final data
        reduced = autocast_dtype(self.precision) is not None
        for layer, module, names, weights, propagate in zip(self.layer_params, self.layers, self.top_names,
                                                             self.loss_weights, self.propagate):
            late = BlobData() if module.reads_top_in_backward else None
            if module.is_data:
                tops = module(feed or {})
                tops = tuple(t.contiguous(memory_format=self.memory_format) if t.dim() == 4 else t
                             for t in tops)
            else:
                bottoms = [blobs[b] if p else blobs[b].detach() for b, p in zip(layer.bottom, propagate)]
                in_float32 = reduced and any(weights)   # a loss: in float32, as the solver sees it
                if in_float32:
                    bottoms = [b.float() if b.is_floating_point() else b for b in bottoms]
                with full_precision(self.device) if in_float32 else contextlib.nullcontext():
                    tops = module(*bottoms) if late is None else module(*bottoms, late=late)
            for j, (name, top, w) in enumerate(zip(names, tops, weights)):
                blobs[name] = top
                if j < len(layer.bottom) and layer.bottom[j] == name:   # in place: Caffe overwrites the blob
                    for reader in readers.get(name, []):
                        reader.data = top.detach()
                else:
                    readers[name] = []
                if w:
                    term = top.sum() * w if w != 1 else top.sum()
                    loss = term if loss is None else loss + term
            if late is not None:
                readers.setdefault(names[0], []).append(late)
        return blobs, loss

    def output_weights(self) -> Dict[str, float]:
        """Loss weight of each output blob (0 for non-loss outputs)."""
        weights: Dict[str, float] = {}
        for names, ws in zip(self.top_names, self.loss_weights):
            for name, w in zip(names, ws):
                weights[name] = w
        return {name: weights[name] for name in self.outputs}


# --- weights in and out ----------------------------------------------------

def copy_trained_layers(net: Net, weights_param: "caffe_pb2.NetParameter", where: PathLike,
                        require_all: bool = False) -> None:
    """Caffe's Net::CopyTrainedLayersFrom(NetParameter): the file's layers in
    file order, each into the net's first layer of that name, so that of two
    file layers with one name the later wins; file layers the net lacks are
    ignored. Blob counts must be equal (Caffe's CHECK_EQ: a file layer without
    blobs for a net layer with some is refused too) and shapes too, a legacy
    num/channels/height/width blob matching a shape of at most 4 axes that
    leading 1s pad to it (Blob::ShapeEquals); else an InputError. The net's
    layers include Caffe's Split layers (no blobs), as a file Caffe wrote
    does. With `require_all` (ours, for deploy), every net layer with blobs
    must be in the file."""
    targets: Dict[str, Tuple["caffe_pb2.LayerParameter", Optional[Layer]]] = {}
    for layer, module in net.caffe_layers:
        targets.setdefault(layer.name, (layer, module))
    if require_all:
        given = {source.name for source in weights_param.layer}
        missing = [name for name, (_, module) in targets.items()
                   if module is not None and len(module.blobs) and name not in given]
        if missing:
            raise InputError(where, f"has no weights for layer '{missing[0]}' of {net.source}")
    for source in weights_param.layer:
        if source.name not in targets:
            continue
        layer, module = targets[source.name]
        if module is None:   # a Split layer
            if source.blobs:
                raise InputError(where, f"layer '{source.name}': {len(source.blobs)} blobs in the file, 0 in the net")
            continue
        try:
            arrays = [_legacy_reshape(b, tuple(t.shape)) for b, t in zip(source.blobs, module.blobs)]
            arrays += [blob_array(b) for b in source.blobs[len(arrays):]]
        except ValueError as e:   # more or fewer values than the blob's shape holds (Blob::FromProto)
            raise InputError(where, f"layer '{source.name}': {e}") from None
        net._set_blobs(layer, module, arrays, where)


def _legacy_reshape(blob: "caffe_pb2.BlobProto", target_shape: Shape) -> np.ndarray:
    # A legacy 4-D (num, channels, height, width) blob matches a target whose
    # shape padded to 4 axes with leading 1s is the same (Blob::ShapeEquals).
    array = blob_array(blob)
    legacy = any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    if legacy and len(target_shape) <= 4 and (1,) * (4 - len(target_shape)) + target_shape == blob_shape(blob):
        return array.reshape(target_shape)
    return array


def net_to_proto(net: Net) -> "caffe_pb2.NetParameter":
    """The .caffemodel content (Net::ToProto): every layer's parameters, as
    the net was built (phase set, Caffe's Split layers inserted and the
    bottoms they feed renamed), with its blobs. A loss layer without
    `loss_weight` is written with `loss_weight: 1`, as LossLayer::LayerSetUp
    sets it."""
    out = caffe_pb2.NetParameter(name=net.name)
    for layer, module in net.caffe_layers:
        copy = out.layer.add()
        copy.CopyFrom(layer)
        del copy.blobs[:]
        if module is None:
            continue
        if isinstance(module, LossLayer) and not copy.loss_weight:
            copy.loss_weight.append(module.default_loss_weight)
        copy.blobs.extend(blob_proto(b.detach().cpu().numpy()) for b in module.blobs)
    return out


# --- deploy ----------------------------------------------------------------

def load_deploy(deploy_prototxt: PathLike, caffemodel: PathLike, device: Union[torch.device, str] = "cpu",
                channels_last: Optional[bool] = None, precision: str = "fp32",
                conv: Optional[Callable[["caffe_pb2.LayerParameter"], ConvFn]] = None) -> Callable[[np.ndarray], np.ndarray]:
    """forward(image_hw float32 (H, W)) -> float32 (H, W): the deploy net's
    single output (the sigmoid probabilities) for one slice of any size; the
    Input shape in the prototxt is only a default. Weights are read by layer
    name from `caffemodel`; a missing layer, a shape mismatch or a corrupt
    file is an InputError. `precision`: as for Net; the output is float32.
    `channels_last` puts the activations and the filters in channels-last
    memory: oneDNN's fast convolution needs both (with the filters left in
    Caffe's layout a 448x512 scan took 2.2x as long as plain PyTorch's;
    bench/bench_engine.py, 2026-11-30). Default: on the CPU where oneDNN
    convolves, that is in bf16 or where a layer is not NNPACK's; at fp32
    NNPACK computes the paper's layers (conv.py), on Caffe's layout.
    `conv`: each Convolution layer's implementation, as for Net."""
    net = Net(read_net(deploy_prototxt), phase=TEST, source=deploy_prototxt, device=device,
              fill=False, channels_last=bool(channels_last), precision=precision, conv=conv)
    if channels_last is None:
        by_nnpack = precision == "fp32" and all(
            nnpack_geometry(tuple(m.blobs[0].shape[2:]), m.stride, m.pad, m.dilation, m.groups)
            for m in net.layers if isinstance(m, Convolution))
        channels_last = torch.device(device).type == "cpu" and not by_nnpack
        net.memory_format = torch.channels_last if channels_last else torch.contiguous_format
    copy_trained_layers(net, read_caffemodel(caffemodel), caffemodel, require_all=True)
    net.eval()
    if channels_last:
        with torch.no_grad():
            for parameter in net.parameters():
                if parameter.dim() == 4:
                    parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    if len(net.input_names) != 1 or len(net.outputs) != 1:
        raise InputError(deploy_prototxt, f"a deploy net needs one Input top and one output, has inputs "
                                          f"{net.input_names} and outputs {net.outputs}")
    (name,), (output,) = net.input_names, net.outputs
    shape = net.blob_shapes[name]
    if len(shape) != 4 or shape[1] != 1:
        raise InputError(deploy_prototxt, f"Input '{name}' has shape {shape}: expected (N, 1, H, W)")

    def many(images_nhw: np.ndarray) -> np.ndarray:
        if images_nhw.ndim != 3:
            raise ValueError(f"expected a stack (N, H, W) of slices, got shape {images_nhw.shape}")
        x = torch.from_numpy(np.ascontiguousarray(images_nhw, dtype=np.float32))[:, None].to(net.device)
        with torch.inference_mode():
            blobs, _ = net({name: x})
            prob = blobs[output]
        return prob[:, 0].float().cpu().numpy().copy()

    def forward(image_hw: np.ndarray) -> np.ndarray:
        if image_hw.ndim != 2:
            raise ValueError(f"expected one (H, W) slice, got shape {image_hw.shape}")
        return many(image_hw[None])[0]

    forward.net = net  # type: ignore[attr-defined]
    # engines.Forward's batch protocol: N x 1 x H x W in one call, as many pixels as memory allows
    forward.many = many  # type: ignore[attr-defined]
    forward.batch_pixels = default_batch_slices(net) * SLICE_PIXELS  # type: ignore[attr-defined]
    return forward


MAX_BATCH_SLICES = 32   # on a GPU: past this a scan's batch gains nothing and holds the memory


def default_batch_slices(net: Net) -> int:
    """448x512 slices per forward call by default: 1 on the CPU (batching slices
    gave nothing on 2 cores: README, Measured, Scoring at scale), on a GPU as
    many as half its free memory holds for every blob of the net (each kept
    until the call returns), at most MAX_BATCH_SLICES."""
    if net.device.type != "cuda":
        return 1
    free, _ = torch.cuda.mem_get_info(net.device)
    values_per_pixel = sum(int(np.prod(shape[1:])) for shape in net.blob_shapes.values()) / \
        max(1, int(np.prod(net.blob_shapes[net.input_names[0]][1:])))
    per_slice = values_per_pixel * SLICE_PIXELS * 4   # float32 (bf16 holds less: a safe side)
    return int(max(1, min(MAX_BATCH_SLICES, free // 2 // per_slice)))
