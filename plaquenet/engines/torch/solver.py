"""Caffe 1.0's solver arithmetic (src/caffe/solvers/*.cpp) on a Net's learnable blobs.

Per iteration, after the gradients of `iter_size` passes have been summed:
    rate = learning_rate(iter)                 # the iteration not yet done
    clip the global L2 norm to clip_gradients  # if >= 0
    per blob: g /= iter_size; g += weight_decay * decay_mult * w (L2) or * sign(w) (L1)
        SGD:      v = momentum v + rate lr_mult g;  w -= v
        Nesterov: v' = momentum v + rate lr_mult g; w -= (1 + momentum) v' - momentum v
        Adam:     m, s moments of g (beta1 = momentum, beta2 = momentum2);
                  w -= rate lr_mult sqrt(1 - beta2^t) / (1 - beta1^t) m / (sqrt(s) + delta)
The learning rate sits inside SGD's momentum buffer, unlike torch.optim.SGD:
the two differ whenever the rate changes."""

import ctypes
import ctypes.util
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np
import torch

from ...caffe.prototxt import field_location
from ...errors import InputError
from ...typing import PathLike
from .net import Learnable

if TYPE_CHECKING:
    from ...caffe import caffe_pb2

SOLVER_TYPES = ("SGD", "Nesterov", "Adam")
_OLD_SOLVER_TYPES = {0: "SGD", 1: "Nesterov", 2: "AdaGrad", 3: "RMSProp", 4: "AdaDelta", 5: "Adam"}
LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def solver_type(param: "caffe_pb2.SolverParameter") -> str:
    """`type`, or the deprecated `solver_type` enum where only that is given."""
    if not param.HasField("type") and param.HasField("solver_type"):
        return _OLD_SOLVER_TYPES[param.solver_type]
    return param.type


def check_solver(param: "caffe_pb2.SolverParameter", source: PathLike) -> None:
    """InputError for what Caffe would refuse or we do not implement."""
    kind = solver_type(param)
    if kind not in SOLVER_TYPES:
        raise InputError(source, f"solver type '{kind}' is not supported (supported: {', '.join(SOLVER_TYPES)})")
    if not param.HasField("lr_policy"):
        raise InputError(source, "lr_policy is not set (Caffe has no default)")
    if param.lr_policy not in LR_POLICIES:
        raise InputError(source, f"unknown lr_policy '{param.lr_policy}' (known: {', '.join(LR_POLICIES)})")
    # SGDSolver::GetLearningRate's CHECKs (sgd_solver.cpp:33-62 of the oracle, 99bd997; Caffe 1.0 has none):
    # Caffe aborts at the first update, after iteration 0's test and forward/backward.
    if param.lr_policy in ("step", "sigmoid") and param.stepsize <= 0:
        raise InputError(field_location(source, "stepsize"),
                         f"lr_policy '{param.lr_policy}' needs stepsize > 0 (Caffe aborts otherwise)")
    if param.lr_policy in ("step", "exp", "inv", "multistep", "sigmoid") and param.gamma < 0:
        raise InputError(field_location(source, "gamma"),
                         f"lr_policy '{param.lr_policy}' needs gamma >= 0 (Caffe aborts otherwise)")
    if param.lr_policy == "poly" and param.max_iter <= 0:
        raise InputError(source, "lr_policy 'poly' needs max_iter > 0")
    if param.regularization_type not in ("L1", "L2"):
        raise InputError(source, f"unknown regularization_type '{param.regularization_type}'")
    if param.snapshot_diff:
        raise InputError(source, "snapshot_diff is not supported (snapshots hold the weights only)")
    if param.iter_size < 1 or param.average_loss < 1:
        raise InputError(source, "iter_size and average_loss must be >= 1")
    if param.test_iter and param.test_interval <= 0:
        # Solver::InitTestNets: CHECK_GT(test_interval, 0) once there is a test net.
        raise InputError(field_location(source, "test_iter"),
                         "test_iter gives a test net, so test_interval must be > 0 (Caffe refuses it otherwise)")


def learning_rate(param: "caffe_pb2.SolverParameter", it: int, current_step: int = 0) -> Tuple[float, int]:
    """(rate, current_step) at iteration `it`, as Caffe's SGDSolver<float>::GetLearningRate
    computes it, bit for bit: base_lr, gamma and power are float fields; `pow(float, int)`
    (step, exp, multistep) is C++'s double pow, rounded to float at the end; inv, poly and
    sigmoid are all-float arithmetic with libm's powf and expf (sigmoid's expf may overflow
    to inf: the rate is then 0). multistep advances current_step at most once per call, as
    in Caffe; step sets it."""
    base, gamma, power = param.base_lr, param.gamma, param.power   # float32 values, held as double
    policy = param.lr_policy
    if policy == "fixed":
        rate = base
    elif policy == "step":
        current_step = it // param.stepsize
        rate = base * gamma ** current_step
    elif policy == "exp":
        rate = base * gamma ** it
    elif policy == "inv":
        f_base = _f32(1.0) + _f32(gamma) * _f32(it)                 # Dtype(1) + gamma() * iter_
        rate = float(_f32(base) * _powf(f_base, -_f32(power)))
    elif policy == "multistep":
        if current_step < len(param.stepvalue) and it >= param.stepvalue[current_step]:
            current_step += 1
        rate = base * gamma ** current_step
    elif policy == "poly":
        f_base = _f32(1.0) - _f32(it) / _f32(param.max_iter)          # Dtype(1.) - Dtype(iter_) / Dtype(max_iter)
        rate = float(_f32(base) * _powf(f_base, _f32(power)))
    elif policy == "sigmoid":
        exponent = -_f32(gamma) * (_f32(it) - _f32(param.stepsize))
        rate = float(_f32(base) * (_f32(1.0) / (_f32(1.0) + _expf(exponent))))
    else:
        raise ValueError(f"unknown lr_policy '{policy}'")
    return float(np.float32(rate)), current_step


def _f32(x: float) -> np.float32:
    return np.float32(x)


def _libm() -> Any:
    """The C library's math functions: what Caffe's `pow(float, float)` and `exp(float)`
    call (libstdc++ forwards them to powf and expf); numpy's float32 power may use other
    (vectorised) code with other last bits."""
    path = ctypes.util.find_library("m")
    if path is None:
        return None
    libm = ctypes.CDLL(path)
    for name, args in (("powf", 2), ("expf", 1)):
        getattr(libm, name).argtypes = [ctypes.c_float] * args
        getattr(libm, name).restype = ctypes.c_float
    return libm


_LIBM = _libm()


def _powf(x: np.float32, y: np.float32) -> np.float32:
    if _LIBM is None:   # no C math library found: numpy's, within an ulp
        return np.power(x, y, dtype=np.float32)
    return np.float32(_LIBM.powf(float(x), float(y)))


def _expf(x: np.float32) -> np.float32:
    if _LIBM is None:
        with np.errstate(over="ignore"):
            return np.exp(x, dtype=np.float32)
    return np.float32(_LIBM.expf(float(x)))


@dataclass
class SolverState:
    """What a .solverstate holds, in memory: iterations done, multistep's
    step, and the history blobs (one per learnable blob; Adam: two)."""
    iter: int = 0
    current_step: int = 0
    history: List[torch.Tensor] = field(default_factory=list)


def new_state(param: "caffe_pb2.SolverParameter", learnable: List[Learnable]) -> SolverState:
    copies = 2 if solver_type(param) == "Adam" else 1
    return SolverState(history=[torch.zeros_like(p.blob, memory_format=torch.contiguous_format).detach()
                                for _ in range(copies) for p in learnable])


def clip_gradients(param: "caffe_pb2.SolverParameter", learnable: List[Learnable]) -> Optional[Tuple[float, float]]:
    """Scale all gradients so their global L2 norm is at most clip_gradients.
    Returns (norm, scale) when it scaled, else None."""
    clip = param.clip_gradients
    if clip < 0:
        return None
    grads = [p.blob.grad for p in learnable if p.blob.grad is not None]
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads))
    if norm <= clip:
        return None
    scale = clip / norm
    for g in grads:
        g.mul_(scale)
    return norm, scale


@torch.no_grad()
def apply_update(param: "caffe_pb2.SolverParameter", learnable: List[Learnable], state: SolverState,
                 rate: float) -> None:
    """Normalize, Regularize and ComputeUpdateValue of each blob, then w -= update."""
    kind, n = solver_type(param), len(learnable)
    momentum = float(np.float32(param.momentum))
    for i, p in enumerate(learnable):
        w = p.blob
        g = w.grad if w.grad is not None else torch.zeros_like(w)
        if param.iter_size > 1:
            g = g * (1.0 / param.iter_size)
        decay = param.weight_decay * p.decay_mult
        if decay:
            g = g + decay * (w if param.regularization_type == "L2" else torch.sign(w))
        local_rate = float(np.float32(rate) * np.float32(p.lr_mult))
        v = state.history[i]
        if kind == "SGD":
            v.mul_(momentum).add_(g, alpha=local_rate)
            w.sub_(v)
        elif kind == "Nesterov":
            previous = v.clone()
            v.mul_(momentum).add_(g, alpha=local_rate)
            w.sub_((1 + momentum) * v - momentum * previous)
        else:  # Adam, not bias-corrected in its eps (Caffe's form)
            beta1, beta2 = momentum, float(np.float32(param.momentum2))
            t = state.iter + 1
            correction = math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t)
            s = state.history[i + n]
            v.mul_(beta1).add_(g, alpha=1 - beta1)
            s.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            w.sub_(v / (s.sqrt() + param.delta) * (local_rate * correction))


def zero_gradients(learnable: List[Learnable]) -> None:
    for p in learnable:
        p.blob.grad = None
