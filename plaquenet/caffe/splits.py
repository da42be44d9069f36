"""Caffe's automatic Split layers (src/caffe/util/insert_splits.cpp), without Caffe.

Before it builds a net, Caffe gives every top that more than one later layer
reads (a top with a non-zero `loss_weight` counting as one more reader) a
layer of type "Split" named `<blob>_<layer>_<i>_split`, right after the
producer. Its tops `<blob>_<layer>_<i>_split_<k>` replace the readers'
bottoms, in reading order. A snapshot lists these layers (without blobs), and
the names take part where Caffe matches layers by name (weights in and out,
train/test sharing, which blobs need a gradient)."""

from collections import defaultdict
from typing import TYPE_CHECKING, Dict, List, Sequence, Tuple

if TYPE_CHECKING:
    from . import caffe_pb2

TopIndex = Tuple[int, int]   # (layer index, top index)


def split_layer_name(layer: str, blob: str, top_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split"


def split_blob_name(layer: str, blob: str, top_index: int, split_index: int) -> str:
    return f"{blob}_{layer}_{top_index}_split_{split_index}"


def insert_splits(layers: Sequence["caffe_pb2.LayerParameter"]) -> List["caffe_pb2.LayerParameter"]:
    """The layers as Caffe's InsertSplits leaves them: copies, readers'
    bottoms renamed, a Split layer after each top read more than once. A top
    that is a loss (non-zero loss_weight) and is read too gets a Split whose
    first top carries the weight (the producer's `loss_weight` is cleared).
    A bottom that no earlier layer produced is a ValueError."""
    from . import caffe_pb2

    last_top: Dict[str, TopIndex] = {}
    source: Dict[TopIndex, TopIndex] = {}         # (layer, bottom) -> the top it reads
    readers: Dict[TopIndex, int] = defaultdict(int)
    loss_weight: Dict[TopIndex, float] = defaultdict(float)
    for i, layer in enumerate(layers):
        for j, blob in enumerate(layer.bottom):
            if blob not in last_top:
                raise ValueError(f"layer '{layer.name}': unknown bottom blob '{blob}'")
            source[i, j] = last_top[blob]
            readers[last_top[blob]] += 1
        for j, blob in enumerate(layer.top):
            last_top[blob] = (i, j)
        for j in range(min(len(layer.loss_weight), len(layer.top))):
            top = last_top[layer.top[j]]
            loss_weight[top] = layer.loss_weight[j]
            if loss_weight[top]:
                readers[top] += 1
    out: List["caffe_pb2.LayerParameter"] = []
    next_split: Dict[TopIndex, int] = defaultdict(int)
    for i, layer in enumerate(layers):
        copy = caffe_pb2.LayerParameter()
        copy.CopyFrom(layer)
        out.append(copy)
        for j, blob in enumerate(layer.bottom):
            top = source[i, j]
            if readers[top] > 1:
                copy.bottom[j] = split_blob_name(layers[top[0]].name, blob, top[1], next_split[top])
                next_split[top] += 1
        for j, blob in enumerate(layer.top):
            if readers[i, j] > 1:
                out.append(_split_layer(layer.name, blob, j, readers[i, j], loss_weight[i, j]))
                if loss_weight[i, j]:
                    del copy.loss_weight[:]
                    next_split[i, j] += 1   # the weighted first top is read by no layer
    return out


def _split_layer(layer: str, blob: str, top_index: int, count: int,
                 loss_weight: float) -> "caffe_pb2.LayerParameter":
    """ConfigureSplitLayer: one bottom, `count` tops, the loss weight on the first."""
    from . import caffe_pb2

    split = caffe_pb2.LayerParameter(name=split_layer_name(layer, blob, top_index), type="Split", bottom=[blob])
    split.top.extend(split_blob_name(layer, blob, top_index, k) for k in range(count))
    if loss_weight:
        split.loss_weight.extend([loss_weight] + [0.0] * (count - 1))
    return split
