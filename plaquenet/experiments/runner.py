"""One training experiment, step by step, each step reused when an earlier
experiment already wrote its output:

    cohort = ensure_cohort("quick", Path("data"))          # phantom + import, once
    tiles_dir = ensure_tiles(cohort, TileSpec())           # §4.1 tiles, once per spec
    prepare_run(run_dir, Schedule(max_iter=300), tiles_dir)   # derived solver + train net
    train_or_resume(run_dir)                               # continues from the latest snapshot
    results = score_run(run_dir, cohort)                   # Fig. 5 + the full report, once per snapshot

The run folder holds its own solver and train net, derived from the paper's
(prototxt/solver.prototxt and the net it names) with only the fields an
experiment must change: the tiles it reads, where snapshots go, and the
schedule's max_iter and snapshot. They are plain prototxt, so
`caffe train --solver=RUN/solver.prototxt` trains the same run.
"""

import concurrent.futures
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .. import paths, tiles
from ..atomic import atomic_path
from ..caffe import caffe_pb2
from ..caffe.prototxt import parse_prototxt, prototxt_text, read_net, read_solver
from ..cohort import cohort_file, cohort_id
from ..engines.run import effective_snapshot_prefix, train_net
from ..engines.snapshots import deploy_beside, latest_snapshot
from ..errors import InputError
from ..score import score
from ..train import train
from ..typing import PathLike

SOLVER_FILE = "solver.prototxt"
NET_FILE = "train.prototxt"
DEPLOY_FILE = "deploy.prototxt"   # `train` and `score` find it beside train.prototxt (engines.snapshots)
SNAPSHOT_NAME = "plaquenet"       # snapshots are RUN/plaquenet_iter_<N>.caffemodel, as in the paper's solver
SCORE_DIR = "score"


# --- what an experiment varies --------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Schedule:
    """A solver prototxt and the schedule fields an experiment may override
    (None: the solver's own value): max_iter and snapshot of the solver, and
    batch_size, the train net's HDF5Data `batch_size`."""

    solver: Path = paths.PAPER_SOLVER   # the paper's SGD (§4.3)
    max_iter: Optional[int] = None
    snapshot: Optional[int] = None
    batch_size: Optional[int] = None

    def read(self) -> "caffe_pb2.SolverParameter":
        """The schedule's solver as written (before any override)."""
        self.check()
        return read_solver(self.solver)

    def check(self) -> None:
        if self.max_iter is not None and self.max_iter < 1:
            raise InputError("--max-iter", f"must be at least 1, got {self.max_iter}")
        if self.snapshot is not None and self.snapshot < 0:
            raise InputError("snapshot", f"must be 0 (none but the last) or more, got {self.snapshot}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError("batch_size", f"must be at least 1, got {self.batch_size}")

    def deviations(self, param: Optional["caffe_pb2.SolverParameter"] = None) -> List[str]:
        """Each way this schedule differs from the paper's solver, as a sentence
        ("max_iter 300 instead of the paper's 75000"); [] for the paper's own.
        `param`: the schedule's solver already read."""
        param = param if param is not None else self.read()
        whose = "the paper's" if _same_file(self.solver, paths.PAPER_SOLVER) else f"{self.solver}'s"
        found = [] if whose == "the paper's" else [f"solver {self.solver} instead of the paper's {paths.PAPER_SOLVER}"]
        if self.max_iter is not None and self.max_iter != param.max_iter:
            found.append(f"max_iter {self.max_iter} instead of {whose} {param.max_iter}")
        if self.snapshot is not None and self.snapshot != param.snapshot:
            found.append(f"snapshot every {self.snapshot} iterations instead of {whose} {param.snapshot}")
        if self.batch_size is not None:
            batch = self.net_batch_size(param)
            if self.batch_size != batch:
                found.append(f"batch_size {self.batch_size} instead of {whose} {batch}")
        return found

    def net_batch_size(self, param: Optional["caffe_pb2.SolverParameter"] = None) -> int:
        """The batch_size of the train net's HDF5Data layer, as written."""
        param = param if param is not None else self.read()
        _, net_file = train_net(param, self.solver)
        if net_file is None:
            raise InputError(self.solver, "name the train net with `net: FILE` (the run derives its own copy)")
        return int(_data_layer(read_net(net_file), net_file).hdf5_data_param.batch_size)

    def training_note(self) -> str:
        """How a run on this schedule was trained, for the top of score's report
        (`score(training=...)`): its deviations, SHORTENED when max_iter is below
        the solver's. Every experiment scores its runs with it, so a score made
        by one (the reproduction) is reused by another (the claims)."""
        param = self.read()
        changes = self.deviations(param)
        if not changes:
            return f"{self.solver} unchanged"
        shortened = "SHORTENED: " if self.max_iter is not None and self.max_iter < param.max_iter else ""
        return f"{shortened}{self.solver} with " + "; ".join(changes)


@dataclasses.dataclass(frozen=True)
class TileSpec:
    """The §4.1 tile parameters (`tiles.make_tiles`); defaults are the paper's."""

    negative_share: float = tiles.NEGATIVE_SHARE
    negative_preference: float = tiles.NEGATIVE_PREFERENCE   # 0: lesion-free tiles drawn uniformly
    tile: int = tiles.TILE
    seed: int = tiles.SEED
    skull_strip: bool = False   # not the paper's: cut from the skull-stripped input (§6; tiles.py)

    # What a tiles.json written before a parameter existed made: today's folders stay valid.
    BEFORE_RECORDED = {"skull_strip": False}

    def folder_name(self) -> str:
        """One folder per spec: tiles-50px-neg0.333-pref4-seed0 for the paper's
        (-skullstrip appended with `skull_strip`)."""
        return (f"tiles-{self.tile}px-neg{self.negative_share:.3f}-pref{self.negative_preference:g}"
                f"-seed{self.seed}" + ("-skullstrip" if self.skull_strip else ""))

    def parameters(self) -> Dict[str, Any]:
        """As tiles.json records them."""
        return {"tile": self.tile, "negative_share": self.negative_share,
                "negative_preference": self.negative_preference, "seed": self.seed,
                "skull_strip": self.skull_strip}


# --- cohort and tiles -----------------------------------------------------------

def ensure_cohort(phantom_preset: str, data_dir: PathLike, seed: int = 0) -> Path:
    """DATA/<preset> (seed 0; DATA/<preset>-seed<k> otherwise): the cohort
    imported from the synthetic phantom DATA/phantom-<preset>, through the
    stages' own commands (`plaquenet phantom --preset`, `plaquenet import`,
    with the phantom's exact plaques as --truth when it wrote them). Each is
    made only when missing (both stages write atomically: one that exists is
    whole); returns the cohort folder."""
    cohort_dir = cohort_folder(phantom_preset, data_dir, seed)
    phantom_dir = cohort_dir.with_name(f"phantom-{cohort_dir.name}")
    if cohort_file(cohort_dir).is_file():
        return cohort_dir
    if not (phantom_dir / "dicom").is_dir():
        _stage(["phantom", str(phantom_dir), "--preset", phantom_preset, "--seed", str(seed), "--force"])
    truth = phantom_dir / "truth"
    _stage(["import", str(phantom_dir / "dicom"), "--cohort", str(cohort_dir)]
           + (["--truth", str(truth)] if truth.is_dir() else []))
    if not cohort_file(cohort_dir).is_file():
        raise InputError(cohort_file(cohort_dir), "missing after `plaquenet import`")
    return cohort_dir


def cohort_folder(phantom_preset: str, data_dir: PathLike, seed: int = 0) -> Path:
    """Where `ensure_cohort` puts the cohort of this preset and seed."""
    return Path(data_dir) / (phantom_preset if seed == 0 else f"{phantom_preset}-seed{seed}")


def _stage(arguments: Sequence[str]) -> None:
    """Run one `plaquenet` stage as its own process, its output passed through."""
    done = subprocess.run([sys.executable, "-m", "plaquenet.cli", *arguments])
    if done.returncode != 0:
        raise InputError(None, f"`plaquenet {' '.join(arguments)}` failed (exit {done.returncode}; "
                               "its message is above)")


def ensure_tiles(cohort_dir: PathLike, spec: TileSpec = TileSpec(), out_dir: Optional[PathLike] = None) -> Path:
    """The §4.1 tiles of `cohort_dir` for `spec` in `out_dir` (default
    COHORT/<spec.folder_name()>): reused when its tiles.json records the same
    parameters and cohort_id and every file its train.txt lists is found from
    the working directory (train.txt is relative to it, as Caffe reads it);
    otherwise (re)made. Returns the folder (its train.txt is what HDF5Data reads)."""
    out = Path(out_dir) if out_dir is not None else Path(cohort_dir) / spec.folder_name()
    if not tiles_match(out, cohort_dir, spec):
        print(tiles.make_tiles(cohort_dir, out, tile=spec.tile, negative_share=spec.negative_share, seed=spec.seed,
                               negative_preference=spec.negative_preference, skull_strip=spec.skull_strip))
    return out


def tiles_match(out: Path, cohort_dir: PathLike, spec: TileSpec) -> bool:
    """Whether the tile folder `out` was made from this cohort with this spec, and is readable from here."""
    try:
        description = json.loads((out / "tiles.json").read_text())
        listed = (out / tiles.LIST_FILE).read_text().split()
    except (OSError, ValueError):
        return False
    made_with = description.get("parameters", {})
    same = all(_same_value(made_with.get(name, TileSpec.BEFORE_RECORDED.get(name)), value)
               for name, value in spec.parameters().items())
    return (same and description.get("cohort_id") == cohort_id(cohort_dir)
            and bool(listed) and all(Path(p).is_file() for p in listed))


def _same_value(recorded: Any, wanted: Any) -> bool:
    if isinstance(wanted, float) and isinstance(recorded, (int, float)):
        return math.isclose(recorded, wanted, rel_tol=1e-12)
    return bool(recorded == wanted)


# --- the run folder -------------------------------------------------------------

def prepare_run(run_dir: PathLike, schedule: Schedule, tiles_dir: PathLike, force: bool = False) -> Path:
    """Write RUN/solver.prototxt and RUN/train.prototxt, derived from the
    schedule's solver and the train net it names (and copy that net's deploy
    net as RUN/deploy.prototxt). Changed, and only these: the solver's `net`
    (-> RUN/train.prototxt), `snapshot_prefix` (-> RUN/plaquenet) and the
    schedule's max_iter and snapshot; the net's HDF5Data `source`
    (-> TILES/train.txt). A comment header in each file names its source and
    every change. Idempotent (files equal to what is there are not rewritten),
    so a rerun resumes.

    A run folder of another run (a derived solver or net that differs in
    anything but max_iter, which may grow to extend a run, or files of a run
    not made here) is refused unless `force`, which removes the folder first.
    Returns the derived solver's path."""
    schedule.check()
    run_dir = Path(run_dir)
    solver_text, net_text, deploy = derive_run(run_dir, schedule, tiles_dir)
    problem = other_run(run_dir, solver_text, net_text)
    if problem and not force:
        raise InputError(run_dir, f"{problem}: use --force to replace that run, or another run folder")
    if problem:
        _remove_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run_dir / NET_FILE, net_text)
    if deploy is not None:
        _write_if_changed(run_dir / DEPLOY_FILE, deploy.read_text())
    _write_if_changed(run_dir / SOLVER_FILE, solver_text)
    return run_dir / SOLVER_FILE


def derive_run(run_dir: Path, schedule: Schedule, tiles_dir: PathLike) -> Tuple[str, str, Optional[Path]]:
    """(derived solver text, derived train net text, the deploy net beside the original train net or None)."""
    param = schedule.read()
    _, net_file = train_net(param, schedule.solver)
    if net_file is None or not param.HasField("net"):
        raise InputError(schedule.solver, "name the train net with `net: FILE` (the run derives its own copy)")
    solver_changes = _set_fields(param, [
        ("net", str(run_dir / NET_FILE)), ("snapshot_prefix", str(run_dir / SNAPSHOT_NAME)),
        ("max_iter", schedule.max_iter), ("snapshot", schedule.snapshot)])
    net = read_net(net_file)
    data = _data_layer(net, net_file)
    source = str(Path(tiles_dir) / tiles.LIST_FILE)
    net_changes = _set_fields(data.hdf5_data_param, [("source", source), ("batch_size", schedule.batch_size)],
                              where=f"layer {data.name!r} hdf5_data_param.")
    return (_derived_text(param, schedule.solver, solver_changes),
            _derived_text(net, net_file, net_changes), deploy_beside(net_file))


def _data_layer(net: "caffe_pb2.NetParameter", net_file: PathLike) -> Any:
    """The train net's one HDF5Data layer (the tiles)."""
    data_layers = [layer for layer in net.layer if layer.type == "HDF5Data"]
    if len(data_layers) != 1:
        raise InputError(net_file, f"expected one HDF5Data layer (the tiles), found {len(data_layers)}")
    return data_layers[0]


def _set_fields(message: Any, values: Sequence[Tuple[str, Any]], where: str = "") -> List[str]:
    """Set each (field, value) whose value is not None and differs; return the changes as text."""
    changes = []
    for name, value in values:
        old = getattr(message, name)
        if value is None or (message.HasField(name) and old == value):
            continue
        setattr(message, name, value)
        changes.append(f"{where}{name}: {json.dumps(old)} -> {json.dumps(value)}")
    return changes


def _derived_text(message: Any, source: Path, changes: List[str]) -> str:
    header = [f"# Derived from {source} by plaquenet.experiments.runner.prepare_run (its comments are",
              "# there); every field as in that file except:"]
    header += [f"#   {change}" for change in changes] or ["#   (none)"]
    return "\n".join(header) + "\n" + prototxt_text(message)


def other_run(run_dir: Path, solver_text: str, net_text: str) -> Optional[str]:
    """Why `run_dir` holds another run than these derived files describe (None: the same run, or nothing yet)."""
    if not run_dir.is_dir() or not any(run_dir.iterdir()):
        return None
    solver_file, net_file = run_dir / SOLVER_FILE, run_dir / NET_FILE
    if not (solver_file.is_file() and net_file.is_file()):
        return f"holds files of a run not prepared here (no {SOLVER_FILE} and {NET_FILE})"
    old = read_solver(solver_file)
    new = parse_prototxt(solver_text, caffe_pb2.SolverParameter())
    for param in (old, new):
        param.ClearField("max_iter")   # a run may be extended: the paper's schedule after a shortened one
    differs = _first_difference(old, new)
    if differs:
        return f"holds a run of another schedule ({SOLVER_FILE} differs in {differs})"
    differs = _first_difference(read_net(net_file), parse_prototxt(net_text, caffe_pb2.NetParameter()))
    return f"holds a run of another train net or tile set ({NET_FILE} differs in {differs})" if differs else None


def _first_difference(old: Any, new: Any) -> Optional[str]:
    if old == new:
        return None
    names = {f.name for f, _ in old.ListFields()} | {f.name for f, _ in new.ListFields()}
    return next((n for n in sorted(names) if getattr(old, n) != getattr(new, n)), "its fields")


def _remove_run(run_dir: Path) -> None:
    here = Path.cwd().resolve()
    if run_dir.resolve() in (here, *here.parents) or cohort_file(run_dir).is_file():
        raise InputError(run_dir, "is not a run folder to replace (it holds the working directory or a cohort)")
    shutil.rmtree(run_dir)


def _write_if_changed(path: Path, text: str) -> None:
    if path.is_file() and path.read_text() == text:
        return
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# --- train and score ------------------------------------------------------------

def latest_solverstate(run_dir: PathLike) -> Optional[Tuple[int, Path]]:
    """(N, RUN/plaquenet_iter_<N>.solverstate) with the largest N, or None."""
    prefix = effective_snapshot_prefix(read_solver(Path(run_dir) / SOLVER_FILE), Path(run_dir) / SOLVER_FILE)
    found = []
    for path in Path(run_dir).glob(f"{os.path.basename(prefix)}_iter_*.solverstate"):
        number = path.name[len(os.path.basename(prefix)) + len("_iter_"):-len(".solverstate")]
        if number.isdigit():
            found.append((int(number), path))
    return max(found) if found else None


def iterations_left(run_dir: PathLike) -> Tuple[int, int]:
    """(iteration the run stands at, the derived solver's max_iter)."""
    solver_file = Path(run_dir) / SOLVER_FILE
    if not solver_file.is_file():
        raise InputError(run_dir, f"no {SOLVER_FILE}: prepare the run first (prepare_run)")
    latest = latest_solverstate(run_dir)
    return (latest[0] if latest else 0), read_solver(solver_file).max_iter


def train_or_resume(run_dir: PathLike, engine: str = "torch", device: str = "cpu",
                    on_estimate: Optional[Callable[[str], None]] = None, precision: str = "fp32") -> Path:
    """Train from RUN/solver.prototxt, or resume from its latest .solverstate
    (`plaquenet.train.train(..., snapshot=...)`); nothing when that snapshot
    is already at max_iter. A run killed before its first snapshot restarts
    (its train.log and train.csv are replaced). Returns the latest .caffemodel."""
    at, max_iter = iterations_left(run_dir)
    if at >= max_iter:
        return latest_snapshot(run_dir)
    latest = latest_solverstate(run_dir)
    result = train(Path(run_dir) / SOLVER_FILE, engine=engine, device=device, on_estimate=on_estimate,
                   snapshot=latest[1] if latest else None, force=latest is None, precision=precision)
    return result.last_snapshot or latest_snapshot(run_dir)


TRAIN_OUTPUT = "train.out"   # what `plaquenet train` printed, for a training run beside others


def train_side_by_side(run_dirs: Sequence[PathLike], jobs: int, engine: str = "torch", device: str = "cpu",
                       say: Callable[[str], None] = print) -> None:
    """`train_or_resume` for each run, `jobs` at a time, each in its own
    `plaquenet train` process with cores // jobs threads (OMP_NUM_THREADS), its
    output in RUN/train.out (train.log is Caffe's log, as always). With one job,
    in this process one after the other, the engine's estimate and progress shown."""
    pending = [Path(r) for r in run_dirs if _has_iterations_left(r)]
    if jobs <= 1 or len(pending) <= 1:
        for run in pending:
            train_or_resume(run, engine=engine, device=device, on_estimate=_prefixed(say, f"{run}: "))
        return
    jobs = min(jobs, len(pending))
    threads = max(1, (os.cpu_count() or 1) // jobs)
    say(f"training {len(pending)} runs side by side, {jobs} at a time with {threads} thread(s) each "
        f"(their output: RUN/{TRAIN_OUTPUT}): " + ", ".join(str(r) for r in pending))
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        failed = [problem for problem in pool.map(lambda run: _train_process(run, engine, device, threads), pending)
                  if problem]
    if failed:
        raise InputError(None, "; ".join(failed))


def _prefixed(say: Callable[[str], None], prefix: str) -> Callable[[str], None]:
    return lambda line: say(prefix + line)


def _has_iterations_left(run_dir: PathLike) -> bool:
    at, max_iter = iterations_left(run_dir)
    return at < max_iter


def _train_process(run_dir: Path, engine: str, device: str, threads: int) -> Optional[str]:
    """One `plaquenet train` of `train_or_resume`'s choice in its own process; None, or why it failed."""
    latest = latest_solverstate(run_dir)
    arguments = ["train", "--solver", str(run_dir / SOLVER_FILE), "--engine", engine, "--device", device]
    arguments += ["--snapshot", str(latest[1])] if latest else ["--force"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(run_dir / TRAIN_OUTPUT, "w") as output:   # a console log to watch, not a result: written as it comes
        done = subprocess.run([sys.executable, "-m", "plaquenet.cli", *arguments], stdout=output,
                              stderr=subprocess.STDOUT, env=env)
    if done.returncode == 0:
        return None
    last = (run_dir / TRAIN_OUTPUT).read_text().strip().splitlines()[-1:] or ["no output"]
    return f"training {run_dir} failed (exit {done.returncode}): {last[0]} (all of it: {run_dir / TRAIN_OUTPUT})"


def score_run(run_dir: PathLike, cohort_dir: PathLike, engine: str = "torch",
              device: str = "cpu", all_snapshots: bool = True, whole_volume: bool = True,
              training: Optional[str] = None, precision: str = "fp32") -> Dict[str, Any]:
    """`plaquenet score --all-snapshots RUN` into RUN/score: the Fig. 5 curves
    (curves.csv, curves.png) and the full report of the latest snapshot.
    Reused when RUN/score/results.json was made from the latest snapshot on
    the same cohort (and, with `all_snapshots`, holds the curves), otherwise
    (re)made; without `all_snapshots` only the latest snapshot is scored (no
    curves: what a comparison of end points needs). The §4.3 tile threshold comes from
    the tiles the run trained on (`run_tiles`). `whole_volume` and `training`:
    as for `score` (a comparison of end points needs no whole-volume pass).
    Returns results.json's content plus "out", the score folder."""
    out = Path(run_dir) / SCORE_DIR
    latest = latest_snapshot(run_dir)
    try:
        results = json.loads((out / "results.json").read_text())
        if (_same_file(results.get("snapshot", ""), latest) and ("training_curve" in results or not all_snapshots)
                and ("whole_volume" in results or not whole_volume) and results.get("training") == training
                and results.get("precision", "fp32") == precision
                and _same_file(results.get("cohort_dir", ""), cohort_dir)):
            return {**results, "out": str(out)}
    except (OSError, ValueError):
        pass
    return score(run_dir, cohort_dir=cohort_dir, engine=engine, device=device, out=out, force=True,
                 all_snapshots=all_snapshots, tiles=run_tiles(run_dir), whole_volume=whole_volume, training=training,
                 precision=precision)


def run_tiles(run_dir: PathLike) -> Optional[Path]:
    """The tile list RUN/train.prototxt's HDF5Data layer reads (set by
    `prepare_run`); None without that file (score then looks in COHORT/tiles)."""
    if not (Path(run_dir) / NET_FILE).is_file():
        return None
    sources = [layer.hdf5_data_param.source for layer in read_net(Path(run_dir) / NET_FILE).layer
               if layer.type == "HDF5Data"]
    return Path(sources[0]) if sources else None


def _same_file(a: PathLike, b: PathLike) -> bool:
    return Path(a).resolve() == Path(b).resolve()
