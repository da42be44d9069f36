"""Engines: one interface, two implementations. The only place that knows
which engines exist; every stage (train, score, segment, bench) goes through
`get_engine`.

    engine = get_engine("torch")               # or "caffe": real Caffe
    engine.train("prototxt/solver.prototxt", device="cpu")
    forward = engine.load_deploy(deploy, snapshot, device="cpu")
    output_hw = forward(image_hw)              # float32 (H, W) -> (H, W)

`torch`  a Caffe-faithful PyTorch implementation (engines/torch/)
`caffe`  real Caffe: `caffe train` and pycaffe (engines/caffe.py); no torch
         import, so it runs inside the Caffe root or the Docker image

Both read the same prototxt files and read/write Caffe's snapshot formats;
snapshot discovery is `engines.snapshots`. Devices are "cpu", "cuda" or
"cuda:N" ("gpu" and "gpu:N" are accepted for cuda): `check_device` refuses
one that this engine cannot use here, in one line.
"""

import re
from typing import Any, Callable, Dict, Optional, Protocol

import numpy as np

from ..errors import InputError
from ..typing import PathLike
from .run import TrainResult

ENGINES = ("torch", "caffe")
EXPORT_FORMATS = ("onnx", "torchscript")   # export_deploy's formats
# The arithmetic of train, score and segment: fp32 is Caffe's (both engines); bf16 and tf32 are
# the torch engine's faster, opt-in modes (engines/torch/precision.py).
PRECISIONS = ("fp32", "bf16", "tf32")
Forward = Callable[[np.ndarray], np.ndarray]   # one slice float32 (H, W) -> network output (H, W)
# A Forward may also carry `many`: a stack float32 (N, H, W) of same-size slices -> (N, H, W) in one
# call, and `batch_pixels`: how many input pixels one such call may hold (the engine's choice from
# memory, or `with_batch_slices`). Without them, callers forward one slice at a time
# (evaluate/inference.py `forward_slices`); the caffe engine has neither.
SLICE_PIXELS = 448 * 512   # the paper's slice (§4.1): the unit of --batch-slices


class Engine(Protocol):
    name: str

    def train(self, solver: PathLike, weights: Optional[PathLike] = None, snapshot: Optional[PathLike] = None,
              device: str = "cpu", on_estimate: Optional[Callable[[str], None]] = None,
              **options: Any) -> TrainResult:
        """`caffe train --solver=S [--weights=W | --snapshot=S]`; snapshots and
        train.log in the folder of the solver's snapshot_prefix. `on_estimate`
        gets the time the schedule will take; `options` are the engine's own,
        plus, in both engines, `level` (int) and `stages` (list of str):
        `caffe train`'s --level and --stage, `precision` (PRECISIONS; real
        Caffe has only fp32), and `sigint_effect`,
        `sighup_effect` ("stop", "snapshot" or "none"): its --sigint_effect
        and --sighup_effect (engines.signals). A run a signal stopped returns
        normally, with `stopped_early` set."""

    def load_deploy(self, deploy: PathLike, snapshot: PathLike, device: str = "cpu",
                    precision: str = "fp32") -> Forward:
        """forward(image_hw) through the deploy net with the snapshot's weights,
        in `precision` (PRECISIONS; an engine that cannot refuses in one line)."""

    def check_device(self, device: str) -> str:
        """The device in canonical form ("cpu", "cuda:N"), or InputError."""


def get_engine(name: str) -> Engine:
    """The engine called `name` ("torch" or "caffe"); InputError (one line)
    for an unknown name or when its software is missing here."""
    if name == "torch":
        try:
            from .torch import TorchEngine
        except ImportError as e:
            raise InputError("--engine torch", f"torch cannot be imported ({e}): the torch engine needs "
                                               f"Python >= 3.10 and `pip install torch==2.13.0` "
                                               f"(`make venv` does both)") from None
        return TorchEngine()
    if name == "caffe":
        from .caffe import CaffeEngine
        return CaffeEngine()
    raise InputError("--engine", f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")


def export_deploy(deploy: PathLike, snapshot: PathLike, fmt: str, out: PathLike, metadata: Dict[str, Any]) -> None:
    """The deploy net with the snapshot's weights written to `out` as `fmt`
    ("onnx" or "torchscript", EXPORT_FORMATS), any batch, height and width,
    `metadata` (JSON values) stored in the file (engines/torch/export.py).
    Traced by the torch engine; InputError (one line) when torch is missing."""
    try:
        from .torch.export import export_deploy as export
    except ImportError as e:
        raise InputError("--format", f"exporting needs torch, which cannot be imported ({e}): "
                                     f"`pip install torch==2.13.0` (Python >= 3.10)") from None
    export(deploy, snapshot, fmt, out, metadata)


def parse_device(device: str) -> str:
    """"cpu" or "cuda:N" from what a user types: cpu, cuda, cuda:N, gpu, gpu:N."""
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu"
    m = re.fullmatch(r"(?:cuda|gpu)(?::(\d+))?", text)
    if not m:
        raise InputError("--device", f"'{device}' is not a device (cpu, cuda, cuda:N)")
    return f"cuda:{int(m.group(1) or 0)}"


def device_index(device: str) -> int:
    """N of "cuda:N" (parse_device's form)."""
    return int(device.split(":")[1])


def checked(forward: Forward, snapshot: PathLike) -> Forward:
    """`forward` whose output is checked to be finite: a diverged snapshot's NaN
    would corrupt the threshold sweep's order (InputError naming the snapshot)."""
    def checked_forward(image_hw: np.ndarray) -> np.ndarray:
        output = forward(image_hw)
        if not np.isfinite(output).all():
            raise InputError(snapshot, "the network's output holds NaN/inf values (did training diverge?)")
        return output
    checked_forward.net = getattr(forward, "net", None)  # type: ignore[attr-defined]
    many = getattr(forward, "many", None)
    if many is not None:   # a stack is checked the same way
        checked_forward.many = checked(many, snapshot)  # type: ignore[attr-defined]
        checked_forward.batch_pixels = getattr(forward, "batch_pixels", SLICE_PIXELS)  # type: ignore[attr-defined]
    return checked_forward


def with_batch_slices(forward: Forward, slices: Optional[int]) -> Forward:
    """`forward` allowed `slices` 448x512 slices' worth of pixels per call
    (`batch_pixels`; smaller inputs, e.g. 50x50 tiles, are packed to as many
    pixels). None keeps the engine's choice; a forward without `many` (the
    caffe engine) is returned unchanged: it goes one slice at a time."""
    if slices is not None and slices < 1:
        raise InputError("--batch-slices", f"{slices}: give a number of slices >= 1")
    if slices is None or getattr(forward, "many", None) is None:
        return forward
    forward.batch_pixels = int(slices) * SLICE_PIXELS  # type: ignore[attr-defined]
    return forward
