"""`plaquenet claims` on a tiny phantom cohort with its truth (issue #17): six
real trainings of a few iterations (the skull-stripped one of C9 included), the
verdicts, and what a rerun reuses.

The nets are barely trained, so the verdicts themselves mean nothing here;
what is checked is that each follows from the numbers written beside it, and
that the measurements agree with `score`'s own counts."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from plaquenet.caffe.prototxt import read_net
from plaquenet.cli import main
from plaquenet.cohort import brain_masks_present, read_split
from plaquenet.errors import InputError
from plaquenet.experiments import verdicts
from plaquenet.experiments.claims import run_claims
from plaquenet.experiments.runner import Schedule

REPO = Path(__file__).resolve().parents[2]
VERDICTS = {verdicts.HOLDS, verdicts.FAILS, verdicts.UNMEASURABLE}


def not_air(volume_zyx, spacing):
    """A stand-in for HD-BET (C8's plumbing; the real one runs in test_brain_hd_bet.py): the whole head."""
    return (volume_zyx > 0.05 * volume_zyx.max()).astype(np.uint8)


@pytest.fixture
def truth_cohort(tmp_path, monkeypatch):
    """data/it: 3 phantom patients x 6 slices imported with their region maps and exact masks;
    the repository's prototxt/ linked in (the paper's solver names its net relative to the working directory)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "prototxt").symlink_to(REPO / "prototxt", target_is_directory=True)
    assert main(["phantom", "phantom", "--patients", "3", "--slices", "6", "--seed", "1"]) == 0
    assert main(["import", "phantom/dicom", "--cohort", "data/it", "--truth", "phantom/truth"]) == 0
    return Path("data/it")


def test_claims_on_a_tiny_phantom(truth_cohort):
    schedule = Schedule(max_iter=3, snapshot=1)   # three snapshots: the least C4 can judge
    done = run_claims(truth_cohort, Path("runs/claims"), schedule, large_tile_batch=4, extractor=not_air,
                      skull_strip_training=True)
    claims = {c["id"]: c for c in done["claims"]}
    assert list(claims) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    assert all(c["verdict"] in VERDICTS and c["reason"] for c in claims.values())

    # Each verdict follows from the numbers written beside it.
    n = claims["C1"]["numbers"]
    assert (claims["C1"]["verdict"] == verdicts.HOLDS) == (n["test_f1_scans"] > n["test_f1_tiles"])
    n = claims["C2"]["numbers"]
    assert (claims["C2"]["verdict"] == verdicts.HOLDS) == (
        n["test_f1_network"] > n["test_f1_raw"] and n["range_network"]["measure"] > n["range_raw"]["measure"])
    n = claims["C3"]["numbers"]["fp_pixels_outside_brain"]
    assert set(n) == {"bright", "none", "uniform"}
    assert (claims["C3"]["verdict"] == verdicts.HOLDS) == (n["bright"] <= (1 - verdicts.MARGIN) * n["none"])
    assert claims["C4"]["numbers"]["iterations"] == [1, 2, 3]
    c5 = claims["C5"]
    if c5["numbers"]["fp_pixels_outside_brain"]:
        assert (c5["verdict"] == verdicts.HOLDS) == (c5["numbers"]["share_in_paper_regions"] >= verdicts.DOMINANT)
    else:
        assert c5["verdict"] == verdicts.UNMEASURABLE
    assert {"polygons", "exact"} <= set(claims["C6"]["numbers"])
    n = claims["C7"]["numbers"]
    euclid, dice = n["large_euclidean"], n["large_dice"]
    assert (claims["C7"]["verdict"] == verdicts.HOLDS) == (
        euclid["all_zero_share"] >= verdicts.ALL_ZERO_SHARE and dice["all_zero_share"] < euclid["all_zero_share"]
        and dice["test_f1"] > euclid["test_f1"])
    observed = json.loads(Path("runs/claims/observations/large_euclidean.json").read_text())["observations"]
    assert euclid["all_zero_share"] == observed["outputs"]["all_zero_scans"] / observed["scans"]
    assert "tiles-100px" in read_net("runs/claims/runs/large_dice/train.prototxt").layer[0].hdf5_data_param.source
    n = claims["C8"]["numbers"]   # the fake brain is the whole head: it removes what lies outside the head
    bright = json.loads(Path("runs/claims/observations/bright.json").read_text())["observations"]
    assert n["fp_pixels"] == bright["pixel"]["polygons"]["fp"] and n["extractor"]["fp_pixels"] == bright["brain"][
        "extractor"]["fp"] <= n["fp_pixels"]
    assert "true_brain" in n and set(brain_masks_present(truth_cohort)) >= set(read_split(truth_cohort)["test"])
    if n["fp_pixels"]:
        assert (claims["C8"]["verdict"] == verdicts.HOLDS) == (n["extractor"]["fp_removed_share"] >= verdicts.MOST)
    # C9: every patient got a mask first, the stripped net trained on stripped tiles and was fed stripped scans
    n = claims["C9"]["numbers"]
    assert set(brain_masks_present(truth_cohort)) == set(read_split(truth_cohort)["train"] + read_split(truth_cohort)["test"])
    assert json.loads(Path("data/it/tiles-50px-neg0.333-pref4-seed0-skullstrip/tiles.json").read_text())[
        "parameters"]["skull_strip"] is True
    stripped = json.loads(Path("runs/claims/runs/stripped/score/results.json").read_text())
    observed = json.loads(Path("runs/claims/observations/stripped.json").read_text())["observations"]
    assert stripped["input"]["skull_strip"] is True
    assert {k: observed["pixel"]["polygons"][k] for k in ("tp", "fp", "fn")} == {
        k: stripped["test"]["pixel"][k] for k in ("tp", "fp", "fn")}   # observe fed it what score fed it
    assert n["fp_pixels"] == {"paper_protocol": bright["pixel"]["polygons"]["fp"], "skull_stripped": observed["pixel"][
        "polygons"]["fp"]}
    if "not_learned" in n:   # nets of 3 iterations are often still all-zero: then no comparison
        assert claims["C9"]["verdict"] == verdicts.UNMEASURABLE and n["not_learned"]["all_zero_share"] >= (
            verdicts.ALL_ZERO_SHARE)
    elif n["fp_pixels"]["paper_protocol"]:
        assert (claims["C9"]["verdict"] == verdicts.HOLDS) == (n["fp_removed_share"] >= verdicts.MOST)

    # The measurements agree with score's counts of the same net on the same test scans.
    results = json.loads(Path("runs/claims/runs/bright/score/results.json").read_text())
    observed = json.loads(Path("runs/claims/observations/bright.json").read_text())["observations"]
    assert {k: observed["pixel"]["polygons"][k] for k in ("tp", "fp", "fn")} == {
        k: results["test"]["pixel"][k] for k in ("tp", "fp", "fn")}
    assert sum(r["fp_pixels"] for r in observed["regions"].values()) == results["test"]["pixel"]["fp"]
    assert observed["lesion"]["polygons"]["msseg2016"]["f1"] == pytest.approx(
        results["test"]["lesion"]["msseg2016"]["f1"], nan_ok=True)

    written = json.loads(Path("runs/claims/claims.json").read_text())
    assert [c["id"] for c in written["claims"]] == list(claims)
    assert "| C1 (§4.3) |" in Path("runs/claims/claims.md").read_text()
    assert "data:image/png;base64," in Path("runs/claims/claims.html").read_text()

    # A rerun reuses the trainings, the scores and the observations; without --force it refuses.
    with pytest.raises(InputError, match="already exists"):
        run_claims(truth_cohort, Path("runs/claims"), schedule, large_tile_batch=4, extractor=not_air,
                   skull_strip_training=True)
    kept = {p: p.stat().st_mtime_ns for p in Path("runs/claims").glob("runs/*/plaquenet_iter_3.caffemodel")}
    kept.update({p: p.stat().st_mtime_ns for p in Path("runs/claims/observations").iterdir()})
    kept.update({p: p.stat().st_mtime_ns for p in Path("runs/claims").glob("runs/*/score/results.json")})
    assert len(kept) == 18   # six runs: snapshot, observations, results
    again = run_claims(truth_cohort, Path("runs/claims"), schedule, force=True, large_tile_batch=4, extractor=not_air,
                       skull_strip_training=True)
    assert [c["verdict"] for c in again["claims"]] == [c["verdict"] for c in done["claims"]]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept

    # C9 on a length of its own: a second paper-protocol run continues the first from its last snapshot, and it
    # and the skull-stripped run train on to iteration 5; the other runs stay as they were.
    longer = run_claims(truth_cohort, Path("runs/claims"), schedule, force=True, large_tile_batch=4,
                        extractor=not_air, skull_strip_training=True, skull_strip_max_iter=5)
    runs = Path("runs/claims/runs")
    assert (runs / "bright_c9/plaquenet_iter_3.caffemodel").read_bytes() == (
        runs / "bright/plaquenet_iter_3.caffemodel").read_bytes()
    assert not (runs / "bright_c9/plaquenet_iter_1.caffemodel").exists()   # continued, not trained anew
    assert (runs / "bright_c9/plaquenet_iter_5.caffemodel").is_file()
    assert (runs / "stripped/plaquenet_iter_5.caffemodel").is_file()
    assert not (runs / "bright/plaquenet_iter_5.caffemodel").exists()
    c9 = {c["id"]: c for c in longer["claims"]}["C9"]
    twin = json.loads(Path("runs/claims/observations/bright_c9.json").read_text())["observations"]
    stripped = json.loads(Path("runs/claims/observations/stripped.json").read_text())["observations"]
    assert c9["numbers"]["fp_pixels"] == {"paper_protocol": twin["pixel"]["polygons"]["fp"],
                                          "skull_stripped": stripped["pixel"]["polygons"]["fp"]}
    assert "both nets trained 5 iterations (the other claims' 3)" in c9["experiment"]
    assert [c["verdict"] for c in longer["claims"][:8]] == [c["verdict"] for c in done["claims"][:8]]
    unchanged = {p: t for p, t in kept.items() if "stripped" not in str(p)}
    assert {p: p.stat().st_mtime_ns for p in unchanged} == unchanged


def test_claims_reuse_the_reproductions_training_and_scores(truth_cohort):
    """`make claims` after `make reproduce-quick`: the reproduction is the paper-protocol run,
    and its score (Fig. 5 of every snapshot, the whole volumes) is reused, not made again."""
    from plaquenet.experiments.reproduce import PRESETS, reproduce

    schedule = dataclasses.replace(PRESETS["quick"].schedule, max_iter=2)
    record = reproduce("quick", run_dir="runs/r", max_iter=2, cohort_dir=truth_cohort)
    scored = Path(record["run"]) / "score" / "results.json"
    before = scored.stat().st_mtime_ns
    run_claims(truth_cohort, Path("runs/claims"), schedule, main_run=record["run"], large_tile_batch=4,
               extractor=not_air)
    assert scored.stat().st_mtime_ns == before
    assert "SHORTENED" in json.loads(Path("runs/claims/runs/none/score/results.json").read_text())["training"]
