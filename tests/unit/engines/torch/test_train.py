"""train() like `caffe train` on a tiny net (tests/conftest.py's `train_workdir`): snapshots,
log, resume, a test net."""

import numpy as np
import pytest
import torch

import tiny_nets
from plaquenet.caffe.snapshot import (blob_proto, caffemodel_weights, read_caffemodel, read_solverstate,
                                      weights_net, write_caffemodel)
from plaquenet.engines.torch.train import train
from plaquenet.errors import InputError


def test_train_writes_caffe_snapshots_and_log(train_workdir):
    result = train("solver.prototxt")
    run = train_workdir / "runs/tiny"
    assert result.run_dir == run.relative_to(train_workdir) and result.iterations == 4
    assert str(result.last_snapshot) == "runs/tiny/tiny_iter_4.caffemodel"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["solver.prototxt", "tiny_deploy.prototxt", "tiny_iter_2.caffemodel",
                     "tiny_iter_2.data_position.json", "tiny_iter_2.solverstate",   # HDF5Data's position: ours
                     "tiny_iter_4.caffemodel", "tiny_iter_4.data_position.json", "tiny_iter_4.solverstate",
                     "tiny_train.prototxt", "train.csv", "train.log"]
    state = read_solverstate(run / "tiny_iter_4.solverstate")
    assert (state.iter, state.learned_net, state.current_step) == (4, "runs/tiny/tiny_iter_4.caffemodel", 1)
    weights = caffemodel_weights(read_caffemodel(run / "tiny_iter_4.caffemodel"))
    assert {k: [w.shape for w in v] for k, v in weights.items()} == {
        "conv1": [(3, 1, 3, 3), (3,)], "prelu1": [(3,)], "conv2": [(1, 3, 3, 3), (1,)]}
    assert len(state.history) == 5

    log = (run / "train.log").read_text()
    for expected in ["] Solving tiny", "] Learning Rate Policy: step", "] Iteration 0, lr = 0.5",
                     "] Iteration 3, lr = 0.25", "]     Train net output #0: loss = ",
                     "] Snapshotting to binary proto file runs/tiny/tiny_iter_2.caffemodel",
                     "] Snapshotting solver state to binary proto file runs/tiny/tiny_iter_4.solverstate",
                     "] Iteration 4, loss = ", "] Optimization Done."]:
        assert expected in log, expected
    rows = (run / "train.csv").read_text().splitlines()
    assert rows[0] == "iter,loss,smoothed_loss,lr,seconds" and [r.split(",")[0] for r in rows[1:]] == list("0123")
    assert float(rows[-1].split(",")[3]) == 0.25


def test_resume_is_bit_identical(train_workdir):
    train("solver.prototxt")
    run = train_workdir / "runs/tiny"
    uninterrupted = {s: (run / f"tiny_iter_4.{s}").read_bytes() for s in ("caffemodel", "solverstate")}
    (run / "tiny_iter_4.caffemodel").unlink()
    result = train("solver.prototxt", snapshot="runs/tiny/tiny_iter_2.solverstate")
    assert result.iterations == 4
    for suffix, content in uninterrupted.items():
        assert (run / f"tiny_iter_4.{suffix}").read_bytes() == content, suffix
    log = (run / "train.log").read_text()
    # What `caffe train --snapshot` prints on resume; never Solve()'s "Restoring previous solver status".
    resumed = log[log.index("caffe.cpp:235] Resuming from runs/tiny/tiny_iter_2.solverstate"):]
    assert resumed.index("sgd_solver.cpp:336] SGDSolver: restoring history") < resumed.index("Starting Optimization")
    assert "Restoring previous solver status" not in log
    assert log.count("] Solving tiny") == 2          # the resumed run appends


def test_test_net_shares_the_train_weights(train_workdir):
    net, solver = train_workdir / "nets/tiny_train.prototxt", train_workdir / "solver.prototxt"
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 4, phase="TEST") + net.read_text())
    solver.write_text(solver.read_text() + "test_iter: 1\ntest_interval: 2\n")
    train("solver.prototxt")
    log = (train_workdir / "runs/tiny/train.log").read_text()
    assert log.count("] Iteration 0, Testing net (#0)") == 1 and "] Iteration 4, Testing net (#0)" in log
    losses = [float(l.rsplit("loss = ", 1)[1].split()[0]) for l in log.splitlines() if "Test net output #0: loss" in l]
    assert len(losses) == 3 and losses[-1] < losses[0]        # the test net sees the trained weights


def test_weights_and_snapshot_are_exclusive_and_bad_solvers_refused(train_workdir):
    with pytest.raises(InputError, match="not both"):
        train("solver.prototxt", weights="a.caffemodel", snapshot="b.solverstate")
    solver = (train_workdir / "solver.prototxt").read_text()
    (train_workdir / "bad.prototxt").write_text(solver.replace('lr_policy: "step"', 'lr_policy: "cosine"'))
    with pytest.raises(InputError, match="unknown lr_policy 'cosine'"):
        train("bad.prototxt")
    (train_workdir / "rms.prototxt").write_text(solver + 'type: "RMSProp"\n')
    with pytest.raises(InputError, match="solver type 'RMSProp' is not supported"):
        train("rms.prototxt")


def test_test_iter_without_test_interval_is_refused_at_its_line(train_workdir):
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text() + "test_iter: 1\n")
    lines = len(solver.read_text().splitlines())
    with pytest.raises(InputError, match="test_interval must be > 0") as e:
        train("solver.prototxt")
    assert str(e.value).startswith(f"solver.prototxt:{lines}: ")


# --- --weights, as Caffe's LoadNetWeights and Net::CopyTrainedLayersFrom ------

def _weights(value):
    """Every blob of the tiny net (3 channels) filled with `value`."""
    shapes = {"conv1": [(3, 1, 3, 3), (3,)], "prelu1": [(3,)], "conv2": [(1, 3, 3, 3), (1,)]}
    return {k: [np.full(s, value, np.float32) for s in v] for k, v in shapes.items()}


def _loaded(train_workdir, weights):
    """The weights of the iteration-0 snapshot of a run with max_iter 0 from `weights`."""
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 0").replace("snapshot: 2", "snapshot: 0"))
    train("solver.prototxt", weights=weights)
    return caffemodel_weights(read_caffemodel(train_workdir / "runs/tiny/tiny_iter_0.caffemodel"))


def test_a_layer_given_twice_in_a_caffemodel_takes_the_later_copy(train_workdir):
    model = weights_net(_weights(1.0), tiny_nets.LAYER_TYPES)
    model.layer.add(name="conv1").blobs.extend(blob_proto(a) for a in _weights(2.0)["conv1"])
    write_caffemodel(train_workdir / "w.caffemodel", model)
    loaded = _loaded(train_workdir, "w.caffemodel")
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 2.0, "prelu1": 1.0, "conv2": 1.0}


def test_a_weights_list_is_copied_in_turn(train_workdir):
    write_caffemodel(train_workdir / "a.caffemodel", tiny_nets.tiny_weights(_weights(1.0)))
    write_caffemodel(train_workdir / "b.caffemodel", tiny_nets.tiny_weights({"prelu1": _weights(3.0)["prelu1"]}))
    loaded = _loaded(train_workdir, "a.caffemodel , b.caffemodel")   # names are trimmed, as in Caffe
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 1.0, "prelu1": 3.0, "conv2": 1.0}


@pytest.mark.parametrize("weights, message", [("a.caffemodel,", "empty file name"),
                                              ("a.caffemodel,nope.caffemodel", "nope.caffemodel: cannot read")])
def test_a_bad_name_in_the_weights_list_is_refused(train_workdir, weights, message):
    write_caffemodel(train_workdir / "a.caffemodel", tiny_nets.tiny_weights(_weights(1.0)))
    with pytest.raises(InputError, match=message):
        train("solver.prototxt", weights=weights)


def test_a_caffemodel_layer_without_blobs_for_a_layer_with_blobs_is_refused(train_workdir):
    model = tiny_nets.tiny_weights(_weights(1.0))
    model.layer.add(name="prelu1")   # Caffe: CHECK_EQ(1, 0) "Incompatible number of blobs"
    write_caffemodel(train_workdir / "w.caffemodel", model)
    with pytest.raises(InputError, match="w.caffemodel: layer 'prelu1': 0 blobs in the file, 1 in the net"):
        train("solver.prototxt", weights="w.caffemodel")


def test_a_layer_only_the_test_net_has_gets_the_weights(train_workdir):
    net, solver = train_workdir / "nets/tiny_train.prototxt", train_workdir / "solver.prototxt"
    probe = ('layer { name: "probe" type: "Convolution" bottom: "prob" top: "probe" include { phase: TEST } '
             'convolution_param { num_output: 1 kernel_size: 1 } }\n')
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 2, phase="TEST") + net.read_text() + probe)
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 0") + "test_iter: 1\ntest_interval: 1\n")
    weights = dict(_weights(0.5), probe=[np.full((1, 1, 1, 1), 2.0, np.float32), np.full(1, 7.0, np.float32)])
    write_caffemodel(train_workdir / "w.caffemodel", weights_net(weights))
    train("solver.prototxt", weights="w.caffemodel")
    log = (train_workdir / "runs/tiny/train.log").read_text()
    # probe = 2 * prob + 7 with 0 <= prob <= 1: outputs in [7, 9], not the filler's 0
    probe_values = [float(l.split("probe = ")[1].split()[0]) for l in log.splitlines() if "probe = " in l]
    assert probe_values and all(7 <= v <= 9 for v in probe_values), probe_values


# --- the train net's NetState, as `caffe train` sets it (--level, --stage) -----

GATED = ('layer {{ name: "gated" type: "Convolution" bottom: "prob" top: "gated" {rule} '
         'convolution_param {{ num_output: 1 kernel_size: 1 }} }}\n')


def _layers_trained(train_workdir, rule, solver_extra="", net_extra="", phase="TRAIN", **flags):
    """The layer names of the iteration-0 snapshot of the tiny net plus a `gated` layer under `rule`."""
    net, solver = train_workdir / "nets/tiny_train.prototxt", train_workdir / "solver.prototxt"
    net.write_text(net_extra + tiny_nets.two_conv_train("tiles/train.txt", 2, phase=phase) + GATED.format(rule=rule))
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 0").replace("snapshot: 2", "snapshot: 0")
                      + solver_extra)
    train("solver.prototxt", **flags)
    return [layer.name for layer in read_caffemodel(train_workdir / "runs/tiny/tiny_iter_0.caffemodel").layer]


@pytest.mark.parametrize("rule, solver_extra, flags, kept", [
    ("include { min_level: 1 }", "", {}, False),
    ("include { min_level: 1 }", "train_state { level: 3 }\n", {}, False),   # caffe train sets level 0
    ("include { min_level: 1 }", "", {"level": 2}, True),
    ("include { max_level: -1 }", "train_state { level: -1 }\n", {"level": 0}, False),
    ('exclude { stage: "" }', "", {}, False),                                 # no --stage: the stage ""
    ('exclude { stage: "" }', "", {"stages": ["a"]}, True),
    ('include { stage: "a" stage: "b" }', "", {"stages": ["a,b"]}, True),     # Caffe's comma-separated list
    ('include { stage: "a" stage: "b" }', "", {"stages": ["a", "b"]}, True),
    ('include { stage: "a" stage: "b" }', 'train_state { stage: "a" }\n', {"stages": ["b"]}, True),
    ('include { stage: "a" stage: "b" }', "", {"stages": ["a"]}, False),
    ('include { not_stage: "a" }', 'train_state { stage: "a" }\n', {}, False),
], ids=lambda v: str(v))
def test_level_and_stages_replace_and_extend_the_solver_train_state(train_workdir, rule, solver_extra, flags, kept):
    assert ("gated" in _layers_trained(train_workdir, rule, solver_extra, **flags)) == kept


@pytest.mark.parametrize("net_extra, solver_extra, kept", [
    ("", "", False),
    ("state { phase: TEST }\n", "", True),                          # the net's own phase wins over TRAIN
    ("state { phase: TEST }\n", "train_state { phase: TRAIN }\n", False),   # and the solver's over the net's
    ("state { phase: TEST level: 5 }\n", "", True),                 # the net's level too is replaced, by 0
])
def test_the_train_net_phase_and_state_merge_as_in_solver_init_train_net(train_workdir, net_extra, solver_extra,
                                                                          kept):
    layers = _layers_trained(train_workdir, "include { phase: TEST min_level: 0 max_level: 0 }", solver_extra,
                             net_extra, phase=None)
    assert ("gated" in layers) == kept


def test_caffe_train_state_appends_the_stages_after_the_solver_ones():
    from plaquenet.caffe import caffe_pb2
    from plaquenet.engines.torch.train import caffe_train_state
    state = caffe_train_state(caffe_pb2.NetState(level=3, stage=["s"]), 2, ["a,b", "c"])
    assert (state.level, list(state.stage), state.HasField("phase")) == (2, ["s", "a", "b", "c"], False)
    assert list(caffe_train_state(caffe_pb2.NetState()).stage) == [""]


# --- the solver's `weights` (oracle 99bd997: solver.cpp:66-75, caffe.cpp:222-227) ----------

def _with_solver_weights(train_workdir, entries):
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text() + "".join(f'weights: "{e}"\n' for e in entries))


def test_the_solver_weights_are_loaded_each_entry_split_at_commas(train_workdir):
    write_caffemodel(train_workdir / "a.caffemodel", tiny_nets.tiny_weights(_weights(1.0)))
    write_caffemodel(train_workdir / "b.caffemodel", tiny_nets.tiny_weights({"prelu1": _weights(3.0)["prelu1"]}))
    write_caffemodel(train_workdir / "c.caffemodel", tiny_nets.tiny_weights({"conv2": _weights(5.0)["conv2"]}))
    _with_solver_weights(train_workdir, ["a.caffemodel , b.caffemodel", "c.caffemodel"])
    loaded = _loaded(train_workdir, None)
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 1.0, "prelu1": 3.0, "conv2": 5.0}


def test_weights_given_to_train_replace_the_solver_weights(train_workdir):
    write_caffemodel(train_workdir / "b.caffemodel", tiny_nets.tiny_weights(_weights(2.0)))
    _with_solver_weights(train_workdir, ["missing.caffemodel"])   # never read
    loaded = _loaded(train_workdir, "b.caffemodel")
    assert {k: float(v[0].ravel()[0]) for k, v in loaded.items()} == {"conv1": 2.0, "prelu1": 2.0, "conv2": 2.0}
    log = (train_workdir / "runs/tiny/train.log").read_text()
    assert 'weights: "b.caffemodel"' in log and "missing" not in log   # the parameters as caffe.cpp set them


def test_a_resume_ignores_the_solver_weights(train_workdir):
    train("solver.prototxt")
    _with_solver_weights(train_workdir, ["missing.caffemodel"])
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace("max_iter: 4", "max_iter: 5"))
    assert train("solver.prototxt", snapshot="runs/tiny/tiny_iter_4.solverstate").iterations == 5
    assert "missing" not in (train_workdir / "runs/tiny/train.log").read_text()


def test_an_empty_name_among_the_solver_weights_is_refused(train_workdir):
    _with_solver_weights(train_workdir, ["a.caffemodel,"])
    with pytest.raises(InputError, match=r"solver.prototxt:7: 'a.caffemodel,' has an empty file name"):
        train("solver.prototxt")


def test_an_empty_caffemodel_copies_nothing_as_in_caffe(train_workdir):
    (train_workdir / "empty.caffemodel").write_bytes(b"")
    assert _loaded(train_workdir, "empty.caffemodel").keys() == {"conv1", "prelu1", "conv2"}


# --- snapshot_prefix unset or a directory (oracle 99bd997: upgrade_proto.cpp:1100-1116) ------

@pytest.mark.parametrize("prefix_line, make_dir, files", [
    ("", None, ["solver_iter_2.caffemodel", "solver_iter_4.caffemodel"]),
    ('snapshot_prefix: "out"', "out", ["out/solver_iter_2.caffemodel", "out/solver_iter_4.caffemodel"]),
    ('snapshot_prefix: "out/"', "out", ["out/solver_iter_2.caffemodel", "out/solver_iter_4.caffemodel"]),
    ('snapshot_prefix: "out/"', None, ["out/_iter_2.caffemodel", "out/_iter_4.caffemodel"]),   # not yet a folder
])
def test_snapshot_prefix_unset_or_a_directory_is_read_as_caffe_reads_it(train_workdir, prefix_line, make_dir, files):
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace('snapshot_prefix: "runs/tiny/tiny"', prefix_line))
    if make_dir:
        (train_workdir / make_dir).mkdir()
    result = train("solver.prototxt")
    written = sorted(str(p.relative_to(train_workdir)) for p in train_workdir.rglob("*.caffemodel"))
    assert written == files
    assert str(result.last_snapshot) == written[-1]
    assert (result.run_dir / "train.log").is_file()


@pytest.mark.parametrize("prefix_line, make_dir, first_line", [
    ("", None, "upgrade_proto.cpp:1108] snapshot_prefix was not specified and is set to solver"),
    ('snapshot_prefix: "out/"', "out", "upgrade_proto.cpp:1113] snapshot_prefix was a directory and is replaced to "
                                       "out/solver"),
    ('snapshot_prefix: "out/m"', None, "solver.cpp:45] Initializing solver from parameters: "),
])
def test_the_log_opens_with_caffe_s_line_on_an_upgraded_snapshot_prefix(train_workdir, prefix_line, make_dir,
                                                                         first_line):
    """UpgradeSnapshotPrefixProperty logs each rewrite as the solver is read (measured in the oracle)."""
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text().replace('snapshot_prefix: "runs/tiny/tiny"', prefix_line))
    if make_dir:
        (train_workdir / make_dir).mkdir()
    result = train("solver.prototxt")
    assert (result.run_dir / "train.log").read_text().splitlines()[0].endswith(f" {first_line}")


@pytest.mark.parametrize("test_fields, refused", [("test_iter: 1\ntest_interval: 2\n", True),
                                                  ("test_iter: 1\ntest_interval: 9\ntest_initialization: false\n",
                                                   False)])
def test_a_test_layer_that_cannot_share_the_train_blobs_stops_the_first_test(train_workdir, test_fields, refused):
    """Net::ShareTrainedLayersWith runs at each test: conv2 has no bias in the
    test net, so Caffe aborts at the first test (Incompatible number of
    blobs), and trains on where it never tests."""
    net = train_workdir / "nets/tiny_train.prototxt"
    train_conv2 = tiny_nets.convolution("conv2", "conv1", 1, 3, filler="msra")
    test_conv2 = train_conv2.replace("num_output", "bias_term: false num_output")
    assert train_conv2 in net.read_text() and test_conv2 != train_conv2
    net.write_text(tiny_nets.hdf5_data_layer("tiles/train.txt", 4, phase="TEST") + net.read_text().replace(
        train_conv2, train_conv2.replace('top: "conv2"', 'top: "conv2" include { phase: TRAIN }') +
        test_conv2.replace('top: "conv2"', 'top: "conv2" include { phase: TEST }')))
    solver = train_workdir / "solver.prototxt"
    solver.write_text(solver.read_text() + test_fields)
    if refused:
        with pytest.raises(InputError, match=r"nets/tiny_train.prototxt: layer 'conv2': 1 blobs in the test net, "
                                             r"2 in the train net, which Caffe cannot share"):
            train("solver.prototxt")
        log = (train_workdir / "runs/tiny/train.log").read_text()
        assert log.rstrip().endswith("Iteration 0, Testing net (#0)")
    else:
        assert train("solver.prototxt").iterations == 4


class _Rows:
    """train.csv's writer, in memory."""

    def __init__(self):
        self.rows, self.clock = [], 0.0

    def seconds(self):
        self.clock += 1.0
        return self.clock

    def row(self, it, loss, smoothed, lr, seconds=None):
        self.rows.append((it, loss, smoothed, lr, seconds))


def test_losses_read_from_the_device_in_batches_give_the_same_rows_as_each_iteration():
    """The GPU path reads losses once per `every` iterations (no host sync per iteration):
    the rows, smoothed losses and times are those of reading each one at once."""
    from plaquenet.engines.torch.train import _LossBook

    rng = np.random.default_rng(2)
    parts = [[torch.tensor(v, dtype=torch.float32) for v in rng.random(2)] for _ in range(7)]
    books = {}
    for every in (1, 4):
        table = _Rows()
        book = _LossBook(table, average_loss=3, iter_size=2, every=every)
        written = []
        for it, loss_parts in enumerate(parts):
            book.add(it, loss_parts, rate=0.01 * it)
            if it == 5:
                book.read()   # a display line: the losses so far are read, the rows still wait
            book.stamp()
            written.append(len(table.rows))
        book.write()
        books[every] = (table.rows, written, book.closing(0.5))
    assert books[4][0] == books[1][0] and books[4][2] == books[1][2]
    assert books[1][1] == [1, 2, 3, 4, 5, 6, 7] and books[4][1] == [0, 0, 0, 4, 4, 4, 4]
    first = books[1][0][0]
    assert first[1] == pytest.approx((parts[0][0].item() + parts[0][1].item()) / 2) and first[2] == first[1]
