"""`plaquenet score --workers N` (#15 item 3): patients spread over processes,
each loading the net itself, give the numbers one process gives: the exact
sweep's threshold (its histograms and second-pass cache built from the
workers' outputs), every count, every per-patient row."""

import json

import numpy as np
import pytest

import tiny_nets
from plaquenet.cli import main
from plaquenet.errors import InputError
from plaquenet.score import score

# what differs between two runs of the same scoring by design
RUN_SPECIFIC = ("date", "timing", "out")


def scored(out):
    results = json.loads((out / "results.json").read_text())
    return {k: v for k, v in results.items() if k not in RUN_SPECIFIC}, (out / "per_patient.csv").read_text()


def test_two_workers_give_every_number_one_process_gives(cohort, tiny_run, tmp_path):
    run_dir, deploy = tiny_run
    one = score(run_dir, cohort_dir=cohort, deploy=deploy, out=tmp_path / "one")
    two = score(run_dir, cohort_dir=cohort, deploy=deploy, out=tmp_path / "two", workers=2)
    assert (one["timing"]["workers"], two["timing"]["workers"]) == (1, 2)
    assert one["timing"]["scans"] == two["timing"]["scans"] == 8 and two["timing"]["scans_per_second"] > 0
    (a, rows_a), (b, rows_b) = scored(tmp_path / "one"), scored(tmp_path / "two")
    assert a["threshold"] == b["threshold"] and a["test"]["pixel"] == b["test"]["pixel"]
    assert a == b and rows_a == rows_b
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # caches and partial folders gone


def test_cli_workers_and_batch_slices_are_recorded_with_scans_per_second(cohort, tiny_run, tmp_path, capsys):
    run_dir, deploy = tiny_run
    assert main(["score", "--snapshot", str(run_dir), "--cohort", str(cohort), "--deploy", str(deploy),
                 "--out", str(tmp_path / "s"), "--workers", "2", "--batch-slices", "2", "--no-whole-volume"]) == 0
    timing = json.loads((tmp_path / "s" / "results.json").read_text())["timing"]
    assert (timing["workers"], timing["batch_slices"]) == (2, 2)
    assert timing["slices_forwarded"] == 8 and timing["scans_per_second"] == pytest.approx(8 / timing["seconds"],
                                                                                         rel=1e-2)
    assert "scans/s" in capsys.readouterr().out


@pytest.mark.parametrize("option, value", [("--workers", "0"), ("--batch-slices", "0")])
def test_workers_or_batch_below_one_is_refused_in_one_line(cohort, tiny_run, tmp_path, capsys, option, value):
    run_dir, deploy = tiny_run
    assert main(["score", "--snapshot", str(run_dir), "--cohort", str(cohort), "--deploy", str(deploy),
                 "--out", str(tmp_path / "s"), option, value]) == 2
    assert option in capsys.readouterr().err and not (tmp_path / "s").exists()


def test_a_diverged_snapshot_is_refused_by_name_from_a_worker(cohort, deploy, tmp_path):
    run = tmp_path / "runs" / "nan"
    run.mkdir(parents=True)
    tiny_nets.write_one_conv_snapshot(run / "net_iter_5.caffemodel", np.full((3, 3), np.nan), 0.0)
    with pytest.raises(InputError, match="NaN") as e:   # raised in a worker, one line here
        score(run, cohort_dir=cohort, deploy=deploy, workers=2)
    assert "net_iter_5.caffemodel" in str(e.value)
    assert not (run / "score").exists()
