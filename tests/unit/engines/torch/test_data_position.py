"""The data position beside a .solverstate: written before the .solverstate
appears, used on resume only when it belongs to that very .solverstate."""

import json
import os

import h5py
import numpy as np
import pytest

from plaquenet.engines.torch.data import DataStream
from plaquenet.engines.torch.data_position import (data_position_path, restore_data_position,
                                                   write_with_data_position)


def _stream(tmp_path, rows=(5, 3)):
    for k, n in enumerate(rows):
        with h5py.File(tmp_path / f"f{k}.h5", "w") as f:
            f["data"] = (100 * k + np.arange(n, dtype=np.float32)).reshape(n, 1)
    (tmp_path / "list.txt").write_text("".join(f"{tmp_path / f'f{k}.h5'}\n" for k in range(len(rows))))
    stream = DataStream()
    stream.reader("data", tmp_path / "list.txt", ["data"], 3, shuffle=True)
    return stream


def _snapshot(tmp_path, stream, iteration=6, content=b"solver state"):
    solverstate = tmp_path / f"m_iter_{iteration}.solverstate"
    write_with_data_position(solverstate, lambda path: path.write_bytes(content), stream, iteration)
    return solverstate


def _next_ids(stream):
    return stream.readers[0][1].next_batch()[0].ravel().tolist()


def test_the_name_sits_beside_the_solverstate():
    assert str(data_position_path("runs/x/m_iter_6.solverstate")) == "runs/x/m_iter_6.data_position.json"


def test_the_position_is_in_place_before_the_solverstate(tmp_path, monkeypatch):
    stream = _stream(tmp_path)
    renamed = []

    def replace(src, dst):
        renamed.append(os.path.basename(dst))
        os.rename(src, dst)

    monkeypatch.setattr(os, "replace", replace)   # atomic_path renames with os.replace
    _snapshot(tmp_path, stream)
    assert renamed == ["m_iter_6.data_position.json", "m_iter_6.solverstate"]


def test_a_resume_goes_on_from_the_saved_position(tmp_path):
    stream = _stream(tmp_path)
    for _ in range(4):
        _next_ids(stream)
    solverstate = _snapshot(tmp_path, stream)
    expected = [_next_ids(stream) for _ in range(6)]

    fresh = _stream(tmp_path)
    line = restore_data_position(solverstate, fresh, 6)
    assert line.startswith(f"Data position restored from {tmp_path / 'm_iter_6.data_position.json'}")
    assert [_next_ids(fresh) for _ in range(6)] == expected


def _restart_line(tmp_path, solverstate, iteration=6):
    fresh = _stream(tmp_path)
    first = _next_ids(_stream(tmp_path))
    line = restore_data_position(solverstate, fresh, iteration)
    assert _next_ids(fresh) == first            # still at the first row, as in Caffe
    assert line.endswith("the HDF5Data layers start again at their first row, as in Caffe")
    return line


def test_without_a_position_the_data_restarts_as_in_caffe(tmp_path):
    (tmp_path / "caffe_iter_6.solverstate").write_bytes(b"Caffe's")
    assert _restart_line(tmp_path, tmp_path / "caffe_iter_6.solverstate").startswith("No data position")


def test_a_position_of_another_solverstate_is_not_used(tmp_path):
    stream = _stream(tmp_path)
    _next_ids(stream)
    solverstate = _snapshot(tmp_path, stream)
    solverstate.write_bytes(b"another run's solver state")      # e.g. a run killed between the two renames
    assert "belongs to another m_iter_6.solverstate" in _restart_line(tmp_path, solverstate)
    _snapshot(tmp_path, stream)
    assert "belongs to another" in _restart_line(tmp_path, solverstate, iteration=7)


def test_a_position_that_does_not_fit_the_files_is_not_used(tmp_path):
    stream = _stream(tmp_path)
    solverstate = _snapshot(tmp_path, stream)
    saved = json.loads(data_position_path(solverstate).read_text())
    assert saved["iter"] == 6 and len(saved["rand"]) == 31 and saved["layers"][0]["layer"] == "data"
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'f1.h5'}\n")   # the list changed since
    fresh = DataStream()
    fresh.reader("data", tmp_path / "list.txt", ["data"], 3, shuffle=True)
    line = restore_data_position(solverstate, fresh, 6)
    assert "does not fit these nets" in line and "files" in line


def test_nets_without_hdf5data_write_and_log_nothing(tmp_path):
    solverstate = _snapshot(tmp_path, DataStream())
    assert solverstate.read_bytes() == b"solver state"
    assert not data_position_path(solverstate).exists()
    assert restore_data_position(solverstate, DataStream(), 6) is None


@pytest.mark.parametrize("garbage", ["{", "[]", '{"format": "something else"}'])
def test_an_unreadable_position_restarts_the_data(tmp_path, garbage):
    solverstate = _snapshot(tmp_path, _stream(tmp_path))
    data_position_path(solverstate).write_text(garbage)
    _restart_line(tmp_path, solverstate)
