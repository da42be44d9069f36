"""`caffe train` in torch: a solver prototxt in, Caffe's snapshots and log out.

    train("prototxt/solver.prototxt")                              # caffe train --solver=...
    train(solver, weights="a.caffemodel")                          # --weights (comma-separated)
    train(solver, snapshot="runs/x/plaquenet_iter_500.solverstate")  # resume

Paths in the solver are relative to the working directory, as in Caffe. The
solver's `weights` are fine-tuned from unless `weights` or `snapshot` is
given. The run directory is the folder of `snapshot_prefix` (unset: the
solver's path without its extension; an existing directory: that directory
and the solver's stem, as the oracle reads it); it receives copies of the
solver and net prototxt, `<prefix>_iter_<N>.caffemodel` and `.solverstate`
every `snapshot` iterations and after the last, `train.log` in Caffe's line
format and `train.csv` (iter, loss, smoothed_loss, lr, seconds; one row per
iteration).

As in Caffe, a resumed run restores weights, solver history, the iteration
count and multistep's step, but not the smoothed loss. From our own
snapshots it also restores where every HDF5Data layer stood (the
`.data_position.json` beside the .solverstate, data_position.py), so that it
ends as the uninterrupted run does; from Caffe's, HDF5Data starts again at
the first row, as in Caffe.

Started as one of several workers (torchrun, or `plaquenet train --devices
N`: distributed.py), it trains as Caffe's multi-GPU `caffe train` does: each
worker reads its own batch of its rank's rows, the gradients are averaged
before the update, and rank 0 alone tests, logs and snapshots."""

import csv
import os
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple, cast

import torch

from ...caffe.log import CaffeLog
from ...caffe.prototxt import field_location, prototxt_text, read_net, read_solver
from ...caffe.snapshot import (blob_array, read_caffemodel, read_solverstate, write_caffemodel,
                               write_solverstate)
from ...errors import InputError
from ...progress import progress
from ...typing import PathLike
from ..run import (TrainResult, effective_snapshot_prefix, estimate_line, prepare_run_dir, snapshot_folder,
                   snapshot_prefix_upgrade)
from ..run import train_net as _train_net
from ..signals import NONE, SIGHUP_EFFECT, SIGINT_EFFECT, SNAPSHOT, STOP, SignalRequests
from .data import DataStream, Position
from .data_position import LOG_TAG as DATA_POSITION_LOG_TAG
from .data_position import restore_data_position, write_with_data_position
from .distributed import (Workers, average_gradients, broadcast_weights, from_environment, gather, launch,
                          rank0_value, start_workers, stop_workers)
from .layers import ConvFn, Layer
from .net import TEST, TRAIN, Net, copy_trained_layers, included_layers, net_to_proto
from .solver import (SolverState, apply_update, check_solver, clip_gradients, learning_rate,
                     new_state, zero_gradients)

if TYPE_CHECKING:
    from ...caffe import caffe_pb2


def train(solver_path: PathLike, weights: Optional[PathLike] = None, snapshot: Optional[PathLike] = None,
          device: str = "cpu", conv: Optional[Callable[["caffe_pb2.LayerParameter"], ConvFn]] = None,
          channels_last: Optional[bool] = None, on_estimate: Optional[Callable[[str], None]] = None,
          level: int = 0, stages: Sequence[str] = (), sigint_effect: str = SIGINT_EFFECT,
          sighup_effect: str = SIGHUP_EFFECT, precision: str = "fp32",
          workers: Optional[Workers] = None, devices: int = 1) -> TrainResult:
    """Train as `caffe train --solver=S [--weights=W | --snapshot=S]
    [--level=L] [--stage=a,b] [--sigint_effect=E] [--sighup_effect=E]` does;
    `stages` are --stage's names (each also
    split at commas), and as in `caffe train` they and `level` override the
    solver's train_state (`caffe_train_state`). SIGINT and SIGHUP act as
    the effects say (stop, snapshot, none: engines.signals) from the first
    iteration on, in the main thread.
    `conv` picks a convolution implementation per layer (see Net).
    `on_estimate` receives one line with the time the schedule will take,
    once the first iterations are timed (`run.estimate_line`).
    `precision` (precision.py): fp32 is Caffe's arithmetic; bf16 and tf32
    are faster, are not, and say so in train.log.
    `channels_last` (default: on CPU) only changes the memory layout: even on
    the 2-core Intel machine we measured, 1.55x faster on AMD Zen 5
    (PERFORMANCE.md).
    `workers`: this process's rank among several (default: torchrun's
    environment, or one); all of them call train with the same arguments.
    `devices` > 1 starts that many workers on this machine (distributed.launch:
    processes, CPU cores shared out; on CUDA GPU 0..devices-1) and returns rank
    0's result; `on_estimate` then reaches rank 0 only if it pickles (a module-level function)."""
    if devices != 1:
        return _launch(devices, dict(solver_path=solver_path, weights=weights, snapshot=snapshot, device=device,
                                     conv=conv, channels_last=channels_last, on_estimate=on_estimate, level=level,
                                     stages=list(stages), sigint_effect=sigint_effect, sighup_effect=sighup_effect,
                                     precision=precision))
    workers = workers or from_environment()
    try:
        return _train(solver_path, weights, snapshot, device, conv, channels_last, on_estimate, level, stages,
                      sigint_effect, sighup_effect, precision, workers)
    finally:
        stop_workers(workers)


def _train(solver_path: PathLike, weights: Optional[PathLike], snapshot: Optional[PathLike], device: str,
           conv: Optional[Callable[["caffe_pb2.LayerParameter"], ConvFn]], channels_last: Optional[bool],
           on_estimate: Optional[Callable[[str], None]], level: int, stages: Sequence[str], sigint_effect: str,
           sighup_effect: str, precision: str, workers: Workers) -> TrainResult:
    started = time.perf_counter()
    solver_path = Path(solver_path)
    param = read_solver(solver_path)
    check_solver(param, solver_path)
    if weights and snapshot:
        raise InputError(snapshot, "give a snapshot to resume or weights to fine-tune, not both")
    requests = SignalRequests(sigint_effect, sighup_effect)   # checks the effects; installed by _solve
    if not workers.root:   # Caffe installs the handler on rank 0 only (caffe.cpp); the others follow it
        requests = SignalRequests(NONE, NONE)
    prefix = effective_snapshot_prefix(param, solver_path)   # before prepare_run_dir creates its folder
    upgrade = snapshot_prefix_upgrade(param)
    if param.snapshot_format != param.BINARYPROTO:
        raise InputError(solver_path, "snapshot_format HDF5 is not supported yet (use BINARYPROTO)")
    dev = torch.device(start_workers(workers, str(_device(device))))
    if channels_last is None:
        channels_last = dev.type == "cpu"
    net_param, net_file = _train_net(param, solver_path)
    # Solver::Init (solver.cpp): Caffe::set_random_seed(random_seed + solver_rank)
    seed = param.random_seed + workers.rank if param.random_seed >= 0 else None
    net_state = caffe_net_state(net_param, TRAIN, caffe_train_state(param.train_state, level, stages))
    stream = DataStream()
    stream.share = (workers.rank, workers.size)
    net = Net(net_param, net_state.phase, source=net_file or solver_path, device=dev, seed=seed, conv=conv,
              state=net_state, channels_last=channels_last, precision=precision, data=stream)
    _unshare_test_phase(net)
    check_batch_for_workers([(name, rows.batch_size) for name, rows in stream.readers if rows.workers > 1],
                            workers.size, net.source)
    stream.share = (0, 1)
    test_nets = _test_nets(param, solver_path, net, dev, seed, conv, channels_last)
    state = new_state(param, net.learnable)
    finetune = _finetune_files(param, solver_path, weights, snapshot)
    _finetune(finetune, [net] + [test for test, _ in test_nets])
    data_position = _restore(snapshot, net, state, workers) if snapshot is not None else None
    broadcast_weights(net.learnable, workers)   # NCCL::Broadcast, after Restore, before Solve

    run_dir = prepare_run_dir(param, solver_path)[0] if workers.root else snapshot_folder(prefix)
    # Logged as Caffe logs its solver: prefix upgraded, `weights` as caffe.cpp:222-227 set them.
    param.snapshot_prefix = prefix
    if snapshot is not None or weights:
        del param.weights[:]
        if snapshot is None:
            param.weights.append(str(weights))
    resuming = snapshot is not None
    # Rank 0 alone logs (LOG_IF(INFO, Caffe::root_solver()) throughout solver.cpp); the others write nowhere.
    log_path, csv_path = ((run_dir / "train.log", run_dir / "train.csv") if workers.root
                          else (Path(os.devnull), Path(os.devnull)))
    with CaffeLog(log_path, append=resuming) as log, _Csv(csv_path, append=resuming and workers.root) as table:
        if upgrade:
            log.snapshot_prefix_upgraded(prefix, was_directory=upgrade == "directory")
        log.solver_parameters(prototxt_text(param))
        if net_file:
            log.training_net(str(net_file))
        for _ in range(1 + len(test_nets)):   # LoadNetWeights logs as it loads each net
            for w in finetune:
                log.finetuning(w)
        if resuming:   # no "Restoring previous solver status": caffe.cpp restores, then Solve()s without a file
            log.resuming(str(snapshot))
            log.restoring_history()
            if data_position:
                log.info(DATA_POSITION_LOG_TAG, data_position)
        if precision != "fp32":
            log.info("plaquenet", f"precision {precision} (plaquenet's torch engine, opt-in): not Caffe's "
                                  f"float32 arithmetic")
        if workers.size > 1:
            log.info("distributed.py:0", f"{workers.size} workers ({dev.type}), each reading its own batch of "
                                         f"the HDF5Data rows; gradients averaged before the update (Caffe's NCCL)")
        log.solving(net.name, param.lr_policy)
        last, loss, stopped = _solve(param, net, test_nets, state, prefix, log, table,
                                     _Estimate(state.iter, param.max_iter, str(dev),
                                               on_estimate if workers.root else None), requests, workers)
    return TrainResult(run_dir, last, state.iter, loss, time.perf_counter() - started, stopped_early=stopped)


def _launch(devices: int, arguments: Dict[str, Any]) -> TrainResult:
    """`plaquenet train --devices N`: N workers on this machine, each a train()."""
    if devices < 1:
        raise InputError("--devices", f"must be at least 1, got {devices}")
    if from_environment().size > 1:
        raise InputError("--devices", "this process is already one of several workers (torchrun): give torchrun's "
                                      "--nproc-per-node or --devices, not both")
    if arguments["device"] != "cpu":
        from . import TorchEngine
        TorchEngine().check_device(arguments["device"])
        if torch.cuda.device_count() < devices:
            raise InputError("--devices", f"{devices} workers on CUDA need {devices} GPUs, torch sees "
                                          f"{torch.cuda.device_count()}")
    solver_path = arguments["solver_path"]
    net_file = _train_net(read_solver(solver_path), solver_path)[1]
    check_batch_for_workers(train_batch_sizes(solver_path, arguments["level"], arguments["stages"]), devices,
                            net_file or solver_path)
    try:
        pickle.dumps(arguments["on_estimate"])
    except (pickle.PicklingError, AttributeError, TypeError):
        arguments["on_estimate"] = None
    threads = max(1, torch.get_num_threads() // devices) if arguments["device"] == "cpu" else None
    return cast(TrainResult, launch(devices, _worker_train, dict(threads=threads, **arguments)))


def _worker_train(threads: Optional[int], solver_path: PathLike, **options: Any) -> TrainResult:
    """One launched worker: the engine's train (device check, numerics) with its share of the cores."""
    from . import TorchEngine
    if threads is not None:
        torch.set_num_threads(threads)
    return TorchEngine().train(solver_path, **options)


def _unshare_test_phase(net: Net) -> None:
    """HDF5DataLayer::Skip keeps every row of a layer in the TEST phase (the
    layer's own `phase`, else its net's: Net::Init), even in a train net."""
    phases = {layer.name: layer.phase for layer in net.layer_params if layer.type == "HDF5Data"}
    for name, rows in net.data.readers:
        if phases.get(name) != TRAIN:
            rows.rank, rows.workers = 0, 1


def train_batch_sizes(solver_path: PathLike, level: int = 0, stages: Sequence[str] = ()) -> List[Tuple[str, int]]:
    """(layer, batch_size) of each HDF5Data layer the train net reads in the TRAIN phase."""
    param = read_solver(solver_path)
    net_param, net_file = _train_net(param, solver_path)
    state = caffe_net_state(net_param, TRAIN, caffe_train_state(param.train_state, level, stages))
    return [(layer.name, layer.hdf5_data_param.batch_size)
            for layer in included_layers(net_param, state, net_file or solver_path)
            if layer.type == "HDF5Data" and layer.phase == TRAIN]


def check_batch_for_workers(layers: List[Tuple[str, int]], workers: int, source: PathLike) -> None:
    """Refuse more workers than a train-net HDF5Data layer's batch_size
    (`layers`: (name, batch_size); #15's bad input). Caffe itself would run
    them, each reading its own batch_size rows; refused because a global
    batch of workers x batch_size is then almost surely the solver's batch
    mistaken for a per-worker one."""
    for name, batch_size in layers:
        if workers > batch_size:
            raise InputError(source, f"{workers} workers for HDF5Data '{name}' of batch_size {batch_size}: each "
                                     f"worker reads its own batch_size tiles (Caffe's multi-GPU semantics); use at "
                                     f"most {batch_size} workers")


def _finetune_files(param: "caffe_pb2.SolverParameter", solver_path: PathLike, weights: Optional[PathLike],
                    snapshot: Optional[PathLike]) -> List[str]:
    """The .caffemodel files to fine-tune from, as the oracle's `caffe train`
    picks them (caffe.cpp:222-227 at 99bd997): `--snapshot` clears the solver's
    `weights`, `--weights` replaces them; else every `weights` entry, in order."""
    if snapshot is not None:
        return []
    if weights:
        return _weight_files(str(weights), "--weights")
    return [name for entry in param.weights for name in _weight_files(entry, field_location(solver_path, "weights"))]


def _weight_files(entry: str, where: str) -> List[str]:
    """`a.caffemodel,b.caffemodel` as Caffe's LoadNetWeights splits it: at
    every comma, each name trimmed (an empty one names no file)."""
    names = [name.strip() for name in entry.split(",")]
    if "" in names:
        raise InputError(where, f"'{entry}' has an empty file name")
    return names


def _finetune(files: List[str], nets: List[Net]) -> None:
    """Copy each file's layers into each net, in turn (Caffe's LoadNetWeights
    into the train net, then into every test net: a layer that only a test net
    has gets the weights too; later files overwrite earlier ones)."""
    models = [(f, read_caffemodel(f, empty_ok=True)) for f in files]
    for net in nets:
        for f, model in models:
            copy_trained_layers(net, model, f)


# --- the nets' NetState, as `caffe train` builds it -------------------------

def caffe_train_state(solver_state: "caffe_pb2.NetState", level: int = 0,
                      stages: Sequence[str] = ()) -> "caffe_pb2.NetState":
    """The solver's train_state as `caffe train` rewrites it (tools/caffe.cpp
    train(), 171-179 at 99bd997): `level` replaces its level, which is thereby
    set even at the default 0, and --stage's comma-separated list is appended
    to its stages; with no --stage that list is one empty stage "" (boost::split
    of ""). So a solver's `train_state { level: 3 }` never takes effect."""
    from ...caffe import caffe_pb2
    state = caffe_pb2.NetState()
    state.CopyFrom(solver_state)
    state.level = level
    state.stage.extend(",".join(stages).split(","))
    return state


def caffe_net_state(net_param: "caffe_pb2.NetParameter", phase: "caffe_pb2.Phase",
                    solver_state: Optional["caffe_pb2.NetState"]) -> "caffe_pb2.NetState":
    """Solver::InitTrainNet / InitTestNets (solver.cpp:110-114, 183-189 at
    99bd997): `phase`, then the net's own `state` merged in, then the solver's
    train_state / test_state (protobuf MergeFrom: the fields each one sets
    win, stages append). A net with `state { phase: TEST }` thus builds its
    "train" net in the TEST phase, unless the train_state sets a phase."""
    from ...caffe import caffe_pb2
    state = caffe_pb2.NetState(phase=phase)
    state.MergeFrom(net_param.state)
    if solver_state is not None:
        state.MergeFrom(solver_state)
    return state


# --- the loop (Solver::Solve and Solver::Step) ------------------------------

TestNets = List[Tuple[Net, int]]   # (net, test_iter)


def _solve(param: "caffe_pb2.SolverParameter", net: Net, test_nets: TestNets, state: SolverState, prefix: str,
           log: CaffeLog, table: "_Csv", estimate: "_Estimate", requests: SignalRequests,
           workers: Workers) -> Tuple[Optional[Path], Optional[float], bool]:
    """Solver::Solve and Step, with `requests`' handlers in place throughout:
    (last snapshot, smoothed loss, whether a signal stopped the run).
    With several workers every one runs this loop; rank 0 alone tests and
    writes (Caffe's root solver), and what it decides (a signal's effect, a
    stop during a test) every worker follows, at the same iteration."""
    start = state.iter
    book = _LossBook(table, param.average_loss, param.iter_size, every=1 if net.device.type == "cpu" else READ_EVERY)
    last_snapshot: Optional[Path] = None
    stopped = False
    timer, last_display = time.perf_counter(), start

    def snapshot(positions: Optional[List[Position]] = None) -> None:
        """Every worker calls it at the same point (the positions are gathered),
        except during a test, with the positions gathered when it began."""
        nonlocal last_snapshot
        if positions is None and workers.size > 1:
            positions = gather(net.data.position(), workers)
        if workers.root:
            last_snapshot = _snapshot(net, state, prefix, log, positions)

    test_positions: Optional[List[Position]] = None

    def stop_requested() -> bool:
        return _test_requests(requests, lambda: snapshot(test_positions))

    bar = (progress(total=param.max_iter, initial=start, desc="train", unit="iter") if workers.root
           else progress(total=param.max_iter, initial=start, disable=True))
    with requests:
        while state.iter < param.max_iter:
            it = state.iter
            zero_gradients(net.learnable)
            if param.test_interval and it % param.test_interval == 0 and (it > 0 or param.test_initialization):
                if workers.size > 1:   # where every worker stands as the test begins: a snapshot in it saves these
                    test_positions = gather(net.data.position(), workers)
                interrupted = workers.root and _test_all(param, test_nets, it, log, stop_requested)
                if rank0_value(interrupted, workers):   # Step: TestAll on the root solver only
                    stopped = True
                    break
            display = param.display and it % param.display == 0
            parts = []
            for _ in range(param.iter_size):
                blobs, objective = net()
                if objective is None:
                    raise InputError(net.source, "the train net has no loss (no top with a loss_weight)")
                objective.backward()
                parts.append(objective.detach())
            step_before = state.current_step
            rate, state.current_step = learning_rate(param, it, state.current_step)
            book.add(it, parts, rate)
            if display:
                smoothed = book.read()
                now = time.perf_counter()
                lapse = now - timer
                log.iteration(it, (it - last_display) / (lapse or 1), lapse, param.display, smoothed)
                timer, last_display = now, it
                log.net_outputs(_output_values(net, blobs))
            if param.lr_policy == "multistep" and state.current_step != step_before:
                log.multistep(it, state.current_step)
            if display:
                log.learning_rate(it, rate)
            average_gradients(net.learnable, workers)   # on_gradients_ready, then ApplyUpdate (clipping included)
            clipped = clip_gradients(param, net.learnable)
            if clipped:
                log.clipping(clipped[0], param.clip_gradients, clipped[1])
            apply_update(param, net.learnable, state, rate)
            state.iter += 1
            book.stamp()
            effect = rank0_value(requests.effect(), workers)   # Step: one signal, read after the update
            if (param.snapshot and state.iter % param.snapshot == 0) or effect == SNAPSHOT:
                snapshot()
            estimate.iteration_done(state.iter)
            bar.update(1)
            bar.set_postfix(loss=f"{book.smoothed:.4g}", refresh=False)
            if effect == STOP:
                stopped = True
                break
        book.write()
        bar.close()
        if param.snapshot_after_train and (not param.snapshot or state.iter % param.snapshot != 0):
            snapshot()
        if workers.root and not stopped and param.display and state.iter % param.display == 0:
            # Caffe's closing forward pass, only to display the loss (Solve: the root solver's).
            with torch.no_grad():
                _, objective = net()
            if objective is not None:
                log.final_loss(state.iter, book.closing(objective.item()))
        if not stopped and param.test_interval and state.iter % param.test_interval == 0:
            if workers.size > 1:
                test_positions = gather(net.data.position(), workers)
            if workers.root:
                _test_all(param, test_nets, state.iter, log, stop_requested)   # a stop here only cuts the test
    log.done(stopped_early=stopped)
    return last_snapshot, (book.smoothed if state.iter > start else None), stopped


def _test_requests(requests: SignalRequests, snapshot: Callable[[], None]) -> bool:
    """Solver::Test's check before each test iteration: every pending signal
    acted on (a snapshot for each SNAPSHOT); True when one asked to stop."""
    stop = False
    effect = requests.effect()
    while effect != NONE:
        if effect == SNAPSHOT:
            snapshot()
        elif effect == STOP:
            stop = True
        effect = requests.effect()
    return stop


# On a GPU the losses are read from the device (a host sync) once per this many
# iterations, or at a display line, whichever comes first; on a CPU every iteration.
READ_EVERY = 50


class _LossBook:
    """Each iteration's loss, smoothed loss (Caffe's UpdateSmoothedLoss) and
    train.csv row. The losses stay on the device until `read` (a display line
    needs one) or until `every` rows wait, so a GPU is not stopped each
    iteration; the values, and their order of summation, are the same."""

    def __init__(self, table: "_Csv", average_loss: int, iter_size: int, every: int) -> None:
        self.table, self.average_loss, self.iter_size, self.every = table, average_loss, iter_size, every
        self.losses: List[float] = []
        self.smoothed, self.count = 0.0, 0
        self.unread: List[Tuple[List[torch.Tensor], List[Any]]] = []   # (loss parts, its row)
        self.rows: List[List[Any]] = []   # [iter, loss, smoothed, lr, seconds], waiting to be written

    def add(self, it: int, parts: List[torch.Tensor], rate: float) -> None:
        row: List[Any] = [it, None, None, rate, None]
        self.unread.append((parts, row))
        self.rows.append(row)

    def read(self) -> float:
        """The smoothed loss after every iteration added so far."""
        for parts, row in self.unread:
            loss = 0.0
            for part in parts:
                loss += part.item()
            row[1] = loss / self.iter_size
            row[2] = self._smooth(row[1])
        self.unread.clear()
        return self.smoothed

    def stamp(self) -> None:
        """The last iteration is done (updated): its time; write when `every` rows wait."""
        self.rows[-1][4] = self.table.seconds()
        if len(self.rows) >= self.every:
            self.write()

    def write(self) -> None:
        self.read()
        for it, loss, smoothed, rate, seconds in self.rows:
            self.table.row(it, loss, smoothed, rate, seconds)
        self.rows.clear()

    def closing(self, loss: float) -> float:
        """Caffe's closing forward pass: its loss smoothed in, no row."""
        return self._smooth(loss)

    def _smooth(self, loss: float) -> float:
        self.smoothed = _smoothed_loss(self.losses, self.smoothed, loss, self.count, self.average_loss)
        self.count += 1
        return self.smoothed


def _smoothed_loss(losses: List[float], smoothed: float, loss: float, k: int, average_loss: int) -> float:
    """Caffe's UpdateSmoothedLoss: running mean of the last `average_loss` losses."""
    if len(losses) < average_loss:
        losses.append(loss)
        return (smoothed * (len(losses) - 1) + loss) / len(losses)
    idx = k % average_loss
    smoothed += (loss - losses[idx]) / average_loss
    losses[idx] = loss
    return smoothed


def _output_values(net: Net, blobs: Dict[str, torch.Tensor]) -> List[Tuple[str, float, float]]:
    """(name, value, loss weight) for every element of every output blob."""
    values = []
    for name, weight in net.output_weights().items():
        for v in blobs[name].detach().float().cpu().numpy().ravel():
            values.append((name, float(v), weight))
    return values


# --- test nets (Solver::InitTestNets, Solver::Test) -------------------------

def _test_nets(param: "caffe_pb2.SolverParameter", solver_path: PathLike, train_net: Net, dev: torch.device,
               seed: Optional[int], conv: Optional[Callable[["caffe_pb2.LayerParameter"], ConvFn]],
               channels_last: bool) -> TestNets:
    """The test nets, sharing the train net's blobs by layer name."""
    sources = [(p, solver_path) for p in param.test_net_param]
    sources += [(read_net(f), Path(f)) for f in param.test_net]
    generic = len(param.test_iter) - len(sources)
    if param.HasField("net") or param.HasField("net_param"):
        net_param, net_file = _train_net(param, solver_path)
        sources += [(net_param, net_file or solver_path)] * max(generic, 0)
    if len(param.test_iter) != len(sources):
        raise InputError(solver_path, f"{len(param.test_iter)} test_iter values for {len(sources)} test nets")
    if param.test_state and len(param.test_state) != len(sources):
        raise InputError(solver_path, "give test_state once per test net, or not at all")
    nets = []
    for i, (net_param, source) in enumerate(sources):
        state = caffe_net_state(net_param, TEST, param.test_state[i] if param.test_state else None)
        test = Net(net_param, state.phase, source=source, device=dev, seed=seed, conv=conv, state=state,
                   channels_last=channels_last, data=train_net.data, precision=train_net.precision)   # one rand() for all HDF5Data, as in Caffe
        _share_blobs(test, train_net)
        nets.append((test, param.test_iter[i]))
    return nets


def _share_blobs(test: Net, train: Net) -> None:
    """Net::ShareTrainedLayersWith (net.cpp:667-692 at 99bd997): each layer of
    the train net, Caffe's Split layers included, lends its blobs to the test
    net's first layer of that name; their counts and shapes must be equal.
    Caffe checks at every test and aborts at the first, so a test net that
    fails is refused when it first runs (`Net.run_refusal`): a run that
    never tests trains, as in Caffe."""
    targets: Dict[str, Optional[Layer]] = {}
    for param, module in test.caffe_layers:
        targets.setdefault(param.name, module)
    for param, source in train.caffe_layers:
        if param.name not in targets:
            continue
        target = targets[param.name]
        ours, theirs = (list(m.blobs) if m is not None else [] for m in (target, source))
        problem = (f"{len(ours)} blobs in the test net, {len(theirs)} in the train net" if len(ours) != len(theirs)
                   else next((f"blob {j}: shape {tuple(a.shape)} in the test net, {tuple(b.shape)} in the train net"
                              for j, (a, b) in enumerate(zip(ours, theirs)) if a.shape != b.shape), None))
        if problem:
            test.run_refusal = InputError(test.source, f"layer '{param.name}': {problem}, which Caffe cannot "
                                                       f"share (it stops at the first test)")
            return
        for j in range(len(ours)):
            cast(Layer, target).blobs[j] = theirs[j]


@torch.no_grad()
def _test_all(param: "caffe_pb2.SolverParameter", test_nets: TestNets, it: int, log: CaffeLog,
              stop_requested: Callable[[], bool] = lambda: False) -> bool:
    """Solver::TestAll; `stop_requested` is asked before each test iteration.
    True when a stop cut it short ("Test interrupted.", no outputs, no further nets)."""
    if not test_nets:
        return False
    data = test_nets[0][0].data   # one stream for all nets: a snapshot during the test saves its start
    data.begin_test()
    try:
        return _test_nets_once(param, test_nets, it, log, stop_requested)
    finally:
        data.end_test()


def _test_nets_once(param: "caffe_pb2.SolverParameter", test_nets: TestNets, it: int, log: CaffeLog,
                    stop_requested: Callable[[], bool]) -> bool:
    for k, (net, iters) in enumerate(test_nets):
        log.testing(it, k)
        scores, loss = None, 0.0
        for _ in range(iters):
            if stop_requested():
                log.test_interrupted()
                return True
            blobs, objective = net()
            if param.test_compute_loss and objective is not None:
                loss += objective.item()
            values = _output_values(net, blobs)
            scores = values if scores is None else [(n, s + v, w) for (n, s, w), (_, v, _) in zip(scores, values)]
        if param.test_compute_loss:
            log.test_loss(loss / iters)
        log.net_outputs([(n, s / iters, w) for n, s, w in scores or []], test=True)
    return False


# --- snapshots ---------------------------------------------------------------

def _snapshot(net: Net, state: SolverState, prefix: str, log: CaffeLog,
              positions: Optional[List[Position]] = None) -> Path:
    """Caffe's two files, and the data position of every HDF5Data layer
    (net.data: the test nets' too) beside the .solverstate (data_position);
    `positions`: every worker's, with several."""
    model = f"{prefix}_iter_{state.iter}.caffemodel"
    solverstate = f"{prefix}_iter_{state.iter}.solverstate"
    log.snapshot(model, solverstate)
    write_caffemodel(model, net_to_proto(net))
    history = [h.detach().cpu().numpy() for h in state.history]
    write_with_data_position(solverstate, lambda path: write_solverstate(path, state.iter, model, history,
                                                                         state.current_step),
                             net.data, state.iter, positions)
    return Path(model)


def _restore(path: PathLike, net: Net, state: SolverState, workers: Workers) -> Optional[str]:
    """Weights, history, iteration and multistep's step from the snapshot
    `path`; the HDF5Data layers of net.data where our snapshot left them, or
    at their first row as Caffe has them. Returns the train.log line that
    says which (None without HDF5Data layers)."""
    saved = read_solverstate(path)
    if saved.learned_net:
        learned = Path(saved.learned_net)
        if not learned.exists() and (Path(path).parent / learned.name).exists():
            learned = Path(path).parent / learned.name   # the run folder was moved
        copy_trained_layers(net, read_caffemodel(learned), learned)
    if len(saved.history) != len(state.history):
        raise InputError(path, f"{len(saved.history)} history blobs, this solver and net need {len(state.history)}")
    for i, (blob, h) in enumerate(zip(saved.history, state.history)):
        array = blob_array(blob)
        if array.shape != tuple(h.shape):
            raise InputError(path, f"history blob {i} has shape {array.shape}, the net's blob {tuple(h.shape)}")
        h.copy_(torch.from_numpy(array))
    state.iter, state.current_step = saved.iter, saved.current_step
    return restore_data_position(path, net.data, saved.iter, workers.rank, workers.size)


# --- small helpers -------------------------------------------------------------

def _device(device: str) -> torch.device:
    from . import TorchEngine
    return torch.device(TorchEngine().check_device(device))


class _Estimate:
    """Times the iterations after the first (warm-up) and reports once, after
    ESTIMATE_AFTER of them, how long the rest of the schedule takes here."""

    ESTIMATE_AFTER = 3

    def __init__(self, start: int, max_iter: int, device: str, report: Optional[Callable[[str], None]]) -> None:
        self.start, self.max_iter, self.device, self.report = start, max_iter, device, report
        self.t0: Optional[float] = None

    def iteration_done(self, iteration: int) -> None:
        if self.report is None:
            return
        done = iteration - self.start
        if done == 1:
            self.t0 = time.perf_counter()
        elif done == 1 + self.ESTIMATE_AFTER and self.t0 is not None:
            per_iter = (time.perf_counter() - self.t0) / self.ESTIMATE_AFTER
            self.report(estimate_line(per_iter, self.max_iter - iteration, self.device))
            self.report = None


class _Csv:
    """train.csv, one row per iteration; seconds continue across resumes."""

    def __init__(self, path: PathLike, append: bool) -> None:
        self.offset = _last_seconds(path) if append else 0.0
        self.file = open(path, "a" if append else "w", newline="", buffering=1)
        self.writer = csv.writer(self.file)
        if not append or self.file.tell() == 0:
            self.writer.writerow(["iter", "loss", "smoothed_loss", "lr", "seconds"])
        self.started = time.perf_counter()

    def seconds(self) -> float:
        """The run's seconds so far (continued across resumes)."""
        return self.offset + time.perf_counter() - self.started

    def row(self, it: int, loss: float, smoothed: float, lr: float, seconds: Optional[float] = None) -> None:
        seconds = self.seconds() if seconds is None else seconds
        self.writer.writerow([it, f"{loss:.9g}", f"{smoothed:.9g}", f"{lr:.9g}", f"{seconds:.3f}"])

    def __enter__(self) -> "_Csv":
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _last_seconds(path: PathLike) -> float:
    try:
        rows = Path(path).read_text().strip().splitlines()
        return float(rows[-1].split(",")[-1]) if len(rows) > 1 else 0.0
    except (OSError, ValueError, IndexError):
        return 0.0
