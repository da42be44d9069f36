"""`plaquenet score`: a snapshot applied to the full scans of a cohort, scored as
in the paper (§3.3, §4.1, §4.3, §5), written to one self-describing folder.

    1. training scans: network output on every slice with plaques, pooled by
       the exact two-pass sweep -> the threshold with the best pixel F-measure
       (and the same for the raw normalised intensity: the §5 baseline)
    2. training tiles: the threshold the paper tried first and dropped (§4.3)
    3. test scans: precision, recall, F-measure at those thresholds, pooled
       and per patient; the best and the worst slice for the figures; lesion-wise
       detection at the network threshold (§5, evaluate/lesions.py); beside the
       paper's protocol, the same on EVERY slice of each test patient, as
       MSSEG-2016 and WMH-2017 evaluate (`whole_volume`, evaluate/volume.py):
       each test volume is then forwarded once, its slices with plaques taken
       from it
    4. out/: results.json, per_patient.csv, *.png, report.html
    5. optional: every snapshot of the run scored for the training curves
       (Fig. 5: steps 1 and 3 at the network threshold only, `snapshot_f_measure`),
       and the probability volume of every patient as NIfTI
       (`save_probabilities`: every slice forwarded, not only those with plaques)

One patient volume is in memory at a time (three while the next is read
ahead, evaluate/parallel.py; with `workers`, two per worker in flight, each
forwarded in its own process: every number as with one). The training outputs are cached
on disk (inside the folder being written, removed before it is renamed in
place) for the sweep's second pass and the per-patient training metrics,
which need the threshold that only the whole training set gives.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from . import __version__, paths
from .atomic import atomic_path, refuse_existing
from .brain import GROW_MM, grow, unusable
from .cohort import (Scan, brain_masks_present, check_brain_masks, cohort_file, cohort_name, iter_masks, iter_scans,
                     lesion_slices, load_brain, patient_ids, read_split, scan_input, split_file)
from .engines import Forward, checked, get_engine, with_batch_slices
from .engines.snapshots import find_deploy, latest_snapshot, snapshots_by_iteration
from .errors import InputError
from .progress import progress
from .report.figures import (precision_recall_figure, raw_threshold_figure, save_png, slice_outcome_figure,
                              training_curves_figure)
from .report.html import write_report
from .skull_strip import resolve, run_records, tiles_record
from .evaluate.curves import SnapshotScore, TrainingCurve, read_training_loss, write_curves_csv
from .evaluate.inference import (LesionSlice, count_tiles, forward_volume, lesion_slices_of_volume,
                                 slices_per_call, threshold_from_tiles, training_tile_files)
from .evaluate.lesions import LesionCounts, all_rules, lesion_summaries
from .evaluate.parallel import PatientPool, Workers, check_workers, forwarded_scans, patient_pool
from .evaluate.metrics import PixelCounts, count_pixels, mean_and_std, pixel_metrics
from .evaluate.volume import VolumeCounts, volume_counts, whole_volume_summary
from .evaluate.sweep import SweepCurve, SweepHistogram, ThresholdChoice, best_f_threshold_two_pass, histogram_curve
from .typing import PathLike

# The paper's own figures, for the comparison in results.json and the report.
PAPER = {
    "source": "Stasiak et al. 2017, BIOIMAGING, §4.1 (counts), §4.3 and §5 (F-measure)",
    "test": {"pixel": {"f1": 0.55}},
    "counts": {"train": {"patients": 77, "scans": 982}, "test": {"patients": 19, "scans": 242}, "tiles": 7856},
}

DEFINITIONS = {
    "scans": "axial slices that contain plaques; only these are scored, train and test (§4.1)",
    "threshold": "lesion where output >= threshold; the distinct training-scan output value with the best "
                 "pooled F-measure, ties to the highest (§3.3)",
    "pixel": "TP, FP, FN summed over all pixels of all scans of the split, then precision, recall, F1",
    "per_patient": "metrics of each patient's scans pooled; mean and population std over patients, "
                   "NaN (undefined) values left out, n = patients counted",
    "precision": "TP / (TP + FP); null when nothing is marked",
    "recall": "TP / (TP + FN)",
    "f1": "2 TP / (2 TP + FP + FN)",
    "baseline.raw_intensity": "the normalised input itself thresholded, threshold chosen the same way (§5)",
    "test.lesion": "§5 lesion-wise detection at the network threshold, per test patient with plaques, in 3D: connected "
                   "components of the mask and of the output on the slices with plaques (other slices count "
                   "as unmarked); rules msseg2016 (Commowick et al. 2018: alpha 0.10, beta 0.70, gamma 0.65, "
                   "components > 3 mm^3, 6-connected) and wmh2017 (any overlap, 26-connected); "
                   "sensitivity = detected / reference lesions, precision = true / automatic components, "
                   "pooled over patients; per_patient: mean, std, n. See plaquenet/evaluate/lesions.py",
    "test.lesion_2d": "the same as test.lesion, with components in 2D: 8-connected within each slice, no link "
                      "across slices (a plaque on k slices is k lesions); each rule's other settings unchanged "
                      "(msseg2016: components > 3 mm^3)",
    "whole_volume": "beside the paper's protocol: every slice of each test patient (with plaques or not, as "
                    "MSSEG-2016 and WMH-2017 evaluate and as `plaquenet segment` runs), at the same threshold; "
                    "pixel counts and test.lesion's 3D rules, pooled and per patient (patients without plaques "
                    "included); left_out: patients whose metric is undefined (NaN) and so not in the per-patient "
                    "mean; lesion.<rule>.reference_convention: per-patient lesion precision with a patient with "
                    "nothing marked counted as the rule's reference does (Anima/MSSEG-2016: 0, WMH-2017: 1). "
                    "See plaquenet/evaluate/volume.py",
    "input": "what the net was fed: skull_strip false, cohort.normalise_intensity of each volume; true, "
             "cohort.network_input with the patient's brain mask (normalised, then every voxel further than "
             "grow_mm from the brain set to 0), as the run's tiles were cut (tiles.json); input_from: where the "
             "choice is recorded. The raw-intensity baseline thresholds this same input",
}

LESION_2D_CONNECTIVITY = 8  # per-slice components (lesions.py: 4 or 8 = 2D)


def load_forward(engine: str, deploy: PathLike, snapshot: PathLike, device: str = "cpu",
                 precision: str = "fp32") -> Forward:
    """The engine's forward for `snapshot`, its output checked to be finite."""
    return checked(get_engine(engine).load_deploy(deploy, snapshot, device, precision=precision), snapshot)


@dataclasses.dataclass(frozen=True)
class ForwardLoader:
    """`load_forward`'s arguments and the batch (engines.with_batch_slices), as
    a picklable callable: how each process of `--workers` loads the same net."""

    engine: str
    deploy: str
    snapshot: str
    device: str = "cpu"
    precision: str = "fp32"
    batch_slices: Optional[int] = None

    def __call__(self) -> Forward:
        return with_batch_slices(load_forward(self.engine, self.deploy, self.snapshot, self.device, self.precision),
                                 self.batch_slices)


def score(snapshot: PathLike, cohort_dir: PathLike = paths.CURRENT, deploy: Optional[PathLike] = None,
          engine: str = "torch", device: str = "cpu", out: Optional[PathLike] = None, force: bool = False,
          all_snapshots: bool = False, probabilities_dir: Optional[PathLike] = None,
          tiles: Optional[PathLike] = None, whole_volume: bool = True, precision: str = "fp32",
          training: Optional[str] = None, brain: bool = False, workers: int = 1,
          batch_slices: Optional[int] = None, skull_strip: Optional[bool] = None) -> Dict[str, Any]:
    """Score a snapshot (a .caffemodel or a run folder: its latest) on a cohort;
    write RUN_DIR/score (or `out`) atomically; return what score_with_forward returns.

    deploy: the deploy prototxt (default: the run folder's copy, else
    prototxt/plaquenet_deploy.prototxt; `engines.snapshots.find_deploy`).

    all_snapshots: `snapshot` is a run folder; every snapshot in it is scored
    for the training curves (Fig. 5: curves.csv, curves.png), the latest one in full.
    probabilities_dir: a folder to write `<patient>.nii.gz` probability
    volumes of every patient into (see `save_probabilities`).
    tiles: the tile folder (or its train.txt) the net was trained on, for the
    §4.3 tile threshold (default COHORT/tiles).
    whole_volume: also score every slice of each test patient (results.json
    "whole_volume"; only for the snapshot scored in full, not for the curves).
    precision: the engine's arithmetic (engines.PRECISIONS; fp32 is Caffe's),
    recorded in results.json.
    training: a sentence on how the net was trained (`plaquenet reproduce`:
    what was shortened), in results.json and at the top of the report.
    brain: outputs further than brain.GROW_MM from each patient's brain mask
    (`plaquenet brainmask --cohort`) are set to 0 before anything is counted,
    threshold choice included (results.json "brain").
    workers: patients spread over this many processes (evaluate/parallel.py),
    each loading the net itself; every number is the same as with one.
    batch_slices: 448x512 slices per forward call (default: the engine's
    choice, 1 on the CPU; the caffe engine forwards one at a time).
    skull_strip: None: feed the net what its tiles were cut from, as recorded
    (`training_input`); True/False: say so, refused when a record disagrees."""
    check_workers(workers)
    run_snapshots = snapshots_by_iteration(snapshot) if all_snapshots else None
    snapshot = latest_snapshot(snapshot)
    skull_strip, input_from = training_input(snapshot, cohort_dir, tiles, skull_strip)
    deploy = find_deploy(snapshot, deploy)
    device = get_engine(engine).check_device(device)
    out = Path(out) if out is not None else snapshot.parent / "score"
    refuse_existing(out, force)  # before loading the net: fail fast
    if probabilities_dir is not None:
        refuse_existing(probabilities_dir, force)
    about = {"snapshot": str(snapshot), "engine": engine, "device": device, "precision": precision,
             "deploy": str(deploy), **({"training": training} if training else {}), "input_from": input_from}
    forward = ForwardLoader(engine, str(deploy), str(snapshot), device, precision, batch_slices)()

    def spread(path: Path) -> Optional[Workers]:
        return Workers(workers, ForwardLoader(engine, str(deploy), str(path), device, precision, batch_slices)) \
            if workers > 1 else None
    curve = None
    if run_snapshots is not None:
        loss = read_training_loss(snapshot.parent)
        out.parent.mkdir(parents=True, exist_ok=True)
        earlier = [snapshot_f_measure(ForwardLoader(engine, str(deploy), str(path), device, precision,
                                                    batch_slices)(), cohort_dir, n, path,
                                      cache_dir=out.parent, brain=brain, workers=spread(path),
                                      skull_strip=skull_strip)
                   for n, path in progress(run_snapshots[:-1], desc="snapshots", unit="snapshot")]
        curve = TrainingCurve(loss, earlier)
    results = score_with_forward(forward, cohort_dir, out, force=force, about=about, curve=curve,
                                 iteration=run_snapshots[-1][0] if run_snapshots else None, tiles=tiles,
                                 whole_volume=whole_volume, brain=brain, workers=spread(snapshot),
                                 skull_strip=skull_strip)
    if probabilities_dir is not None:
        save_probabilities(forward, cohort_dir, probabilities_dir, force=force, skull_strip=skull_strip)
    return results


def training_input(snapshot: Path, cohort_dir: PathLike, tiles: Optional[PathLike],
                   option: Optional[bool] = None) -> Tuple[bool, str]:
    """(skull-stripped, where recorded): what the tiles of the snapshot's run
    folder (its train nets' HDF5Data sources) and `tiles` (default COHORT/tiles,
    the §4.3 tiles) record, which must agree with each other and with `option`
    (plaquenet/skull_strip.py). InputError on a mismatch, before any forward."""
    own = tiles_record(Path(cohort_dir) / "tiles" if tiles is None else tiles)
    return resolve(run_records(Path(snapshot).parent) + ([own] if own is not None else []), option)


def score_with_forward(forward: Forward, cohort_dir: PathLike, out: PathLike, force: bool = False,
                       about: Optional[Dict[str, Any]] = None, curve: Optional[TrainingCurve] = None,
                       iteration: Optional[int] = None, tiles: Optional[PathLike] = None,
                       whole_volume: bool = True, brain: bool = False,
                       workers: Optional[Workers] = None, skull_strip: bool = False) -> Dict[str, Any]:
    """The whole evaluation with any `forward` (image_hw -> output_hw) in place of
    a loaded snapshot; writes `out` atomically and returns results.json's
    content (NaN as NaN, not null) plus "out", the folder written.

    curve: the earlier snapshots' scores and the loss; this snapshot (at
    `iteration`) is added to it and curves.csv, curves.png written.
    whole_volume: add results["whole_volume"] (every slice of each test patient).
    workers: patients forwarded in worker processes, each with its own forward
    (`Workers.load_forward`, the same net); `forward` still does the tiles.
    results["timing"]: scans scored per second (README, Measured).
    skull_strip: every scan fed skull-stripped (`cohort.scan_input`), as tiles cut
    with `tiles --skull-strip`; every patient needs a brain mask (InputError)."""
    out = Path(out)
    refuse_existing(out, force)
    split = _check_split(cohort_dir)
    _check_test_has_lesions(cohort_dir, split["test"])
    if skull_strip:
        check_brain_masks(cohort_dir, split["train"] + split["test"])
    with atomic_path(out) as tmp:
        tmp.mkdir()
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=".train-outputs-", dir=tmp) as cache, patient_pool(workers) as pool:
            results, rows, views, curves = _evaluate(forward, cohort_dir, split, Path(cache), tiles, whole_volume,
                                                     brain, pool, skull_strip)
        results["timing"] = _timing(results, time.perf_counter() - started, forward, workers)
        results = {"snapshot": None, "engine": None, **(about or {}), **results}
        results["input"] = {"skull_strip": skull_strip, **({"grow_mm": GROW_MM} if skull_strip else {}),
                            "from": results.pop("input_from", None)}
        if curve is not None:
            assert iteration is not None, "a training curve needs this snapshot's iteration"
            latest = SnapshotScore(iteration, str(results["snapshot"]), results["threshold"],
                                   results["train"]["pixel"]["f1"], results["test"]["pixel"]["f1"])
            curve = TrainingCurve(curve.loss, [*curve.snapshots, latest])
            results["training_curve"] = [dataclasses.asdict(s) for s in curve.snapshots]
        _write_score_dir(tmp, results, rows, views, curves, curve)
    return {**results, "out": str(out)}


def snapshot_f_measure(forward: Forward, cohort_dir: PathLike, iteration: int, snapshot: PathLike,
                       cache_dir: Optional[PathLike] = None, brain: bool = False,
                       workers: Optional[Workers] = None, skull_strip: bool = False) -> SnapshotScore:
    """One point of the training curves (Fig. 5), without the figures and the
    report: the threshold with the best F on the full training scans (§3.3) and
    the pooled pixel F-measure on the training and the test scans at it, computed
    exactly as `score_with_forward` does. Training outputs are cached under
    `cache_dir` (removed on return), one patient in memory at a time."""
    split = _check_split(cohort_dir)
    with patient_pool(workers) as pool:
        with tempfile.TemporaryDirectory(prefix=".train-outputs-", dir=cache_dir) as cache:
            train = _training_pass(forward, cohort_dir, split["train"], Path(cache), brain, pool, skull_strip)
            choice = _best_threshold(train, "output_shw")
        test = _test_pass(forward, cohort_dir, split["test"], {"network": choice.threshold}, lesions=False,
                          brain=brain, pool=pool, skull_strip=skull_strip)
    return SnapshotScore(int(iteration), str(snapshot), choice.threshold,
                         pixel_metrics(_choice_counts(choice))["f1"], pixel_metrics(test["pooled"]["network"])["f1"])


def save_probabilities(forward: Forward, cohort_dir: PathLike, out_dir: PathLike, force: bool = False,
                       patients: Optional[List[str]] = None, skull_strip: bool = False) -> List[Path]:
    """The network's output on every slice of every patient (default: all of the
    cohort, train and test), one float32 NIfTI `<patient>.nii.gz` each, array
    (W, H, S) with the cohort's `affine_whs` (cohort.py), so viewers overlay it
    on the imported FLAIR. Unlike scoring, which forwards only the slices with
    plaques (§4.1), every slice is forwarded: this costs S forwards per patient,
    and only when asked. One volume in memory at a time; the folder is written
    atomically (renamed into place when all are written)."""
    from .io.nifti import write_nifti  # here: nibabel is not needed to score (pycaffe's root has none)

    out_dir = Path(out_dir)
    refuse_existing(out_dir, force)
    patients = patient_ids(cohort_dir) if patients is None else list(patients)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for scan in progress(iter_scans(cohort_dir, patients), total=len(patients), desc="probabilities",
                             unit="patient"):
            output_whs = forward_volume(scan.flair_shw, forward,
                                        scan_input(cohort_dir, scan, skull_strip)).transpose(2, 1, 0)
            write_nifti(tmp / f"{scan.patient}.nii.gz", output_whs, np.asarray(scan.affine_whs, dtype=np.float64),
                        dtype=np.float32)
            del output_whs
    return [out_dir / f"{p}.nii.gz" for p in patients]


# --- the evaluation --------------------------------------------------------

@dataclasses.dataclass
class TrainingPass:
    network: SweepHistogram  # pass 1 of the sweep over all training scans
    raw: SweepHistogram  # the same for the normalised input (baseline)
    cached: Dict[str, Path]  # patient -> .npz with output_shw, image_shw, truth_shw of its scans
    patients: int
    scans: int


def _grown_brain(cohort_dir: PathLike, scan: Scan, brain: bool) -> Optional[np.ndarray]:
    """bool (S, H, W): where outputs count with `brain` (the mask grown by GROW_MM);
    None without `brain`, and for a single slice (no extractor takes one: unfiltered,
    listed in results.json "brain")."""
    if not brain:
        return None
    mask = load_brain(cohort_dir, scan.patient)
    if mask is None:
        if unusable(scan.flair_shw.shape):
            return None
        raise InputError(cohort_file(cohort_dir), f"no brain mask for {scan.patient} (run `plaquenet brainmask "
                                                  f"--cohort {cohort_dir}` first, or score without --brain)")
    return grow(mask, scan.voxel_mm)


def _inside(slices: Iterator[LesionSlice], keep_shw: Optional[np.ndarray]) -> Iterator[LesionSlice]:
    """The slices with their output set to 0 outside `keep_shw` (unchanged when None)."""
    for s in slices:
        yield s if keep_shw is None else dataclasses.replace(s, output_hw=np.where(keep_shw[s.index], s.output_hw,
                                                                                   np.float32(0)))


def _brain_record(cohort_dir: PathLike, patients: List[str]) -> Dict[str, Any]:
    masked = set(brain_masks_present(cohort_dir))
    unfiltered = [p for p in patients if p not in masked]  # single slices (_grown_brain)
    return {"grow_mm": GROW_MM, "rule": "outputs further than grow_mm from the brain mask set to 0",
            "unfiltered_single_slices": unfiltered}


def _training_pass(forward: Forward, cohort_dir: PathLike, patients: List[str], cache: Path,
                   brain: bool = False, pool: Optional[PatientPool] = None,
                   skull_strip: bool = False) -> TrainingPass:
    network, raw, scans = SweepHistogram(), SweepHistogram(), 0
    cached: Dict[str, Path] = {}
    for done in progress(forwarded_scans(forward, cohort_dir, patients, pool=pool, skull_strip=skull_strip),
                         total=len(patients),
                         desc="training scans", unit="patient"):
        scan = done.scan
        slices = list(_inside(done.lesion_slices(), _grown_brain(cohort_dir, scan, brain)))
        if not slices:
            continue
        output = np.stack([s.output_hw for s in slices])
        truth = np.stack([s.truth_hw for s in slices])
        image = np.stack([s.image_hw for s in slices])
        network.add(output, truth)
        raw.add(image, truth)
        cached[scan.patient] = cache / f"{scan.patient}.npz"
        np.savez(cached[scan.patient], output_shw=output, image_shw=image, truth_shw=truth)
        scans += len(slices)
    if scans == 0:
        raise InputError(cohort_file(cohort_dir), "no training slice contains a plaque (§4.1 scores only those)")
    return TrainingPass(network, raw, cached, len(patients), scans)


def _best_threshold(train: TrainingPass, which: str) -> ThresholdChoice:
    """§3.3 over all training scans; pass 2 of the sweep re-reads the cache."""
    def rescan() -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        for path in train.cached.values():
            with np.load(path) as cached:
                yield cached[which], cached["truth_shw"]
    histogram = train.network if which == "output_shw" else train.raw
    return best_f_threshold_two_pass(histogram, rescan)


Views = Dict[str, Tuple[LesionSlice, float]]   # "best", "worst" -> (slice, its F-measure)
Curves = Dict[str, Tuple[SweepCurve, float]]   # label -> (precision-recall curve, chosen threshold)


def _evaluate(forward: Forward, cohort_dir: PathLike, split: Dict[str, Any], cache: Path,
              tiles: Optional[PathLike] = None,
              whole_volume: bool = False,
              brain: bool = False, pool: Optional[PatientPool] = None,
              skull_strip: bool = False) -> Tuple[Dict[str, Any], List[Dict[str, Any]], Views, Curves]:
    train = _training_pass(forward, cohort_dir, split["train"], cache, brain, pool, skull_strip)
    chosen = {"network": _best_threshold(train, "output_shw"), "baseline": _best_threshold(train, "image_shw")}
    thresholds = {name: choice.threshold for name, choice in chosen.items()}

    # §4.3: the threshold chosen on the training tiles did not suit full scans;
    # computed again here to show by how much.
    tile_files = training_tile_files(cohort_dir, tiles)
    n_tiles = sum(count_tiles(path) for path in tile_files) if tile_files else None
    from_tiles = threshold_from_tiles(tile_files, forward, cache_dir=cache) if tile_files else None
    if from_tiles is not None:
        thresholds["tiles"] = from_tiles

    train_rows = _training_rows(train, thresholds["network"])
    test = _test_pass(forward, cohort_dir, split["test"], thresholds, whole_volume=whole_volume, brain=brain,
                      pool=pool, skull_strip=skull_strip)

    def split_results(pooled: PixelCounts, per_patient: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"pixel": _pixel_record(pooled), "per_patient": mean_and_std(per_patient)}

    results = {
        "cohort": cohort_name(cohort_dir),
        "cohort_dir": str(cohort_dir),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "plaquenet": __version__,
        "threshold": thresholds["network"],
        "threshold_from_tiles": thresholds.get("tiles"),
        "counts": {
            "train": {"patients": train.patients, "patients_with_plaques": len(train_rows), "scans": train.scans},
            "test": {"patients": len(split["test"]), "patients_with_plaques": len(test["rows"]),
                     "scans": test["scans"]},
            "tiles": n_tiles,
        },
        "train": split_results(_choice_counts(chosen["network"]), train_rows),
        "test": {
            **split_results(test["pooled"]["network"], test["rows"]),
            "pixel_from_tiles_threshold": _pixel_record(test["pooled"].get("tiles")),
            "best_slice": _slice_record(test["best"]),
            "worst_slice": _slice_record(test["worst"]),
            "lesion": lesion_summaries(test["lesions"]),
            "lesion_2d": lesion_summaries(test["lesions_2d"]),
        },
        "baseline": {"raw_intensity": {
            "threshold": thresholds["baseline"],
            "train": {"pixel": _pixel_record(_choice_counts(chosen["baseline"]))},
            "test": split_results(test["pooled"]["baseline"], test["baseline_rows"]),
        }},
        "paper": PAPER,
        "definitions": DEFINITIONS,
    }
    if whole_volume:
        results["whole_volume"] = whole_volume_summary(test["volumes"], thresholds["network"])
    if brain:
        results["brain"] = _brain_record(cohort_dir, split["train"] + split["test"])
    curves = {"network output": (histogram_curve(train.network, chosen["network"]), thresholds["network"]),
              "raw intensity (baseline)": (histogram_curve(train.raw, chosen["baseline"]), thresholds["baseline"])}
    return results, train_rows + test["rows"], {"best": test["best"], "worst": test["worst"]}, curves


def _timing(results: Dict[str, Any], seconds: float, forward: Forward, workers: Optional[Workers]) -> Dict[str, Any]:
    """How fast the evaluation went (results.json "timing"): the scans scored
    (train and test slices with plaques) per second of the whole evaluation
    (forwards, sweep, metrics; not the figures and the report); the 448x512-size
    slices forwarded (whole volumes: every test slice) and the tiles."""
    counts = results["counts"]
    scans = counts["train"]["scans"] + counts["test"]["scans"]
    test_slices = results["whole_volume"]["counts"]["slices"] if "whole_volume" in results else counts["test"]["scans"]
    return {"seconds": round(seconds, 3), "scans": scans, "scans_per_second": round(scans / max(seconds, 1e-9), 3),
            "slices_forwarded": counts["train"]["scans"] + test_slices, "tiles_forwarded": counts["tiles"] or 0,
            "workers": workers.count if workers else 1,
            "batch_slices": slices_per_call(forward, (448, 512))}   # per call, of the paper's slice size


def _choice_counts(choice: ThresholdChoice) -> PixelCounts:
    return PixelCounts(choice.tp, choice.fp, choice.fn)


def _training_rows(train: TrainingPass, threshold: float) -> List[Dict[str, Any]]:
    rows = []
    for patient, path in train.cached.items():
        with np.load(path) as cached:
            counts = count_pixels(cached["output_shw"] >= threshold, cached["truth_shw"])
            rows.append(_row(patient, "train", len(cached["truth_shw"]), counts))
    return rows


def _test_pass(forward: Forward, cohort_dir: PathLike, patients: List[str], thresholds: Dict[str, float],
               lesions: bool = True, whole_volume: bool = False, brain: bool = False,
               pool: Optional[PatientPool] = None, skull_strip: bool = False) -> Dict[str, Any]:
    """Counts at each threshold, pooled and per patient, and the slices with the
    best and the worst F-measure at the network threshold (first of equals);
    lesion-wise counts unless `lesions` is False (the training curves skip them);
    with `whole_volume`, every slice forwarded and "volumes" (VolumeCounts of
    each test patient at the network threshold) added."""
    pooled = {name: PixelCounts() for name in thresholds}
    rows, baseline_rows, scans = [], [], 0
    best = worst = None
    by_rule: Dict[str, Dict[str, LesionCounts]] = {}
    by_rule_2d: Dict[str, Dict[str, LesionCounts]] = {}
    volumes: List[VolumeCounts] = []
    for done in progress(forwarded_scans(forward, cohort_dir, patients, whole_volume, pool, skull_strip),
                         total=len(patients),
                         desc="test volumes" if whole_volume else "test scans", unit="patient"):
        scan = done.scan
        patient = {name: PixelCounts() for name in thresholds}
        n = 0
        keep_shw = _grown_brain(cohort_dir, scan, brain)
        if whole_volume:  # every slice once; those with plaques are taken from it
            output_shw = done.output_shw
            if keep_shw is not None:
                output_shw[~keep_shw] = 0
            volumes.append(volume_counts(scan.patient, output_shw, scan.mask_shw, scan.voxel_mm,
                                         thresholds["network"]))
            slices = lesion_slices_of_volume(scan, output_shw, done.image_shw)
        else:
            slices = _inside(done.lesion_slices(), keep_shw)
        # §5 lesion-wise: the thresholded output placed in a volume, one patient
        # at a time; slices without plaques count as unmarked (§4.1 scores only those).
        marked_shw = np.zeros(scan.mask_shw.shape, bool)
        for s in slices:
            n += 1
            marked_shw[s.index] = s.output_hw >= thresholds["network"]
            for name, t in thresholds.items():
                values = s.image_hw if name == "baseline" else s.output_hw
                counts = count_pixels(values >= t, s.truth_hw)
                patient[name] += counts
                if name == "network":
                    f1 = pixel_metrics(counts)["f1"]
                    if best is None or f1 > best[1]:
                        best = (s, f1)
                    if worst is None or f1 < worst[1]:
                        worst = (s, f1)
        if n:
            scans += n
            rows.append(_row(scan.patient, "test", n, patient["network"]))
            if "baseline" in thresholds:
                baseline_rows.append(_row(scan.patient, "test", n, patient["baseline"]))
            for name in thresholds:
                pooled[name] += patient[name]
            if lesions:
                for rule, lesion_counts in all_rules(marked_shw, scan.mask_shw, scan.voxel_mm).items():
                    by_rule.setdefault(rule, {})[scan.patient] = lesion_counts
                # §5 per slice: 8-connected components within each slice, as a
                # reader outlining plaques slice by slice would count them.
                for rule, lesion_counts in all_rules(marked_shw, scan.mask_shw, scan.voxel_mm,
                                                     LESION_2D_CONNECTIVITY).items():
                    by_rule_2d.setdefault(rule, {})[scan.patient] = lesion_counts
    return {"pooled": pooled, "rows": rows, "baseline_rows": baseline_rows, "scans": scans,
            "best": best, "worst": worst, "lesions": by_rule, "lesions_2d": by_rule_2d, "volumes": volumes}


def _row(patient: str, split: str, slices: int, counts: PixelCounts) -> Dict[str, Any]:
    return {"patient": patient, "split": split, "slices": slices, **pixel_metrics(counts),
            **dataclasses.asdict(counts)}


def _pixel_record(counts: Optional[PixelCounts]) -> Dict[str, Any]:
    if counts is None:
        return {"precision": None, "recall": None, "f1": None}
    return {**pixel_metrics(counts), **dataclasses.asdict(counts)}


def _slice_record(view: Tuple[LesionSlice, float]) -> Dict[str, Any]:
    s, f1 = view
    return {"patient": s.patient, "slice": s.index, "f1": f1}


# --- checks ----------------------------------------------------------------

def _check_split(cohort_dir: PathLike) -> Dict[str, Any]:
    split = read_split(cohort_dir)
    for side, name in (("train", "training"), ("test", "test")):
        if not split[side]:
            raise InputError(split_file(cohort_dir), f"no {name} patients in the split")
    return split


def _check_test_has_lesions(cohort_dir: PathLike, patients: List[str]) -> None:
    # Cheap before the long training pass: masks only, no network.
    if not any(len(lesion_slices(mask_shw)) for _, mask_shw in iter_masks(cohort_dir, patients)):
        raise InputError(cohort_file(cohort_dir), "no test slice contains a plaque (§4.1 scores only those)")


# --- writing ---------------------------------------------------------------

def _write_score_dir(out: Path, results: Dict[str, Any], rows: List[Dict[str, Any]], views: Views, curves: Curves,
                     training_curve: Optional[TrainingCurve] = None) -> None:
    (out / "results.json").write_text(json.dumps(_json_safe(results), indent=2) + "\n")
    lesion = {**{f"lesion_{rule}": r for rule, r in (results["test"].get("lesion") or {}).items()},
              **{f"lesion_2d_{rule}": r for rule, r in (results["test"].get("lesion_2d") or {}).items()}}
    _write_per_patient(out / "per_patient.csv", rows, lesion)
    figures = _write_figures(out, results, views, curves)
    if training_curve is not None:
        figures.append(_write_training_curves(out, training_curve))
    write_report(out / "report.html", _json_safe(results), figures)


LESION_COLUMNS = ("sensitivity", "precision", "f1")


def _write_per_patient(path: Path, rows: List[Dict[str, Any]], lesion: Dict[str, Dict[str, Any]]) -> None:
    """Pixel metrics per patient; for test patients also the lesion-wise
    metrics, `lesion` = {column prefix: lesion_summary}, e.g. lesion_<rule> (3D)
    and lesion_2d_<rule> (columns <prefix>_<metric>, empty for training rows)."""
    by_patient = {(rule, r["patient"]): r for rule, summary in lesion.items() for r in summary.get("patients", [])}
    lesion_columns = [f"{rule}_{m}" for rule in lesion for m in LESION_COLUMNS]
    columns = ["patient", "split", "slices", "precision", "recall", "f1", "tp", "fp", "fn", *lesion_columns]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            row = dict(row)
            for rule in lesion:
                found = by_patient.get((rule, row["patient"])) if row["split"] == "test" else None
                for m in LESION_COLUMNS:
                    row[f"{rule}_{m}"] = found[m] if found else ""
            writer.writerow({k: "" if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()})


def _write_training_curves(out: Path, curve: TrainingCurve) -> Tuple[str, Path]:
    """curves.csv and curves.png (Fig. 5); returns the report's (caption, path)."""
    write_curves_csv(out / "curves.csv", curve.snapshots)
    loss = curve.loss
    snaps = curve.snapshots
    fig = training_curves_figure(loss.iteration if loss else None, loss.loss if loss else None,
                                 [s.iteration for s in snaps], [s.test_f1 for s in snaps],
                                 [s.train_f1 for s in snaps], loss_label="smoothed training loss")
    path = save_png(fig, out / "curves.png")
    source = f"from {loss.source.name}" if loss else "not logged"
    return (f"Paper Fig. 5: training loss per iteration ({source}, top) and the pixel F-measure of each "
            "snapshot on the test scans (bottom, at the threshold chosen on the training scans for that "
            "snapshot; dashed: training scans).", path)


def _write_figures(out: Path, results: Dict[str, Any], views: Views, curves: Curves) -> List[Tuple[str, Path]]:
    """Figures as PNG files; returns (caption, path) pairs for the report."""
    t = results["threshold"]
    figures = []
    for which, label in (("best", "best"), ("worst", "worst")):
        s, f1 = views[which]
        title = f"{label} test slice: {s.patient} slice {s.index}, F = {f1:.3f}"
        path = save_png(slice_outcome_figure(s.image_hw, s.truth_hw, s.output_hw, t, title),
                        out / f"{which}_test_slice.png")
        figures.append((f"Paper Figs. 6-8: the {label} test slice by F-measure ({s.patient}, slice {s.index}). "
                        "Green: plaque found; red: false alarm; yellow: plaque missed.", path))
    s, _ = views["best"]
    path = save_png(raw_threshold_figure(s.image_hw, s.truth_hw, title=f"{s.patient} slice {s.index}: input thresholded"),
                    out / "raw_intensity_thresholds.png")
    figures.append(("Paper Fig. 9: the input of the best test slice itself thresholded at 50, 45 and 40 % "
                    "(the intensity-only baseline of §5).", path))
    path = save_png(precision_recall_figure(_curve_points(curves), "training scans"),
                    out / "precision_recall_train.png")
    figures.append(("Precision and recall on the full training scans, thresholds 0.05 % apart (the choice "
                    "itself: over every distinct output value, §3.3); "
                    "the dot is the threshold with the best F-measure.", path))
    return figures


def _curve_points(curves: Curves, points: int = 2000) -> Dict[str, Dict[str, Any]]:
    """Each curve (exact counts at thresholds 2^-11 apart, relatively, plus the
    chosen one) thinned to about `points` thresholds for drawing."""
    drawn = {}
    for label, (curve, threshold) in curves.items():
        keep = np.unique(np.linspace(0, len(curve.thresholds) - 1, min(points, len(curve.thresholds))).astype(int))
        chosen = int(np.searchsorted(curve.thresholds, threshold))
        drawn[label] = {"precision": curve.precision[keep], "recall": curve.recall[keep], "threshold": threshold,
                        "chosen": (float(curve.recall[chosen]), float(curve.precision[chosen]))}
    return drawn


def _json_safe(value: Any) -> Any:
    """NaN -> null (JSON has no NaN), numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
