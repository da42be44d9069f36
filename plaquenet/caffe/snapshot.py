"""Caffe's snapshot files without Caffe.

- `<prefix>_iter_<N>.caffemodel`: a binary `NetParameter` whose layers carry
  name, type and `blobs` (`BlobProto {shape {dim}, data}`, float32, C order).
- `<prefix>_iter_<N>.solverstate`: a binary `SolverState {iter, learned_net,
  history[], current_step}`; `history` holds one blob per learnable parameter
  in the net's order (momentum; Adam appends its second moments after them).

Both are written atomically; a file that does not parse is an InputError.
(`snapshot_format: HDF5`, i.e. .caffemodel.h5 / .solverstate.h5, is not
supported yet.)"""

from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import numpy as np
from google.protobuf.message import DecodeError, Message

from ..atomic import atomic_path
from ..errors import InputError
from ..typing import PathLike
from . import caffe_pb2

if TYPE_CHECKING:
    from numpy.typing import ArrayLike   # numpy >= 1.20; pycaffe's bullseye has 1.19

M = TypeVar("M", bound=Message)


# --- blobs -----------------------------------------------------------------

def blob_proto(array: "ArrayLike") -> "caffe_pb2.BlobProto":
    """A BlobProto holding `array` as float32 `data` with its `shape`, as
    Caffe's Blob::ToProto writes it: a 0-axis array (PReLU's
    `channel_shared` slope) has one value and no `shape` field at all."""
    array = np.asarray(array, dtype=np.float32)
    blob = caffe_pb2.BlobProto()
    if array.ndim:   # ToProto calls mutable_shape() once per axis: none for 0 axes, not an empty shape {}
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.ravel().tolist())
    return blob


def blob_shape(blob: "caffe_pb2.BlobProto") -> Tuple[int, ...]:
    """A BlobProto's shape: `shape.dim`, or the legacy 4-D num/channels/height/width;
    () for a 0-axis blob (no dims, one value), as Blob::FromProto reads it."""
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return tuple(blob.shape.dim)


def blob_array(blob: "caffe_pb2.BlobProto", where: str = "blob") -> np.ndarray:
    """A BlobProto's values as a float32 array of its shape (from `data`, or
    from `double_data` when that is what it holds)."""
    shape = blob_shape(blob)
    values = blob.double_data if len(blob.double_data) else blob.data
    array = np.array(values, dtype=np.float32)
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"{where}: {array.size} values for shape {shape}")
    return array.reshape(shape)


# --- binary protos ---------------------------------------------------------

def read_binary_proto(path: PathLike, message_type: Type[M]) -> M:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(path, f"cannot read ({e.strerror or e})") from None
    try:
        return message_type.FromString(data)
    except DecodeError as e:
        raise InputError(path, f"not a binary {message_type.DESCRIPTOR.name} "
                               f"(corrupt or truncated: {e})") from None


def write_binary_proto(path: PathLike, message: Message) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(message.SerializeToString())


# --- .caffemodel -----------------------------------------------------------

def read_caffemodel(path: PathLike, empty_ok: bool = False) -> "caffe_pb2.NetParameter":
    """The NetParameter of a binary .caffemodel; InputError if it is corrupt
    or holds no layer. With `empty_ok` (`--weights`), a file with no layer and
    nothing else we do not know (an empty, 0-byte file) is returned as it is:
    Caffe's CopyTrainedLayersFrom copies nothing from it and goes on. A V1 file
    (field 2, `layers`, unknown here) is refused either way."""
    if str(path).endswith(".h5"):
        raise InputError(path, "HDF5 snapshots (.caffemodel.h5) are not supported yet")
    net = read_binary_proto(path, caffe_pb2.NetParameter)
    if not net.layer and not (empty_ok and _no_unknown_fields(net)):
        raise InputError(path, "holds no layers (not a .caffemodel, or Caffe's old V1 format)")
    return net


def _no_unknown_fields(message: Message) -> bool:
    known = type(message)()
    known.CopyFrom(message)
    known.DiscardUnknownFields()
    return known.ByteSize() == message.ByteSize()


def caffemodel_weights(net: "caffe_pb2.NetParameter") -> Dict[str, List[np.ndarray]]:
    """Layer name -> its blobs as float32 arrays, for layers that have blobs."""
    weights = {}
    for layer in net.layer:
        if layer.blobs:
            weights[layer.name] = [blob_array(b, f"layer {layer.name!r} blob {i}")
                                   for i, b in enumerate(layer.blobs)]
    return weights


def write_caffemodel(path: PathLike, net: "caffe_pb2.NetParameter") -> None:
    """Write a NetParameter (layers with their blobs) as a binary .caffemodel."""
    write_binary_proto(path, net)


def weights_net(weights: Dict[str, Sequence["ArrayLike"]], types: Optional[Dict[str, str]] = None,
                name: str = "") -> "caffe_pb2.NetParameter":
    """A minimal NetParameter from layer name -> arrays (and name -> type)."""
    net = caffe_pb2.NetParameter(name=name)
    for layer_name, blobs in weights.items():
        layer = net.layer.add(name=layer_name, type=(types or {}).get(layer_name, ""))
        layer.blobs.extend(blob_proto(b) for b in blobs)
    return net


# --- .solverstate ----------------------------------------------------------

def read_solverstate(path: PathLike) -> "caffe_pb2.SolverState":
    if str(path).endswith(".h5"):
        raise InputError(path, "HDF5 solver states (.solverstate.h5) are not supported yet")
    state = read_binary_proto(path, caffe_pb2.SolverState)
    if not state.HasField("iter"):
        raise InputError(path, "not a .solverstate (no iteration count)")
    return state


def write_solverstate(path: PathLike, iter: int, learned_net: PathLike, history: Sequence["ArrayLike"],
                      current_step: int = 0) -> None:
    """Write a SolverState: iterations done, the .caffemodel written with it,
    the solver history blobs (arrays) and multistep's current step."""
    state = caffe_pb2.SolverState(iter=iter, learned_net=str(learned_net),
                                  current_step=current_step)
    state.history.extend(blob_proto(h) for h in history)
    write_binary_proto(path, state)
