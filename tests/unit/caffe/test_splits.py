"""Caffe's InsertSplits without Caffe (plaquenet/caffe/splits.py). The names
below are those the oracle's pycaffe lists for the same nets
(tests/conformance/test_caffe_net_init.py checks them against it)."""

import pytest

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import parse_prototxt
from plaquenet.caffe.splits import insert_splits


def _wiring(text: str) -> list:
    layers = parse_prototxt(text, caffe_pb2.NetParameter()).layer
    return [(l.name, l.type, list(l.bottom), list(l.top), list(l.loss_weight)) for l in insert_splits(layers)]


INPUT = 'layer { name: "in" type: "Input" top: "x" top: "t" input_param { shape { dim: 1 dim: 1 } } }\n'


def test_a_top_read_twice_gets_a_split_after_its_producer_and_readers_get_its_tops_in_order():
    text = (INPUT + 'layer { name: "r" type: "ReLU" bottom: "x" top: "x" }\n'
            'layer { name: "a" type: "Sigmoid" bottom: "x" top: "a" }\n'
            'layer { name: "b" type: "Sigmoid" bottom: "x" top: "b" }\n')
    assert _wiring(text) == [
        ("in", "Input", [], ["x", "t"], []),
        ("r", "ReLU", ["x"], ["x"], []),                  # the in-place ReLU's top is the one read twice
        ("x_r_0_split", "Split", ["x"], ["x_r_0_split_0", "x_r_0_split_1"], []),
        ("a", "Sigmoid", ["x_r_0_split_0"], ["a"], []),
        ("b", "Sigmoid", ["x_r_0_split_1"], ["b"], []),
    ]


def test_a_weighted_top_that_is_read_passes_its_weight_to_the_splits_first_top():
    text = INPUT + ('layer { name: "c" type: "Sigmoid" bottom: "x" top: "y" loss_weight: 2 }\n'
                    'layer { name: "l" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }\n')
    assert _wiring(text)[1:] == [
        ("c", "Sigmoid", ["x"], ["y"], []),                # the producer's loss_weight is cleared
        ("y_c_0_split", "Split", ["y"], ["y_c_0_split_0", "y_c_0_split_1"], [2.0, 0.0]),
        ("l", "EuclideanLoss", ["y_c_0_split_1", "t"], ["l"], []),
    ]


def test_a_top_read_once_and_an_unweighted_loss_get_no_split():
    text = INPUT + 'layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l" }\n'
    assert [name for name, *_ in _wiring(text)] == ["in", "l"]


def test_a_bottom_nobody_produced_is_an_error():
    with pytest.raises(ValueError, match="layer 'a': unknown bottom blob 'nope'"):
        _wiring(INPUT + 'layer { name: "a" type: "Sigmoid" bottom: "nope" top: "a" }\n')
