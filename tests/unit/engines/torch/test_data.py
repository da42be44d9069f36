"""Caffe's HDF5Data row order: file order, wrap-around, batches across files,
the shuffle, and the position a snapshot saves and a resume restores."""

import ctypes
import json

import h5py
import numpy as np
import pytest

from plaquenet.engines.torch.data import DataStream, HDF5Rows
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


def _libc_rand():
    """rand() of the C library, from srand(1): what an unseeded process draws (glibc only)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("not glibc")
    libc.srand(1)
    return libc.rand


def test_shuffle_is_caffes_random_shuffle_over_unseeded_rand(tmp_path):
    """One file of 6 rows, one batch per pass: set-up shuffles the (single)
    file list (no draw) and the rows (5 draws); each wrap shuffles the rows
    again, in place. libstdc++: for i = 1..n-1 swap i with rand() % (i + 1)."""
    write_h5(tmp_path / "a.h5", 0, 6)
    (tmp_path / "list.txt").write_text(str(tmp_path / "a.h5"))
    rows = HDF5Rows(tmp_path / "list.txt", ["data"], batch_size=6, shuffle=True)
    rand, order, expected = _libc_rand(), list(range(6)), []
    for _ in range(3):
        for i in range(1, 6):
            j = rand() % (i + 1)
            order[i], order[j] = order[j], order[i]
        expected.append(list(order))
    assert [rows.next_batch()[0][:, 0, 0, 0].tolist() for _ in range(3)] == expected
    assert expected[0] != list(range(6)) and expected[1] != expected[0]


def test_readers_of_one_stream_draw_in_turn_and_ignore_seeds(tmp_path):
    """The second reader of a DataStream shuffles with what the first left;
    a new stream (a new process) starts over: the same orders every time."""
    write_h5(tmp_path / "a.h5", 0, 7)
    (tmp_path / "list.txt").write_text(str(tmp_path / "a.h5"))

    def first_batch(rows):
        return rows.next_batch()[0][:, 0, 0, 0].tolist()

    alone = first_batch(HDF5Rows(tmp_path / "list.txt", ["data"], 7, shuffle=True))
    stream = DataStream()
    assert first_batch(stream.reader("a", tmp_path / "list.txt", ["data"], 7, shuffle=True)) == alone
    second = first_batch(stream.reader("b", tmp_path / "list.txt", ["data"], 7, shuffle=True))
    assert sorted(second) == list(range(7)) and second != alone


def _three_files(tmp_path):
    for k, n in enumerate((5, 3, 4)):
        write_h5(tmp_path / f"f{k}.h5", 100 * k, n)
    (tmp_path / "list.txt").write_text("".join(str(tmp_path / f"f{k}.h5\n") for k in range(3)))
    return tmp_path / "list.txt"


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_restored_position_reads_on_as_the_reader_it_was_saved_from(tmp_path, shuffle):
    source = _three_files(tmp_path)
    original = DataStream()
    rows = original.reader("data", source, ["data", "label"], 4, shuffle)
    other = original.reader("test", source, ["data"], 3, shuffle)
    for _ in range(5):
        rows.next_batch()
    other.next_batch()
    saved = json.loads(json.dumps(original.position()))   # as the snapshot keeps it

    fresh = DataStream()
    again = fresh.reader("data", source, ["data", "label"], 4, shuffle)
    other_again = fresh.reader("test", source, ["data"], 3, shuffle)
    assert again.next_batch()[0].tolist() != rows.next_batch()[0].tolist()   # not there by chance
    fresh.restore(saved)
    original.restore(saved)
    for _ in range(12):   # past several wraps: the rand() state came back too
        for a, b in zip(again.next_batch(), rows.next_batch()):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(other_again.next_batch()[0], other.next_batch()[0])


def test_a_position_that_does_not_fit_changes_nothing(tmp_path):
    source = _three_files(tmp_path)
    stream = DataStream()
    rows = stream.reader("data", source, ["data"], 4, shuffle=True)
    rows.next_batch()
    saved = stream.position()
    layer = saved["layers"][0]
    before = (json.dumps(saved), rows.arrays[0].copy())
    at_f1 = dict(layer, current_file=layer["file_order"].index(1), current_row=0, row_order=[2, 0, 1])
    broken = [dict(saved, rand=[0] * 30),
              dict(saved, layers=[dict(layer, layer="other")]),
              dict(saved, layers=[dict(layer, shuffle=False)]),
              dict(saved, layers=[dict(layer, current_file=3)]),
              dict(saved, layers=[dict(layer, row_order=[0, 1, 2, 3, 3])]),
              dict(saved, layers=[layer, layer])]
    stream.restore(dict(saved, layers=[at_f1]))                # f1 has 3 rows: this one fits
    stream.restore(saved)
    write_h5(tmp_path / "f1.h5", 100, 9)                       # now f1 has 9
    for bad in broken + [dict(saved, layers=[at_f1])]:
        with pytest.raises(ValueError):
            stream.restore(bad)
        assert json.dumps(stream.position()) == before[0]
        np.testing.assert_array_equal(rows.arrays[0], before[1])


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


def test_tiles_kept_on_the_device_give_the_batches_read_from_the_host(tmp_path):
    """The GPU path (HDF5Data `resident`: each file copied to the device once, batches
    gathered there) serves the same rows in the same order, across files and shuffles."""
    import torch

    from plaquenet.engines.torch.layers import HDF5Data

    write_h5(tmp_path / "a.h5", 0, 5)
    write_h5(tmp_path / "b.h5", 10, 3)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n")
    layers = {resident: HDF5Data(HDF5Rows(tmp_path / "list.txt", ["data", "label"], 3, shuffle=True),
                                 torch.device("cpu"), resident=resident) for resident in (False, True)}
    for _ in range(9):   # three passes over the 8 rows: batches span both files, orders reshuffled
        host, device = layers[False](), layers[True]()
        for a, b in zip(host, device):
            assert torch.equal(a, b)
    assert sorted(layers[True]._on_device) == [0, 1]   # each file copied once
