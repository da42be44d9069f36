"""prototxt text io, and the project's four prototxt files."""

from pathlib import Path

import pytest

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import field_line, parse_prototxt, read_net, read_solver, write_prototxt
from plaquenet.errors import InputError

ROOT = Path(__file__).resolve().parents[3]
PROTOTXT = ROOT / "prototxt"


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


# --- what Caffe's parser refuses and accepts -----------------------------------
# Caffe reads prototxt with protobuf's TextFormat::Parse (src/caffe/util/io.cpp),
# not Merge: a field that is not repeated may be given once.

@pytest.mark.parametrize("text, line, field", [
    ('base_lr: 0.1\nlr_policy: "fixed"\nbase_lr: 0.2\n', 3, "base_lr"),
    ('train_state { level: 1 }\n\ntrain_state { level: 2 }\n', 3, "train_state"),
    ('net_param {\n  layer { name: "a"\n          name: "b" } }\n', 3, "name"),
])
def test_a_field_given_twice_is_refused_at_its_line(tmp_path, text, line, field):
    path = tmp_path / "solver.prototxt"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        read_solver(path)
    assert str(e.value).startswith(f"{path}:{line}:")
    assert f'Non-repeated field "{field}" is specified multiple times' in str(e.value)


def test_repeated_fields_may_be_given_many_times():
    param = parse_prototxt('test_iter: 1 test_iter: 2 stepvalue: 10 stepvalue: [20, 30]\n'
                           'test_state { stage: "a" stage: "b" } test_state { }', caffe_pb2.SolverParameter())
    assert list(param.test_iter) == [1, 2] and list(param.stepvalue) == [10, 20, 30]
    assert list(param.test_state[0].stage) == ["a", "b"] and len(param.test_state) == 2


def test_old_solver_type_is_upgraded_to_type(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text("base_lr: 0.1\nsolver_type: ADAGRAD\n")
    param = read_solver(path)
    assert param.type == "AdaGrad" and not param.HasField("solver_type")


def test_old_solver_type_and_type_together_are_refused_at_the_old_one(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text('# solver_type: SGD\ntype: "SGD"\nnet_param { layer { type: "Input" } }\nsolver_type: SGD\n')
    with pytest.raises(InputError, match="not both") as e:
        read_solver(path)
    assert str(e.value).startswith(f"{path}:4: ")


def test_field_line_skips_comments_strings_and_nested_fields():
    text = '# test_iter: 1\nnet: "test_iter"\nnet_param { test_iter: 3 }\ntest_interval: 2\ntest_iter: 4\n'
    assert field_line(text, "test_iter") == 5
    assert field_line(text, "max_iter") is None
