"""The network applied to what the paper scores: the full axial slices that
contain plaques (§4.1, §4.3), and the training tiles (the threshold the paper
tried first and dropped, §4.3).

`forward` is any callable image_hw float32 (H, W) -> probabilities float32
(H, W), e.g. `plaquenet.engines.torch.net.load_deploy(...)`; the paper's net is
fully convolutional, so one function serves 50x50 tiles and 448x512 scans.
Where it carries the batch protocol (`engines.Forward`: `many`, `batch_pixels`),
same-size slices go through it several per call (`forward_slices`): the same
results as one at a time within the conformance tolerance (tested; bit for bit
for the paper's net on the CPU, README: Measured, Scoring at scale).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, List, Optional, Tuple

import h5py
import numpy as np

from ..cohort import Scan, normalise_intensity
from ..engines import SLICE_PIXELS, Forward
from ..errors import InputError
from ..progress import progress
from ..typing import PathLike
from .sweep import SweepHistogram, best_f_threshold_two_pass

if TYPE_CHECKING:
    from tqdm import tqdm



@dataclasses.dataclass
class LesionSlice:
    """One axial slice with plaques, as the network saw it."""

    patient: str
    index: int  # s, in the patient's (S, H, W) volume
    image_hw: np.ndarray  # float32, normalised intensity in [0, 1] (the net's input)
    truth_hw: np.ndarray  # uint8, 1 = plaque
    output_hw: np.ndarray  # float32, network output in [0, 1]


def apply_network(forward: Forward, image_hw: np.ndarray) -> np.ndarray:
    """forward(image) as float32, checked to be an image of the input's size."""
    output = np.asarray(forward(np.ascontiguousarray(image_hw, dtype=np.float32)), dtype=np.float32)
    if output.shape != image_hw.shape:
        raise ValueError(f"network output shape {output.shape} != input shape {image_hw.shape}")
    return output


def slices_per_call(forward: Forward, shape_hw: Tuple[int, ...]) -> int:
    """How many (H, W) slices `forward` takes per call: its `batch_pixels` over
    H x W (at least 1); 1 for a forward without `many`."""
    if getattr(forward, "many", None) is None:
        return 1
    pixels = int(getattr(forward, "batch_pixels", SLICE_PIXELS))
    return max(1, pixels // max(1, int(np.prod(shape_hw))))


def forward_slices(forward: Forward, images_nhw: np.ndarray) -> np.ndarray:
    """The network's output float32 (N, H, W) on a stack of same-size slices:
    `slices_per_call` at a time through `forward.many`, else one by one."""
    images_nhw = np.ascontiguousarray(images_nhw, dtype=np.float32)
    per_call = slices_per_call(forward, images_nhw.shape[1:])
    outputs = np.empty(images_nhw.shape, np.float32)
    if per_call == 1:
        for n, image in enumerate(images_nhw):
            outputs[n] = apply_network(forward, image)
        return outputs
    for start in range(0, len(images_nhw), per_call):
        chunk = images_nhw[start:start + per_call]
        output = np.asarray(getattr(forward, "many")(chunk), dtype=np.float32)
        if output.shape != chunk.shape:
            raise ValueError(f"network output shape {output.shape} != input shape {chunk.shape}")
        outputs[start:start + len(chunk)] = output
    return outputs


def forward_lesion_slices(scan: Scan, forward: Forward,
                          image_shw: Optional[np.ndarray] = None) -> Iterator[LesionSlice]:
    """The network's output on each slice of `scan` that contains a plaque.

    Input: `normalise_intensity` of the whole volume, sliced, i.e. exactly
    what the training tiles were cut from; `image_shw`: the net's input when
    it is another (`cohort.scan_input`, e.g. skull-stripped)."""
    return _lesion_slices(scan, lambda s, image_hw: apply_network(forward, image_hw), image_shw)


def lesion_slices_of_volume(scan: Scan, output_shw: np.ndarray,
                            image_shw: Optional[np.ndarray] = None) -> Iterator[LesionSlice]:
    """What `forward_lesion_slices` yields, taken from the output already
    computed on every slice (`forward_volume` of the same scan): no second
    forward of the slices with plaques. `image_shw`: the normalised volume
    when already computed."""
    return _lesion_slices(scan, lambda s, image_hw: output_shw[s].copy(), image_shw)


def _lesion_slices(scan: Scan, output_of: Callable[[int, np.ndarray], np.ndarray],
                   image_shw: Optional[np.ndarray] = None) -> Iterator[LesionSlice]:
    """A LesionSlice per slice with a plaque, its output `output_of(s, image_hw)`;
    `image_shw`: the normalised volume when already computed."""
    image_shw = normalise_intensity(scan.flair_shw) if image_shw is None else image_shw
    for s in scan.lesion_slices():
        # copies, not views: the best/worst slices are kept across patients and a
        # view would keep each of their whole volumes alive
        yield LesionSlice(scan.patient, int(s), image_shw[s].copy(), scan.mask_shw[s].copy(),
                          output_of(int(s), image_shw[s]))


def forward_volume(flair_shw: np.ndarray, forward: Forward, image_shw: Optional[np.ndarray] = None) -> np.ndarray:
    """The network's output on EVERY slice of a (S, H, W) FLAIR volume, float32
    (S, H, W): the whole probability volume (--save-probabilities, `segment`),
    same input as `forward_lesion_slices`. Costs S forwards, where scoring
    costs only the slices with plaques. `image_shw`: the net's input when already
    made (`cohort.network_input`, e.g. skull-stripped)."""
    image_shw = normalise_intensity(flair_shw) if image_shw is None else image_shw
    output_shw = np.empty(image_shw.shape, np.float32)
    per_call = slices_per_call(forward, image_shw.shape[1:])
    with progress(total=len(image_shw), desc="slices", unit="slice") as bar:
        for start in range(0, len(image_shw), per_call):
            stop = min(start + per_call, len(image_shw))
            output_shw[start:stop] = forward_slices(forward, image_shw[start:stop])
            bar.update(stop - start)
    return output_shw


@dataclasses.dataclass
class ForwardedScan:
    """One patient after the network: the scan, its normalised input and the
    output on the slices forwarded (those with plaques, or every slice).
    What scoring needs of a patient, wherever the forward ran (parallel.py)."""

    scan: Scan
    image_shw: np.ndarray  # float32 (S, H, W), normalise_intensity(scan.flair_shw)
    indices: np.ndarray  # int (K,), ascending: the slices forwarded
    output_khw: np.ndarray  # float32 (K, H, W): output of slice indices[k]

    def lesion_slices(self) -> Iterator[LesionSlice]:
        """What `forward_lesion_slices` yields for this scan, from the outputs held."""
        position = {int(s): k for k, s in enumerate(self.indices)}
        return _lesion_slices(self.scan, lambda s, image_hw: self.output_khw[position[s]].copy(), self.image_shw)

    @property
    def output_shw(self) -> np.ndarray:
        """The whole probability volume (S, H, W); only when every slice was forwarded."""
        assert len(self.indices) == len(self.image_shw), "not every slice was forwarded"
        return self.output_khw


def forward_scan(scan: Scan, forward: Forward, every_slice: bool = False,
                 image_shw: Optional[np.ndarray] = None) -> ForwardedScan:
    """`scan` through `forward`: the slices with plaques (§4.1), or with
    `every_slice` the whole volume; the input normalised as in training
    (`image_shw` when already computed), slices batched by `forward_slices`."""
    image_shw = normalise_intensity(scan.flair_shw) if image_shw is None else image_shw
    indices = np.arange(len(image_shw)) if every_slice else scan.lesion_slices()
    return ForwardedScan(scan, image_shw, indices, forward_slices(forward, image_shw[indices]))


def training_tile_files(cohort_dir: PathLike, tiles: Optional[PathLike] = None) -> List[Path]:
    """The HDF5 tile files of the training set: those listed in
    TILES/train.txt (Caffe's HDF5Data source; a line is found as written,
    else by its name in the tiles folder), or TILES/train*.h5; [] if none.
    `tiles`: a tile folder or its list file (default COHORT/tiles)."""
    tiles = Path(cohort_dir) / "tiles" if tiles is None else Path(tiles)
    listing = tiles if tiles.is_file() else tiles / "train.txt"
    tiles = listing.parent
    if not listing.is_file():
        return sorted(tiles.glob("train*.h5"))
    files = []
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        path = Path(line.strip())
        if not path.is_file():
            path = tiles / path.name
        if not path.is_file():
            raise InputError(listing, f"lists {line.strip()}, which is not a file")
        files.append(path)
    return files


def threshold_from_tiles(files: List[Path], forward: Forward, batch: int = 256,
                         cache_dir: Optional[PathLike] = None) -> Optional[float]:
    """§4.3, the variant the paper tried first and dropped: the threshold with
    the best pooled F-measure over the network output on the training tiles
    (not the full scans). None when the tiles hold no lesion pixel.

    Tiles: datasets `data` and `label` (N, 1, h, w) of each Caffe HDF5Data
    file, read `batch` tiles at a time, each tile through `forward`.

    Memory stays bounded whatever the number of tiles (the paper's 7,856 tiles
    are 20 M pixels): the exact two-pass sweep (sweep.py), its second pass over
    the outputs cached as one float32 .npy (N, h, w) per tile file in a
    temporary folder under `cache_dir` (default: the system's), removed on
    return. The labels are read again from the HDF5 files."""
    n_tiles = sum(count_tiles(path) for path in files)  # checks every file's layout first
    histogram = SweepHistogram()
    with tempfile.TemporaryDirectory(prefix=".tile-outputs-", dir=cache_dir) as cache:
        cached = [Path(cache) / f"{i:05d}.npy" for i in range(len(files))]
        with progress(total=n_tiles, desc="training tiles", unit="tile") as bar:
            for path, output_path in zip(files, cached):
                _forward_tile_file(path, output_path, forward, batch, histogram, bar)
        if not histogram.counts[:, 1].any():
            return None

        def rescan() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
            for path, output_path in zip(files, cached):
                outputs = np.load(output_path, mmap_mode="r")
                with h5py.File(path, "r") as f:
                    label = f["label"]
                    for start in range(0, label.shape[0], batch):
                        yield outputs[start:start + batch], label[start:start + batch, 0] > 0.5
                del outputs  # the memmap holds the file open (Windows cannot remove it)

        return best_f_threshold_two_pass(histogram, rescan).threshold


def _forward_tile_file(path: Path, output_path: Path, forward: Forward, batch: int,
                       histogram: SweepHistogram, bar: "tqdm[Any]") -> None:
    """Pass 1 over one tile file: each tile's output counted into `histogram`
    and written to `output_path`, float32 (N, h, w)."""
    with h5py.File(path, "r") as f:
        data, label = f["data"], f["label"]
        outputs = np.lib.format.open_memmap(output_path, mode="w+", dtype=np.float32,
                                            shape=(data.shape[0],) + data.shape[2:])
        for start in range(0, data.shape[0], batch):
            images = data[start:start + batch, 0]
            output = forward_slices(forward, images)
            outputs[start:start + len(images)] = output
            histogram.add(output, label[start:start + batch, 0] > 0.5)
            bar.update(len(images))
        outputs.flush()
        del outputs


def count_tiles(path: PathLike) -> int:
    """Number of tiles in a Caffe HDF5Data file; InputError unless it holds
    `data` and `label` of the same shape (N, 1, h, w)."""
    try:
        with h5py.File(path, "r") as f:
            shapes: List[Any] = [f[name].shape if name in f else None for name in ("data", "label")]
    except OSError as e:
        raise InputError(path, f"not a readable HDF5 file ({e})") from None
    if None in shapes or shapes[0] != shapes[1] or len(shapes[0]) != 4 or shapes[0][1] != 1:
        raise InputError(path, f"expected datasets data and label of shape (N, 1, h, w), got {shapes}")
    return int(shapes[0][0])
