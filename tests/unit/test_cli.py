"""The `plaquenet` command line (plaquenet/cli.py): every option documented in
`--help` with its default, and bad input as one line on stderr and exit code 2,
tested as a table of command lines (pydicom's tests/test_cli.py style)."""

import argparse
import string

import pytest
import torch

import dicom_fixtures as F
from plaquenet.cli import build_parser, main
from plaquenet.cohort import make_split, patient_ids, write_split


def _options():
    """(subcommand, action) for every argument of every subcommand but -h."""
    [subcommands] = [a for a in build_parser()._subparsers._actions if isinstance(a, argparse._SubParsersAction)]
    return [(name, action) for name, sub in subcommands.choices.items() for action in sub._actions
            if not isinstance(action, argparse._HelpAction)]


def _id(option):
    name, action = option
    return f"{name} {action.option_strings[0] if action.option_strings else action.dest}"


def _has_default(action) -> bool:
    return action.default is not None and action.default is not False


def _shown(default) -> str:
    """The default as the help prints it (floats to 4 significant digits)."""
    return f"{default:.4g}" if isinstance(default, float) else str(default)



def _with_default():
    return [pytest.param(*option, id=_id(option)) for option in _options() if _has_default(option[1])]


def _help_entry(command, action, capsys, monkeypatch) -> str:
    """The option's lines in `plaquenet COMMAND --help`, joined into one line."""
    monkeypatch.setenv("COLUMNS", "1000")  # no wrapping inside a word
    with pytest.raises(SystemExit):
        main([command, "--help"])
    lines = capsys.readouterr().out.splitlines()
    invocation = action.option_strings[0] if action.option_strings else action.dest
    [start] = [i for i, line in enumerate(lines) if line.split()[:1] == [invocation]]
    entry = [lines[start]] + [line for line in lines[start + 1:start + 2] if line.startswith(" " * 8)]
    return " ".join(" ".join(entry).split())


@pytest.mark.parametrize("command, action", [pytest.param(*o, id=_id(o)) for o in _options()])
def test_every_option_has_a_help_sentence(command, action, capsys, monkeypatch):
    assert isinstance(action.help, str) and len(action.help.split()) >= 2, action.help
    assert " ".join(action.help.split()) in _help_entry(command, action, capsys, monkeypatch)


@pytest.mark.parametrize("command, action", _with_default())
def test_a_default_shows_in_help(command, action, capsys, monkeypatch):
    assert f"default: {_shown(action.default)}" in _help_entry(command, action, capsys, monkeypatch)


# --- bad input: one line on stderr, exit code 2 -------------------------------

@pytest.fixture
def study(tmp_path):
    """A patient folder holding one DICOM FLAIR series."""
    F.write_dicom_series(tmp_path / "study" / "flair")
    return tmp_path / "study"


@pytest.fixture
def earlier_run_solver(train_workdir):
    """The solver of `train_workdir`, whose run folder holds an earlier run's train.log."""
    (train_workdir / "runs" / "tiny").mkdir(parents=True)
    (train_workdir / "runs" / "tiny" / "train.log").write_text("I1124 solver.cpp:272] Solving tiny\n")
    return train_workdir / "solver.prototxt"


@pytest.fixture
def cohort_split_at_0_2(cohort):
    """`cohort` with a split made with test fraction 0.2."""
    write_split(cohort, make_split(patient_ids(cohort), 0.2))
    return cohort


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is available to torch here")

# (command line, a fragment of its one-line error); {name}: the path the fixture `name` gives.
BAD_INPUTS = [
    pytest.param(["score", "--snapshot", "{scored_snapshot}", "--deploy", "{deploy}", "--device", "gpu"],
                 "--device: 'gpu': no CUDA device is available", marks=NO_CUDA, id="score on a GPU without one"),
    pytest.param(["score", "--snapshot", "{scored_snapshot}", "--deploy", "{deploy}", "--device", "tpu"],
                 "'tpu' is not a device", id="score on an unknown device"),
    pytest.param(["segment", "{study}", "--snapshot", "{scored_snapshot.parent}", "--threshold", "2"],
                 "--threshold: must be in [0, 1]", id="segment threshold above 1"),
    pytest.param(["segment", "{study}", "--snapshot", "{scored_snapshot.parent}", "--threshold", "-1"],
                 "--threshold: must be in [0, 1]", id="segment threshold below 0"),
    pytest.param(["segment", "{study}", "--snapshot", "{scored_snapshot.parent}", "--min-lesion-mm3", "-1"],
                 "--min-lesion-mm3: must be a volume >= 0", id="segment negative lesion volume"),
    pytest.param(["train", "--solver", "{earlier_run_solver}"], "or --force to replace it",
                 id="train over an earlier run"),
    pytest.param(["train", "--solver", "{tmp_path}/missing.prototxt"], "missing.prototxt: cannot read",
                 id="train without its solver"),
    pytest.param(["train", "--solver", "{train_workdir}/solver.prototxt", "--sigint-effect", "quit"],
                 "--sigint-effect: 'quit' is not a signal effect (choose from stop, snapshot, none)",
                 id="train with an unknown SIGINT effect"),
    pytest.param(["train", "--solver", "{train_workdir}/solver.prototxt", "--sighup-effect", "STOP"],
                 "--sighup-effect: 'STOP' is not a signal effect", id="train with an unknown SIGHUP effect"),
    pytest.param(["tiles", "--cohort", "{cohort_split_at_0_2}", "--test-fraction", "0.3"],
                 "this split was made with test fraction 0.2, --test-fraction 0.3 cannot change it",
                 id="tiles with another test fraction than the split's"),
    pytest.param(["tiles", "--cohort", "{cohort}", "--negative-share", "1"], "--negative-share: must be in [0, 1)",
                 id="tiles without room for plaques"),
    pytest.param(["claims", "--out", "{tmp_path}/claims", "--skull-strip-max-iter", "500"],
                 "--skull-strip-max-iter: needs --skull-strip-training", id="claims: C9's length without C9"),
]


def _filled_in(argv, request):
    """argv with each {fixture} (or {fixture.attribute}) replaced by that fixture's value."""
    names = {field.split(".")[0] for arg in argv for _, field, _, _ in string.Formatter().parse(arg) if field}
    values = {name: request.getfixturevalue(name) for name in names}
    return [arg.format(**values) for arg in argv]


@pytest.mark.parametrize("argv, fragment", BAD_INPUTS)
def test_bad_input_is_one_line_on_stderr_and_exit_code_2(argv, fragment, request, capsys):
    argv = _filled_in(argv, request)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"plaquenet {argv[0]}: error: ") and err.count("\n") == 1, err
    assert fragment in err, err


# --- train's --level and --stage, as `caffe train`'s ---------------------------

@pytest.mark.parametrize("flags, level, stages", [
    ([], 0, ()),
    (["--level", "2", "--stage", "a", "--stage", "b,c"], 2, ["a", "b,c"]),
])
def test_train_passes_level_and_stages_to_the_stage(flags, level, stages, monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("plaquenet.train.train", lambda solver, **kwargs: seen.update(kwargs) or "done")
    assert main(["train", "--solver", str(tmp_path / "solver.prototxt")] + flags) == 0
    assert (seen["level"], seen["stages"]) == (level, stages)


@pytest.mark.parametrize("flags, effects", [
    ([], ("stop", "snapshot")),   # caffe train's defaults
    (["--sigint-effect", "snapshot", "--sighup-effect", "none"], ("snapshot", "none")),
])
def test_train_passes_the_signal_effects_to_the_stage(flags, effects, monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("plaquenet.train.train", lambda solver, **kwargs: seen.update(kwargs) or "done")
    assert main(["train", "--solver", str(tmp_path / "solver.prototxt")] + flags) == 0
    assert (seen["sigint_effect"], seen["sighup_effect"]) == effects


# --- phantom --preset (#17) ---------------------------------------------------------

@pytest.mark.parametrize("flags, size", [
    ([], (10, 20)),
    (["--preset", "quick"], (12, 33)),
    (["--preset", "paper"], (96, 33)),
    (["--preset", "paper", "--patients", "3"], (3, 33)),
    (["--preset", "quick", "--slices", "5", "--patients", "2"], (2, 5)),
])
def test_phantom_presets_give_the_table_and_explicit_sizes_win(flags, size, monkeypatch, tmp_path, capsys):
    from plaquenet.phantom import PRESETS
    seen = {}
    monkeypatch.setattr("plaquenet.phantom.write_phantom", lambda out, **kwargs: seen.update(kwargs))
    assert main(["phantom", str(tmp_path / "out")] + flags) == 0
    assert (seen["n_patients"], seen["n_slices"]) == size
    if not flags[2:]:
        assert size == PRESETS[flags[1] if flags else "demo"]
    assert f"{size[0]} patients x {size[1]} slices" in capsys.readouterr().out


def test_an_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["phantom", "out", "--preset", "huge"])
    assert "invalid choice: 'huge'" in capsys.readouterr().err
