"""The torch engine's fillers: Caffe's fan formulas and distributions."""

import math

import pytest
import torch

from plaquenet.caffe import caffe_pb2
from plaquenet.engines.torch.fillers import fan, fill


def test_fillers_follow_caffe_fan_formulas():
    p = caffe_pb2.FillerParameter(type="msra")
    assert fan(p, (20, 10, 5, 5)) == 10 * 25                     # fan_in = C/g kh kw
    p.variance_norm = p.FAN_OUT
    assert fan(p, (20, 10, 5, 5)) == 20 * 25                     # fan_out = O kh kw
    p.variance_norm = p.AVERAGE
    assert fan(p, (20, 10, 5, 5)) == (250 + 500) / 2
    assert fan(caffe_pb2.FillerParameter(), (7,)) == 1           # a 1-axis blob: fan_in 1
    g = torch.Generator().manual_seed(0)
    xavier = fill(caffe_pb2.FillerParameter(type="xavier"), (64, 16, 3, 3), g)
    assert xavier.abs().max() <= math.sqrt(3 / 144) and xavier.std() == pytest.approx(math.sqrt(1 / 144), rel=0.05)
    msra = fill(caffe_pb2.FillerParameter(type="msra"), (64, 16, 3, 3), g)
    assert msra.std() == pytest.approx(math.sqrt(2 / 144), rel=0.05)
    assert torch.all(fill(caffe_pb2.FillerParameter(), (3, 3), g) == 0)  # Caffe's default: constant 0
    with pytest.raises(ValueError, match="unknown filler"):
        fill(caffe_pb2.FillerParameter(type="orthogonal"), (3,), g)
