"""`plaquenet claims`: each checkable finding of the paper as an experiment
with a verdict (the rules: `verdicts.py`).

Three trainings on one schedule, differing only in their lesion-free tiles
(§4.1; the C3 experiment):

    bright    one third lesion-free, bright high-contrast windows preferred
              (the paper's protocol; for a preset, the `plaquenet reproduce`
              run itself, reused when it is there)
    none      no lesion-free tiles
    uniform   one third lesion-free, drawn uniformly

and two on 100x100 tiles (§6; the C7 experiment), the schedule's length but
their own solvers, which differ in the loss alone:

    large_euclidean   the paper's net and SGD, Euclidean loss (solver_100.prototxt)
    large_dice        a soft Dice loss (solver_100_dice.prototxt)

and, opt-in (`skull_strip_training`; the C9 experiment, §6 on the input):

    stripped          the paper's tiles, cut from the scans with everything
                      beyond the grown brain mask blanked (`tiles --skull-strip`;
                      every patient's mask made first with HD-BET)
    bright_c9         only when C9 has a schedule of its own length
                      (`skull_strip_max_iter`, to see whether the skull-
                      stripped net learns on a longer one): the paper-protocol
                      training on that length, its baseline. It starts from the paper-protocol
                      run's latest snapshot at or below that length (copied,
                      then resumed: the same numbers as training it anew).

A preset may give the large-tile runs a smaller batch (`large_tile_batch`:
the quick one, 25 tiles of 100x100, the pixels of the paper's 100 of 50x50),
said in the table as a deviation.

Each is scored as the paper scores (`score`: threshold on the training scans),
the `bright` one at every snapshot (Fig. 5, C4). Then one more pass over the
test scans per net (`evaluate.observe`) measures what the paper's own
metrics do not show: F against threshold (C2), false alarms per anatomical
region (C3, C5), lesion-wise against pixel-wise scores with polygons and
exact masks (C6), how much output there is at all (C7) and, for the
paper-protocol net, what dropping the detections outside the brain removes
(C8; the test patients' brain masks are made first with HD-BET, `plaquenet
brainmask`, when the `brain` extra is installed, else C8 is not measurable). Everything a step writes is reused by the next run: the
cohort, the tiles, the trainings (resumed), the scores and the observations
(OUT/observations/<run>.json, made again only for a newer snapshot).

Writes OUT/claims.json, OUT/claims.md (the table), OUT/claims.html and its
figures. A cohort without region maps or exact masks (real scans) gives
"not measurable here" for what needs them, with the reason.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import __version__, paths
from ..atomic import atomic_path, refuse_existing
from .. import brain as brain_extraction
from ..brainmask import brainmask_cohort
from ..cohort import brain_masks_present, cohort_file, cohort_name, patient_ids, read_split
from ..engines.snapshots import find_deploy, latest_snapshot
from ..errors import InputError
from ..evaluate.curves import read_training_loss
from ..evaluate.observe import observe
from ..report.claims import claims_markdown, regions_figure, threshold_range_figure, write_claims_report
from ..report.figures import save_png
from ..score import _json_safe, load_forward
from ..typing import PathLike
from . import verdicts
from .runner import Schedule, TileSpec, ensure_tiles, iterations_left, prepare_run, score_run, train_side_by_side

@dataclasses.dataclass(frozen=True)
class Variant:
    """One training of the claims: its tiles, and its own solver (None: the
    claims schedule's, the paper's for a preset)."""

    tiles: TileSpec
    label: str
    solver: Optional[Path] = None


LARGE_TILE = 100   # §6: "larger tiles"; the paper gives no size, 100x100 is twice its 50 a side
VARIANTS: Dict[str, Variant] = {
    "bright": Variant(TileSpec(), "1/3 lesion-free, bright preferred (paper)"),
    "none": Variant(TileSpec(negative_share=0.0), "no lesion-free tiles"),
    "uniform": Variant(TileSpec(negative_preference=0.0), "1/3 lesion-free, uniform"),
    "large_euclidean": Variant(TileSpec(tile=LARGE_TILE), "100x100 tiles, Euclidean loss (paper's)",
                               paths.LARGE_TILE_SOLVER),
    "large_dice": Variant(TileSpec(tile=LARGE_TILE), "100x100 tiles, soft Dice loss", paths.LARGE_TILE_DICE_SOLVER),
    "stripped": Variant(TileSpec(skull_strip=True), "1/3 lesion-free, bright preferred, skull-stripped input"),
    "bright_c9": Variant(TileSpec(), "1/3 lesion-free, bright preferred (paper), on C9's schedule"),
}
# run only when asked (C9: a brain mask of every patient and one more training; two when C9 trains longer)
OPT_IN = ("stripped", "bright_c9")
C3_VARIANTS = ("bright", "none", "uniform")
LABELS = {name: v.label for name, v in VARIANTS.items()}
SYNTHETIC_CAVEAT = ("A synthetic cohort can support or contradict the paper's mechanisms (where false alarms "
                    "fall, what the lesion-free tiles and the threshold choice do) but not its 55 % figure, which "
                    "belongs to its 96 patients' scans and outlines.")


@dataclasses.dataclass
class ClaimsPlan:
    """What `run_claims` will do, for the estimate printed before it starts."""

    cohort_dir: Path
    runs: Dict[str, Path]  # variant -> run folder
    schedule: Schedule
    max_iter: int  # the schedule's, after its override
    iterations_left: Dict[str, int]
    schedules: Dict[str, Schedule] = dataclasses.field(default_factory=dict)  # variant -> its own

    def schedule_of(self, name: str) -> Schedule:
        return self.schedules.get(name, self.schedule)

    def cost(self, name: str) -> float:
        """Pixels per iteration of a variant's training, relative to the claims
        schedule's (the estimate scales the measured seconds by it)."""
        def pixels(schedule: Schedule, tile: int) -> int:
            return (schedule.batch_size or schedule.net_batch_size()) * tile ** 2
        return pixels(self.schedule_of(name), VARIANTS[name].tiles.tile) / pixels(self.schedule, TileSpec().tile)

    def __str__(self) -> str:
        todo = {k: n for k, n in self.iterations_left.items() if n}
        if not todo:
            return "claims: every training is done; scoring and measuring only"
        return ("claims: " + ", ".join(f"{k} {n} iterations" for k, n in todo.items())
                + f" of training left ({sum(todo.values())} in all)")


def plan_claims(cohort_dir: PathLike, out: PathLike, schedule: Schedule,
                main_run: Optional[PathLike] = None, large_tile_batch: Optional[int] = None,
                skull_strip_training: bool = False, skull_strip_max_iter: Optional[int] = None) -> ClaimsPlan:
    """The run folders: the `bright` one is `main_run` when given (the
    reproduction's), else OUT/runs/bright; the others OUT/runs/<variant>
    (`stripped` with `skull_strip_training` only, `bright_c9` only when
    `skull_strip_max_iter` differs from the schedule's max_iter: then both
    train that long, the others keep the schedule's).
    The large-tile runs train as long as `schedule` (its max_iter and
    snapshot), on their own solvers, with `large_tile_batch` tiles a batch
    (None: their nets' own, the paper's 100)."""
    out = Path(out)
    max_iter = schedule.max_iter or schedule.read().max_iter
    if skull_strip_max_iter is not None and (not skull_strip_training or skull_strip_max_iter < 1):
        raise InputError("--skull-strip-max-iter", "needs --skull-strip-training and at least 1 iteration, got "
                         f"{skull_strip_max_iter}{'' if skull_strip_training else ' without it'}")
    c9_longer = skull_strip_max_iter is not None and skull_strip_max_iter != max_iter
    wanted = {"stripped"} if skull_strip_training else set()
    wanted |= {"bright_c9"} if c9_longer else set()
    runs = {name: out / "runs" / name for name in VARIANTS if name not in OPT_IN or name in wanted}
    if main_run is not None:
        runs["bright"] = Path(main_run)
    schedules = {name: Schedule(v.solver, max_iter, schedule.snapshot, large_tile_batch)
                 for name, v in VARIANTS.items() if v.solver is not None and name in runs}
    if c9_longer:
        schedules.update({name: dataclasses.replace(schedule, max_iter=skull_strip_max_iter)
                          for name in ("stripped", "bright_c9")})
    left = {}
    for name, run in runs.items():
        at = iterations_left(run)[0] if (run / "solver.prototxt").is_file() else 0
        seed = seed_snapshot(runs["bright"], schedules[name]) if name == "bright_c9" and not at else None
        at = seed[0] if seed else at
        length = schedules[name].max_iter if name in schedules else None
        left[name] = max((length or max_iter) - at, 0)
    return ClaimsPlan(Path(cohort_dir), runs, schedule, max_iter, left, schedules)


SNAPSHOT_FILES = (".caffemodel", ".solverstate", ".data_position.json")   # one snapshot, as `train` writes it


def seed_snapshot(source_run: Path, schedule: Schedule) -> Optional[Tuple[int, List[Path]]]:
    """(N, the files of `source_run`'s snapshot N) with the largest N within
    the schedule's max_iter, from which a run on `schedule` (the same solver
    and tiles, another length) continues `source_run`'s training; None when
    there is none, or when the solver's learning rate depends on max_iter
    (lr_policy "poly": the two lengths would differ from the first
    iteration). Each a `train` snapshot: weights, solver state and data position."""
    param = schedule.read()
    if not (source_run / "solver.prototxt").is_file() or param.lr_policy == "poly":
        return None
    limit = schedule.max_iter or param.max_iter
    found = []
    for state in source_run.glob("*_iter_*.solverstate"):
        number = state.name[:-len(".solverstate")].rpartition("_iter_")[2]
        files = [state.with_name(state.name[:-len(".solverstate")] + suffix) for suffix in SNAPSHOT_FILES]
        if number.isdigit() and int(number) <= limit and all(f.is_file() for f in files):
            found.append((int(number), files))
    return max(found) if found else None


def run_claims(cohort_dir: PathLike, out: PathLike, schedule: Schedule, main_run: Optional[PathLike] = None,
               engine: str = "torch", device: str = "cpu", force: bool = False,
               seconds_per_iteration: Optional[float] = None, jobs: int = 1,
               large_tile_batch: Optional[int] = None, extractor: Optional[brain_extraction.Extractor] = None,
               skull_strip_training: bool = False, skull_strip_max_iter: Optional[int] = None,
               say: Callable[[str], None] = print) -> Dict[str, Any]:
    """Train (or resume) the five runs (six with `skull_strip_training`), score
    them, measure, judge, write OUT.

    OUT is written atomically except OUT/runs and OUT/observations, which
    persist between calls (they are what a rerun reuses); an OUT with a
    claims.json is refused unless `force` (only the table is replaced).
    `seconds_per_iteration`: for the estimate printed first (default: from
    the runs' train.log when one has trained). `jobs`: trainings at a time
    (`runner.train_side_by_side`). `large_tile_batch`: as for `plan_claims`.
    `extractor`: makes the brain masks that the cohort lacks, the test
    patients' (C8) and with `skull_strip_training` everyone's (C9) (default
    HD-BET when the brain extra is installed, else those claims are not
    measurable here). `skull_strip_max_iter`: C9's length (`plan_claims`)."""
    out = Path(out)
    refuse_existing(out / "claims.json", force)
    plan = plan_claims(cohort_dir, out, schedule, main_run, large_tile_batch, skull_strip_training,
                       skull_strip_max_iter)
    seconds_per_iteration = seconds_per_iteration or measured_seconds_per_iteration(list(plan.runs.values()))
    if not any(plan.iterations_left.values()):
        say(str(plan))
    else:
        say(str(plan) + (_eta(plan, seconds_per_iteration) if seconds_per_iteration
                         else "; the estimate follows the first iterations of each training"))

    no_strip = None
    if "stripped" in plan.runs:   # its tiles are cut from the stripped scans: every patient's mask first
        no_strip = ensure_brain_masks(cohort_dir, patient_ids(cohort_dir), extractor, say)
        if no_strip:
            plan.runs.pop("stripped")
            plan.runs.pop("bright_c9", None)
    prepare_runs(plan, force)
    train_side_by_side(list(plan.runs.values()), jobs, engine=engine, device=device, say=say)
    no_brain = ensure_brain_masks(cohort_dir, read_split(cohort_dir)["test"], extractor, say)
    results: Dict[str, Dict[str, Any]] = {}
    observations: Dict[str, Optional[Dict[str, Any]]] = {}
    for name, run in plan.runs.items():
        # the paper-protocol run at every snapshot (Fig. 5, C4); the others' end points (C3, C7)
        results[name] = score_run(run, cohort_dir, engine=engine, device=device, all_snapshots=name == "bright",
                                  whole_volume=name == "bright", training=plan.schedule_of(name).training_note())
        observations[name] = _observations(out / "observations" / f"{name}.json", run, cohort_dir, results[name],
                                           engine, device, brain=name == "bright" and no_brain is None,
                                           skull_strip=VARIANTS[name].tiles.skull_strip)

    claims = judge(results, observations, plan, read_training_loss(plan.runs["bright"]), no_brain, no_strip)
    about = {
        "cohort": cohort_name(cohort_dir), "cohort_dir": str(cohort_dir),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "plaquenet": __version__, "engine": engine, "device": device,
        "schedule": f"{schedule.solver}" + ("; " + "; ".join(schedule.deviations()) if schedule.deviations() else ""),
        "large_tile_schedules": {name: "; ".join(s.deviations()) for name, s in plan.schedules.items()},
        "runs": {k: str(v) for k, v in plan.runs.items()},
        "caveat": SYNTHETIC_CAVEAT,
    }
    _write(out, claims, about, results, observations)
    return {"claims": claims, "about": about, "out": str(out)}


def prepare_runs(plan: ClaimsPlan, force: bool = False) -> None:
    """Each variant's tiles (made once, `ensure_tiles`) and run folder
    (`prepare_run`); `force` replaces a run folder of another schedule, never
    the paper-protocol one (it may be the reproduction's)."""
    for name, run in plan.runs.items():
        tiles_dir = ensure_tiles(plan.cohort_dir, VARIANTS[name].tiles)
        prepare_run(run, plan.schedule_of(name), tiles_dir, force=force and name != "bright")
        if name == "bright_c9" and not iterations_left(run)[0]:
            seed = seed_snapshot(plan.runs["bright"], plan.schedule_of(name))
            # the .solverstate last: it is what makes the copy a snapshot to resume (its learned_net names the
            # source's own .caffemodel, the same bytes)
            for path in sorted((seed or (0, []))[1], key=lambda f: f.suffix == ".solverstate"):
                with atomic_path(run / path.name) as tmp:
                    shutil.copyfile(path, tmp)


def default_jobs(device: str) -> int:
    """Trainings at a time when --jobs is not given: one per 8 CPU cores on a
    CPU (each training then still has 8 threads), one on a GPU."""
    if device != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // 8)


def ensure_brain_masks(cohort_dir: PathLike, patients: Sequence[str],
                       extractor: Optional[brain_extraction.Extractor] = None,
                       say: Callable[[str], None] = print) -> Optional[str]:
    """Brain masks of `patients` in the cohort store, the missing ones made with
    `extractor` (default: HD-BET's fast mode, `plaquenet brainmask`); None when
    every patient has one, else why not (C8 is then not measurable here)."""
    missing = sorted(set(patients) - set(brain_masks_present(cohort_dir)))
    if not missing:
        return None
    name = "given extractor"
    if extractor is None:
        if not brain_extraction.version():
            return f"brain extraction is not installed ({brain_extraction.EXTRA})"
        extractor, name = brain_extraction.hd_bet(), f"{brain_extraction.version()} (fast)"
    say(f"claims: brain masks of {', '.join(missing)} ({name}) into {cohort_file(cohort_dir)}")
    summary = brainmask_cohort(cohort_dir, extractor, name, force=True, patients=missing)
    say(f"claims: {summary}")
    return None


def judge(results: Dict[str, Dict[str, Any]], observations: Dict[str, Optional[Dict[str, Any]]], plan: ClaimsPlan,
          loss: Any, no_brain: Optional[str] = None, no_strip: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every claim's verdict from the measured numbers (`verdicts`);
    `no_brain`: why the test patients have no brain masks (C8); `no_strip`:
    why the skull-stripped training could not run (C9)."""
    main, main_obs = results["bright"], observations["bright"]
    assert main_obs is not None
    paper_max_iter = Schedule().read().max_iter
    found = [
        verdicts.c1_threshold_source(main),
        verdicts.c2_raw_intensity(main, main_obs),
        verdicts.c3_bright_negatives({k: observations.get(k) for k in C3_VARIANTS},
                                     {k: results[k]["test"]["pixel"]["f1"] for k in C3_VARIANTS if k in results}),
        verdicts.c4_overtraining(main.get("training_curve", []), loss.iteration if loss else None,
                                 loss.loss if loss else None, plan.max_iter, paper_max_iter),
        verdicts.c5_false_alarm_regions(main_obs),
        verdicts.c6_lesion_vs_pixel(main_obs),
        verdicts.c7_larger_tiles({k: (results.get(k), observations.get(k)) for k in ("large_euclidean", "large_dice")},
                                 plan.schedule_of("large_euclidean").deviations()),
        verdicts.c8_brain_extraction(main_obs, no_brain),
        verdicts.c9_skull_stripped_training(observations.get("bright_c9", main_obs), observations.get("stripped"),
                                            f"not run: {no_strip}" if no_strip else None, _c9_length(plan)),
    ]
    return [_json_safe(dataclasses.asdict(c)) for c in found]


def _c9_length(plan: ClaimsPlan) -> Optional[str]:
    """How C9's trainings differ in length from the other claims' (None: they do not)."""
    if "bright_c9" not in plan.runs:
        return None
    return (f"both nets trained {plan.schedule_of('bright_c9').max_iter:,} iterations (the other claims' "
            f"{plan.max_iter:,}), the paper-protocol one continuing that run")


ITERATION_LINE = re.compile(r"Iteration \d+ \(([0-9.eE+-]+) iter/s")


def measured_seconds_per_iteration(runs: Sequence[PathLike]) -> Optional[float]:
    """Seconds per iteration from the last timed `Iteration N (X iter/s, ...)`
    line of the first run's train.log that has one (Caffe's line format, both
    engines write it); None when no run has trained yet."""
    for run in runs:
        try:
            rates = ITERATION_LINE.findall((Path(run) / "train.log").read_text())
        except OSError:
            continue
        rates = [float(r) for r in rates if float(r) > 0]
        if rates:
            return 1.0 / rates[-1]
    return None


def _eta(plan: ClaimsPlan, seconds_per_iteration: float) -> str:
    """The training time left, each run's iterations weighed by its pixels per
    iteration (`ClaimsPlan.cost`) against the 50x50 runs' measured seconds."""
    seconds = sum(n * plan.cost(name) for name, n in plan.iterations_left.items()) * seconds_per_iteration
    return (f"; about {seconds / 60:.0f} min of training at {seconds_per_iteration:.2f} s per 50x50 iteration, "
            "plus scoring")


# what `observe` measures; a cache of another version is made again (2: C7, 3: C8,
# 4: lesion rules break equal overlaps by size, the minimum volume with a tolerance)
OBSERVATIONS_VERSION = 4


def _observations(path: Path, run: Path, cohort_dir: PathLike, results: Dict[str, Any], engine: str,
                  device: str, brain: bool = False, skull_strip: bool = False) -> Dict[str, Any]:
    """`evaluate.observe` of the run's latest snapshot at its scored thresholds,
    cached in `path` (made again for another snapshot, threshold or cohort, or,
    with `brain` or `skull_strip`, after the store's brain masks changed)."""
    snapshot = latest_snapshot(run)
    key = {"measures": OBSERVATIONS_VERSION, "snapshot": str(snapshot.resolve()), "size": snapshot.stat().st_size,
           "mtime_ns": snapshot.stat().st_mtime_ns, "threshold": results["threshold"],
           "raw_threshold": results["baseline"]["raw_intensity"]["threshold"], "cohort_dir": str(cohort_dir),
           "brain": cohort_file(cohort_dir).stat().st_mtime_ns if brain or skull_strip else None}
    try:
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return dict(cached["observations"])
    except (OSError, ValueError):
        pass
    forward = load_forward(engine, find_deploy(snapshot, None), snapshot, device)
    found = observe(forward, cohort_dir, read_split(cohort_dir)["test"], key["threshold"], key["raw_threshold"],
                    brain=brain, skull_strip=skull_strip)
    record = _json_safe(found.as_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps({"key": key, "observations": record}) + "\n")
    return dict(record)


def _write(out: Path, claims: List[Dict[str, Any]], about: Dict[str, Any], results: Dict[str, Dict[str, Any]],
           observations: Dict[str, Optional[Dict[str, Any]]]) -> None:
    """claims.json, claims.md, claims.html and the figures, each replaced whole."""
    out.mkdir(parents=True, exist_ok=True)
    figures: List[Tuple[str, Path]] = []
    main_obs = observations["bright"]
    if main_obs is not None:
        figures.append((_caption_c2, _save(threshold_range_figure(main_obs), out / "c2_thresholds.png")))
    regions = regions_figure({k: observations.get(k) for k in C3_VARIANTS}, LABELS)
    if regions is not None:
        figures.append((_caption_regions, _save(regions, out / "c3_c5_regions.png")))
    curves = Path(results["bright"].get("out", "")) / "curves.png"
    if curves.is_file():
        figures.append(("C4, paper Fig. 5: training loss (top) and test F-measure of each snapshot (bottom) of the "
                        "paper-protocol run.", curves))
    document = {"about": about, "claims": claims,
                "runs": {k: {"snapshot": r.get("snapshot"), "threshold": r.get("threshold"),
                             "test_f1": r["test"]["pixel"]["f1"]} for k, r in results.items()}}
    _replace(out / "claims.json", json.dumps(_json_safe(document), indent=2) + "\n")
    _replace(out / "claims.md", claims_markdown(claims, about))
    with atomic_path(out / "claims.html") as tmp:
        write_claims_report(tmp, claims, about, figures)


_caption_c2 = ("C2, paper §5 and Fig. 9: pixel F-measure on the test scans against the threshold, for the network "
               "output and for the normalised intensity itself; shaded where F keeps 90 % of its best, dashed at the "
               "threshold chosen on the training scans.")
_caption_regions = ("C3 and C5: false-positive pixels on the test scans per anatomical region of the phantom, for "
                    "each choice of lesion-free tiles, each net at its own training-scan threshold (log scale; a "
                    "count of 0 is drawn at 0.5).")


def _save(figure: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        save_png(figure, tmp)
    return path


def _replace(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


__all__ = ["VARIANTS", "OPT_IN", "C3_VARIANTS", "Variant", "ClaimsPlan", "plan_claims", "prepare_runs", "default_jobs", "run_claims", "judge"]
