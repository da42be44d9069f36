"""Net building in the torch engine (engines/torch/net.py): which layers a phase
includes, learnable blobs, errors naming the layer, the paper's nets, and
load_deploy on a snapshot of tests/conftest.py's `train_workdir`."""

from pathlib import Path

import numpy as np
import pytest
import torch

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import read_net
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, write_caffemodel
from plaquenet.engines.torch.net import ANONYMOUS_TOP, TEST, TRAIN, Net, load_deploy, net_to_proto
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError
from tiny_nets import input_layer, net_of, tiny_weights, two_conv_deploy

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
    # force_backward: Caffe computes the frozen blob's gradient too (and clip_gradients counts it); lr 0 keeps it.
    forced = net_of("force_backward: true\n" + input_layer((1, 1, 3, 3)) +
                    'layer { name: "c" type: "Convolution" bottom: "data" top: "c" param { lr_mult: 0 } '
                    'convolution_param { num_output: 1 kernel_size: 1 } }')
    assert [(p.lr_mult, p.blob.requires_grad) for p in forced.learnable] == [(0, True), (1, True)]


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


def test_a_shared_prelu_slope_loads_from_caffes_0_axis_blob_and_is_written_back_as_one(tmp_path):
    # Caffe stores PReLU's channel_shared slope as a 0-axis blob (one value, no
    # `shape`); np.ascontiguousarray once made it 1-D and the copy failed.
    deploy = two_conv_deploy(4, 5).replace('top: "conv1" }', 'top: "conv1" prelu_param { channel_shared: true } }')
    (tmp_path / "deploy.prototxt").write_text(deploy)
    rng = np.random.default_rng(0)
    weights = {"conv1": [rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3)], "prelu1": [np.array(-0.3)],
               "conv2": [rng.normal(size=(1, 3, 3, 3)), rng.normal(size=1)]}
    write_caffemodel(tmp_path / "w.caffemodel", tiny_weights(weights))
    assert not read_caffemodel(tmp_path / "w.caffemodel").layer[1].blobs[0].HasField("shape")
    forward = load_deploy(tmp_path / "deploy.prototxt", tmp_path / "w.caffemodel")
    slope = forward.net.layers[2].blobs[0]
    assert tuple(slope.shape) == () and slope.item() == pytest.approx(-0.3)

    image = rng.normal(size=(4, 5)).astype(np.float32)
    w = {k: [torch.tensor(a, dtype=torch.float32) for a in v] for k, v in weights.items()}
    x = torch.nn.functional.conv2d(torch.from_numpy(image)[None, None], *w["conv1"], padding=1)
    x = torch.nn.functional.prelu(x, w["prelu1"][0].reshape(1))
    expected = torch.sigmoid(torch.nn.functional.conv2d(x, *w["conv2"], padding=1))[0, 0].numpy()
    np.testing.assert_allclose(forward(image), expected, atol=1e-6)
    (blob,) = net_to_proto(forward.net).layer[2].blobs
    assert not blob.HasField("shape") and list(blob.data) == [pytest.approx(-0.3)]


LOSSES_WITHOUT_TOPS = (input_layer((2, 1, 1, 2), "x") + input_layer((2, 1, 1, 2), "t") +
                       'layer { name: "l2" type: "EuclideanLoss" bottom: "x" bottom: "t" }\n'
                       'layer { name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "t" '
                       'loss_weight: 0.5 }\n')


def test_a_loss_layer_without_top_gets_caffes_anonymous_top_and_counts_in_the_loss():
    net = net_of(LOSSES_WITHOUT_TOPS)
    assert net.top_names[-2:] == [[ANONYMOUS_TOP], [ANONYMOUS_TOP]] == [["(automatic)"]] * 2
    assert net.loss_weights[-2:] == [[1.0], [0.5]]
    assert net.outputs == []                       # Caffe: an anonymous top is no net output
    assert ANONYMOUS_TOP not in net.blob_shapes    # ... nor a bottom for a later layer
    named = net_of(LOSSES_WITHOUT_TOPS.replace('"t" }', '"t" top: "l2" }').replace('"t" loss', '"t" top: "xe" loss'))
    feed = {"x": torch.tensor([0.5, -1.0, 2.0, 0.0]).reshape(2, 1, 1, 2),
            "t": torch.tensor([1.0, 0, 1, 1]).reshape(2, 1, 1, 2)}
    (_, loss), (blobs, expected) = net(feed), named(feed)
    assert loss.item() == expected.item() == pytest.approx(blobs["l2"].item() + 0.5 * blobs["xe"].item())
    # The .caffemodel carries the weight LossLayer::LayerSetUp gives an unweighted loss, and still no top.
    l2, xent = net_to_proto(net).layer[-2:]
    assert (list(l2.loss_weight), list(xent.loss_weight), list(l2.top), list(xent.top)) == ([1.0], [0.5], [], [])


def test_an_anonymous_top_is_no_bottom_for_a_later_layer():
    with pytest.raises(InputError, match=r"layer 's' \(Sigmoid\): bottom '\(automatic\)' is not a top of any"):
        net_of(LOSSES_WITHOUT_TOPS + 'layer { name: "s" type: "Sigmoid" bottom: "(automatic)" top: "s" }')


@pytest.mark.parametrize("layer, message", [
    ('layer { name: "s" type: "Sigmoid" bottom: "x" }', r"layer 's' \(Sigmoid\): 0 tops given, the layer produces 1"),
    ('layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "a" top: "b" }',
     r"layer 'l' \(EuclideanLoss\): 2 tops given, the layer produces 1"),
    ('layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "t" loss_weight: 1 loss_weight: 2 }',
     r"layer 'l' \(EuclideanLoss\): 2 loss_weight values for 1 tops"),
])
def test_a_layer_with_the_wrong_number_of_tops_is_refused(layer, message):
    # Layer::CheckBlobCounts and SetLossWeights: Caffe stops on these too.
    with pytest.raises(InputError, match=message):
        net_of(input_layer((2, 1, 1, 2), "x") + input_layer((2, 1, 1, 2), "t") + layer)


TWO_INPUTS = input_layer((2, 1, 1, 2), "x") + input_layer((2, 1, 1, 2), "t")


@pytest.mark.parametrize("layers, message", [
    ('layer { name: "a" type: "Sigmoid" bottom: "x" top: "y" }\n'
     'layer { name: "b" type: "Sigmoid" bottom: "t" top: "y" }', r"layer 'b' \(Sigmoid\): top 'y' is produced by an"),
    # In place, but on a blob another layer reads too: Caffe's Split renames b's bottom, so b is a second producer.
    ('layer { name: "a" type: "Sigmoid" bottom: "x" top: "y" }\n'
     'layer { name: "b" type: "Sigmoid" bottom: "x" top: "x" }', r"layer 'b' \(Sigmoid\): top 'x' is produced by an"),
    ('layer { name: "a" type: "Sigmoid" bottom: "x" top: "y" }\n'
     'layer { name: "b" type: "Sigmoid" bottom: "x" top: "x_x_0_split_0" }',
     r"layer 'b' \(Sigmoid\): top 'x_x_0_split_0' has the name of one of Caffe's automatic Split tops"),
    # A loss that another layer reads: Caffe splits it, and its loss and gradient are no longer ours.
    ('layer { name: "l" type: "EuclideanLoss" bottom: "x" bottom: "t" top: "l" }\n'
     'layer { name: "s" type: "Silence" bottom: "l" }', r"layer 's' \(Silence\): bottom 'l' is a top with a loss weight"),
    ('layer { name: "a" type: "Sigmoid" bottom: "x" top: "y" loss_weight: 1 }\n'
     'layer { name: "l" type: "EuclideanLoss" bottom: "y" bottom: "t" top: "l" }', r"layer 'l'.*bottom 'y' is a top with"),
])
def test_tops_caffes_net_init_refuses_or_splits_otherwise_are_refused(layers, message):
    with pytest.raises(InputError, match=message):
        net_of(TWO_INPUTS + layers)


def test_in_place_on_a_blob_read_by_no_other_layer_is_fine():
    net = net_of(TWO_INPUTS + 'layer { name: "b" type: "Sigmoid" bottom: "x" top: "x" }\n'
                              'layer { name: "a" type: "Sigmoid" bottom: "x" top: "y" }')
    assert net.outputs == ["t", "y"]


LEARNED_LABEL = (TWO_INPUTS + 'layer { name: "c" type: "Convolution" bottom: "t" top: "tc" '
                              'convolution_param { num_output: 1 kernel_size: 1 } }\n'
                              'layer { name: "xent" type: "SigmoidCrossEntropyLoss" bottom: "x" bottom: "tc" top: "l" }')


def test_a_label_that_needs_a_gradient_stops_the_first_pass_that_could_backpropagate():
    # Caffe's SigmoidCrossEntropyLoss Backward aborts where the net asks it for
    # the label's gradient (here: a learning convolution below it).
    net = net_of(LEARNED_LABEL, TRAIN)
    feed = {"x": torch.zeros(2, 1, 1, 2), "t": torch.ones(2, 1, 1, 2)}
    with torch.no_grad():
        net(feed)                       # a test pass: no backward, in Caffe neither
    with pytest.raises(InputError, match=r"tiny.prototxt: layer 'xent' \(SigmoidCrossEntropyLoss\): bottom 'tc' "
                                         r"needs a gradient"):
        net(feed)
    frozen = LEARNED_LABEL.replace('top: "tc" ', 'top: "tc" param { lr_mult: 0 } param { lr_mult: 0 } ')
    assert net_of(frozen, TRAIN).backward_refusal is None
    forced = frozen.replace('top: "l" }', 'top: "l" propagate_down: false propagate_down: true }')
    assert net_of("force_backward: true\n" + forced, TRAIN).backward_refusal is not None


SHARED_TOP = (input_layer((1, 1, 3, 3)) + 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                                          'convolution_param { num_output: 1 kernel_size: 1 } }\n'
              'layer { name: "a" type: "Sigmoid" bottom: "c" top: "a" }\n'
              'layer { name: "b" type: "Sigmoid" bottom: "c" top: "b" }\n')


def test_the_caffemodel_lists_caffes_split_layers_and_the_bottoms_they_feed():
    model = net_to_proto(net_of(SHARED_TOP))
    assert [(l.name, l.type, list(l.bottom), len(l.blobs)) for l in model.layer] == [
        ("data", "Input", [], 0), ("c", "Convolution", ["data"], 2),
        ("c_c_0_split", "Split", ["c"], 0), ("a", "Sigmoid", ["c_c_0_split_0"], 0),
        ("b", "Sigmoid", ["c_c_0_split_1"], 0)]
    assert model.layer[2].phase == TEST and list(model.layer[2].top) == ["c_c_0_split_0", "c_c_0_split_1"]


def test_a_split_layer_in_a_weights_file_loads_only_without_blobs(tmp_path):
    from plaquenet.engines.torch.net import copy_trained_layers

    net = net_of(SHARED_TOP)
    model = net_to_proto(net)
    copy_trained_layers(net, model, "m.caffemodel")     # Caffe's own file: Split layers without blobs
    model.layer[2].blobs.add().data.append(1.0)
    with pytest.raises(InputError, match=r"m.caffemodel: layer 'c_c_0_split': 1 blobs in the file, 0 in the net"):
        copy_trained_layers(net, model, "m.caffemodel")


@pytest.mark.parametrize("kernel, channels_last", [(5, False), (3, True)])
def test_load_deploy_keeps_caffes_layout_only_where_nnpack_convolves(train_workdir, kernel, channels_last):
    """At fp32 on the CPU NNPACK takes the paper's filters in Caffe's layout; a 3x3 filter goes to
    oneDNN (conv.py), which wants channels-last memory."""
    both = two_conv_deploy(8, 8, kernel_size=kernel).replace("kernel_size: 3 pad: 1", f"kernel_size: {kernel} "
                                                                                         f"pad: {kernel // 2}")
    (train_workdir / "nets/k.prototxt").write_text(both)   # both layers kernel x kernel
    net = Net(read_net(train_workdir / "nets/k.prototxt"), phase=TEST, source="k")
    write_caffemodel(train_workdir / "k.caffemodel", net_to_proto(net))
    forward = load_deploy(train_workdir / "nets/k.prototxt", train_workdir / "k.caffemodel")
    assert forward.net.memory_format == (torch.channels_last if channels_last else torch.contiguous_format)
    image = np.random.default_rng(0).random((8, 8), dtype=np.float32)
    assert np.allclose(forward(image), load_deploy(train_workdir / "nets/k.prototxt", train_workdir / "k.caffemodel",
                                                   channels_last=not channels_last)(image), atol=1e-6)
