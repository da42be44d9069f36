"""Snapshot discovery (engines/snapshots.py): the latest snapshot of a run
folder and every snapshot in iteration order, by the number, not the name."""

import pytest

from plaquenet.engines.snapshots import latest_snapshot, snapshots_by_iteration
from plaquenet.errors import InputError


def test_latest_snapshot_by_iteration_number(tmp_path):
    for n in (200, 1000, 30):
        (tmp_path / f"plaquenet_iter_{n}.caffemodel").write_bytes(b"")
    (tmp_path / "plaquenet_iter_5000.solverstate").write_bytes(b"")
    assert latest_snapshot(tmp_path).name == "plaquenet_iter_1000.caffemodel"
    assert latest_snapshot(tmp_path / "plaquenet_iter_200.caffemodel").name == "plaquenet_iter_200.caffemodel"


@pytest.mark.parametrize("make, problem", [
    (lambda p: p / "missing.caffemodel", "no such snapshot"),
    (lambda p: p, "no \\*_iter_<N>.caffemodel"),
    (lambda p: (p / "x_iter_5.solverstate").write_bytes(b"") or p / "x_iter_5.solverstate", "not a .caffemodel"),
])
def test_bad_snapshot_is_one_line_input_error(tmp_path, make, problem):
    with pytest.raises(InputError, match=problem) as e:
        latest_snapshot(make(tmp_path))
    assert "\n" not in str(e.value)


def test_snapshots_in_iteration_order(tiny_run):
    run_dir, _ = tiny_run
    assert [n for n, _ in snapshots_by_iteration(run_dir)] == [10, 20, 100]
    with pytest.raises(InputError, match="not a run folder"):
        snapshots_by_iteration(run_dir / "tiny_iter_10.caffemodel")
