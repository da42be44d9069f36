""".caffemodel and .solverstate files, read and written without Caffe."""

import numpy as np
import pytest

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.snapshot import (blob_array, blob_proto, blob_shape, caffemodel_weights, read_caffemodel,
                                      read_solverstate, weights_net, write_caffemodel, write_solverstate)
from plaquenet.errors import InputError


def test_caffemodel_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    weights = {"conv1": [rng.normal(size=(2, 1, 3, 3)).astype(np.float32), np.array([0.5, -1], np.float32)],
               "prelu1": [np.full((2,), 0.25, np.float32)],
               "shared": [np.array(0.25, np.float32)]}      # a 0-axis blob (PReLU channel_shared)
    path = tmp_path / "x_iter_3.caffemodel"
    write_caffemodel(path, weights_net(weights, {"conv1": "Convolution"}, name="tiny"))
    net = read_caffemodel(path)
    assert net.name == "tiny" and net.layer[0].type == "Convolution"
    assert list(net.layer[0].blobs[0].shape.dim) == [2, 1, 3, 3]
    back = caffemodel_weights(net)
    assert back.keys() == weights.keys()
    for name in weights:
        for a, b in zip(weights[name], back[name]):
            assert a.shape == b.shape and b.dtype == np.float32
            np.testing.assert_array_equal(a, b)
    assert not list(tmp_path.glob(".*partial"))


def test_a_zero_axis_blob_is_written_as_caffe_writes_it():
    # PReLU's channel_shared slope is a 0-axis blob: Blob::ToProto writes its
    # one value and no `shape` field (not an empty `shape {}`). These bytes are
    # real Caffe's, for a slope of 0.3 (pycaffe's net.save, bullseye 1.0.0).
    caffes = b"*\x04\x9a\x99\x99>"
    blob = blob_proto(np.array(0.3, np.float32))
    assert not blob.HasField("shape") and blob.SerializeToString() == caffes
    back = blob_array(caffe_pb2.BlobProto.FromString(caffes))
    assert back.shape == () and back.dtype == np.float32 and back == np.float32(0.3)
    assert blob_shape(caffe_pb2.BlobProto.FromString(caffes)) == ()


def test_a_one_element_1d_blob_keeps_its_axis():
    blob = blob_proto(np.array([0.3], np.float32))
    assert list(blob.shape.dim) == [1] and blob_array(blob).shape == (1,)


def test_legacy_4d_blob_shape():
    blob = caffe_pb2.BlobProto(num=1, channels=1, height=2, width=3, data=[0, 1, 2, 3, 4, 5])
    assert blob_array(blob).shape == (1, 1, 2, 3)


def test_solverstate_round_trip(tmp_path):
    history = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1.5], np.float32),
               np.array(-0.5, np.float32)]   # a shared PReLU slope's momentum: 0 axes
    path = tmp_path / "x_iter_7.solverstate"
    write_solverstate(path, 7, "runs/x/x_iter_7.caffemodel", history, current_step=2)
    state = read_solverstate(path)
    assert (state.iter, state.learned_net, state.current_step) == (7, "runs/x/x_iter_7.caffemodel", 2)
    assert len(state.history) == 3
    for a, b in zip(history, state.history):
        assert blob_array(b).shape == a.shape
        np.testing.assert_array_equal(a, blob_array(b))


def test_corrupt_or_empty_files_are_input_errors(tmp_path):
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(b"\xff\xff\xff\xff not a protobuf")
    with pytest.raises(InputError, match="corrupt or truncated"):
        read_caffemodel(bad)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="no layers"):
        read_caffemodel(empty)
    good = tmp_path / "good.caffemodel"
    write_caffemodel(good, weights_net({"c": [np.ones((4, 4), np.float32)]}))
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(good.read_bytes()[:-7])
    with pytest.raises(InputError):
        read_caffemodel(truncated)
    with pytest.raises(InputError, match="cannot read"):
        read_solverstate(tmp_path / "missing.solverstate")


def test_an_empty_caffemodel_is_accepted_only_where_caffe_copies_from_it(tmp_path):
    # `caffe train --weights=empty.caffemodel` copies nothing and trains on (the oracle, 99bd997);
    # a deploy net needs every layer's weights, so score and segment keep refusing it.
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    assert len(read_caffemodel(empty, empty_ok=True).layer) == 0
    with pytest.raises(InputError, match="no layers"):
        read_caffemodel(empty)
    v1 = tmp_path / "v1.caffemodel"
    v1.write_bytes(b"\x12\x03\x0a\x01a")   # field 2 (V1 `layers`) { name: "a" }
    with pytest.raises(InputError, match="V1 format"):
        read_caffemodel(v1, empty_ok=True)


def test_the_torch_deploy_net_refuses_an_empty_caffemodel(tmp_path):
    import tiny_nets
    from plaquenet.engines.torch.net import load_deploy

    deploy = tmp_path / "deploy.prototxt"
    deploy.write_text(tiny_nets.two_conv_deploy(4, 4))
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.caffemodel: holds no layers"):
        load_deploy(deploy, empty)
