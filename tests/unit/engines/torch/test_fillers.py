"""The torch engine's fillers: Caffe's fan formulas and distributions."""

import math

import numpy as np
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
    assert fan(caffe_pb2.FillerParameter(), (7,)) == 1           # a 1-axis blob: fan_in 1, fan_out = count
    assert fan(caffe_pb2.FillerParameter(variance_norm=p.FAN_OUT), (7,)) == 7
    g = torch.Generator().manual_seed(0)
    xavier = fill(caffe_pb2.FillerParameter(type="xavier"), (64, 16, 3, 3), g)
    assert xavier.abs().max() <= math.sqrt(3 / 144) and xavier.std() == pytest.approx(math.sqrt(1 / 144), rel=0.05)
    msra = fill(caffe_pb2.FillerParameter(type="msra"), (64, 16, 3, 3), g)
    assert msra.std() == pytest.approx(math.sqrt(2 / 144), rel=0.05)
    assert torch.all(fill(caffe_pb2.FillerParameter(), (3, 3), g) == 0)  # Caffe's default: constant 0
    with pytest.raises(ValueError, match="unknown filler"):
        fill(caffe_pb2.FillerParameter(type="orthogonal"), (3,), g)


def test_the_bilinear_filler_is_the_oracles_formula_in_float():
    g = torch.Generator()
    k3 = fill(caffe_pb2.FillerParameter(type="bilinear"), (2, 1, 3, 3), g)
    # f = 2, c = (3 - 1) / 4 = 0.5: profile 1 - |x/2 - 0.5| = .5 1 .5 (the 1.0 tag's c = 0.75 gave .25 .75 .75)
    np.testing.assert_array_equal(k3[1, 0].numpy(), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]).astype(np.float32))
    k4 = fill(caffe_pb2.FillerParameter(type="bilinear"), (1, 1, 4, 4), g)
    np.testing.assert_array_equal(k4[0, 0, 0].numpy(), np.float32([0.25, 0.75, 0.75, 0.25]) * np.float32(0.25))


@pytest.mark.parametrize("filler, shape, message", [
    ('type: "xavier"', (), "needs axis 0 of the blob, and this blob has no axes"),
    ('type: "msra" variance_norm: FAN_OUT', (), "needs axis 0"),
    ('type: "positive_unitball"', (), "needs axis 0"),
    ('type: "gaussian" sparse: 2', (), "needs axis 0"),
    ('type: "gaussian" sparse: -3', (4, 2), "only for the gaussian filler, and at least -1"),
    ('type: "constant" sparse: 1', (4, 2), "only for the gaussian filler"),
    ('type: "bilinear"', (1, 1, 2, 3), "4-D blob with square kernels"),
    ('type: "bilinear"', (3,), "4-D blob with square kernels"),
    ('type: "uniform"', (0, 3), "no elements"),
])
def test_a_filler_caffe_aborts_on_is_refused(filler, shape, message):
    from plaquenet.caffe.prototxt import parse_prototxt
    from plaquenet.engines.torch.fillers import check_filler

    p = parse_prototxt(filler, caffe_pb2.FillerParameter())
    with pytest.raises(ValueError, match=f"weight: .*{message}"):
        check_filler(p, shape, "weight: ")
    with pytest.raises(ValueError, match=message):
        fill(p, shape, torch.Generator())


def test_constant_gaussian_and_uniform_fill_a_0_axis_blob():
    g = torch.Generator().manual_seed(0)
    for kind in ("constant", "gaussian", "uniform"):
        assert fill(caffe_pb2.FillerParameter(type=kind), (), g).shape == ()


def test_the_prelu_builder_refuses_a_0_axis_xavier_even_with_weights_to_load():
    from plaquenet.errors import InputError
    from tiny_nets import input_layer, net_of

    text = input_layer((1, 2, 2, 2)) + ('layer { name: "p" type: "PReLU" bottom: "data" top: "p" '
                                        'prelu_param { channel_shared: true filler { type: "xavier" } } }')
    for fill_blobs in (True, False):
        with pytest.raises(InputError, match=r"tiny.prototxt: layer 'p' \(PReLU\): prelu_param.filler: filler "
                                             r"'xavier' needs axis 0"):
            net_of(text, fill=fill_blobs)
