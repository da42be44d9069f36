"""What real Caffe refuses, we refuse; what it accepts, we accept: prototxt
texts (protobuf's TextFormat::Parse and the solver checks) and the loading
of --weights (Net::CopyTrainedLayersFrom), each case run through `caffe
train` in the Caffe root and through `plaquenet train`, which must then exit
2 with one line naming the file (and the line, for a prototxt).

The net is tiny_nets' two-convolution net (conv1 4 @ 5x5, PReLU prelu1,
conv2 1 @ 3x3, Sigmoid, EuclideanLoss) on one HDF5 file of 8 rows of 12x12,
batches of 4. Weights are compared after 0 iterations (max_iter 0: the
snapshot Caffe and we write at once holds what was loaded), bit for bit."""

import re
import shlex
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import h5py
import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.snapshot import blob_proto, caffemodel_weights, read_caffemodel, write_caffemodel
from plaquenet.cli import main

BATCH, TILE, ROWS = 4, 12, 8
NET = tiny_nets.two_conv_train("list.txt", BATCH, channels=4, kernel_size=5)
SOLVER = ('net: "net.prototxt"\nbase_lr: 0.01\nmomentum: 0.9\nmax_iter: 2\ndisplay: 1\n'
          'snapshot_prefix: "snap/m"\nrandom_seed: 0\n')
FIXED = 'lr_policy: "fixed"\n'


def _write_folder(folder: Path, solver: str, net: str = NET) -> Path:
    """solver.prototxt, net.prototxt, list.txt over d0.h5 (ROWS rows), an empty snap/."""
    return tiny_nets.write_run_folder(folder, solver, net, ROWS, TILE)


def _caffe_train(caffe, folder: Path, *flags: str) -> Tuple[int, str]:
    """`caffe train --solver=solver.prototxt FLAGS` on a copy of `folder`: (exit status, its log)."""
    name = folder.name
    caffe.put(folder, name)
    status = caffe.run("train_status", name, "--solver=solver.prototxt", *(shlex.quote(f) for f in flags))
    return int(status.split()[-1]), (caffe.scratch / name / "caffe.log").read_text()


def _ours(folder: Path, monkeypatch, capsys, *flags: str) -> Tuple[int, str]:
    """`plaquenet train --solver solver.prototxt FLAGS` in `folder`: (exit status, stderr)."""
    monkeypatch.chdir(folder)
    capsys.readouterr()
    status = main(["train", "--solver", "solver.prototxt", *flags])
    return status, capsys.readouterr().err


# --- 1. prototxt -------------------------------------------------------------

# name: (solver text, text added to the net, what Caffe's log says). Each defect on a line of its own.
REFUSED = {
    "solver_number_twice": (SOLVER + FIXED + "base_lr: 0.02\n", "", 'Non-repeated field "base_lr"'),
    "solver_string_twice": (SOLVER + FIXED + 'lr_policy: "step"\n', "", 'Non-repeated field "lr_policy"'),
    "solver_message_twice": (SOLVER + FIXED + "train_state { level: 0 }\ntrain_state { level: 1 }\n", "",
                             'Non-repeated field "train_state"'),
    "solver_enum_twice": (SOLVER + FIXED + "solver_type: SGD\nsolver_type: NESTEROV\n", "",
                          'Non-repeated field "solver_type"'),
    "type_and_old_solver_type": (SOLVER + FIXED + 'type: "SGD"\nsolver_type: SGD\n', "",
                                 "Failed to upgrade solver: old solver_type field (enum) and new type field"),
    "test_iter_without_test_interval": (SOLVER + FIXED + "test_iter: 1\n", "",
                                        "Check failed: param_.test_interval() > 0"),
    "test_iter_with_test_interval_0": (SOLVER + FIXED + "test_iter: 1\ntest_interval: 0\n", "",
                                       "Check failed: param_.test_interval() > 0"),
    "test_net_without_test_iter": (SOLVER + FIXED + 'test_net: "net.prototxt"\ntest_interval: 1\n', "",
                                   "test_iter must be specified for each test network"),
    "net_name_twice": (SOLVER + FIXED, 'name: "again"\n', 'Non-repeated field "name"'),
    "layer_name_twice": (SOLVER + FIXED, 'layer { name: "x" name: "y" type: "Sigmoid" bottom: "conv2" top: "x" }\n',
                         'Non-repeated field "name"'),
    "layer_type_twice": (SOLVER + FIXED, 'layer { name: "x" type: "Sigmoid" type: "ReLU" bottom: "conv2" top: "x" }\n',
                         'Non-repeated field "type"'),
    "convolution_param_twice": (SOLVER + FIXED, 'layer { name: "x" type: "Convolution" bottom: "conv2" top: "x" '
                                'convolution_param { num_output: 1 } convolution_param { kernel_size: 1 } }\n',
                                'Non-repeated field "convolution_param"'),
    "num_output_twice": (SOLVER + FIXED, 'layer { name: "x" type: "Convolution" bottom: "conv2" top: "x" '
                         'convolution_param { num_output: 1 num_output: 2 kernel_size: 1 } }\n',
                         'Non-repeated field "num_output"'),
    "weight_filler_twice": (SOLVER + FIXED, 'layer { name: "x" type: "Convolution" bottom: "conv2" top: "x" '
                            'convolution_param { num_output: 1 kernel_size: 1 weight_filler { type: "msra" } '
                            'weight_filler { type: "xavier" } } }\n', 'Non-repeated field "weight_filler"'),
    "rule_phase_twice": (SOLVER + FIXED, 'layer { name: "x" type: "Sigmoid" bottom: "conv2" top: "x" '
                         'include { phase: TRAIN phase: TEST } }\n', 'Non-repeated field "phase"'),
}

# name: (solver text, text added to the net)
ACCEPTED = {
    "as_is": (SOLVER + FIXED, ""),
    "stepvalue_repeated_and_as_a_list": (SOLVER + 'lr_policy: "multistep"\ngamma: 0.5\nstepvalue: 1\n'
                                         'stepvalue: [2, 3]\n', ""),
    "old_solver_type_alone": (SOLVER + FIXED + "solver_type: NESTEROV\n", ""),
    "two_test_nets": (SOLVER + FIXED + "test_iter: 1\ntest_iter: 2\ntest_interval: 1\n", ""),
    "test_interval_alone": (SOLVER + FIXED + "test_interval: 1\n", ""),
    "repeated_param_and_rules": (SOLVER + FIXED, 'layer { name: "x" type: "Convolution" bottom: "conv2" top: "x" '
                                 'param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 } '
                                 'include { phase: TRAIN } include { phase: TEST } '
                                 'convolution_param { num_output: 1 kernel_size: 1 '
                                 'weight_filler { type: "constant" value: 0.5 } } }\n'),
    "bottom_as_a_list": (SOLVER + FIXED, 'layer { name: "quiet" type: "Silence" bottom: ["conv2"] }\n'),
}


# The refusals that are not parse errors: the field whose line our error names.
FIELD_NAMED = {"type_and_old_solver_type": "solver_type", "test_iter_without_test_interval": "test_iter",
               "test_iter_with_test_interval_0": "test_iter"}


def _line_of(text: str, field: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if line.startswith(field))


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_prototxt_caffe_refuses_is_refused(case, caffe, tmp_path, monkeypatch, capsys):
    solver, net_extra, caffe_says = REFUSED[case]
    folder = _write_folder(tmp_path / case, solver, NET + net_extra)
    status, log = _caffe_train(caffe, folder)
    assert status != 0 and caffe_says in log, log[-2000:]

    status, err = _ours(folder, monkeypatch, capsys)
    assert status == 2 and len(err.strip().splitlines()) == 1, err
    file = "net.prototxt" if net_extra else "solver.prototxt"
    assert f"error: {file}:" in err, err
    parse_error = re.search(r"Error parsing text-format caffe\.\w+: (\d+):", log)
    if parse_error:   # the line Caffe names, in Caffe's words
        assert f"{file}:{parse_error.group(1)}:" in err and caffe_says in err, (err, parse_error.group())
    elif case in FIELD_NAMED:
        assert f"{file}:{_line_of(solver, FIELD_NAMED[case])}: " in err, err


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_prototxt_caffe_accepts_is_accepted(case, caffe, tmp_path, monkeypatch, capsys):
    solver, net_extra = ACCEPTED[case]
    folder = _write_folder(tmp_path / case, solver, NET + net_extra)
    status, log = _caffe_train(caffe, folder)
    assert status == 0, log[-2000:]
    status, err = _ours(folder, monkeypatch, capsys)
    assert status == 0, err
    if case == "old_solver_type_alone":   # upgraded to type "Nesterov" by both
        assert 'type: "Nesterov"' in log and 'type: "Nesterov"' in (folder / "snap/train.log").read_text()


# --- 2. --weights ------------------------------------------------------------

ZERO_ITERATIONS = SOLVER.replace("max_iter: 2", "max_iter: 0") + FIXED
# A layer that only the TEST net has, with weights: a 1x1 convolution of prob, and its own loss.
PROBE = ('layer { name: "probe" type: "Convolution" bottom: "prob" top: "probe" include { phase: TEST } '
         'convolution_param { num_output: 1 kernel_size: 1 } }\n'
         'layer { name: "probe_loss" type: "EuclideanLoss" bottom: "probe" bottom: "label" top: "probe_loss" '
         'include { phase: TEST } }\n')
Layers = Sequence[Tuple[str, Sequence["caffe_pb2.BlobProto"]]]


A, B = tiny_nets.random_two_conv_weights(1), tiny_nets.random_two_conv_weights(2)


def _blobs(arrays: Sequence[np.ndarray]) -> List["caffe_pb2.BlobProto"]:
    return [blob_proto(a) for a in arrays]


def _legacy(array: np.ndarray) -> "caffe_pb2.BlobProto":
    """A blob in Caffe's old num/channels/height/width form (leading 1s)."""
    num, channels, height, width = (1,) * (4 - array.ndim) + array.shape
    blob = caffe_pb2.BlobProto(num=num, channels=channels, height=height, width=width)
    blob.data.extend(array.ravel().tolist())
    return blob


def _all(arrays: Dict[str, List[np.ndarray]]) -> Layers:
    return [(name, _blobs(v)) for name, v in arrays.items()]


def _write_caffemodel(path: Path, layers: Layers) -> None:
    net = caffe_pb2.NetParameter()
    for name, blobs in layers:
        net.layer.add(name=name).blobs.extend(blobs)
    write_caffemodel(path, net)


def _weights_folder(folder: Path, files: Dict[str, Layers], solver: str = ZERO_ITERATIONS,
                    net: str = NET) -> Path:
    _write_folder(folder, solver, net)
    for name, layers in files.items():
        _write_caffemodel(folder / name, layers)
    return folder


BAD_BIAS = blob_proto(np.zeros(4, np.float32))
del BAD_BIAS.data[3:]   # shape (4,), 3 values

# name: (files, --weights, the weights after 0 iterations)
LOADED = {
    "duplicate_layer_name_last_wins": ({"w.caffemodel": _all(A) + [("conv1", _blobs(B["conv1"]))]},
                                       "w.caffemodel", dict(A, conv1=B["conv1"])),
    "weights_list_copied_in_turn": ({"a.caffemodel": _all(A), "b.caffemodel": [("conv2", _blobs(B["conv2"]))]},
                                    "a.caffemodel, b.caffemodel", dict(A, conv2=B["conv2"])),
    "legacy_4d_blobs": ({"w.caffemodel": [(name, [_legacy(a) for a in v]) for name, v in A.items()]},
                        "w.caffemodel", A),
    "layers_the_net_lacks_ignored": ({"w.caffemodel": _all(A) + [("fc9", _blobs([np.ones((3, 3), np.float32)])),
                                                                 ("loss", [])]},
                                     "w.caffemodel", A),
}

# name: (files, --weights, what Caffe's log says, what our line says)
REFUSED_WEIGHTS = {
    "fewer_blobs": ({"w.caffemodel": [("conv1", _blobs(A["conv1"][:1]))]}, "w.caffemodel",
                    "Incompatible number of blobs for layer conv1", "layer 'conv1': 1 blobs in the file, 2 in the net"),
    "no_blobs_for_a_layer_with_blobs": ({"w.caffemodel": _all(A) + [("prelu1", [])]}, "w.caffemodel",
                                        "Incompatible number of blobs for layer prelu1",
                                        "layer 'prelu1': 0 blobs in the file, 1 in the net"),
    "blobs_for_a_layer_without_blobs": ({"w.caffemodel": _all(A) + [("prob", _blobs([np.ones(1, np.float32)]))]},
                                        "w.caffemodel", "Incompatible number of blobs for layer prob",
                                        "layer 'prob': 1 blobs in the file, 0 in the net"),
    "shape": ({"w.caffemodel": [("conv1", _blobs([np.ones((4, 1, 3, 3), np.float32), A["conv1"][1]]))]},
              "w.caffemodel", "Cannot copy param 0 weights from layer 'conv1'; shape mismatch", "layer 'conv1' blob 0"),
    "legacy_shape": ({"w.caffemodel": [("prelu1", [_legacy(A["prelu1"][0].reshape(4, 1))])]}, "w.caffemodel",
                     "Cannot copy param 0 weights from layer 'prelu1'; shape mismatch", "layer 'prelu1' blob 0"),
    "value_count": ({"w.caffemodel": [("conv1", [blob_proto(A["conv1"][0]), BAD_BIAS])]}, "w.caffemodel",
                    "Check failed: count_ == proto.data_size()", "layer 'conv1': "),
    "first_of_two_copies_bad": ({"w.caffemodel": [("conv1", _blobs(A["conv1"][:1]))] + _all(A)}, "w.caffemodel",
                                "Incompatible number of blobs for layer conv1", "layer 'conv1'"),
    "second_file_bad": ({"a.caffemodel": _all(A), "b.caffemodel": [("conv2", _blobs(A["conv1"]))]},
                        "a.caffemodel,b.caffemodel", "Cannot copy param 0 weights from layer 'conv2'",
                        "b.caffemodel: layer 'conv2' blob 0"),
    "empty_name_in_list": ({"a.caffemodel": _all(A)}, "a.caffemodel,", "Check failed", "empty file name"),
    "missing_file": ({}, "nope.caffemodel", "nope.caffemodel", "nope.caffemodel: cannot read"),
}


def _snapshot_weights(path: Path) -> Dict[str, List[np.ndarray]]:
    return caffemodel_weights(read_caffemodel(path))


def _assert_same(ours: Dict[str, List[np.ndarray]], expected: Dict[str, List[np.ndarray]]) -> None:
    assert ours.keys() == expected.keys()
    for name in expected:
        assert len(ours[name]) == len(expected[name]), name
        for a, b in zip(ours[name], expected[name]):
            np.testing.assert_array_equal(a.ravel(), b.ravel(), err_msg=name)


@pytest.mark.parametrize("case", sorted(LOADED))
def test_weights_load_as_caffe_loads_them(case, caffe, tmp_path, monkeypatch, capsys):
    files, weights, expected = LOADED[case]
    folder = _weights_folder(tmp_path / case, files)
    status, log = _caffe_train(caffe, folder, f"--weights={weights}")
    assert status == 0, log[-2000:]
    _assert_same(_snapshot_weights(caffe.scratch / case / "snap/m_iter_0.caffemodel"), expected)

    status, err = _ours(folder, monkeypatch, capsys, "--weights", weights)
    assert status == 0, err
    _assert_same(_snapshot_weights(folder / "snap/m_iter_0.caffemodel"), expected)


@pytest.mark.parametrize("case", sorted(REFUSED_WEIGHTS))
def test_weights_caffe_refuses_are_refused(case, caffe, tmp_path, monkeypatch, capsys):
    files, weights, caffe_says, we_say = REFUSED_WEIGHTS[case]
    folder = _weights_folder(tmp_path / case, files)
    status, log = _caffe_train(caffe, folder, f"--weights={weights}")
    assert status != 0 and caffe_says in log, log[-2000:]

    status, err = _ours(folder, monkeypatch, capsys, "--weights", weights)
    assert status == 2 and len(err.strip().splitlines()) == 1 and we_say in err, err


def _test_outputs(log: str) -> Dict[str, float]:
    """The last value of each `Test net output #k: NAME = VALUE` line."""
    return {name: float(value) for name, value in re.findall(r"Test net output #\d+: (\w+) = (\S+)", log)}


def test_a_layer_only_the_test_net_has_gets_the_weights(caffe, tmp_path, monkeypatch, capsys):
    """`probe`, only in the TEST net, is loaded from --weights (Caffe loads
    them into every test net; the train net ignores the layer): the test
    outputs at iteration 0 agree, and differ from probe's filler (zeros)."""
    probe = [np.full((1, 1, 1, 1), 3.0, np.float32), np.full(1, -1.0, np.float32)]
    files = {"w.caffemodel": _all(A) + [("probe", _blobs(probe))]}
    folder = _weights_folder(tmp_path / "probe", files, ZERO_ITERATIONS + "test_iter: 1\ntest_interval: 1\n",
                             NET + PROBE)
    status, log = _caffe_train(caffe, folder, "--weights=w.caffemodel")
    assert status == 0, log[-2000:]
    theirs = _test_outputs(log)
    assert "Ignoring source layer probe" in log and theirs.keys() == {"loss", "probe_loss"}

    status, err = _ours(folder, monkeypatch, capsys, "--weights", "w.caffemodel")
    assert status == 0, err
    ours = _test_outputs((folder / "snap/train.log").read_text())
    assert ours.keys() == theirs.keys()
    for name in theirs:   # the log prints 6 significant digits
        assert ours[name] == pytest.approx(theirs[name], rel=2e-5), (name, ours, theirs)
    with h5py.File(folder / "d0.h5") as f:
        label = f["label"][:BATCH]
    zero_probe_loss = float((label ** 2).sum()) / (2 * BATCH)
    assert abs(theirs["probe_loss"] - zero_probe_loss) > 0.1 * zero_probe_loss, (theirs, zero_probe_loss)


def test_a_test_net_layer_that_does_not_fit_the_weights_is_refused(caffe, tmp_path, monkeypatch, capsys):
    files = {"w.caffemodel": _all(A) + [("probe", _blobs([np.ones((1, 1, 3, 3), np.float32),
                                                           np.ones(1, np.float32)]))]}
    folder = _weights_folder(tmp_path / "bad_probe", files, ZERO_ITERATIONS + "test_iter: 1\ntest_interval: 1\n",
                             NET + PROBE)
    status, log = _caffe_train(caffe, folder, "--weights=w.caffemodel")
    assert status != 0 and "Cannot copy param 0 weights from layer 'probe'; shape mismatch" in log, log[-2000:]
    status, err = _ours(folder, monkeypatch, capsys, "--weights", "w.caffemodel")
    assert status == 2 and "w.caffemodel: layer 'probe' blob 0" in err, err
