"""Paper §4.1: the training scans cut into 50x50 tiles, written for Caffe's HDF5Data.

The protocol, step by step (each step is a function below):

1. Split by patient (`COHORT/split.json`, made once with `make_split` and
   reused afterwards); only slices with lesions count, on both sides (§4.1:
   "only the scans containing plaques ... were considered", 982 train / 242 test).
2. `lesion_tile_origins`: every training slice is cut on a `tile` x `tile`
   grid anchored at (0, 0); where the size is not a multiple of the tile
   (448 x 512 with 50), one more row/column of tiles sits flush with the
   bottom/right edge, so every pixel lies in some grid tile. Every grid tile
   with a lesion pixel is kept. When it cuts a lesion (an 8-connected
   component of the mask that has pixels inside and outside the tile), the
   tile is moved by the smallest shift that holds the whole lesion (§4.1:
   "the tile was shifted appropriately to increase the chance of
   encompassing the whole lesion"). With several cut lesions, the largest
   one that fits in a tile decides the shift; when none fits, the grid tile
   stays. Identical windows are kept once; the same lesion seen at two
   offsets (from two neighbouring grid tiles) is kept twice, like tiles a)
   and c) of the paper's Fig. 4.
3. `negative_tile_weights` + `WeightedDraw`: lesion-free tiles make up
   `negative_share` of the final set (§4.1: "approximately one-third"),
   n_negative = round(n_lesion * share / (1 - share)). Candidates are all
   windows at any pixel offset of the training lesion slices that hold no
   mask pixel and are not air (window mean >= AIR_LEVEL). Each is weighted
   by (mean + standard deviation of the window) ** preference (§4.1:
   "preference to bright areas and high contrast": skull, eyes, sinuses),
   and n_negative of them are drawn without replacement with probability
   proportional to the weight (seeded).
4. Tiles come from the normalised slices (`cohort.normalise_intensity`, the
   same scaling the evaluation applies to full scans), are shuffled (HDF5Data
   reads rows in order: shuffled rows mix lesion and lesion-free tiles in
   every batch) and written as `train_NNN.h5` (datasets `data` and `label`,
   float32, N x 1 x tile x tile, each file below Caffe's INT_MAX elements per
   blob), listed in `train.txt`, described in `tiles.json`; optionally also
   as two aligned LMDBs of Caffe Datums.

Not the paper's (its §6 remedy, "remove everything but the brain"): with
`skull_strip`, the slices are `cohort.network_input` with each patient's brain
mask (`plaquenet brainmask --cohort`): normalised on the whole head, then every
voxel further than brain.GROW_MM from the brain set to 0. Lesion-free windows
are then drawn from that: windows wholly outside the brain are air (mean 0)
and never drawn; the brain's edge against the blanked rim is high-contrast and
preferred, which is the edge the net meets at test time. tiles.json records it
(parameters "skull_strip"), and score and segment feed the net the same
(`plaquenet/skull_strip.py`).
"""

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np

from .atomic import atomic_path
from .cohort import (TEST_FRACTION, cohort_file, cohort_id, iter_masks, iter_scans, lesion_slices, make_split, normalise_intensity,
                     patient_ids, read_split, split_file, write_split)
from .cohort import check_brain_masks, scan_input
from .errors import InputError
from .progress import progress
from .typing import PathLike

# The protocol's defaults, one home each (the CLI and make_tiles read them;
# the split's test fraction lives with the split, cohort.TEST_FRACTION).
TILE = 50                  # §4.1: "tiles of the size 50x50"
NEGATIVE_SHARE = 1 / 3     # §4.1: "approximately one-third" of the tiles are lesion-free
NEGATIVE_PREFERENCE = 4.0  # ours: the exponent of "preference to bright areas and high contrast"
SEED = 0

FORMAT = "plaquenet-tiles"
VERSION = 1
AIR_LEVEL = 0.05  # normalised intensity: a window darker than this on average is air, never a negative tile
INT_MAX = 2**31 - 1  # Caffe: a blob holds at most INT_MAX elements
LIST_FILE = "train.txt"


@dataclasses.dataclass
class TileSummary:
    """What `make_tiles` wrote, in the paper's terms (§4.1)."""

    out_dir: str
    tile: int
    train_patients: int
    train_scans: int  # training slices with lesions, the ones cut into tiles
    test_patients: int
    test_scans: int  # test slices with lesions, used uncut by the evaluation
    lesion_tiles: int
    negative_tiles: int
    files: List[str]  # the .h5 paths as written in train.txt
    split_reused: bool

    @property
    def tiles(self) -> int:
        return self.lesion_tiles + self.negative_tiles

    @property
    def negative_fraction(self) -> float:
        return self.negative_tiles / self.tiles if self.tiles else 0.0

    def __str__(self) -> str:
        t = self.tile
        return "\n".join([
            f"training set: {self.train_patients} patients, {self.train_scans} scans with lesions -> "
            f"{self.tiles} tiles of {t}x{t} ({self.lesion_tiles} with lesions, {self.negative_tiles} "
            f"lesion-free = {100 * self.negative_fraction:.1f}%)",
            f"testing set:  {self.test_patients} patients, {self.test_scans} scans with lesions (used uncut)",
            f"written: {os.path.join(self.out_dir, LIST_FILE)} listing {len(self.files)} HDF5 file(s); "
            f"split {'reused' if self.split_reused else 'made'}",
        ])


# --- step 2: tiles with lesions ------------------------------------------------

def grid_origins(length: int, tile: int) -> np.ndarray:
    """Tile starts along one axis: 0, tile, 2 tile, ... plus one flush with the
    far edge when `length` is not a multiple of `tile` (448 -> 0..350, 398)."""
    if length < tile:
        raise ValueError(f"a length of {length} holds no {tile}-pixel tile")
    starts = np.arange(0, length - tile + 1, tile)
    if starts[-1] + tile < length:
        starts = np.append(starts, length - tile)
    return starts


def lesion_tile_origins(mask_hw: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Top-left corners (row, column) of the tiles with lesions of one slice.

    mask_hw: (H, W) 0/1, H and W >= tile. Returns int (N, 2), without
    duplicates, in grid order; (0, 2) when the slice has no lesion."""
    h, w = mask_hw.shape
    mask_hw = (mask_hw > 0).astype(np.uint8)
    import cv2  # not at the top: the CLI reads this module's defaults beside pycaffe, where OpenCV may be absent

    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask_hw, connectivity=8)
    ys, xs = grid_origins(h, tile), grid_origins(w, tile)
    lesion_pixels = _window_sums(cv2.integral(mask_hw), tile)[np.ix_(ys, xs)]
    origins = []
    for iy, ix in zip(*np.nonzero(lesion_pixels)):
        y0, x0 = ys[iy], xs[ix]
        window = labels[y0:y0 + tile, x0:x0 + tile]
        inside = np.unique(window[window > 0])
        origins.append(_shift_to_whole_lesion(y0, x0, inside, stats, tile, (h, w)))
    if not origins:
        return np.zeros((0, 2), dtype=np.int64)
    return np.array(list(dict.fromkeys(origins)), dtype=np.int64)


def _window_sums(integral: np.ndarray, tile: int) -> np.ndarray:
    """Sums over all tile x tile windows, by top-left corner, from an (H + 1, W + 1) integral image."""
    t = tile
    return integral[t:, t:] - integral[:-t, t:] - integral[t:, :-t] + integral[:-t, :-t]


def _shift_to_whole_lesion(y0: int, x0: int, lesions: np.ndarray, stats: np.ndarray, tile: int,
                           shape_hw: Tuple[int, int]) -> Tuple[int, int]:
    """§4.1: the grid tile at (y0, x0), moved as little as possible so that it
    holds the largest lesion it cuts that fits in a tile; unmoved otherwise."""
    left, top, width, height, area = (stats[lesions, i] for i in range(5))
    cut = (top < y0) | (left < x0) | (top + height > y0 + tile) | (left + width > x0 + tile)
    fits = cut & (height <= tile) & (width <= tile)
    if not fits.any():
        return int(y0), int(x0)
    i = np.flatnonzero(fits)[np.argmax(area[fits])]
    y = _nearest_start(y0, top[i], height[i], tile, shape_hw[0])
    x = _nearest_start(x0, left[i], width[i], tile, shape_hw[1])
    return y, x


def _nearest_start(start: int, lo: int, size: int, tile: int, length: int) -> int:
    """The start in [lo + size - tile, lo] (the window holds [lo, lo + size))
    and in the image, nearest to `start`."""
    first = max(lo + size - tile, 0)
    last = min(lo, length - tile)
    return int(min(max(start, first), last))


# --- step 3: lesion-free tiles -----------------------------------------------

def negative_tile_weights(image_hw: np.ndarray, mask_hw: np.ndarray, tile: int = TILE,
                          preference: float = NEGATIVE_PREFERENCE) -> np.ndarray:
    """Weight of every window as a lesion-free tile, by its top-left corner.

    image_hw: (H, W) normalised intensity in [0, 1]; mask_hw: (H, W) 0/1.
    Returns float32 (H - tile + 1, W - tile + 1): (mean + std) ** preference of
    the window (§4.1: bright, high-contrast areas preferred; preference 0 =
    uniform), 0 where the window holds a lesion pixel or is air."""
    image_hw = np.asarray(image_hw, dtype=np.float32)
    mean = _window_means(image_hw, tile)
    std = np.sqrt(np.maximum(_window_means(image_hw, tile, squared=True) - mean**2, 0.0))
    weight = (mean + std) ** np.float32(preference)
    lesion = _window_means((mask_hw > 0).astype(np.float32), tile) > 0
    weight[lesion | (mean < AIR_LEVEL)] = 0.0
    return weight


def _window_means(image_hw: np.ndarray, tile: int, squared: bool = False) -> np.ndarray:
    """Means (of squares) over all tile x tile windows inside the image, by top-left corner."""
    import cv2  # see lesion_tile_origins

    h, w = image_hw.shape
    box = cv2.sqrBoxFilter if squared else cv2.boxFilter
    # anchor (0, 0): the output at (y, x) is the window whose top-left corner is (y, x)
    means = box(image_hw, cv2.CV_32F, (tile, tile), anchor=(0, 0), normalize=True, borderType=cv2.BORDER_REPLICATE)
    return means[:h - tile + 1, :w - tile + 1]


@dataclasses.dataclass
class WeightedDraw:
    """A weighted sample of k windows without replacement, drawn over a stream
    of slices (Efraimidis & Spirakis 2006): each candidate gets the key
    -E / weight with E ~ Exp(1) (= log(u ** (1 / weight)), u ~ U(0, 1)); the
    k largest keys win, which is the same as drawing one window at a time with
    probability proportional to its weight. Empty places have the key -inf."""

    k: int
    tile: int
    keys: np.ndarray = dataclasses.field(init=False)  # (k,) float64
    tiles: np.ndarray = dataclasses.field(init=False)  # (k, tile, tile) float32

    def __post_init__(self) -> None:
        self.keys = np.full(self.k, -np.inf)
        self.tiles = np.zeros((self.k, self.tile, self.tile), np.float32)

    def sample(self) -> np.ndarray:
        """The drawn windows, (found, tile, tile)."""
        return self.tiles[np.isfinite(self.keys)]


def offer_windows(draw: WeightedDraw, image_hw: np.ndarray, weight_yx: np.ndarray,
                  rng: np.random.Generator) -> None:
    """Let the windows of one slice (weights from `negative_tile_weights`)
    compete for the k places of `draw`; only winners are cut."""
    where = np.flatnonzero(weight_yx)
    if draw.k == 0 or where.size == 0:
        return
    keys = -rng.standard_exponential(where.size) / weight_yx.ravel()[where]
    better = keys > draw.keys.min()
    where, keys = where[better], keys[better]
    if where.size == 0:
        return
    everyone = np.concatenate([draw.keys, keys])
    winners = np.argpartition(-everyone, draw.k - 1)[:draw.k]
    newcomers = np.sort(winners[winners >= draw.k]) - draw.k  # sorted: argpartition's order varies by numpy version
    places = np.setdiff1d(np.arange(draw.k), winners[winners < draw.k])  # the losers' places
    ys, xs = np.unravel_index(where[newcomers], weight_yx.shape)
    draw.keys[places] = keys[newcomers]
    draw.tiles[places] = cut_tiles(image_hw, np.stack([ys, xs], axis=1), draw.tile)


def cut_tiles(image_hw: np.ndarray, origins_yx: np.ndarray, tile: int) -> np.ndarray:
    """(N, tile, tile) copies of the windows whose top-left corners are origins_yx (N, 2)."""
    image_hw = np.ascontiguousarray(image_hw)
    h, w = image_hw.shape
    windows = np.lib.stride_tricks.as_strided(
        image_hw, shape=(h - tile + 1, w - tile + 1, tile, tile), strides=image_hw.strides * 2, writeable=False)
    origins_yx = np.asarray(origins_yx, dtype=np.int64).reshape(-1, 2)
    return windows[origins_yx[:, 0], origins_yx[:, 1]]


# --- the whole stage -------------------------------------------------------------

def make_tiles(cohort_dir: PathLike, out_dir: PathLike, tile: int = TILE, negative_share: float = NEGATIVE_SHARE,
               test_fraction: Optional[float] = None, seed: int = SEED, lmdb: bool = False,
               max_tiles_per_file: int = 100_000, negative_preference: float = NEGATIVE_PREFERENCE,
               skull_strip: bool = False) -> TileSummary:
    """Cut the training patients' lesion slices of `cohort_dir` into tiles
    (§4.1) and write them to `out_dir` (replaced atomically).

    Writes train_NNN.h5 (`data`, `label`: float32 N x 1 x tile x tile, at most
    `max_tiles_per_file` rows each), train.txt (their paths relative to the
    current working directory, which is how Caffe's HDF5Data resolves them),
    tiles.json, and with `lmdb` train_image_lmdb/ + train_mask_lmdb/. Makes
    COHORT/split.json when absent (test_fraction None: TEST_FRACTION); a
    test_fraction given for a cohort that already has a split must be the
    split's own. Raises InputError for a bad parameter, a cohort without
    lesions or a split that does not fit the cohort.

    skull_strip: cut from the skull-stripped input (module docstring); every
    patient of the cohort needs a brain mask (InputError naming those without,
    single 2D slices included: none can exist for them)."""
    _check_parameters(tile, negative_share, max_tiles_per_file)
    if skull_strip:
        check_brain_masks(cohort_dir)  # before the long passes; test patients too: score needs theirs
    split, split_reused = _patient_split(cohort_dir, test_fraction, seed)
    origins, test_scans = _find_lesion_tiles(cohort_dir, split, tile)
    n_lesion = sum(len(o) for slices in origins.values() for o in slices.values())
    if n_lesion == 0:
        problem = "no slice of the training patients has a lesion" if test_scans else "no slice has a lesion"
        raise InputError(cohort_file(cohort_dir), f"{problem}: nothing to cut into tiles (§4.1 uses lesion slices)")
    n_negative = int(round(n_lesion * negative_share / (1 - negative_share)))
    rng = np.random.default_rng(seed)
    data, label, n_found, zero_plaque = _cut_training_tiles(cohort_dir, origins, tile, n_negative,
                                                            negative_preference, rng, skull_strip)
    order = rng.permutation(len(data))  # HDF5Data reads rows in order: mix the two kinds in each batch
    data, label = data[order], label[order]

    summary = TileSummary(
        out_dir=str(out_dir), tile=tile, train_patients=len(split["train"]),
        train_scans=sum(len(slices) for slices in origins.values()),
        test_patients=len(split["test"]), test_scans=test_scans, lesion_tiles=n_lesion,
        negative_tiles=n_found, files=[], split_reused=split_reused)
    parameters = dict(tile=tile, negative_share=negative_share, negative_preference=negative_preference,
                      seed=seed, max_tiles_per_file=max_tiles_per_file, lmdb=lmdb, skull_strip=skull_strip)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        names = write_hdf5_tiles(tmp, data, label, max_tiles_per_file)
        # Caffe opens the listed paths relative to its working directory, not to the list file
        summary.files = [os.path.relpath(Path(out_dir) / name) for name in names]
        (tmp / LIST_FILE).write_text("".join(f"{p}\n" for p in summary.files))
        if lmdb:
            write_lmdb_tiles(tmp, data, label)
        _write_description(tmp / "tiles.json", cohort_dir, summary, split, names, parameters)
        if skull_strip:
            _add_skull_strip_record(tmp / "tiles.json", cohort_dir, zero_plaque)
        if not split_reused:
            write_split(cohort_dir, split)  # last: a failed run leaves no split behind
    return summary


def _check_parameters(tile: int, negative_share: float, max_tiles_per_file: int) -> None:
    if tile < 1:
        raise InputError("--tile", f"must be a positive number of pixels, got {tile}")
    if not 0 <= negative_share < 1:
        raise InputError("--negative-share", f"must be in [0, 1), got {negative_share}")
    if not 1 <= max_tiles_per_file * tile * tile <= INT_MAX:
        raise InputError("max_tiles_per_file", f"{max_tiles_per_file} tiles of {tile}x{tile} do not fit "
                                               f"Caffe's limit of {INT_MAX} elements per blob")


def _patient_split(cohort_dir: PathLike, test_fraction: Optional[float], seed: int) -> Tuple[Dict[str, Any], bool]:
    """COHORT/split.json when it exists (checked), else a new random split by patient."""
    patients = patient_ids(cohort_dir)
    if split_file(cohort_dir).is_file():
        split = read_split(cohort_dir)
        missing = sorted(set(patients) - set(split["train"]) - set(split["test"]))
        if missing:
            raise InputError(split_file(cohort_dir), f"patient {missing[0]} of the cohort is in neither split "
                                                     "(delete the file to make a new split)")
        if test_fraction is not None and test_fraction != split.get("test_fraction"):
            raise InputError(split_file(cohort_dir), f"this split was made with test fraction "
                                                     f"{split.get('test_fraction')}, --test-fraction {test_fraction} "
                                                     f"cannot change it (delete the file to make a new split)")
        return split, True
    test_fraction = TEST_FRACTION if test_fraction is None else test_fraction
    if not 0 < test_fraction < 1:
        raise InputError("--test-fraction", f"must be in (0, 1), got {test_fraction}")
    try:
        return make_split(patients, test_fraction, seed), False
    except InputError as e:
        raise InputError(cohort_file(cohort_dir), e.problem) from None


Origins = Dict[str, Dict[int, np.ndarray]]   # patient -> slice -> tile origins (N, 2)


def _find_lesion_tiles(cohort_dir: PathLike, split: Dict[str, Any], tile: int) -> Tuple[Origins, int]:
    """First pass, masks only: tile origins of every training lesion slice,
    {patient: {slice: (N, 2)}}, and the number of test slices with lesions."""
    train = set(split["train"])
    origins: Origins = {}
    test_scans = 0
    for patient, mask_shw in progress(iter_masks(cohort_dir), total=len(patient_ids(cohort_dir)),
                                      desc="lesion tiles", unit="patient"):
        if patient not in train:
            test_scans += len(lesion_slices(mask_shw))
            continue
        _check_size(patient, mask_shw.shape, tile, cohort_dir)
        origins[patient] = {int(s): lesion_tile_origins(mask_shw[s], tile) for s in lesion_slices(mask_shw)}
    return origins, test_scans


def _check_size(patient: str, shape_shw: Tuple[int, ...], tile: int, cohort_dir: PathLike) -> None:
    _, h, w = shape_shw
    if h < tile or w < tile:
        raise InputError(cohort_file(cohort_dir), f"patient {patient}: slices of {h}x{w} are smaller than "
                                                  f"a {tile}x{tile} tile")


def _cut_training_tiles(cohort_dir: PathLike, origins: Origins, tile: int, n_negative: int, preference: float,
                        rng: np.random.Generator, skull_strip: bool = False) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """Second pass: cut the lesion tiles and draw the lesion-free ones from the
    normalised slices (skull-stripped with `skull_strip`). Returns data (N, t, t)
    float32, label (N, t, t) uint8 (lesion tiles first), the number of lesion-free
    tiles found and the plaque pixels of the lesion slices whose input is 0."""
    draw = WeightedDraw(k=n_negative, tile=tile)
    zero_plaque = 0
    data: List[np.ndarray] = []
    label: List[np.ndarray] = []
    patients = [p for p in sorted(origins) if origins[p]]
    for scan in progress(iter_scans(cohort_dir, patients), total=len(patients), desc="tiles", unit="patient"):
        image_shw = scan_input(cohort_dir, scan, skull_strip)  # the same input as the full scans at test time
        for s, origins_yx in sorted(origins[scan.patient].items()):
            zero_plaque += int(((scan.mask_shw[s] > 0) & (image_shw[s] == 0)).sum())
            data.append(cut_tiles(image_shw[s], origins_yx, tile))
            label.append(cut_tiles((scan.mask_shw[s] > 0).astype(np.uint8), origins_yx, tile))
            offer_windows(draw, image_shw[s], negative_tile_weights(image_shw[s], scan.mask_shw[s], tile, preference),
                          rng)
    negatives = draw.sample()
    data.append(negatives)
    label.append(np.zeros(negatives.shape, dtype=np.uint8))
    return np.concatenate(data), np.concatenate(label), len(negatives), zero_plaque


# --- writers ---------------------------------------------------------------------

def write_hdf5_tiles(out_dir: PathLike, data_nhw: np.ndarray, label_nhw: np.ndarray, max_tiles_per_file: int) -> List[str]:
    """Caffe HDF5Data files `train_000.h5`, ... in out_dir, datasets `data` and
    `label` float32 (n, 1, tile, tile), rows in the given order; returns the
    file names. Uncompressed: Caffe reads each file whole anyway."""
    names = []
    for i, start in enumerate(range(0, len(data_nhw), max_tiles_per_file)):
        names.append(f"train_{i:03d}.h5")
        rows = slice(start, start + max_tiles_per_file)
        with h5py.File(Path(out_dir) / names[-1], "w") as f:
            f.create_dataset("data", data=data_nhw[rows, None].astype(np.float32))
            f.create_dataset("label", data=label_nhw[rows, None].astype(np.float32))
    return names


def write_lmdb_tiles(out_dir: PathLike, data_nhw: np.ndarray, label_nhw: np.ndarray) -> None:
    """The same rows as two LMDBs of Caffe Datums for the Data layer:
    `train_image_lmdb` and `train_mask_lmdb`, each Datum (1, tile, tile) in
    float_data, label 0, keyed by the zero-padded row number so both stay aligned."""
    import lmdb

    from .caffe import caffe_pb2

    n, h, w = data_nhw.shape
    width = max(8, len(str(n)))
    for name, tiles in (("train_image_lmdb", data_nhw), ("train_mask_lmdb", label_nhw)):
        env = lmdb.open(str(Path(out_dir) / name), map_size=(n * (h * w * 5 + 64) + (1 << 20)) * 2)
        with env.begin(write=True) as txn:
            for i in range(n):
                datum = caffe_pb2.Datum(channels=1, height=h, width=w, label=0)
                datum.float_data.extend(tiles[i].astype(np.float32).ravel().tolist())
                txn.put(f"{i:0{width}d}".encode(), datum.SerializeToString())
        env.close()


def _write_description(path: Path, cohort_dir: PathLike, summary: TileSummary, split: Dict[str, Any],
                       names: Sequence[str], parameters: Dict[str, Any]) -> None:
    description = {
        "format": FORMAT,
        "version": VERSION,
        "protocol": "paper §4.1, see plaquenet/tiles.py",
        "cohort": str(cohort_dir),
        "cohort_id": cohort_id(cohort_dir),
        "parameters": dict(parameters, air_level=AIR_LEVEL),
        # the tiles are cut from normalised slices: the evaluation must scale full scans the same way
        "normalisation": "plaquenet.cohort.normalise_intensity: " + " ".join((normalise_intensity.__doc__ or "").split()),
        "split": {"file": str(split_file(cohort_dir)), "seed": split.get("seed"),
                  "test_fraction": split.get("test_fraction"), "reused": summary.split_reused},
        "counts": {"train_patients": summary.train_patients, "train_scans": summary.train_scans,
                   "test_patients": summary.test_patients, "test_scans": summary.test_scans,
                   "tiles": summary.tiles, "lesion_tiles": summary.lesion_tiles,
                   "negative_tiles": summary.negative_tiles},
        "files": names,
        "list_file": LIST_FILE,
    }
    path.write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n")


def _add_skull_strip_record(path: Path, cohort_dir: PathLike, zero_plaque: int) -> None:
    """tiles.json "skull_strip": the rule, the extractor of the masks, and the
    plaque pixels of the training slices the net sees as 0 (blanked; label kept)."""
    from .brain import GROW_MM
    from .cohort import brain_extractor

    description = json.loads(path.read_text())
    description["skull_strip"] = {
        "rule": "plaquenet.cohort.network_input: normalised on the whole head, then every voxel further than "
                "grow_mm from the patient's brain mask set to 0",
        "grow_mm": GROW_MM, "extractor": brain_extractor(cohort_dir), "plaque_pixels_zero": zero_plaque}
    path.write_text(json.dumps(description, indent=2, ensure_ascii=False) + "\n")
