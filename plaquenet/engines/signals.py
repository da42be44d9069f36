"""SIGINT and SIGHUP as `caffe train` handles them (tools/caffe.cpp:51-56,
218-220 and util/signal_handler.cpp at 99bd997): a signal does not end the
run; it sets a flag that the solver reads at the end of every iteration and
before every test iteration, and acts as --sigint_effect / --sighup_effect say:

    stop      end the run: the snapshot that snapshot_after_train takes, then
              "Optimization stopped early." (exit status 0)
    snapshot  snapshot at the current iteration and go on
    none      nothing (the signal is still caught: it no longer interrupts)

The defaults are Caffe's: SIGINT (Ctrl-C) stops, SIGHUP snapshots. A flag is
one bit per signal, as in Caffe: two SIGINTs before the solver looks are one.

    with SignalRequests("stop", "snapshot") as requests:   # handlers in place
        effect = requests.effect()     # STOP, SNAPSHOT or NONE; one signal per call

Handlers can only be installed from the main thread; elsewhere nothing is
caught and `effect()` is always NONE. The handlers that were in place before
are put back on leaving (Caffe puts back the defaults).

`forwarded_to(pid)` serves the caffe engine, whose `caffe train` runs in its
own session: the signals this process gets are passed on to it, once."""

import os
import signal
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Any, Dict, Iterator, List, Optional, Set

from ..errors import InputError

STOP, SNAPSHOT, NONE = "stop", "snapshot", "none"
EFFECTS = (STOP, SNAPSHOT, NONE)
SIGINT_EFFECT, SIGHUP_EFFECT = STOP, SNAPSHOT   # caffe.cpp's defaults


def check_effect(option: str, effect: str) -> str:
    """`effect` if it is one of Caffe's (stop, snapshot, none); InputError naming
    `option` otherwise (Caffe aborts: `Invalid signal effect "x" was specified`)."""
    if effect not in EFFECTS:
        raise InputError(option, f"'{effect}' is not a signal effect (choose from {', '.join(EFFECTS)})")
    return effect


def _caught() -> List[signal.Signals]:
    """SIGHUP first: Caffe's CheckForSignals answers a pending SIGHUP before a SIGINT.
    (No SIGHUP on Windows.)"""
    return [s for s in (getattr(signal, "SIGHUP", None), signal.SIGINT) if s is not None]


class SignalRequests:
    """Caffe's SignalHandler: the effects are checked at construction, the
    handlers installed by `with` and removed after it."""

    def __init__(self, sigint_effect: str = SIGINT_EFFECT, sighup_effect: str = SIGHUP_EFFECT) -> None:
        given = {"SIGINT": check_effect("--sigint-effect", sigint_effect),
                 "SIGHUP": check_effect("--sighup-effect", sighup_effect)}
        self.effects = {s: given[s.name] for s in _caught()}
        self.received: Set[int] = set()   # Caffe's got_sigint, got_sighup
        self.previous: Dict[signal.Signals, Any] = {}

    def __enter__(self) -> "SignalRequests":
        if threading.current_thread() is threading.main_thread():
            for s in self.effects:
                self.previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)   # None: set outside Python
        self.previous.clear()

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        self.received.add(signum)

    def effect(self) -> str:
        """The effect of one pending signal, which is thereby consumed: SIGHUP's
        if one came, else SIGINT's, else NONE (Solver::GetRequestedAction)."""
        for s in self.effects:
            if s in self.received:
                self.received.discard(s)
                return self.effects[s]
        return NONE


@contextmanager
def forwarded_to(process_group: int) -> Iterator[None]:
    """While inside, SIGINT and SIGHUP sent to this process are sent on to
    `process_group` (a child started with start_new_session=True, so that a
    Ctrl-C in the terminal reaches it once, through us) instead of acting
    here. Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: Optional[FrameType]) -> None:
        try:
            os.killpg(process_group, signum)
        except ProcessLookupError:   # it has just ended
            pass

    previous = {s: signal.signal(s, forward) for s in _caught()}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
