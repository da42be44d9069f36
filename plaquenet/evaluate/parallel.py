"""Patients through the network for scoring, in the cohort's order, one of two
ways (#15 item 3):

    in this process   the next patient read and normalised in a thread while
                      the current one forwards (READ_AHEAD patients queued:
                      at most READ_AHEAD + 2 volumes in memory)
    over N processes  `Workers`: each process loads the same forward once
                      (`load_forward`, picklable) with cores / N threads and
                      forwards whole patients handed out one at a time; their
                      ForwardedScans come back and are yielded in patient
                      order (at most 2 N patients in flight)

Either way the caller sees the same ForwardedScans in the same order, so
everything computed from them (the exact sweep's histograms and its
second-pass cache, every count) is what one process computes. Workers are
started with `spawn`: a forked child of a process that has already run
torch's thread pool can hang.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import queue
import sys
import threading
from typing import Any, Callable, Deque, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..cohort import Scan, iter_scans, load_scan, scan_input
from ..engines import Forward
from ..errors import InputError
from ..typing import PathLike
from .inference import ForwardedScan, forward_scan

READ_AHEAD = 1   # patients read and normalised ahead of the one forwarding


@dataclasses.dataclass(frozen=True)
class Workers:
    """Patients spread over `count` processes. `load_forward` is called once in
    each (it must pickle: a module-level function or an instance of a
    module-level class, e.g. score.ForwardLoader); `threads` per process
    (default: this machine's cores / count, at least 1)."""

    count: int
    load_forward: Callable[[], Forward]
    threads: Optional[int] = None

    def threads_each(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.count)


def check_workers(count: int) -> int:
    """`count` if it is a number of processes (>= 1), else InputError."""
    if count < 1:
        raise InputError("--workers", f"{count}: give a number of processes >= 1")
    return count


@dataclasses.dataclass
class PatientPool:
    """Started worker processes (`patient_pool`)."""

    executor: concurrent.futures.ProcessPoolExecutor
    count: int


@contextlib.contextmanager
def patient_pool(workers: Optional[Workers]) -> Iterator[Optional[PatientPool]]:
    """The worker processes for `workers` (None for one process), shut down on
    exit; one pool serves every pass of a scoring."""
    if workers is None or workers.count <= 1:
        yield None
        return
    executor = concurrent.futures.ProcessPoolExecutor(
        max_workers=workers.count, mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker, initargs=(workers.load_forward, workers.threads_each()))
    try:
        yield PatientPool(executor, workers.count)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def forwarded_scans(forward: Forward, cohort_dir: PathLike, patients: Sequence[str], every_slice: bool = False,
                    pool: Optional[PatientPool] = None, skull_strip: bool = False) -> Iterator[ForwardedScan]:
    """Each patient of `patients`, in order, through the network
    (`inference.forward_scan`: the slices with plaques, or every slice): in the
    `pool`'s processes when given (their own forward), else here with `forward`
    while the next patient is read in a thread. The input: `cohort.scan_input`
    (skull-stripped with `skull_strip`, as the tiles were cut)."""
    if pool is None:
        for scan, image_shw in _read_ahead(_read_and_normalise(cohort_dir, patients, skull_strip), READ_AHEAD):
            yield forward_scan(scan, forward, every_slice, image_shw)
        return
    window = 2 * pool.count
    pending: Deque["concurrent.futures.Future[Any]"] = collections.deque()
    remaining = iter(patients)
    try:
        while True:
            while len(pending) < window:
                patient = next(remaining, None)
                if patient is None:
                    break
                pending.append(pool.executor.submit(_forward_patient, str(cohort_dir), patient, every_slice,
                                                    skull_strip))
            if not pending:
                return
            yield _result(pending.popleft())
    finally:
        for future in pending:
            future.cancel()


def _read_and_normalise(cohort_dir: PathLike, patients: Sequence[str],
                        skull_strip: bool = False) -> Iterator[Tuple[Scan, np.ndarray]]:
    for scan in iter_scans(cohort_dir, patients):
        yield scan, scan_input(cohort_dir, scan, skull_strip)


def _read_ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items` produced in a background thread, at most `depth` waiting; the
    same items in the same order, an error raised where it would have been.
    Stopping early (an error in the consumer) stops the thread."""
    done, stop = object(), threading.Event()
    waiting: "queue.Queue[Any]" = queue.Queue(maxsize=depth)

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as e:  # handed to the consumer, raised there
            put((done, e))

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = waiting.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


# --- in each worker process -----------------------------------------------------

_FORWARD: List[Forward] = []


def _start_worker(load_forward: Callable[[], Forward], threads: int) -> None:
    # before the engine imports torch, which reads these once
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(threads)
    _FORWARD.append(load_forward())
    torch = sys.modules.get("torch")
    if torch is not None:   # torch imported by the engine: its pool too
        torch.set_num_threads(threads)


def _forward_patient(cohort_dir: str, patient: str, every_slice: bool, skull_strip: bool = False) -> Any:
    try:
        scan = load_scan(cohort_dir, patient)
        return forward_scan(scan, _FORWARD[0], every_slice, scan_input(cohort_dir, scan, skull_strip))
    except InputError as e:  # as a value: InputError(path, problem) does not unpickle
        return _Failed(e.path, e.problem)


@dataclasses.dataclass
class _Failed:
    path: Optional[str]
    problem: str


def _result(future: "concurrent.futures.Future[Any]") -> ForwardedScan:
    result = future.result()
    if isinstance(result, _Failed):
        raise InputError(result.path, result.problem)
    return result
