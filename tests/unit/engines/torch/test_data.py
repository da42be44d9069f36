"""Caffe's HDF5Data row order: file order, wrap-around, batches across files."""

import h5py
import numpy as np
import pytest

from plaquenet.engines.torch.data import HDF5Rows
from plaquenet.errors import InputError


def write_h5(path, first_value, rows, dtype=np.float32):
    data = (first_value + np.arange(rows, dtype=np.float64)).astype(dtype).reshape(rows, 1, 1, 1)
    with h5py.File(path, "w") as f:
        f["data"] = np.broadcast_to(data, (rows, 1, 2, 2)).copy()
        f["label"] = -data.reshape(rows, 1)
    return path


def test_rows_wrap_around_two_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)        # list entries are relative to the working directory
    write_h5(tmp_path / "a.h5", 0, 3)                       # rows 0 1 2
    write_h5(tmp_path / "b.h5", 10, 2, dtype=np.int16)      # rows 10 11 (integers -> float32)
    (tmp_path / "list.txt").write_text("a.h5\n  b.h5 \n")
    rows = HDF5Rows("list.txt", ["data", "label"], batch_size=4)
    assert rows.top_shapes == [(4, 1, 2, 2), (4, 1)]
    batches = [rows.next_batch() for _ in range(3)]
    firsts = [b[0][:, 0, 0, 0].tolist() for b in batches]
    assert firsts == [[0, 1, 2, 10], [11, 0, 1, 2], [10, 11, 0, 1]]
    assert all(b[0].dtype == np.float32 and b[1].dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(batches[1][1][:, 0], [-11, 0, -1, -2])   # tops stay aligned


def test_single_file_wraps_in_place(tmp_path):
    write_h5(tmp_path / "a.h5", 0, 3)
    (tmp_path / "list.txt").write_text(str(tmp_path / "a.h5"))
    rows = HDF5Rows(tmp_path / "list.txt", ["data"], batch_size=2)
    assert [rows.next_batch()[0][:, 0, 0, 0].tolist() for _ in range(3)] == [[0, 1], [2, 0], [1, 2]]


def test_shuffle_permutes_each_pass(tmp_path):
    write_h5(tmp_path / "a.h5", 0, 6)
    (tmp_path / "list.txt").write_text(str(tmp_path / "a.h5"))
    rows = HDF5Rows(tmp_path / "list.txt", ["data"], batch_size=6, shuffle=True, rng=np.random.default_rng(1))
    passes = [rows.next_batch()[0][:, 0, 0, 0].tolist() for _ in range(3)]
    assert all(sorted(p) == list(range(6)) for p in passes) and len({tuple(p) for p in passes}) > 1


def test_missing_dataset_and_list_are_input_errors(tmp_path):
    write_h5(tmp_path / "a.h5", 0, 3)
    (tmp_path / "list.txt").write_text(str(tmp_path / "a.h5"))
    with pytest.raises(InputError, match="no dataset 'mask'"):
        HDF5Rows(tmp_path / "list.txt", ["data", "mask"], batch_size=2)
    with pytest.raises(InputError, match="source list"):
        HDF5Rows(tmp_path / "none.txt", ["data"], batch_size=2)
    (tmp_path / "dangling.txt").write_text(str(tmp_path / "gone.h5"))
    with pytest.raises(InputError, match="gone.h5"):
        HDF5Rows(tmp_path / "dangling.txt", ["data"], batch_size=2)


def test_bool_datasets_are_refused_as_caffe_does(tmp_path):
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["data"] = np.zeros((3, 1, 2, 2), np.float32)
        f["label"] = np.zeros((3, 1, 2, 2), bool)  # Caffe: "Unsupported datatype class: H5T_ENUM"
    (tmp_path / "list.txt").write_text(str(tmp_path / "b.h5"))
    with pytest.raises(InputError, match="float or integer"):
        HDF5Rows(tmp_path / "list.txt", ["data", "label"], batch_size=2)
