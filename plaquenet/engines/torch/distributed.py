"""Training on several workers (processes: CPUs, GPUs, machines) with Caffe's
multi-GPU semantics, over torch.distributed (gloo on CPUs, NCCL on GPUs).

The oracle (Debian's Caffe 1.0.0+git20180821.99bd997, BVLC master) trains on
several GPUs through NCCL (src/caffe/parallel.cpp); its CPU build cannot, so
what follows is read from its source and held by the equivalence test
(tests/integration/test_distributed_training.py), not run against it:

- every worker builds the same solver and nets; with `random_seed` set it
  seeds with random_seed + rank (Solver::Init, solver.cpp), and then takes
  rank 0's learnable weights (NCCL::Broadcast, before Solve/Step);
- each worker's train net reads its own `batch_size` rows of the HDF5 stream,
  the rows whose offset is its rank modulo the workers (HDF5DataLayer::Skip,
  data.HDF5Rows);
- after the forward/backward passes (all `iter_size` of them) and the display
  lines, the gradients are summed over the workers and scaled by 1/workers
  (NCCL::on_gradients_ready: ncclAllReduce(ncclSum) then caffe_gpu_scal by
  Dtype(1) / solver_count), before ApplyUpdate: so the learning rate, the
  gradient clipping, 1/iter_size and weight decay all see the average;
- rank 0 (the root solver) alone runs the test nets, prints the log and
  writes snapshots (Solver::Step, TestAll, Snapshot: `Caffe::root_solver()`);
  its log's losses and outputs are its own batch's, not the average;
- resuming, every worker restores the same .solverstate (Worker::
  InternalThreadEntry: "restore all solvers from file").

Two things differ from the oracle's `caffe train -gpu 0,1`, both where Caffe
has no single answer: Caffe runs its workers as threads of one process, whose
HDF5Data shuffles then race for glibc's one rand(); here, as in Caffe's own
multi-process launcher (python/train.py), each worker is a process with its
own rand() stream, the same in every worker. And Caffe installs its signal
handler on rank 0 only, whose STOP leaves the other workers waiting in NCCL;
here rank 0's decision is sent to every worker each iteration (over gloo,
beside NCCL too: `_control_group`).

A worker learns its rank from torchrun's environment (RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), which `launch` sets for local workers
(`plaquenet train --devices N`)."""

import multiprocessing
import os
import signal
import socket
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, TypeVar

import torch
import torch.distributed as dist

from ...errors import InputError
from .net import Learnable


@dataclass(frozen=True)
class Workers:
    """This process's place among the workers of one training."""
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def root(self) -> bool:
        """Caffe::root_solver(): the worker that tests, logs and snapshots."""
        return self.rank == 0


T = TypeVar("T")


def from_environment() -> Workers:
    """The worker torchrun (or `launch`) started this process as; one worker
    where WORLD_SIZE is unset."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise InputError("WORLD_SIZE/RANK/LOCAL_RANK", "must be whole numbers (torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size:
        raise InputError("WORLD_SIZE/RANK", f"rank {rank} of {size} workers is not a worker")
    return Workers(rank, size, local)


def start_workers(workers: Workers, device: str) -> str:
    """Join the other workers (once per process) and return this worker's
    device: on CUDA, GPU `local_rank` (each worker its own, as `caffe train
    -gpu 0,1`); gloo for CPUs, NCCL for GPUs."""
    if workers.size == 1:
        return device
    if device != "cpu":
        if torch.cuda.device_count() <= workers.local_rank:
            raise InputError("--device", f"worker {workers.rank} needs GPU {workers.local_rank}, torch sees "
                                         f"{torch.cuda.device_count()}")
        device = f"cuda:{workers.local_rank}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("gloo" if device == "cpu" else "nccl", rank=workers.rank, world_size=workers.size)
        _CONTROL[:] = [_control_group(dist.get_backend())]
    return device


def _control_group(backend: str) -> Optional[Any]:
    """Where the per-iteration decisions travel (rank0_value, gather): small
    Python objects, so over gloo on the CPU. Under NCCL they would be pickled
    into a tensor on the GPU and read back, a host sync every iteration (#15:
    none beyond the log interval); a gloo group beside it carries them
    instead. None: the default group, already gloo."""
    return None if backend == "gloo" else dist.new_group(backend="gloo")


_CONTROL: List[Optional[Any]] = [None]   # this process's control group, set by start_workers


def stop_workers(workers: Workers) -> None:
    """Leave the other workers (nothing with one)."""
    if workers.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
        _CONTROL[:] = [None]


@torch.no_grad()
def broadcast_weights(learnable: List[Learnable], workers: Workers) -> None:
    """Every worker takes rank 0's weights (NCCL::Broadcast, parallel.cpp)."""
    if workers.size == 1:
        return
    flat = torch.cat([p.blob.detach().reshape(-1) for p in learnable]) if learnable else None
    if flat is None:
        return
    dist.broadcast(flat, src=0)
    _unflatten(flat, [p.blob for p in learnable])


@torch.no_grad()
def average_gradients(learnable: List[Learnable], workers: Workers) -> None:
    """NCCL::on_gradients_ready (parallel.cpp): the diffs of all learnable
    blobs, as one buffer, summed over the workers and multiplied by
    Dtype(1) / solver_count. A blob without a gradient has Caffe's zero diff."""
    if workers.size == 1 or not learnable:
        return
    grads = []
    for p in learnable:
        if p.blob.grad is None:
            p.blob.grad = torch.zeros_like(p.blob)
        grads.append(p.blob.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat.mul_(torch.tensor(1.0 / workers.size, dtype=flat.dtype))   # float32(1/N), as caffe_gpu_scal
    _unflatten(flat, grads)


def _unflatten(flat: torch.Tensor, targets: List[torch.Tensor]) -> None:
    start = 0
    for t in targets:
        t.copy_(flat[start:start + t.numel()].view(t.shape))
        start += t.numel()


def rank0_value(value: T, workers: Workers) -> T:
    """Rank 0's `value` in every worker (a signal's effect, a test's stop):
    what rank 0 alone decides, every worker must follow."""
    if workers.size == 1:
        return value
    box: List[Any] = [value]
    dist.broadcast_object_list(box, src=0, group=_CONTROL[0])
    return box[0]


def gather(value: Any, workers: Workers) -> List[Any]:
    """Every worker's `value` (JSON-like), in rank order, on every worker."""
    if workers.size == 1:
        return [value]
    out: List[Any] = [None] * workers.size
    dist.all_gather_object(out, value, group=_CONTROL[0])
    return out


# --- launching workers on this machine ----------------------------------------------

def launch(size: int, target: Callable[..., Any], kwargs: Dict[str, Any]) -> Any:
    """Run `target(**kwargs)` in `size` new processes (multiprocessing's
    spawn), each with torchrun's environment for its rank on this machine;
    return rank 0's result. An InputError in a worker is raised here (rank
    0's, else the first); any other failure ends the others and raises.
    SIGINT and SIGHUP are left to the workers (rank 0 acts as `caffe train`
    does, the others follow it), so this process ignores them meanwhile."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(size)}
    processes = [context.Process(target=_worker, args=(rank, env, target, kwargs, results), daemon=True)
                 for rank in range(size)]
    main = threading.current_thread() is threading.main_thread()   # only it may set handlers
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGHUP)} if main else {}
    outcomes: Dict[int, Any] = {}
    try:
        for p in processes:
            p.start()
        outcomes = _collect(processes, results)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        done = len(outcomes) == size and all(kind == "ok" for kind, _ in outcomes.values())
        for p in processes:
            p.join(timeout=30 if done else 0)   # a failed worker's partners may wait in a collective: ended
            if p.is_alive():
                p.terminate()
                p.join()
    return _result(outcomes, size)


def _worker(rank: int, env: Dict[str, str], target: Callable[..., Any], kwargs: Dict[str, Any],
            results: Any) -> None:
    os.environ.update(env, RANK=str(rank), LOCAL_RANK=str(rank))
    try:
        results.put((rank, "ok", target(**kwargs)))
    except InputError as e:
        results.put((rank, "input", (e.path, e.problem)))
    except BaseException as e:   # noqa: B036 (reported to the launcher, which raises)
        results.put((rank, "error", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"))


def _collect(processes: List[Any], results: Any) -> Dict[int, Any]:
    """(rank -> (kind, value)) once every worker has reported or one has
    failed; a worker that dies without a report ends the wait too."""
    import queue
    outcomes: Dict[int, Any] = {}
    while len(outcomes) < len(processes):
        try:
            rank, kind, value = results.get(timeout=1.0)
            outcomes[rank] = (kind, value)
            if kind != "ok":
                break
        except queue.Empty:
            dead = [r for r, p in enumerate(processes) if r not in outcomes and not p.is_alive()]
            if dead:
                outcomes[dead[0]] = ("error", f"worker {dead[0]} ended with exit code "
                                              f"{processes[dead[0]].exitcode} and no report")
                break
    return outcomes


def _result(outcomes: Dict[int, Any], size: int) -> Any:
    failures = {r: o for r, o in outcomes.items() if o[0] != "ok"}
    inputs = [o[1] for _, o in sorted(failures.items()) if o[0] == "input"]
    if inputs:
        where, problem = inputs[0]
        raise InputError(where, problem)
    if failures:
        rank, (_, text) = sorted(failures.items())[0]
        raise RuntimeError(f"training worker {rank} of {size} failed: {text}")
    return outcomes[0][1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
