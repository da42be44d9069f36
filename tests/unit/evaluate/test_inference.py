"""The tiles' threshold (evaluate/inference.py): the two-pass sweep over every
output pixel of the training tiles equals one value table, and leaves no cache."""

import h5py
import numpy as np
import pytest

from plaquenet.evaluate.inference import threshold_from_tiles
from plaquenet.evaluate.sweep import best_f_threshold, merge_tables, value_table


def value_table_threshold(files, forward):
    """The tiles' threshold as it was computed before the two-pass sweep: one
    value table over every output pixel of every tile."""
    tables = []
    for path in files:
        with h5py.File(path, "r") as f:
            outputs = [forward(image) for image in f["data"][:, 0]]
            if outputs:
                tables.append(value_table(np.stack(outputs), f["label"][:, 0] > 0.5))
    table = merge_tables(tables)
    return best_f_threshold(table) if table.positives.sum() else None


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_tiles_threshold_two_pass_equals_the_value_table_and_leaves_no_cache(tmp_path, batch):
    rng = np.random.default_rng(batch)
    files = []
    for i, n in enumerate((7, 0, 4)):  # an empty tile file too
        data = rng.random((n, 1, 6, 5)).astype(np.float32)
        data[:, :, 0, 0] = 0.5  # values repeated across tiles and files
        label = ((data + rng.normal(0, 0.2, data.shape)) > 0.7).astype(np.float32)
        files.append(tmp_path / f"train_{i}.h5")
        with h5py.File(files[-1], "w") as f:
            f["data"], f["label"] = data, label

    def squash(image):  # a nonlinear net: many outputs, some equal
        return np.round(1 / (1 + np.exp(-8 * (image - 0.6))), 3).astype(np.float32)

    cache = tmp_path / "cache"
    cache.mkdir()
    got = threshold_from_tiles(files, squash, batch=batch, cache_dir=cache)
    assert got is not None and got == value_table_threshold(files, squash)
    assert list(cache.iterdir()) == []
    # No lesion pixel in any tile: no threshold (and still no cache left).
    with h5py.File(files[0], "a") as f:
        f["label"][...] = 0
    with h5py.File(files[2], "a") as f:
        f["label"][...] = 0
    assert threshold_from_tiles(files, squash, batch=batch, cache_dir=cache) is None
    assert list(cache.iterdir()) == []
