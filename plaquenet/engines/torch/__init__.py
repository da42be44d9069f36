"""Caffe's training and inference in PyTorch (the oracle: Debian's Caffe
1.0.0+git20180821.99bd997; docs/CAFFE_ORACLE.md).

layers.py   one builder per layer type (LAYERS), swappable convolution
fillers.py  Caffe's weight fillers
data.py     HDF5Data's row order, and where each reader stands (DataStream)
glibc_rand.py  glibc's rand() and std::random_shuffle, HDF5Data's shuffle
data_position.py  the data position saved beside each .solverstate, restored on resume
net.py      Net (built from a NetParameter), weights in/out, load_deploy
solver.py   lr policies and the SGD/Nesterov/Adam update, Caffe's arithmetic
train.py    train(): `caffe train` with snapshots, resume and Caffe's log
distributed.py  several workers (--devices N, torchrun): Caffe's multi-GPU semantics
"""

from typing import Any, Callable, Optional

import torch

from ...errors import InputError
from ...typing import PathLike
from .. import Forward, device_index, parse_device
from ..run import TrainResult


class TorchEngine:
    """The engine interface (plaquenet.engines.Engine) over this package."""

    name = "torch"

    def check_device(self, device: str) -> str:
        canonical = parse_device(device)
        if canonical != "cpu":
            if not torch.cuda.is_available():
                raise InputError("--device", f"'{device}': no CUDA device is available to torch here "
                                             f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                                             f"use --device cpu, or see the README's 'Using a GPU'")
            if device_index(canonical) >= torch.cuda.device_count():
                raise InputError("--device", f"'{device}': torch sees {torch.cuda.device_count()} CUDA device(s)")
        return canonical

    def train(self, solver: PathLike, weights: Optional[PathLike] = None, snapshot: Optional[PathLike] = None,
              device: str = "cpu", on_estimate: Optional[Callable[[str], None]] = None,
              **options: Any) -> TrainResult:
        """train.train with the device checked; `options`: conv, channels_last, precision."""
        from .precision import set_numerics
        from .train import train
        set_numerics(options.get("precision", "fp32"))
        return train(solver, weights=weights, snapshot=snapshot, device=self.check_device(device),
                     on_estimate=on_estimate, **options)

    def load_deploy(self, deploy: PathLike, snapshot: PathLike, device: str = "cpu",
                    precision: str = "fp32") -> Forward:
        from .net import load_deploy
        from .precision import set_numerics
        set_numerics(precision)
        return load_deploy(deploy, snapshot, device=self.check_device(device), precision=precision)
