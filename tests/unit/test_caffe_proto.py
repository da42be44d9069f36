"""caffe.proto subset, its generated module, prototxt text io, and the
project's four prototxt files."""

import shutil
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from plaquenet.caffe import caffe_pb2, regenerate
from plaquenet.caffe.prototxt import parse_prototxt, read_net, read_solver, write_prototxt
from plaquenet.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
PROTOTXT = ROOT / "prototxt"


# --- the generated module is not stale --------------------------------------

def test_caffe_pb2_matches_the_recorded_stamp():
    # Honest without protoc: `make proto` recorded both hashes when it generated
    # caffe_pb2.py; editing caffe.proto (or the module) without it fails here.
    stamp = regenerate.read_stamp()
    assert regenerate.sha256(regenerate.PROTO.read_bytes()) == stamp["caffe.proto"], \
        "caffe.proto changed since caffe_pb2.py was generated: run `make proto`"
    assert regenerate.sha256(regenerate.embedded_descriptor(regenerate.PB2)) == stamp["descriptor"], \
        "caffe_pb2.py is not what `make proto` generated: run `make proto`"


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed")
def test_caffe_pb2_is_what_protoc_generates_now(tmp_path):
    fresh = regenerate.generate(tmp_path)
    def parsed(pb2):
        return descriptor_pb2.FileDescriptorProto.FromString(regenerate.embedded_descriptor(pb2))
    assert parsed(fresh) == parsed(regenerate.PB2)


def test_module_has_caffe_field_numbers():
    # A few numbers that real .caffemodel files depend on (BVLC caffe.proto, tag 1.0).
    numbers = {
        (caffe_pb2.NetParameter, "layer"): 100,
        (caffe_pb2.LayerParameter, "blobs"): 7,
        (caffe_pb2.LayerParameter, "convolution_param"): 106,
        (caffe_pb2.LayerParameter, "prelu_param"): 131,
        (caffe_pb2.BlobProto, "shape"): 7,
        (caffe_pb2.BlobProto, "data"): 5,
        (caffe_pb2.SolverState, "history"): 3,
        (caffe_pb2.SolverParameter, "momentum2"): 39,
        (caffe_pb2.Datum, "float_data"): 6,
    }
    for (message, field), number in numbers.items():
        assert message.DESCRIPTOR.fields_by_name[field].number == number


# --- prototxt text io -------------------------------------------------------

NET_TEXT = """
name: "tiny"
layer { name: "data" type: "Input" top: "data"
        input_param { shape { dim: 1 dim: 1 dim: 4 dim: 5 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 2 kernel_size: 3 pad: 1
                            weight_filler { type: "xavier" variance_norm: AVERAGE } } }
"""


def test_prototxt_round_trip(tmp_path):
    net = parse_prototxt(NET_TEXT, caffe_pb2.NetParameter())
    write_prototxt(tmp_path / "net.prototxt", net)
    again = read_net(tmp_path / "net.prototxt")
    assert again == net
    assert again.layer[1].param[1].lr_mult == 2
    assert again.layer[1].convolution_param.weight_filler.variance_norm == caffe_pb2.FillerParameter.AVERAGE
    assert list(again.layer[0].input_param.shape[0].dim) == [1, 1, 4, 5]


def test_syntax_error_names_file_line_and_column(tmp_path):
    path = tmp_path / "bad.prototxt"
    path.write_text('name: "x"\nlayer {\n  nmae: "conv"\n}\n')
    with pytest.raises(InputError) as e:
        read_net(path)
    assert str(e.value).startswith(f"{path}:3:3: ")
    assert "nmae" in str(e.value)


def test_missing_prototxt_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        read_solver(tmp_path / "nope.prototxt")


# --- the project's prototxt files ------------------------------------------

def _convolutions(net):
    return [(l.name, l.convolution_param.num_output, l.convolution_param.kernel_size[0],
             l.convolution_param.pad[0]) for l in net.layer if l.type == "Convolution"]


def test_paper_prototxt_files():
    train = read_net(PROTOTXT / "plaquenet_train.prototxt")
    deploy = read_net(PROTOTXT / "plaquenet_deploy.prototxt")
    # §4.2: 20@5x5 pad 2, 20@7x7 pad 3, 40@9x9 pad 4, 60@7x7 pad 3, 20@5x5 pad 2, 1@5x5 pad 2
    sizes = [(n, k, p) for _, n, k, p in _convolutions(train)]
    assert sizes == [(20, 5, 2), (20, 7, 3), (40, 9, 4), (60, 7, 3), (20, 5, 2), (1, 5, 2)]
    assert _convolutions(deploy) == _convolutions(train)
    types = [l.type for l in train.layer]
    assert types == ["HDF5Data"] + ["Convolution", "PReLU"] * 5 + ["Convolution", "Sigmoid", "EuclideanLoss"]
    assert train.layer[0].hdf5_data_param.batch_size == 100
    assert train.layer[0].hdf5_data_param.source == "data/current/tiles/train.txt"
    assert all(l.convolution_param.weight_filler.type == "msra" for l in train.layer if l.type == "Convolution")
    assert [l.type for l in deploy.layer][-1] == "Sigmoid" and deploy.layer[-1].top == ["prob"]
    assert list(deploy.layer[0].input_param.shape[0].dim) == [1, 1, 448, 512]

    paper = read_solver(PROTOTXT / "solver.prototxt")
    assert (paper.net, paper.type, paper.lr_policy) == ("prototxt/plaquenet_train.prototxt", "SGD", "fixed")
    assert paper.base_lr == pytest.approx(1e-5) and paper.momentum == pytest.approx(0.9)
    assert paper.snapshot_prefix == "runs/paper/plaquenet" and paper.solver_mode == paper.CPU
    demo = read_solver(PROTOTXT / "solver_demo.prototxt")
    assert demo.net == paper.net and demo.snapshot_prefix == "runs/demo/plaquenet"
    assert 0 < demo.max_iter < paper.max_iter

