"""plaquenet.experiments.runner: the derived run files, the schedule's
deviations, and the reuse of cohorts, tiles and scores (issue #17). Training
and resuming are in tests/integration/test_reproduce.py."""

import json
from pathlib import Path

import pytest

from plaquenet.caffe.prototxt import read_net, read_solver
from plaquenet.errors import InputError
from plaquenet.experiments import runner
from plaquenet.experiments.runner import Schedule, TileSpec, ensure_cohort, ensure_tiles, prepare_run, score_run

REPO = Path(__file__).resolve().parents[2]
CHANGED_SOLVER_FIELDS = {"net", "snapshot_prefix", "max_iter", "snapshot"}


@pytest.fixture
def in_repo(monkeypatch):
    """The paper's solver names its net relative to the repository root, as Caffe reads it."""
    monkeypatch.chdir(REPO)


def _fields(message):
    return {field.name: value for field, value in message.ListFields()}


def test_the_derived_solver_changes_only_the_named_fields(in_repo, tmp_path):
    solver = prepare_run(tmp_path / "run", Schedule(max_iter=300, snapshot=100), tmp_path / "tiles")
    paper, derived = _fields(read_solver("prototxt/solver.prototxt")), _fields(read_solver(solver))
    assert set(paper) == set(derived)
    assert {name for name in paper if paper[name] != derived[name]} == CHANGED_SOLVER_FIELDS
    assert (derived["net"], derived["snapshot_prefix"]) == (str(tmp_path / "run/train.prototxt"),
                                                            str(tmp_path / "run/plaquenet"))
    assert (derived["max_iter"], derived["snapshot"]) == (300, 100)
    header = [line for line in solver.read_text().splitlines() if line.startswith("#")]
    assert "prototxt/solver.prototxt" in header[0]
    assert any("max_iter: 75000 -> 300" in line for line in header)


def test_the_derived_net_changes_only_the_tiles_it_reads(in_repo, tmp_path):
    prepare_run(tmp_path / "run", Schedule(), tmp_path / "tiles")
    paper, derived = read_net("prototxt/plaquenet_train.prototxt"), read_net(tmp_path / "run/train.prototxt")
    assert len(paper.layer) == len(derived.layer)
    for old, new in zip(paper.layer, derived.layer):
        if old.type == "HDF5Data":
            assert new.hdf5_data_param.source == str(tmp_path / "tiles/train.txt")
            new.hdf5_data_param.source = old.hdf5_data_param.source
        assert _fields(old) == _fields(new), old.name
    assert _fields(paper) == _fields(derived)
    assert (tmp_path / "run/deploy.prototxt").read_text() == Path("prototxt/plaquenet_deploy.prototxt").read_text()


def test_a_batch_size_override_changes_the_nets_batch_alone_and_is_a_deviation(in_repo, tmp_path):
    """C7's quick runs: 25 tiles of 100x100 a batch instead of the net's 100, said as a deviation;
    the derived deploy net of a train-net variant is the paper's (`deploy_beside`)."""
    schedule = Schedule(solver=Path("prototxt/solver_100.prototxt"), max_iter=300, batch_size=25)
    prepare_run(tmp_path / "run", schedule, tmp_path / "tiles")
    net, derived = read_net("prototxt/plaquenet_train_100.prototxt"), read_net(tmp_path / "run/train.prototxt")
    data = [layer for layer in derived.layer if layer.type == "HDF5Data"][0]
    assert data.hdf5_data_param.batch_size == 25
    data.hdf5_data_param.batch_size = 100
    data.hdf5_data_param.source = "data/current/tiles_100/train.txt"
    assert derived == net
    assert schedule.deviations() == [
        "solver prototxt/solver_100.prototxt instead of the paper's prototxt/solver.prototxt",
        "max_iter 300 instead of prototxt/solver_100.prototxt's 75000",
        "batch_size 25 instead of prototxt/solver_100.prototxt's 100"]
    assert (tmp_path / "run/deploy.prototxt").read_text() == Path("prototxt/plaquenet_deploy.prototxt").read_text()


def test_the_large_tile_nets_are_the_papers_but_for_tiles_and_loss(in_repo):
    """§6's pair (C7): plaquenet_train_100 is the paper's net reading 100x100 tiles, and
    plaquenet_train_100_dice differs from it in the loss layer alone; their solvers are the
    paper's but for the net, the run folder and (Dice) the learning rate."""
    paper, large, dice = (read_net(f"prototxt/plaquenet_train{s}.prototxt") for s in ("", "_100", "_100_dice"))
    for net in (paper, large, dice):
        net.ClearField("name")
        [layer for layer in net.layer if layer.type == "HDF5Data"][0].hdf5_data_param.ClearField("source")
    assert large == paper
    assert [layer for layer in large.layer if layer.name != "loss"] == [layer for layer in dice.layer
                                                                         if layer.name != "loss"]
    assert [layer.type for layer in large.layer if layer.name == "loss"] == ["EuclideanLoss"]
    assert [layer.python_param.layer for layer in dice.layer if layer.name == "loss"] == ["SoftDiceLoss"]
    solvers = {s: _fields(read_solver(f"prototxt/solver{s}.prototxt")) for s in ("", "_100", "_100_dice")}
    for name in ("_100", "_100_dice"):
        differs = {k for k in set(solvers[""]) | set(solvers[name]) if solvers[""].get(k) != solvers[name].get(k)}
        assert differs == {"net", "snapshot_prefix"} | ({"base_lr"} if name == "_100_dice" else set()), name


def test_prepare_run_rewrites_nothing_for_the_same_inputs(in_repo, tmp_path):
    prepare_run(tmp_path / "run", Schedule(max_iter=10), tmp_path / "tiles")
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    prepare_run(tmp_path / "run", Schedule(max_iter=10), tmp_path / "tiles")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == before


def test_prepare_run_lets_max_iter_grow_but_refuses_another_schedule_without_force(in_repo, tmp_path):
    run = tmp_path / "run"
    prepare_run(run, Schedule(max_iter=10, snapshot=5), tmp_path / "tiles")
    prepare_run(run, Schedule(max_iter=20, snapshot=5), tmp_path / "tiles")   # the same run, extended
    (run / "plaquenet_iter_5.caffemodel").write_bytes(b"")
    with pytest.raises(InputError, match="another schedule .*differs in snapshot.*--force"):
        prepare_run(run, Schedule(max_iter=20, snapshot=4), tmp_path / "tiles")
    with pytest.raises(InputError, match="another train net or tile set"):
        prepare_run(run, Schedule(max_iter=20, snapshot=5), tmp_path / "other-tiles")
    prepare_run(run, Schedule(max_iter=20, snapshot=4), tmp_path / "tiles", force=True)
    assert not (run / "plaquenet_iter_5.caffemodel").exists()   # the other run is gone
    assert read_solver(run / "solver.prototxt").snapshot == 4


def test_prepare_run_refuses_a_folder_of_files_it_did_not_write(in_repo, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not prepared here"):
        prepare_run(tmp_path / "run", Schedule(), tmp_path / "tiles")


@pytest.mark.parametrize("schedule, expected", [
    (Schedule(), []),
    (Schedule(max_iter=75000, snapshot=5000), []),   # the paper's own values said again
    (Schedule(max_iter=300), ["max_iter 300 instead of the paper's 75000"]),
    (Schedule(max_iter=300, snapshot=100), ["max_iter 300 instead of the paper's 75000",
                                            "snapshot every 100 iterations instead of the paper's 5000"]),
    (Schedule(solver=Path("prototxt/solver_demo.prototxt"), max_iter=10),
     ["solver prototxt/solver_demo.prototxt instead of the paper's prototxt/solver.prototxt",
      "max_iter 10 instead of prototxt/solver_demo.prototxt's 80"]),
])
def test_schedule_deviations_name_every_change_from_the_paper(in_repo, schedule, expected):
    assert schedule.deviations() == expected


@pytest.mark.parametrize("schedule, problem", [
    (Schedule(max_iter=0), "--max-iter: must be at least 1"),
    (Schedule(snapshot=-1), "snapshot: must be 0"),
    (Schedule(batch_size=0), "batch_size: must be at least 1"),
])
def test_a_bad_schedule_is_one_line(in_repo, schedule, problem):
    with pytest.raises(InputError, match=problem):
        schedule.deviations()


def test_ensure_tiles_reuses_a_matching_folder_and_remakes_a_changed_spec(cohort, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # train.txt lists paths relative to the working directory, as Caffe reads them
    spec = TileSpec(tile=8)
    out = ensure_tiles(cohort, spec)
    assert out == cohort / spec.folder_name() and (out / "train.txt").is_file()
    made = (out / "tiles.json").stat()
    assert ensure_tiles(cohort, spec) == out
    again = (out / "tiles.json").stat()
    assert (again.st_ino, again.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)   # not rewritten

    other = TileSpec(tile=8, negative_share=0.5)
    assert other.folder_name() != spec.folder_name()
    ensure_tiles(cohort, other, out_dir=out)   # the same folder, another spec: remade
    assert json.loads((out / "tiles.json").read_text())["parameters"]["negative_share"] == 0.5


def test_ensure_cohort_makes_phantom_and_cohort_through_the_stages_once(tmp_path, monkeypatch, cohort):
    calls = []
    monkeypatch.setattr(runner, "_stage", calls.append)
    with pytest.raises(InputError, match="missing after"):   # the fake stages write nothing
        ensure_cohort("quick", tmp_path / "data")
    assert calls == [["phantom", str(tmp_path / "data/phantom-quick"), "--preset", "quick", "--seed", "0", "--force"],
                     ["import", str(tmp_path / "data/phantom-quick/dicom"), "--cohort", str(tmp_path / "data/quick")]]

    calls.clear()
    (tmp_path / "data").mkdir(exist_ok=True)
    cohort.rename(tmp_path / "data/quick")   # a cohort already there: nothing is run
    assert ensure_cohort("quick", tmp_path / "data") == tmp_path / "data/quick"
    assert calls == []


def _run_with_snapshots(run, *iterations):
    run.mkdir(parents=True, exist_ok=True)
    for n in iterations:
        (run / f"plaquenet_iter_{n}.caffemodel").write_bytes(b"")
    return run


def test_score_run_reuses_results_of_the_latest_snapshot_only(tmp_path, monkeypatch):
    run = _run_with_snapshots(tmp_path / "run", 100, 200)
    (run / "score").mkdir()
    results = {"snapshot": str(run / "plaquenet_iter_200.caffemodel"), "cohort_dir": str(tmp_path / "cohort"),
               "training_curve": [], "whole_volume": {}, "precision": "fp32"}
    (run / "score/results.json").write_text(json.dumps(results))
    scored = []
    monkeypatch.setattr(runner, "score", lambda *args, **kwargs: scored.append(kwargs) or {"out": "x"})
    assert score_run(run, tmp_path / "cohort")["snapshot"] == results["snapshot"]
    assert scored == []

    # made in another precision, without the whole-volume pass, or for another training note: scored again
    for other in ({"precision": "bf16"}, {"training": "SHORTENED"}):
        score_run(run, tmp_path / "cohort", **other)
        assert scored.pop()["force"]
    (run / "score/results.json").write_text(json.dumps({k: v for k, v in results.items() if k != "whole_volume"}))
    assert score_run(run, tmp_path / "cohort", whole_volume=False)["snapshot"] == results["snapshot"]
    score_run(run, tmp_path / "cohort")
    assert scored.pop()["whole_volume"]
    (run / "score/results.json").write_text(json.dumps(results))

    _run_with_snapshots(run, 300)   # training went on: scored again, every snapshot, in place
    score_run(run, tmp_path / "cohort")
    assert scored and scored[0]["all_snapshots"] and scored[0]["force"] and scored[0]["out"] == run / "score"
