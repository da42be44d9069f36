"""`plaquenet reproduce` and the runner under it, with real training on tiny
cohorts (issue #17): resuming from the latest snapshot, nothing to do once
done, the record of deviations, and refusals as one line."""

import csv
import html
import json
from pathlib import Path

import pytest

from plaquenet.cli import main
from plaquenet.errors import InputError
from plaquenet.experiments.runner import (Schedule, TileSpec, ensure_tiles, prepare_run, train_or_resume,
                                         train_side_by_side)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """tmp_path as the working directory, with the repository's prototxt/ in it:
    the paper's solver names its net relative to the working directory, as Caffe does."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prototxt").symlink_to(REPO / "prototxt", target_is_directory=True)
    return tmp_path


def _csv_iterations(run):
    with open(run / "train.csv") as f:
        return [int(row["iter"]) for row in csv.DictReader(f)]


def test_train_or_resume_continues_from_the_latest_snapshot_and_then_does_nothing(workdir, cohort):
    tiles_dir = ensure_tiles(cohort, TileSpec(tile=8))   # the paper's net is size-agnostic: 8x8 tiles train fast
    run = workdir / "runs/r"
    prepare_run(run, Schedule(max_iter=4, snapshot=2), tiles_dir)
    assert train_or_resume(run) == run / "plaquenet_iter_4.caffemodel"
    first = (run / "plaquenet_iter_4.caffemodel").stat().st_mtime_ns

    prepare_run(run, Schedule(max_iter=6, snapshot=2), tiles_dir)   # the same run, extended
    assert train_or_resume(run) == run / "plaquenet_iter_6.caffemodel"
    assert (run / "plaquenet_iter_4.caffemodel").stat().st_mtime_ns == first   # not trained again from 0
    assert _csv_iterations(run) == list(range(6))                             # 0-3, then 4-5 after resuming
    assert "Resuming from " + str(run / "plaquenet_iter_4.solverstate") in (run / "train.log").read_text()

    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    assert train_or_resume(run) == run / "plaquenet_iter_6.caffemodel"   # at max_iter: nothing to do
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def _losses(run):
    with open(run / "train.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def test_runs_trained_side_by_side_match_one_trained_here_and_resume(workdir, cohort):
    """Two runs of the same schedule, each in its own `plaquenet train` process,
    give the losses of the same run trained in this process (to rounding: one
    thread each instead of all), and resume from their snapshots like it."""
    tiles_dir = ensure_tiles(cohort, TileSpec(tile=8))
    here, *apart = (workdir / "runs" / name for name in ("here", "a", "b"))
    for run in (here, *apart):
        prepare_run(run, Schedule(max_iter=2, snapshot=1), tiles_dir)
    train_or_resume(here)
    said = []
    train_side_by_side(apart, jobs=2, say=said.append)
    assert len(said) == 1 and "2 runs side by side, 2 at a time" in said[0]
    for run in apart:
        assert (run / "plaquenet_iter_2.caffemodel").is_file() and (run / "train.out").is_file()
        assert _losses(run) == pytest.approx(_losses(here), rel=1e-4)

    for run in apart:
        prepare_run(run, Schedule(max_iter=3, snapshot=1), tiles_dir)
    train_side_by_side(apart, jobs=2, say=said.append)
    assert all(_csv_iterations(run) == [0, 1, 2] for run in apart)
    assert all("Resuming from" in (run / "train.log").read_text() for run in apart)


def test_a_failed_training_side_by_side_names_its_output(workdir, cohort):
    tiles_dir = ensure_tiles(cohort, TileSpec(tile=8))
    runs = [workdir / "runs" / name for name in ("a", "b")]
    for run in runs:
        prepare_run(run, Schedule(max_iter=2), tiles_dir)
    (runs[1] / "train.prototxt").write_text("layer { type: 'NoSuchLayer' }\n")   # breaks only run b
    with pytest.raises(InputError) as failed:
        train_side_by_side(runs, jobs=2, say=lambda line: None)
    message = str(failed.value)
    assert "\n" not in message and str(runs[1] / "train.out") in message and str(runs[0]) not in message
    assert (runs[0] / "plaquenet_iter_2.caffemodel").is_file()


@pytest.fixture
def tiny_phantom_cohort(workdir):
    """data/it: the smallest phantom with plaques on both sides of the split (as tests/integration/test_pipeline.py)."""
    assert main(["phantom", "phantom", "--patients", "2", "--slices", "6", "--seed", "1"]) == 0
    assert main(["import", "phantom/dicom", "--cohort", "data/it"]) == 0
    return Path("data/it")


def test_reproduce_end_to_end_writes_the_deviations_beside_the_papers_figures(tiny_phantom_cohort, capsys):
    command = ["reproduce", "--preset", "quick", "--cohort", "data/it", "--max-iter", "2", "--run", "runs/r"]
    assert main(command) == 0
    record = json.loads(Path("runs/r/reproduction.json").read_text())
    assert record["preset"] == "quick" and record["schedule"]["shortened"]
    assert (record["schedule"]["max_iter"], record["schedule"]["iteration"]) == (2, 2)
    assert "max_iter 2 instead of the paper's 75000" in record["deviations"]
    assert "snapshot every 100 iterations instead of the paper's 5000" in record["deviations"]
    assert "1 test patients instead of the paper's 19" in record["deviations"]
    assert record["paper"]["test"]["pixel"]["f1"] == 0.55
    assert 0 <= record["ours"]["test_f1"] <= 1
    assert [point["iteration"] for point in record["training_curve"]] == [2]
    assert Path(record["figures"]["fig5"]).is_file() and Path(record["report"]).is_file()
    summary = Path("runs/r/reproduction.md").read_text()
    assert "SHORTENED" in summary and "max_iter 2 instead of the paper's 75000" in summary
    report = Path(record["report"]).read_text()   # score's own report says so too, at its top
    assert ("<strong>Training: SHORTENED: prototxt/solver.prototxt with "
            + html.escape("max_iter 2 instead of the paper's 75000")) in report

    capsys.readouterr()
    assert main(command) == 0   # a rerun with nothing left to do says so
    assert "nothing left to do" in capsys.readouterr().out

    assert main(["reproduce", "--preset", "paper", "--cohort", "data/it", "--max-iter", "2", "--run", "runs/r"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "preset 'quick'" in error and "--force" in error


@pytest.mark.parametrize("arguments, problem", [
    (["--max-iter", "0"], "--max-iter: must be at least 1"),
    (["--cohort", "no-such-cohort"], "no cohort.h5"),
    (["--device", "tpu"], "tpu"),
    (["--run", "runs/foreign"], "not prepared here"),
])
def test_bad_reproduce_input_is_one_line(workdir, cohort, capsys, arguments, problem):
    Path("runs/foreign").mkdir(parents=True)
    Path("runs/foreign/plaquenet_iter_5.caffemodel").write_bytes(b"")   # someone else's run
    command = ["reproduce", "--preset", "quick", "--cohort", str(cohort), "--run", "runs/new", *arguments]
    assert main(command) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and problem in error


def test_the_estimate_covers_the_whole_schedule_from_the_engines_first_timing(workdir, cohort):
    from plaquenet.engines.run import estimate_line
    from plaquenet.experiments.reproduce import _estimate_reporter

    tiles_dir = ensure_tiles(cohort, TileSpec(tile=8))
    run = workdir / "runs/r"
    prepare_run(run, Schedule(max_iter=600, snapshot=100), tiles_dir)
    said = []
    _estimate_reporter(run, cohort, tiles_dir, "torch", "cpu", said.append)(estimate_line(2.0, 596, "cpu"))
    assert said and "2 s per iteration (measured), 600 iterations about 20 min in all;" in said[0]
    assert "then scoring every snapshot about" in said[0]
