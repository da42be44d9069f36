"""Atomic replacement of a file or folder (plaquenet/atomic.py)."""

import pytest

from plaquenet import atomic


def test_atomic_directory_replacement_puts_the_old_one_back_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real_replace = atomic.os.replace
    calls = []

    def failing_second_replace(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", failing_second_replace)
    with pytest.raises(OSError):
        with atomic.atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "new.txt").write_text("new")
    assert (target / "old.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
