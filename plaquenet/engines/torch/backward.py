"""Which layers Caffe's Backward runs, and for which bottoms (Net::Init's
layer_need_backward_ and bottom_need_backward_, net.cpp:88-236 at 99bd997,
the same in 1.0).

Autograd finds the same gradients on its own; what it cannot tell is where
Caffe asks a layer for a gradient the layer refuses to give
(SigmoidCrossEntropyLoss's label: LOG(FATAL) at the first backward pass).
Caffe decides it on the net after InsertSplits, by blob name, in three
passes: forward (a bottom needs a gradient if a layer below it learns, or
`propagate_down` says so), backward (not if no loss depends on it, nor a
layer whose every top nobody backpropagates into), and `force_backward`
(every layer, and every bottom the layer allows)."""

from dataclasses import dataclass
from typing import Callable, Dict, List, Sequence, Set, Tuple


@dataclass
class Node:
    """One layer as Net::Init sees it (Caffe's Split layers included)."""
    bottoms: List[str]
    tops: List[str]                  # every top, the anonymous ones ("(automatic)") last
    named_tops: int                  # how many the prototxt names: only those can be read
    loss_weights: List[float]        # one per top
    learns: bool                     # a blob with lr_mult != 0
    propagate_down: List[bool]       # as given; empty: not given
    allow_force_backward: Callable[[int], bool]


def backward_needs(nodes: Sequence[Node], force_backward: bool) -> Tuple[List[bool], List[List[bool]]]:
    """(whether each layer's Backward runs, whether it is asked for each bottom's gradient)."""
    need_layer, need_bottom = _from_below(nodes)
    _drop_what_no_loss_needs(nodes, need_layer, need_bottom)
    if force_backward:
        need_layer = [True] * len(nodes)
        need_bottom = [[b or node.allow_force_backward(j) for j, b in enumerate(bottoms)]
                       for node, bottoms in zip(nodes, need_bottom)]
    return need_layer, need_bottom


def _from_below(nodes: Sequence[Node]) -> Tuple[List[bool], List[List[bool]]]:
    # A layer needs backward if it learns or a bottom blob needs it; then so do its tops
    # (an in-place top keeps what its blob had). propagate_down, given, replaces a bottom's need.
    blob_need: Dict[str, bool] = {}
    need_layer: List[bool] = []
    need_bottom: List[List[bool]] = []
    for node in nodes:
        need = node.learns or any(blob_need[b] for b in node.bottoms)
        need_layer.append(need)
        need_bottom.append(list(node.propagate_down) or [blob_need[b] for b in node.bottoms])
        for j, top in enumerate(node.tops[:node.named_tops]):
            in_place = j < len(node.bottoms) and node.bottoms[j] == top
            blob_need[top] = need or (in_place and blob_need[top])
    return need_layer, need_bottom


def _drop_what_no_loss_needs(nodes: Sequence[Node], need_layer: List[bool], need_bottom: List[List[bool]]) -> None:
    under_loss: Set[str] = set()
    skipped: Set[str] = set()
    for k in reversed(range(len(nodes))):
        node = nodes[k]
        contributes = any(w or top in under_loss for top, w in zip(node.tops, node.loss_weights))
        if need_layer[k] and all(top in skipped for top in node.tops):
            need_layer[k], need_bottom[k] = False, [False] * len(node.bottoms)
        need_layer[k] = need_layer[k] and contributes
        for j, bottom in enumerate(node.bottoms):
            if contributes:
                under_loss.add(bottom)
            else:
                need_bottom[k][j] = False
            if not need_bottom[k][j]:
                skipped.add(bottom)
