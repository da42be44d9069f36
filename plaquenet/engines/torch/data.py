"""Caffe's HDF5Data layer (src/caffe/layers/hdf5_data_layer.cpp) as a row
reader: which rows, in which order, make each batch.

`source` is a text file of whitespace-separated .h5 paths, taken as written
(relative paths are relative to the working directory, as in Caffe). Each top
is the dataset of the same name, read whole into memory and converted to
float32. Rows are served in file order; at the end of a file the next file is
loaded (the only file stays loaded), after the last the first again, and a
batch may span two files.

With `shuffle: true` the order is Caffe's own, draw for draw: the list of
files is shuffled when the layer is set up, and again each time it wraps
around; the rows of a file are shuffled when it is loaded, and again when
its last row has been read (so twice in a row when the next file is loaded).
Every shuffle is std::random_shuffle over glibc's rand(), which Caffe never
seeds (`glibc_rand`): the order is the same in every run, `random_seed`
does not change it, and all HDF5Data layers of a process draw from one
stream, `DataStream.rand`: at set-up in the order the nets are built (the
train net, then the test nets), then in the order the layers wrap around.

With several workers (distributed.py) each worker's train net reads its own
`batch_size` rows, Caffe's way (HDF5DataLayer::Skip and Next,
hdf5_data_layer.cpp at 99bd997): every worker walks the whole row stream,
shuffles and all, and keeps the rows whose place in it (`offset`, counted
from the layer's set-up) is its rank modulo the number of workers. Two
workers of batch B thus read rows 0, 2, 4, ... and 1, 3, 5, ... of the
stream that one process of batch 2B reads. Test nets never skip (Caffe:
"in test mode, only rank 0 runs").

`DataStream.position()` is where every reader stands (file, row, both
orders, offset) and the rand() state, as plain JSON values; `restore` puts them
back, so that a resumed run reads what the uninterrupted one would have."""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from ...errors import InputError
from ...typing import PathLike
from .glibc_rand import GlibcRand

Position = Dict[str, Any]   # JSON values: one reader's (file, row, orders), or a DataStream's


class HDF5Rows:
    """Batches of rows from the files listed in `source`, one array per top:
    float32, shape (batch_size, *dataset.shape[1:]). `rand` is the process's
    rand() stream that shuffles draw from (default: a fresh one, as in a new
    Caffe process). `share` = (rank, workers): keep only the stream's rows
    whose offset is `rank` modulo `workers` (Caffe's Skip; (0, 1) keeps all)."""

    def __init__(self, source: PathLike, tops: Sequence[str], batch_size: int, shuffle: bool = False,
                 rand: Optional[GlibcRand] = None, share: Tuple[int, int] = (0, 1)) -> None:
        self.source, self.tops, self.batch_size = Path(source), list(tops), int(batch_size)
        self.shuffle, self.rand = shuffle, rand or GlibcRand()
        self.rank, self.workers = share
        self.offset = 0   # rows of the stream walked so far, kept or skipped (HDF5DataLayer::offset_)
        self.files = _list_files(self.source)
        self.file_order = np.arange(len(self.files))
        if shuffle:
            self.rand.random_shuffle(self.file_order)
        self.current_file = 0
        self._load(self.files[self.file_order[0]])
        self.row_shapes = [a.shape[1:] for a in self.arrays]

    @property
    def top_shapes(self) -> List[Tuple[int, ...]]:
        return [(self.batch_size,) + s for s in self.row_shapes]

    def next_batch(self) -> List[np.ndarray]:
        out = [np.empty(s, dtype=np.float32) for s in self.top_shapes]
        filled = 0
        for _, arrays, rows in self.next_parts():
            for dst, src in zip(out, arrays):
                dst[filled:filled + len(rows)] = src[rows]
            filled += len(rows)
        return out

    def next_parts(self) -> List[Tuple[int, List[np.ndarray], np.ndarray]]:
        """The next batch as the rows it takes from each file, in order: (the
        file's index in `files`, its arrays, the row indices). `next_batch`
        copies them out; a reader that keeps the files on a GPU gathers them there.
        With workers > 1, Forward_cpu's `while (Skip()) Next();` before each
        row: the rows up to the first of this rank are walked and dropped,
        then every `workers`-th row of the next (batch_size - 1) * workers + 1 is kept."""
        if self.workers == 1:
            return self._walk(self.batch_size)
        self._walk((self.rank - self.offset) % self.workers)
        walked = self._walk((self.batch_size - 1) * self.workers + 1)
        places = np.concatenate([np.full(len(rows), i) for i, (_, _, rows) in enumerate(walked)])
        rows = np.concatenate([rows for _, _, rows in walked])
        keep = np.arange(0, len(rows), self.workers)
        return [(walked[i][0], walked[i][1], rows[keep][places[keep] == i])
                for i in range(len(walked)) if np.any(places[keep] == i)]

    def _walk(self, n: int) -> List[Tuple[int, List[np.ndarray], np.ndarray]]:
        """The next `n` rows of the stream, as next_parts gives them; Next() for each."""
        parts = []
        filled = 0
        self.offset += n
        while filled < n:
            take = min(n - filled, len(self.row_order) - self.current_row)
            rows = self.row_order[self.current_row:self.current_row + take].copy()   # the order is reshuffled in place
            parts.append((int(self.file_order[self.current_file]), self.arrays, rows))
            filled += take
            self.current_row += take
            if self.current_row == len(self.row_order):
                self._next_file()
        return parts

    def _next_file(self) -> None:
        if len(self.files) > 1:
            self.current_file += 1
            if self.current_file == len(self.files):
                self.current_file = 0
                if self.shuffle:
                    self.rand.random_shuffle(self.file_order)
            self._load(self.files[self.file_order[self.current_file]])
        self.current_row = 0
        if self.shuffle:
            self.rand.random_shuffle(self.row_order)

    def _load(self, path: str) -> None:
        self.arrays = self._read(path)
        self.row_order = np.arange(len(self.arrays[0]))
        if self.shuffle:
            self.rand.random_shuffle(self.row_order)
        self.current_row = 0

    def _read(self, path: str) -> List[np.ndarray]:
        arrays = [_read_dataset(path, top) for top in self.tops]
        rows = {a.shape[0] for a in arrays}
        if len(rows) != 1:
            raise InputError(path, f"datasets {self.tops} have different numbers of rows {sorted(rows)}")
        if hasattr(self, "row_shapes") and [a.shape[1:] for a in arrays] != self.row_shapes:
            raise InputError(path, f"row shapes {[a.shape[1:] for a in arrays]} differ from "
                                   f"{self.row_shapes} in {self.files[self.file_order[0]]}")
        return arrays

    # --- where it stands, for snapshots ---------------------------------------

    def position(self) -> Position:
        """The file (an index into `files`, through `file_order`), the next
        row (an index into `row_order`) and both orders; an order is None
        while it is the identity (no shuffle)."""
        return {"source": str(self.source), "tops": self.tops, "shuffle": self.shuffle, "files": self.files,
                "file_order": self.file_order.tolist() if self.shuffle else None,
                "current_file": self.current_file, "current_row": self.current_row,
                "row_order": self.row_order.tolist() if self.shuffle else None, "offset": self.offset}

    def restorer(self, saved: Position) -> Callable[[], None]:
        """A function that puts the reader where `saved` says, its file
        already read; a ValueError, and nothing changed, where `saved` does
        not fit this layer or its files (another list, other rows)."""
        mine = self.position()
        for key in ("source", "tops", "shuffle", "files"):
            if saved.get(key) != mine[key]:
                raise ValueError(f"{key}: saved {saved.get(key)!r}, now {mine[key]!r}")
        file_order = _order(saved["file_order"], len(self.files), "file_order")
        current_file = _index(saved["current_file"], len(self.files), "current_file")
        path = self.files[file_order[current_file]]
        try:
            arrays = self._read(path)
        except InputError as e:
            raise ValueError(str(e)) from None
        row_order = _order(saved["row_order"], len(arrays[0]), f"row_order of {path}")
        current_row = _index(saved["current_row"], len(arrays[0]), f"current_row of {path}")
        offset = saved.get("offset", 0)   # absent in positions written before workers existed: one worker
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"offset {offset!r} is not a row count")

        def restore() -> None:
            self.file_order, self.current_file, self.arrays = file_order, current_file, arrays
            self.row_order, self.current_row, self.offset = row_order, current_row, offset
        return restore


class DataStream:
    """What the HDF5Data layers of one training process share: glibc's
    rand() stream and, for snapshots, the readers themselves, by layer name,
    in the order they were set up (train net, then test nets). `share`
    (rank, workers) is given to the readers set up while it is set: the
    train net's, with several workers (Caffe's Skip keeps every row in
    the TEST phase)."""

    def __init__(self) -> None:
        self.rand = GlibcRand()
        self.readers: List[Tuple[str, HDF5Rows]] = []
        self.test_start: Optional[Position] = None   # set while a test runs (begin_test)
        self.share: Tuple[int, int] = (0, 1)

    def reader(self, layer: str, source: PathLike, tops: Sequence[str], batch_size: int,
               shuffle: bool = False) -> HDF5Rows:
        rows = HDF5Rows(source, tops, batch_size, shuffle, self.rand, self.share)
        self.readers.append((layer, rows))
        return rows

    def position(self) -> Position:
        """Where every reader and the rand() stream stand; during a test,
        where they stood when it began: a run resumed from a snapshot taken
        in the middle of a test runs that whole test again (Caffe tests at
        the start of the iteration), and must read the same rows and draw
        the same rand() values as the test it repeats."""
        if self.test_start is not None:
            return self.test_start
        return {"rand": self.rand.state(),
                "layers": [dict(layer=name, **rows.position()) for name, rows in self.readers]}

    def begin_test(self) -> None:
        self.test_start = None
        self.test_start = self.position()

    def end_test(self) -> None:
        self.test_start = None

    def restore(self, saved: Position) -> None:
        """Every reader and the rand() stream as `saved` has them, or (a
        ValueError naming what does not fit) none of them."""
        layers = saved.get("layers")
        if not isinstance(layers, list) or len(layers) != len(self.readers):
            raise ValueError(f"it has {len(layers) if isinstance(layers, list) else 'no'} HDF5Data layers, "
                             f"the nets {len(self.readers)}")
        restores = []
        for i, ((name, rows), entry) in enumerate(zip(self.readers, layers)):
            if not isinstance(entry, dict) or entry.get("layer") != name:
                raise ValueError(f"HDF5Data layer {i} is '{name}', saved "
                                 f"'{entry.get('layer') if isinstance(entry, dict) else entry}'")
            try:
                restores.append(rows.restorer(entry))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"layer '{name}': {e}") from None
        try:
            rand = GlibcRand.from_state(saved.get("rand") or [])
        except ValueError as e:
            raise ValueError(f"rand: {e}") from None
        for restore in restores:
            restore()
        self.rand.window = rand.window     # the readers hold this object: change its state, not the object


def _order(saved: Optional[List[int]], n: int, what: str) -> np.ndarray:
    """A saved order (None: the identity), checked to be a permutation of n."""
    order = np.arange(n) if saved is None else np.array(saved, dtype=np.int64)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"{what} is not an order of {n} items")
    return order


def _index(saved: int, n: int, what: str) -> int:
    if not isinstance(saved, int) or not 0 <= saved < n:
        raise ValueError(f"{what} {saved!r} is not below {n}")
    return saved


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
