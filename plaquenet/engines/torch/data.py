"""Caffe's HDF5Data layer (src/caffe/layers/hdf5_data_layer.cpp) as a row
reader: which rows, in which order, make each batch.

`source` is a text file of whitespace-separated .h5 paths, taken as written
(relative paths are relative to the working directory, as in Caffe). Each top
is the dataset of the same name, read whole into memory and converted to
float32. Rows are served in file order; at the end of a file the next file is
loaded (the only file stays loaded), after the last the first again, and a
batch may span two files. With `shuffle: true` the files and each file's rows
are permuted at every wrap as in Caffe, but from our seeded generator: Caffe's
std::random_shuffle over rand() cannot be reproduced."""

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import h5py
import numpy as np

from ...errors import InputError
from ...typing import PathLike


class HDF5Rows:
    """Batches of rows from the files listed in `source`, one array per top:
    float32, shape (batch_size, *dataset.shape[1:])."""

    def __init__(self, source: PathLike, tops: Sequence[str], batch_size: int, shuffle: bool = False,
                 rng: Optional[np.random.Generator] = None) -> None:
        self.source, self.tops, self.batch_size = Path(source), list(tops), int(batch_size)
        self.shuffle, self.rng = shuffle, rng or np.random.default_rng()
        self.files = _list_files(self.source)
        self.file_order = np.arange(len(self.files))
        if shuffle:
            self.rng.shuffle(self.file_order)
        self.current_file = 0
        self._load(self.files[self.file_order[0]])
        self.row_shapes = [a.shape[1:] for a in self.arrays]

    @property
    def top_shapes(self) -> List[Tuple[int, ...]]:
        return [(self.batch_size,) + s for s in self.row_shapes]

    def next_batch(self) -> List[np.ndarray]:
        out = [np.empty(s, dtype=np.float32) for s in self.top_shapes]
        filled = 0
        while filled < self.batch_size:
            take = min(self.batch_size - filled, len(self.row_order) - self.current_row)
            rows = self.row_order[self.current_row:self.current_row + take]
            for dst, src in zip(out, self.arrays):
                dst[filled:filled + take] = src[rows]
            filled += take
            self.current_row += take
            if self.current_row == len(self.row_order):
                self._next_file()
        return out

    def _next_file(self) -> None:
        if len(self.files) > 1:
            self.current_file += 1
            if self.current_file == len(self.files):
                self.current_file = 0
                if self.shuffle:
                    self.rng.shuffle(self.file_order)
            self._load(self.files[self.file_order[self.current_file]])
        self.current_row = 0
        if self.shuffle:
            self.rng.shuffle(self.row_order)

    def _load(self, path: str) -> None:
        self.arrays = [_read_dataset(path, top) for top in self.tops]
        rows = {a.shape[0] for a in self.arrays}
        if len(rows) != 1:
            raise InputError(path, f"datasets {self.tops} have different numbers of rows {sorted(rows)}")
        if hasattr(self, "row_shapes") and [a.shape[1:] for a in self.arrays] != self.row_shapes:
            raise InputError(path, f"row shapes {[a.shape[1:] for a in self.arrays]} differ from "
                                   f"{self.row_shapes} in {self.files[self.file_order[0]]}")
        self.row_order = np.arange(rows.pop())
        if self.shuffle:
            self.rng.shuffle(self.row_order)
        self.current_row = 0


def _list_files(source: Path) -> List[str]:
    try:
        files = source.read_text().split()
    except OSError as e:
        raise InputError(source, f"cannot read the HDF5Data source list ({e.strerror})") from None
    if not files:
        raise InputError(source, "lists no HDF5 files")
    return files


def _read_dataset(path: str, name: str) -> np.ndarray:
    try:
        with h5py.File(path, "r") as f:
            if name not in f:
                raise InputError(path, f"has no dataset '{name}' (an HDF5Data top)")
            data = f[name]
            if data.dtype.kind not in "fiu" or data.ndim < 1:  # Caffe aborts on bool (H5T_ENUM) too
                raise InputError(path, f"dataset '{name}' is {data.dtype}, {data.ndim}-D: "
                                       "HDF5Data needs float or integer numbers with at least one axis")
            array = np.asarray(data[...], dtype=np.float32)
    except OSError as e:
        raise InputError(path, f"cannot open HDF5 file ({e})") from None
    if array.shape[0] == 0:
        raise InputError(path, f"dataset '{name}' has no rows")
    return array
