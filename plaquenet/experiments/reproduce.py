"""`plaquenet reproduce`: the paper's experiment end to end, resumable, with
every deviation from the paper written beside the results.

    cohort (phantom preset, or --cohort) -> §4.1 tiles (the paper's defaults)
    -> RUN/solver.prototxt derived from prototxt/solver.prototxt -> the time
    estimate, printed after the first iterations -> train, or resume from the
    latest snapshot -> score --all-snapshots (Fig. 5 and the full report)
    -> RUN/reproduction.json and RUN/reproduction.md

The `paper` preset is the paper's solver unchanged (75,000 iterations: more
than a day on 2 CPU cores); `quick` is the same path on a smaller synthetic
cohort with fewer iterations (PRESETS). A rerun continues where the last one
stopped, and does nothing once the run is trained and scored.
"""

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .. import paths
from ..atomic import atomic_path
from ..caffe.prototxt import read_net, read_solver
from ..cohort import cohort_file, load_scan, patient_ids
from ..engines import get_engine
from ..errors import InputError
from ..score import PAPER
from ..typing import PathLike
from .runner import (NET_FILE, SOLVER_FILE, Schedule, TileSpec, cohort_folder, ensure_cohort, ensure_tiles,
                     iterations_left, prepare_run, score_run, train_or_resume)

FORMAT = "plaquenet-reproduction"
VERSION = 1
RECORD = "reproduction.json"
SUMMARY = "reproduction.md"


@dataclasses.dataclass(frozen=True)
class Preset:
    name: str
    phantom: str          # `plaquenet phantom --preset`: the synthetic cohort
    schedule: Schedule
    run_dir: Path
    about: str
    # `plaquenet claims`' 100x100-tile runs (C7): tiles a batch (None: their nets' 100, the paper's)
    large_tile_batch: Optional[int] = None


PRESETS = {
    "paper": Preset("paper", "paper", Schedule(), Path("runs/reproduce"),
                    "the paper's solver unchanged on a 96-patient synthetic cohort"),
    # About 20 minutes on 2 CPU cores for the 12 x 33-slice quick phantom:
    # phantom, import and tiles ~2 min; 300 iterations of the paper's SGD at
    # ~2.3 s, ~12 min; scoring each of the 3 snapshots forwards the cohort's
    # 167 scans with plaques at ~1 s each, ~3 min (three points of Fig. 5, the
    # fewest in which a rise and a fall can show: C4 of `plaquenet claims`).
    # Its claims train the 100x100-tile runs with 25 tiles a batch, the pixels
    # of the paper's 100 tiles of 50x50, so that each costs what a 50x50 run does.
    "quick": Preset("quick", "quick", Schedule(max_iter=300, snapshot=100), Path("runs/reproduce-quick"),
                    "the paper's solver, shortened, on a smaller synthetic cohort", large_tile_batch=25),
}


def reproduce(preset: str = "paper", run_dir: Optional[PathLike] = None, max_iter: Optional[int] = None,
              engine: str = "torch", device: str = "cpu", data_dir: PathLike = paths.DATA,
              cohort_dir: Optional[PathLike] = None, force: bool = False, precision: str = "fp32",
              say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Run (or continue) the preset's experiment; return the record written to
    RUN/reproduction.json. `max_iter` shortens (or extends) the preset's
    schedule; `cohort_dir` takes an imported cohort instead of the preset's
    phantom. A run folder of another preset or schedule is refused unless `force`.
    `precision`: the torch engine's arithmetic for training and scoring (fp32 is
    Caffe's; another is a deviation, and its run folder is RUN-<precision>)."""
    chosen = _preset(preset)
    schedule = chosen.schedule if max_iter is None else dataclasses.replace(chosen.schedule, max_iter=max_iter)
    run = Path(run_dir) if run_dir is not None else precision_run(chosen.run_dir, precision)
    device = get_engine(engine).check_device(device)
    _check_earlier_preset(run, preset, force)
    cohort = Path(cohort_dir) if cohort_dir is not None else cohort_folder(chosen.phantom, data_dir)
    if cohort_dir is not None and not cohort_file(cohort).is_file():
        raise InputError(cohort, "no cohort.h5: give a cohort folder made by `plaquenet import`")
    spec = TileSpec()
    prepare_run(run, schedule, cohort / spec.folder_name(), force=force)   # before the cohort: refuse early
    if cohort_dir is None:
        ensure_cohort(chosen.phantom, data_dir)
    tiles_dir = ensure_tiles(cohort, spec)
    deviations = _deviations(chosen, schedule, cohort, tiles_dir, cohort_dir is not None)
    if precision != "fp32":
        deviations.append(f"precision {precision} (the torch engine's opt-in mode) instead of Caffe's float32")
    say(f"plaquenet reproduce: preset {preset} ({chosen.about}); run {run}; deviations from the paper:"
        + "".join(f"\n  - {d}" for d in deviations))

    at, total = iterations_left(run)
    if at < total:
        say(f"plaquenet reproduce: training {engine} on {device} from iteration {at} to {total:,}; the estimate "
            "follows the first iterations (rerun to resume from the latest snapshot)")
        estimate = _estimate_reporter(run, cohort, tiles_dir, engine, device, say)
        train_or_resume(run, engine, device, on_estimate=estimate, precision=precision)
    results = score_run(run, cohort, engine, device, training=schedule.training_note(), precision=precision)
    record = {**_record(chosen, schedule, engine, device, cohort, tiles_dir, run, deviations, results),
              "precision": precision}
    wrote = _write_if_new(run / RECORD, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    wrote |= _write_if_new(run / SUMMARY, summary_markdown(record))
    if at >= total and not wrote:
        say(f"plaquenet reproduce: nothing left to do: {run} is trained to iteration {total:,} and scored")
    return record


def _preset(name: str) -> Preset:
    if name not in PRESETS:
        raise InputError("--preset", f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return PRESETS[name]


def _check_earlier_preset(run: Path, preset: str, force: bool) -> None:
    try:
        earlier = json.loads((run / RECORD).read_text()).get("preset")
    except (OSError, ValueError):
        return
    if earlier != preset and not force:
        raise InputError(run, f"holds the reproduction of preset {earlier!r}, not {preset!r}: "
                              "use --force to replace it, or another --run")


# Scoring a snapshot costs, per pixel of the scans with plaques it forwards,
# about this share of one pixel of a training iteration's tiles (forward,
# backward, update), so the scoring estimate comes from the training one.
# Measured with the torch engine on 2 shared CPU cores (2026-11-30): the
# 24-patient quick cohort's 2 snapshots x 299 scans of 448x512 scored in 545 s
# while training ran at 4.3 s per 100-tile iteration.
FORWARD_PIXEL_COST = 0.23


def _estimate_reporter(run: Path, cohort: Path, tiles_dir: Path, engine: str, device: str,
                       say: Callable[[str], None]) -> Callable[[str], None]:
    """Turns the engine's estimate line (seconds per iteration, after its first
    timed iterations) into the time of the whole schedule on this engine and
    device, and of scoring every snapshot after it."""
    at, total = iterations_left(run)
    scoring = _scoring_share(run, cohort, tiles_dir)

    def report(line: str) -> None:
        measured = re.search(r"([0-9.eE+-]+) s per iteration", line)
        if measured is None:
            say(f"plaquenet reproduce: {line}")
            return
        per_iter = float(measured.group(1))
        rest = f", {_duration(per_iter * (total - at))} from iteration {at:,}" if at else ""
        say(f"plaquenet reproduce: estimate for {engine} on {device}: {per_iter:.3g} s per iteration (measured), "
            f"{total:,} iterations about {_duration(per_iter * total)} in all{rest}; then scoring every snapshot "
            f"about {_duration(per_iter * scoring)} more")
    return report


def _scoring_share(run: Path, cohort: Path, tiles_dir: Path) -> float:
    """Scoring every snapshot, in training iterations: each snapshot forwards
    every scan with plaques (train and test) of the cohort."""
    param = read_solver(run / SOLVER_FILE)
    snapshots = math.ceil(param.max_iter / param.snapshot) if param.snapshot else 1
    description = json.loads((tiles_dir / "tiles.json").read_text())
    scans = description["counts"]["train_scans"] + description["counts"]["test_scans"]
    height, width = scan_shape(cohort)
    batch = next(layer.hdf5_data_param.batch_size for layer in read_net(run / NET_FILE).layer
                 if layer.type == "HDF5Data") or 1
    tile = description["parameters"]["tile"]
    return snapshots * scans * FORWARD_PIXEL_COST * height * width / (batch * tile * tile)


def scan_shape(cohort_dir: PathLike) -> Tuple[int, int]:
    """(H, W) of the cohort's first scan."""
    _, height, width = load_scan(cohort_dir, patient_ids(cohort_dir)[0]).flair_shw.shape
    return height, width


def _duration(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


# --- what differs from the paper -------------------------------------------------

def _deviations(chosen: Preset, schedule: Schedule, cohort: Path, tiles_dir: Path, own_cohort: bool) -> List[str]:
    found = [f"cohort {cohort} (`plaquenet import`) instead of the paper's 96 patients" if own_cohort else
             f"synthetic cohort (`plaquenet phantom --preset {chosen.phantom}`) instead of the paper's clinical "
             "FLAIR scans of 96 patients"]
    counts = json.loads((tiles_dir / "tiles.json").read_text())["counts"]
    paper: Any = PAPER["counts"]   # PAPER is a plain dict literal: mypy sees its values as Collection[str]
    ours = [("training patients", counts["train_patients"], paper["train"]["patients"]),
            ("test patients", counts["test_patients"], paper["test"]["patients"]),
            ("training scans with plaques", counts["train_scans"], paper["train"]["scans"]),
            ("test scans with plaques", counts["test_scans"], paper["test"]["scans"]),
            ("training tiles", counts["tiles"], paper["tiles"])]
    found += [f"{n} {what} instead of the paper's {p}" for what, n, p in ours if n != p]
    return found + schedule.deviations()


# --- the record and its summary ----------------------------------------------------

def precision_run(run_dir: Path, precision: str) -> Path:
    """The default run folder of a preset in `precision`: its own, so that runs
    in Caffe's arithmetic and in another are never resumed into each other."""
    return run_dir if precision == "fp32" else run_dir.with_name(f"{run_dir.name}-{precision}")


def _record(chosen: Preset, schedule: Schedule, engine: str, device: str, cohort: Path, tiles_dir: Path,
            run: Path, deviations: List[str], results: Dict[str, Any]) -> Dict[str, Any]:
    paper_param = schedule.read()
    at, max_iter = iterations_left(run)
    curve = results.get("training_curve", [])
    best = max(curve, key=lambda point: point["test_f1"] if point["test_f1"] is not None else -1, default=None)
    return {
        "format": FORMAT, "version": VERSION,
        "preset": chosen.name, "about": chosen.about,
        "engine": engine, "device": device,
        "cohort": str(cohort), "tiles": str(tiles_dir), "run": str(run), "solver": str(run / SOLVER_FILE),
        "schedule": {"from": str(schedule.solver), "max_iter": max_iter, "solver_max_iter": paper_param.max_iter,
                     "snapshot": schedule.snapshot if schedule.snapshot is not None else paper_param.snapshot,
                     "iteration": at, "shortened": max_iter < paper_param.max_iter},
        "deviations": deviations,
        "ours": {"iteration": at, "threshold": results["threshold"],
                 "train_f1": _finite(results["train"]["pixel"]["f1"]),
                 "test_f1": _finite(results["test"]["pixel"]["f1"]),
                 "best_snapshot": best, "counts": results.get("counts")},
        "paper": results["paper"],
        "training_curve": curve,
        "figures": {"fig5": str(Path(results["out"]) / "curves.png")},
        "report": str(Path(results["out"]) / "report.html"),
        "results": str(Path(results["out"]) / "results.json"),
    }


def summary_markdown(record: Dict[str, Any]) -> str:
    """RUN/reproduction.md: the preset, the schedule, the deviations, our figures beside the paper's."""
    ours, schedule = record["ours"], record["schedule"]
    best = ours["best_snapshot"]
    shortened = (f" (SHORTENED from {schedule['solver_max_iter']:,})" if schedule["shortened"] else "")
    lines = [
        f"# Reproduction of Stasiak et al. 2017: preset `{record['preset']}`", "",
        f"{record['about']}; engine {record['engine']} on {record['device']}.", "",
        f"- solver: `{record['solver']}`, derived from `{schedule['from']}`",
        f"- max_iter {schedule['max_iter']:,}{shortened}, snapshot every {schedule['snapshot']:,}; "
        f"trained to iteration {schedule['iteration']:,}",
        f"- cohort `{record['cohort']}`, tiles `{record['tiles']}`", "",
        "## Deviations from the paper", "", *[f"- {d}" for d in record["deviations"]], "",
        "## Results beside the paper's", "",
        "| | paper | ours |", "|---|---|---|",
        f"| test pixel F-measure, latest snapshot (iteration {ours['iteration']:,}) | "
        f"{record['paper']['test']['pixel']['f1']} | {_number(ours['test_f1'])} |",
    ]
    if best is not None:
        lines.append(f"| best test F-measure over the snapshots (the paper's choice) | "
                     f"{record['paper']['test']['pixel']['f1']} | {_number(best['test_f1'])} "
                     f"(iteration {best['iteration']:,}) |")
    lines += ["", f"Fig. 5 (training loss above test F per snapshot): `{record['figures']['fig5']}`; "
              f"full report: `{record['report']}`.", ""]
    if record["deviations"] and record["deviations"][0].startswith("synthetic cohort"):
        lines += ["A synthetic cohort shows whether the paper's path and mechanisms work; its F-measure is not "
                  "comparable with the paper's 55 %, which belongs to the paper's 96 patients' scans and "
                  "outlines (`plaquenet claims` checks the mechanisms).", ""]
    return "\n".join(lines)


def _finite(value: Optional[float]) -> Optional[float]:
    """None for an undefined (NaN) measure, as results.json writes it."""
    return None if value is None or math.isnan(value) else value


def _number(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _write_if_new(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True
