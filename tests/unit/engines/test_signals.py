"""engines.signals: Caffe's SignalHandler (util/signal_handler.cpp at 99bd997)
with real signals sent to this process while the handlers are in place."""

import os
import signal
import threading

import pytest

from plaquenet.engines.signals import NONE, SNAPSHOT, STOP, SignalRequests, check_effect
from plaquenet.errors import InputError


def _send(signum: int) -> None:
    assert signal.getsignal(signum) not in (signal.SIG_DFL, signal.default_int_handler), "no handler in place"
    os.kill(os.getpid(), signum)


def test_a_pending_sighup_is_answered_before_a_pending_sigint_one_per_call():
    with SignalRequests("stop", "snapshot") as requests:
        _send(signal.SIGINT)
        _send(signal.SIGHUP)
        _send(signal.SIGHUP)   # one flag per signal, as in Caffe: two SIGHUPs before a check are one
        assert [requests.effect() for _ in range(3)] == [SNAPSHOT, STOP, NONE]


def test_an_effect_of_none_still_consumes_its_signal():
    with SignalRequests(sigint_effect="snapshot", sighup_effect="none") as requests:
        _send(signal.SIGHUP)
        _send(signal.SIGINT)
        assert [requests.effect() for _ in range(3)] == [NONE, SNAPSHOT, NONE]


def test_the_previous_handlers_are_back_afterwards():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)
    with pytest.raises(RuntimeError):
        with SignalRequests():
            assert signal.getsignal(signal.SIGINT) != before[0]
            raise RuntimeError("training failed")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGHUP)) == before


def test_outside_the_main_thread_nothing_is_installed():
    seen, before = [], signal.getsignal(signal.SIGINT)

    def run():
        with SignalRequests() as requests:
            seen.append((signal.getsignal(signal.SIGINT), requests.effect()))
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [(before, NONE)]


@pytest.mark.parametrize("effect", ["STOP", "quit", ""])
def test_an_effect_caffe_does_not_know_is_an_input_error_naming_the_option(effect):
    with pytest.raises(InputError, match=f"^--sighup-effect: '{effect}' is not a signal effect"):
        check_effect("--sighup-effect", effect)
    with pytest.raises(InputError, match="^--sigint-effect: "):
        SignalRequests(sigint_effect=effect)
