"""`caffe train`'s NetState and its log lines, against real Caffe (the oracle,
docs/CAFFE_ORACLE.md).

1. NetState: tools/caffe.cpp train() replaces the solver's train_state level
   with --level (default 0) and appends --stage's comma-separated names (none
   given: one empty stage ""); Solver::InitTrainNet starts from phase TRAIN,
   merges the net's own `state`, then the train_state. A net whose layers are
   gated on level, stage and phase trains in `caffe train` and in `plaquenet
   train` (the CLI, with and without --level/--stage): the same layers, the
   same outputs at iteration 0, the same weights after 5 iterations. One case
   also runs through plaquenet's caffe engine, which must pass the flags on.
2. The log: a run with display, test net, multistep, clipping, snapshots and
   fine-tuning, then a resume from its snapshot, writes the same sequence of
   (severity, file:line tag, message with numbers masked) lines as Caffe's own
   log, restricted to the messages plaquenet writes (Caffe also prints its
   net set-up, which plaquenet does not)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import h5py
import numpy as np
import pytest

from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, weights_net, write_caffemodel
from plaquenet.cli import main
from plaquenet.engines.torch.data_position import LOG_TAG as DATA_POSITION_LOG_TAG
from plaquenet.train import train

TILE, BATCH, ITERATIONS = 12, 4, 5
WEIGHT_TOLERANCE = 1e-4   # as tests/conformance/test_caffe_training.py
OUTPUT_TOLERANCE = 1e-5

# Each gated branch: a 3x3 Convolution of the data and its EuclideanLoss, both under the rule.
GATES = {
    "level1": "include { min_level: 1 }",
    "stage_b": 'include { stage: "b" }',
    "no_empty_stage": 'exclude { stage: "" }',
    "test_phase": "include { phase: TEST }",
    "train_level0": "include { phase: TRAIN max_level: 0 }",
    "solver_stage": 'include { stage: "s" }',
}
SOLVER_STATE = 'train_state { level: 5 stage: "s" }\n'
# name: (solver's extra lines, the net's `state`, plaquenet train flags, gates active)
CASES = {
    "defaults": ("", "", [], {"train_level0"}),
    "solver_train_state": (SOLVER_STATE, "", [], {"train_level0", "solver_stage"}),
    "level_and_stages": (SOLVER_STATE, "", ["--level", "2", "--stage", "b", "--stage", "c"],
                         {"level1", "stage_b", "no_empty_stage", "solver_stage"}),
    "net_in_test_phase": ("", "state { phase: TEST }\n", ["--stage", "b"], {"test_phase", "stage_b", "no_empty_stage"}),
}


def _conv(name: str, rule: str) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "data" top: "{name}" {rule}\n'
            f'  convolution_param {{ num_output: 1 kernel_size: 3 pad: 1 }} }}\n'
            f'layer {{ name: "loss_{name}" type: "EuclideanLoss" bottom: "{name}" bottom: "label" '
            f'top: "loss_{name}" {rule} }}\n')


def _net(state: str) -> str:
    return ('name: "rules"\n' + state +
            f'layer {{ name: "data" type: "HDF5Data" top: "data" top: "label"\n'
            f'  hdf5_data_param {{ source: "list.txt" batch_size: {BATCH} }} }}\n' +
            _conv("base", "") + "".join(_conv(name, rule) for name, rule in GATES.items()))


def _write_inputs(folder: Path, solver: str, state: str = "") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    image = rng.normal(0, 1, (6, 1, TILE, TILE)).astype(np.float32)
    with h5py.File(folder / "d.h5", "w") as f:
        f["data"] = image
        f["label"] = (image > 0.8).astype(np.float32)
    (folder / "list.txt").write_text("d.h5\n")
    (folder / "net.prototxt").write_text(_net(state))
    (folder / "solver.prototxt").write_text(solver)
    weights = {name: [rng.normal(0, 0.3, (1, 1, 3, 3)), rng.uniform(-0.1, 0.1, 1)] for name in ["base", *GATES]}
    write_caffemodel(folder / "w0.caffemodel", weights_net(weights, {name: "Convolution" for name in weights}))
    (folder / "snap").mkdir(exist_ok=True)


def _in_caffe(caffe, src: Path, name: str) -> Path:
    for f in ("d.h5", "list.txt", "net.prototxt", "solver.prototxt", "w0.caffemodel"):
        caffe.put(src / f, f"{name}/{f}")
    (caffe.scratch / name / "snap").mkdir(exist_ok=True)
    return caffe.scratch / name


def _caffe_flags(flags: List[str]) -> List[str]:
    """plaquenet's `--level 2 --stage b --stage c` as caffe's `--level=2 --stage=b,c`."""
    pairs = list(zip(flags[::2], flags[1::2]))
    level = [f"--level={v}" for k, v in pairs if k == "--level"]
    stages = [v for k, v in pairs if k == "--stage"]
    return level + ([f"--stage={','.join(stages)}"] if stages else [])


def _first_outputs(log: str) -> Dict[str, float]:
    """The train net outputs of the first display (iteration 0)."""
    block = log.split("Iteration 1 (")[0]
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"Train net output #\d+: (\S+) = ([-+.\deE]+)", block)}


def _snapshot(folder: Path) -> Tuple[List[str], Dict[str, List[np.ndarray]]]:
    """The layers of the last snapshot (but Caffe's own Split layers, where a blob feeds several) and weights."""
    model = read_caffemodel(folder / f"snap/m_iter_{ITERATIONS}.caffemodel")
    return [layer.name for layer in model.layer if layer.type != "Split"], caffemodel_weights(model)


def _assert_same_run(ours: Path, theirs: Path, active: set) -> None:
    our_layers, our_weights = _snapshot(ours)
    their_layers, their_weights = _snapshot(theirs)
    expected = ["data", "base", "loss_base"] + [n for g in GATES if g in active for n in (g, f"loss_{g}")]
    assert their_layers == expected                 # what Caffe does, stated
    assert our_layers == their_layers
    our_out, their_out = _first_outputs((ours / "snap/train.log").read_text()), _first_outputs(
        (theirs / "caffe.log").read_text())
    assert sorted(their_out) == sorted(f"loss_{n}" for n in ["base", *active])
    assert our_out.keys() == their_out.keys()
    for name, value in their_out.items():
        assert abs(our_out[name] - value) <= OUTPUT_TOLERANCE * max(abs(value), 1e-3), (name, our_out[name], value)
    for name, blobs in their_weights.items():
        for ours_blob, theirs_blob in zip(our_weights[name], blobs):
            scale = np.abs(theirs_blob).max()
            assert np.abs(ours_blob - theirs_blob).max() <= WEIGHT_TOLERANCE * scale, name


SOLVER = (f'net: "net.prototxt" type: "SGD" base_lr: 0.002 momentum: 0.9 lr_policy: "fixed" max_iter: {ITERATIONS} '
          f'display: 1 snapshot: 0 snapshot_prefix: "snap/m" random_seed: 0\n')


@pytest.mark.parametrize("case", sorted(CASES))
def test_level_stage_and_phase_select_the_layers_caffe_train_selects(case, caffe, tmp_path, monkeypatch):
    solver_extra, state, flags, active = CASES[case]
    _write_inputs(tmp_path, SOLVER + solver_extra, state)
    theirs = _in_caffe(caffe, tmp_path, "run")
    caffe.run("train", "run", "--solver=solver.prototxt", "--weights=w0.caffemodel", *_caffe_flags(flags))

    monkeypatch.chdir(tmp_path)
    assert main(["train", "--solver", "solver.prototxt", "--weights", "w0.caffemodel", *flags]) == 0
    _assert_same_run(tmp_path, theirs, active)


def test_the_caffe_engine_passes_level_and_stages_to_caffe_train(caffe, tmp_path, monkeypatch):
    """plaquenet's caffe engine, running the root's `caffe` through a chroot wrapper."""
    solver_extra, state, flags, active = CASES["level_and_stages"]
    _write_inputs(tmp_path, SOLVER + solver_extra, state)
    theirs = _in_caffe(caffe, tmp_path, "reference")
    caffe.run("train", "reference", "--solver=solver.prototxt", "--weights=w0.caffemodel", *_caffe_flags(flags))
    engine_run = _in_caffe(caffe, tmp_path, "engine")
    wrapper = tmp_path / "caffe-in-root"
    wrapper.write_text(f'#!/bin/sh\nexec chroot {caffe.root} sh -c \'cd {caffe.inside("engine")} && caffe "$@"\' '
                       f'caffe "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.chdir(engine_run)
    train("solver.prototxt", engine="caffe", weights="w0.caffemodel", caffe_bin=str(wrapper), level=2,
          stages=["b", "c"], on_estimate=lambda line: None)
    assert _snapshot(engine_run)[0] == _snapshot(theirs)[0]
    assert _first_outputs((engine_run / "snap/train.log").read_text()).keys() == \
        _first_outputs((theirs / "caffe.log").read_text()).keys()


# --- 2. the log lines ----------------------------------------------------------

GLOG = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ (\S+:\d+)\] (.*)$")
# Signs too: the first `iter/s` of each Caffe run divides by Solver::iterations_last_, a float member that
# nothing sets before the first display (solver.hpp:131, solver.cpp:238 at 99bd997), so it can be negative.
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
# Every message plaquenet's CaffeLog writes, and the one it must not.
OUR_MESSAGES = re.compile(
    r"(Initializing solver from parameters|Creating training net from net file|Finetuning from|Resuming from"
    r"|SGDSolver: restoring history|Restoring previous solver status|Starting Optimization|Solving "
    r"|Learning Rate Policy|Iteration \d+ \(|    (Train|Test) net output|Iteration \d+, (lr|loss) = "
    r"|Iteration \d+, Testing net|MultiStep Status|Gradient clipping|Snapshotting (to|solver state)"
    r"|Optimization Done|Test loss|snapshot_prefix was|Test interrupted|Optimization stopped early)")

LOG_SOLVER = ('net: "net.prototxt" type: "SGD" base_lr: 0.002 momentum: 0.9 lr_policy: "multistep" gamma: 0.5 '
              'stepvalue: 1 stepvalue: 3 clip_gradients: 0.01 max_iter: 4 display: 1 snapshot: 2 '
              'snapshot_prefix: "snap/m" test_iter: 1 test_interval: 2 random_seed: 0\n')


def _tagged(lines: List[str]) -> List[Tuple[str, str, str]]:
    """(severity, tag, message with every number as N) of each glog line whose message plaquenet writes."""
    found = []
    for line in lines:
        m = GLOG.match(line)
        if m and OUR_MESSAGES.match(m.group(3)):
            found.append((m.group(1), m.group(2), NUMBER.sub("N", m.group(3))))
    return found


def test_the_log_has_caffe_train_s_lines_tags_and_order(caffe, tmp_path, monkeypatch):
    _write_inputs(tmp_path, LOG_SOLVER)
    theirs = _in_caffe(caffe, tmp_path, "log")
    caffe.run("train", "log", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    first = (theirs / "caffe.log").read_text()
    caffe.run("train", "log", "--solver=solver.prototxt", "--snapshot=snap/m_iter_2.solverstate")
    caffe_lines = (first + (theirs / "caffe.log").read_text()).splitlines()

    monkeypatch.chdir(tmp_path)
    train("solver.prototxt", weights="w0.caffemodel", on_estimate=lambda line: None)
    train("solver.prototxt", snapshot="snap/m_iter_2.solverstate", on_estimate=lambda line: None)
    our_lines = (tmp_path / "snap/train.log").read_text().splitlines()

    ours, expected = _tagged(our_lines), _tagged(caffe_lines)
    # One line of our own, on resume: where HDF5Data goes on from (engines/torch/data_position.py).
    data_position = [line for line in our_lines if f" {DATA_POSITION_LOG_TAG}] " in line]
    assert len(data_position) == 1 and "] Data position restored from snap/m_iter_2" in data_position[0]
    assert len(ours) == len([line for line in our_lines if GLOG.match(line)]) - 1   # no other line Caffe never writes
    assert ours == expected, "\n".join(f"{a} | {b}" for a, b in zip(ours, expected) if a != b)
    # The lines that only the resume prints, and that it does not print.
    assert ("I", "sgd_solver.cpp:336", "SGDSolver: restoring history") in expected
    assert not any("Restoring previous" in message for _, _, message in expected)
    for tag in ("solver.cpp:102", "solver.cpp:72", "sgd_solver.cpp:50", "sgd_solver.cpp:99", "solver.cpp:347",
                "solver.cpp:414", "solver.cpp:464", "sgd_solver.cpp:284", "caffe.cpp:235"):
        assert any(t == tag for _, t, _ in expected), tag   # the run exercises every kind of line


# BVLC's tools/extra/parse_log.py of the oracle's own source (Debian's source package, = BVLC 99bd997),
# unpacked by tools/fetch_caffe_source.sh (`make test` runs it as root) into build/caffe-src, or
# PLAQUENET_CAFFE_SRC: the binary packages do not ship it in the root.
CAFFE_SRC = Path(os.environ.get("PLAQUENET_CAFFE_SRC", Path(__file__).resolve().parents[2] / "build/caffe-src"))
PARSE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import parse_log
train, test = parse_log.parse_log(sys.argv[2])
print(json.dumps([[sorted(r) for r in train], [r["NumIters"] for r in train], [sorted(r) for r in test],
                  [r["NumIters"] for r in test]]))
"""


def test_bvlc_parse_log_reads_our_log_as_it_reads_caffe_s(caffe, tmp_path, monkeypatch):
    folder = tmp_path / "tools"
    folder.mkdir()
    if not (CAFFE_SRC / "tools/extra/parse_log.py").is_file():
        message = (f"no BVLC parse_log.py under {CAFFE_SRC}: run tools/fetch_caffe_source.sh as root "
                   f"(or set PLAQUENET_CAFFE_SRC)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    for name in ("parse_log.py", "extract_seconds.py"):
        text = (CAFFE_SRC / "tools/extra" / name).read_text()
        # The script is Python 2; its one print statement is in main(), which we do not call.
        (folder / name).write_text(text.replace("print 'Wrote %s' % output_filename",
                                                "print('Wrote %s' % output_filename)"))
    _write_inputs(tmp_path, LOG_SOLVER)
    theirs = _in_caffe(caffe, tmp_path, "log")
    caffe.run("train", "log", "--solver=solver.prototxt", "--weights=w0.caffemodel")
    monkeypatch.chdir(tmp_path)
    train("solver.prototxt", weights="w0.caffemodel", on_estimate=lambda line: None)

    def parsed(log: Path) -> str:
        return subprocess.run([sys.executable, "-c", PARSE, str(folder), str(log)], capture_output=True, text=True,
                              check=True).stdout
    ours = parsed(tmp_path / "snap/train.log")
    assert '"loss_base"' in ours and ours == parsed(theirs / "caffe.log")
