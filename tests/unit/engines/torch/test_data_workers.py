"""HDF5Data with several workers (HDF5DataLayer::Skip, hdf5_data_layer.cpp):
each worker walks the whole row stream and keeps the rows at its rank
modulo the workers, so the workers' batches together are one process's
batch of workers x batch_size, row for row."""

import h5py
import numpy as np
import pytest

from plaquenet.engines.torch.data import DataStream, HDF5Rows


def write_h5(path, first_value, rows):
    data = (first_value + np.arange(rows, dtype=np.float32)).reshape(rows, 1)
    with h5py.File(path, "w") as f:
        f["data"] = data
    return path


@pytest.fixture
def source(tmp_path):
    write_h5(tmp_path / "a.h5", 0, 5)
    write_h5(tmp_path / "b.h5", 100, 3)
    (tmp_path / "list.txt").write_text(f"{tmp_path / 'a.h5'}\n{tmp_path / 'b.h5'}\n")
    return tmp_path / "list.txt"


@pytest.mark.parametrize("workers, batch_size", [(2, 3), (3, 2), (2, 1)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_the_workers_batches_interleave_into_one_process_batch(source, workers, batch_size, shuffle):
    one = HDF5Rows(source, ["data"], batch_size * workers, shuffle=shuffle)
    ranks = [HDF5Rows(source, ["data"], batch_size, shuffle=shuffle, share=(r, workers)) for r in range(workers)]
    for _ in range(12):   # several wraps over the 8 rows, reshuffled each time
        whole = one.next_batch()[0][:, 0]
        parts = [rows.next_batch()[0][:, 0] for rows in ranks]
        np.testing.assert_array_equal(np.stack(parts, axis=1).ravel(), whole)


def test_a_worker_restored_from_its_position_reads_on_as_before(source):
    def worker_stream():
        stream = DataStream()
        stream.share = (0, 2)
        stream.reader("data", source, ["data"], 2, shuffle=True)
        return stream

    stream = worker_stream()
    rows = stream.readers[0][1]
    for _ in range(3):
        rows.next_batch()
    saved = stream.position()
    # rank 0 of 2 has walked just past its 6th row, stream row 10: 11 rows, an odd count, so a
    # reader that forgot it (offset 0) would take the next row instead of skipping it
    assert saved["layers"][0]["offset"] == 11
    expected = [rows.next_batch()[0].tolist() for _ in range(4)]
    fresh = worker_stream()
    fresh.restore(saved)
    assert [fresh.readers[0][1].next_batch()[0].tolist() for _ in range(4)] == expected
