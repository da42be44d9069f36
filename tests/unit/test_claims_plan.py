"""What `plaquenet claims` plans before it trains: the runs, their schedules,
the iterations left and the estimate printed first (experiments/claims.py)."""

from pathlib import Path

import pytest

from plaquenet.experiments.claims import OPT_IN, VARIANTS, _eta, plan_claims
from plaquenet.experiments.runner import Schedule

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
    assert set(plan.runs) == set(VARIANTS) and plan.runs["stripped"] == tmp_path / "out" / "runs" / "stripped"
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
