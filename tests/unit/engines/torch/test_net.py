"""Net building in the torch engine (engines/torch/net.py): which layers a phase
includes, learnable blobs, errors naming the layer, the paper's nets, and
load_deploy on a snapshot of tests/conftest.py's `train_workdir`."""

from pathlib import Path

import numpy as np
import pytest
import torch

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import read_net
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel
from plaquenet.engines.torch.net import TEST, TRAIN, Net, load_deploy
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError
from tiny_nets import input_layer, net_of, two_conv_deploy

REPO = Path(__file__).resolve().parents[4]


def test_unsupported_layer_type_and_field_name_the_layer():
    with pytest.raises(InputError, match=r"tiny.prototxt: layer 'pool1': type 'Pooling' is not supported"):
        net_of(input_layer((1, 1, 4, 4)) + 'layer { name: "pool1" type: "Pooling" bottom: "data" top: "p" }')
    with pytest.raises(InputError, match=r"layer 'c' \(Convolution\): convolution_param.axis = 2"):
        net_of(input_layer((1, 1, 4, 4)) + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                          'convolution_param { num_output: 1 kernel_size: 1 axis: 2 } }')
    with pytest.raises(InputError, match=r"layer 'c'.*param.name"):
        net_of(input_layer((1, 1, 4, 4)) + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                          'param { name: "shared" } convolution_param { num_output: 1 kernel_size: 1 } }')


def test_include_exclude_rules_pick_layers_by_phase_and_stage():
    text = (input_layer((1, 1, 2, 2)) +
            'layer { name: "train_only" type: "ReLU" bottom: "data" top: "r" include { phase: TRAIN } }\n'
            'layer { name: "not_train" type: "Sigmoid" bottom: "data" top: "s" exclude { phase: TRAIN } }\n'
            'layer { name: "staged" type: "Sigmoid" bottom: "data" top: "t" include { stage: "deep" } }\n')
    assert [l.name for l in net_of(text, TRAIN).layer_params] == ["data", "train_only"]
    assert [l.name for l in net_of(text, TEST).layer_params] == ["data", "not_train"]
    staged = net_of(text, TEST, state=caffe_pb2.NetState(stage=["deep"]))
    assert [l.name for l in staged.layer_params] == ["data", "not_train", "staged"]
    assert staged.outputs == ["s", "t"]


def test_lr_mult_zero_freezes_a_blob():
    net = net_of(input_layer((1, 1, 3, 3)) +
                 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { lr_mult: 0 } '
                 'param { lr_mult: 2 decay_mult: 0 } convolution_param { num_output: 1 kernel_size: 1 } }')
    weight, bias = net.learnable
    assert (weight.lr_mult, weight.decay_mult, weight.blob.requires_grad) == (0, 1, False)
    assert (bias.lr_mult, bias.decay_mult, bias.blob.requires_grad) == (2, 0, True)


def test_paper_nets_build_from_their_prototxt():
    deploy = Net(read_net(REPO / "prototxt/plaquenet_deploy.prototxt"), TEST, fill=False)
    assert deploy.input_names == ["data"] and deploy.outputs == ["prob"]
    assert deploy.blob_shapes["prob"] == (1, 1, 448, 512)          # every layer keeps the size (§4.2 padding)
    # 20*1*25 + 20*20*49 + 40*20*81 + 60*40*49 + 20*60*25 + 1*20*25 weights, 161 biases, 160 PReLU slopes
    assert sum(p.blob.numel() for p in deploy.learnable) == 233000 + 161 + 160


def test_bottom_no_layer_produces_is_one_line_naming_layer_and_blob():
    with pytest.raises(InputError) as caught:
        net_of(input_layer((1, 1, 4, 4)) + 'layer { name: "conv9" type: "Convolution" bottom: "dtaa" top: "c" '
                                          'convolution_param { num_output: 1 kernel_size: 1 } }')
    message = str(caught.value)
    assert "\n" not in message
    assert "tiny.prototxt" in message and "'conv9'" in message and "'dtaa'" in message
def test_load_deploy_on_another_size(train_workdir):
    train("solver.prototxt")
    model = "runs/tiny/tiny_iter_4.caffemodel"
    forward = load_deploy("nets/tiny_deploy.prototxt", model)
    image = np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32)   # prototxt says 4x4
    prob = forward(image)
    assert prob.shape == (5, 7) and prob.dtype == np.float32

    w = {k: [torch.from_numpy(a) for a in v] for k, v in caffemodel_weights(read_caffemodel(model)).items()}
    x = torch.from_numpy(image)[None, None]
    x = torch.nn.functional.prelu(torch.nn.functional.conv2d(x, *w["conv1"], padding=1), w["prelu1"][0])
    expected = torch.sigmoid(torch.nn.functional.conv2d(x, *w["conv2"], padding=1))[0, 0].numpy()
    np.testing.assert_allclose(prob, expected, atol=1e-6)
    assert not np.shares_memory(prob, forward(image))


def test_load_deploy_refuses_mismatched_or_corrupt_weights(train_workdir):
    train("solver.prototxt")
    (train_workdir / "nets/wide_deploy.prototxt").write_text(two_conv_deploy(4, 4, channels=4))
    with pytest.raises(InputError, match=r"layer 'conv1' blob 0: shape \(3, 1, 3, 3\) in the file, "
                                         r"\(4, 1, 3, 3\) in the net"):
        load_deploy("nets/wide_deploy.prototxt", "runs/tiny/tiny_iter_4.caffemodel")
    (train_workdir / "bad.caffemodel").write_bytes(b"\x0a\xff\xff garbage")
    with pytest.raises(InputError, match="bad.caffemodel"):
        load_deploy("nets/tiny_deploy.prototxt", "bad.caffemodel")
