"""What `plaquenet claims` plans before it trains: the runs, their schedules,
the iterations left and the estimate printed first (experiments/claims.py)."""

import dataclasses
from pathlib import Path

import pytest

from plaquenet.errors import InputError
from plaquenet.experiments.claims import OPT_IN, SNAPSHOT_FILES, VARIANTS, _eta, plan_claims, seed_snapshot
from plaquenet.experiments.runner import Schedule, prepare_run

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_repo(monkeypatch):
    """The solvers name their nets relative to the repository root, as Caffe reads them."""
    monkeypatch.chdir(REPO)


def test_the_plan_says_what_is_left_per_run(in_repo, tmp_path):
    plan = plan_claims(tmp_path / "cohort", tmp_path / "out", Schedule(max_iter=300, snapshot=100))
    assert set(plan.runs) == set(VARIANTS) - set(OPT_IN)
    assert str(plan) == ("claims: bright 300 iterations, none 300 iterations, uniform 300 iterations, "
                         "large_euclidean 300 iterations, large_dice 300 iterations of training left (1500 in all)")


def test_the_skull_stripped_training_is_planned_only_when_asked(in_repo, tmp_path):
    plan = plan_claims(tmp_path / "cohort", tmp_path / "out", Schedule(max_iter=300, snapshot=100),
                       skull_strip_training=True)
    assert set(plan.runs) == set(VARIANTS) - {"bright_c9"}
    assert plan.runs["stripped"] == tmp_path / "out" / "runs" / "stripped"
    assert VARIANTS["stripped"].tiles.skull_strip and plan.schedule_of("stripped") == plan.schedule
    assert plan.cost("stripped") == 1.0 and plan.iterations_left["stripped"] == 300


@pytest.mark.parametrize("large_tile_batch, cost", [(25, 1.0), (None, 4.0)])
def test_large_tile_runs_cost_their_pixels_in_the_estimate(in_repo, tmp_path, large_tile_batch, cost):
    """100x100 tiles hold 4x the pixels of 50x50 ones: 25 a batch cost what the paper's 100 do."""
    plan = plan_claims(tmp_path / "cohort", tmp_path / "out", Schedule(max_iter=300, snapshot=100),
                       large_tile_batch=large_tile_batch)
    assert plan.schedule_of("large_dice").solver == Path("prototxt/solver_100_dice.prototxt")
    assert plan.schedule_of("large_dice").batch_size == large_tile_batch
    assert plan.schedule_of("none") == plan.schedule
    assert plan.cost("none") == 1.0 and plan.cost("large_euclidean") == cost
    minutes = (3 + 2 * cost) * 300 * 2.0 / 60
    assert _eta(plan, 2.0) == f"; about {minutes:.0f} min of training at 2.00 s per 50x50 iteration, plus scoring"


def main_run_with_snapshots(tmp_path, schedule, iterations):
    """A prepared run folder holding `train`'s three files for each snapshot iteration."""
    main = tmp_path / "main"
    prepare_run(main, schedule, tmp_path / "tiles")
    for n in iterations:
        for suffix in SNAPSHOT_FILES:
            (main / f"plaquenet_iter_{n}{suffix}").write_text(str(n))
    return main


def test_c9_on_a_length_of_its_own_adds_a_paper_protocol_twin_seeded_from_the_main_run(in_repo, tmp_path):
    schedule = Schedule(max_iter=300, snapshot=100)
    main = main_run_with_snapshots(tmp_path, schedule, (100, 200, 300))
    (main / "plaquenet_iter_300.data_position.json").unlink()   # a snapshot without its data position: no seed
    plan = plan_claims(tmp_path / "cohort", tmp_path / "out", schedule, main_run=main, skull_strip_training=True,
                       skull_strip_max_iter=1000)
    assert set(plan.runs) == set(VARIANTS) and plan.runs["bright"] == main
    assert plan.schedule_of("stripped").max_iter == plan.schedule_of("bright_c9").max_iter == 1000
    assert plan.schedule_of("bright_c9").solver == schedule.solver and plan.schedule_of("none") == schedule
    assert plan.iterations_left["bright_c9"] == 800 and plan.iterations_left["stripped"] == 1000
    assert plan.iterations_left["none"] == 300
    # the latest complete snapshot within the length
    assert seed_snapshot(main, plan.schedule_of("bright_c9"))[0] == 200
    assert seed_snapshot(main, dataclasses.replace(schedule, max_iter=150)) == (
        100, [main / f"plaquenet_iter_100{suffix}" for suffix in SNAPSHOT_FILES])
    assert seed_snapshot(main, dataclasses.replace(schedule, max_iter=50)) is None


def test_c9_on_the_schedules_own_length_needs_no_twin(in_repo, tmp_path):
    plan = plan_claims(tmp_path / "cohort", tmp_path / "out", Schedule(max_iter=300, snapshot=100),
                       skull_strip_training=True, skull_strip_max_iter=300)
    assert "bright_c9" not in plan.runs and plan.schedule_of("stripped").max_iter == 300


def test_a_learning_rate_that_reads_max_iter_is_not_seeded(in_repo, tmp_path):
    """lr_policy "poly" decays towards max_iter: a longer run differs from its first iteration on."""
    poly = tmp_path / "solver_poly.prototxt"
    poly.write_text(Path("prototxt/solver.prototxt").read_text().replace('lr_policy: "fixed"', 'lr_policy: "poly"')
                    + "\npower: 1.0\n")
    assert 'lr_policy: "poly"' in poly.read_text()
    schedule = Schedule(solver=poly, max_iter=300, snapshot=100)
    main = main_run_with_snapshots(tmp_path, schedule, (100,))
    assert seed_snapshot(main, dataclasses.replace(schedule, max_iter=1000)) is None
    assert seed_snapshot(main, Schedule(max_iter=1000)) is not None   # the paper's fixed rate: seeded


def test_c9_length_without_the_skull_stripped_training_is_refused(in_repo, tmp_path):
    with pytest.raises(InputError, match="needs --skull-strip-training"):
        plan_claims(tmp_path / "cohort", tmp_path / "out", Schedule(max_iter=300), skull_strip_max_iter=1000)
