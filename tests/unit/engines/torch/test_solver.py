"""Caffe's solver arithmetic on one-parameter problems, against numbers
worked out by hand from sgd_solver.cpp / nesterov_solver.cpp / adam_solver.cpp."""

import math

import numpy as np
import pytest
import torch

from plaquenet.caffe import caffe_pb2
from plaquenet.engines.torch.net import Learnable
from plaquenet.engines.torch.solver import (SolverState, apply_update, clip_gradients, learning_rate,
                                            new_state, solver_type)


def solver(**fields):
    return caffe_pb2.SolverParameter(**fields)


def one_parameter(value=1.0, lr_mult=1.0, decay_mult=1.0):
    return [Learnable("w", 0, torch.nn.Parameter(torch.tensor([value])), lr_mult, decay_mult)]


def run(param, learnable, iters, state=None):
    """`iters` Caffe iterations on loss 0.5 w^2 (gradient w); returns w after each."""
    state = state or new_state(param, learnable)
    trace = []
    for _ in range(iters):
        w = learnable[0].blob
        w.grad = w.detach().clone()
        rate, state.current_step = learning_rate(param, state.iter, state.current_step)
        apply_update(param, learnable, state, rate)
        state.iter += 1
        trace.append(w.item())
    return trace


def test_sgd_keeps_the_rate_inside_momentum():
    # step policy: lr 0.1, 0.1, then 0.05; lr_mult 2; L2 decay 0.1.
    param = solver(type="SGD", base_lr=0.1, lr_policy="step", gamma=0.5, stepsize=2,
                   momentum=0.9, weight_decay=0.1)
    trace = run(param, one_parameter(lr_mult=2.0), 3)
    # it 0: g = 1 + 0.1*1 = 1.1;        v = 0.2*1.1 = 0.22;                w = 0.78
    # it 1: g = 0.78*1.1 = 0.858;       v = 0.9*0.22 + 0.2*0.858 = 0.3696; w = 0.4104
    # it 2: g = 0.4104*1.1 = 0.45144;   v = 0.9*0.3696 + 0.1*0.45144;      w = 0.032616
    assert trace == pytest.approx([0.78, 0.4104, 0.032616], abs=1e-6)

    # torch.optim.SGD (v = m v + g; w -= lr v) agrees until the rate changes.
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt = torch.optim.SGD([w], lr=0.2, momentum=0.9, weight_decay=0.1)
    torch_trace = []
    for it in range(3):
        if it == 2:
            opt.param_groups[0]["lr"] = 0.1
        w.grad = w.detach().clone()
        opt.step()
        torch_trace.append(w.item())
    assert torch_trace[:2] == pytest.approx(trace[:2], abs=1e-6)
    assert torch_trace[2] == pytest.approx(0.198936, abs=1e-6) and abs(torch_trace[2] - trace[2]) > 0.1


def test_iter_size_divides_and_l1_decay_uses_the_sign():
    param = solver(base_lr=1.0, lr_policy="fixed", iter_size=4, weight_decay=0.5, regularization_type="L1")
    learnable = one_parameter(value=-2.0)
    learnable[0].blob.grad = torch.tensor([8.0])        # summed over 4 passes
    apply_update(param, learnable, new_state(param, learnable), 1.0)
    assert learnable[0].blob.item() == pytest.approx(-2.0 - (8.0 / 4 + 0.5 * -1))


def test_lr_mult_zero_does_not_move():
    param = solver(base_lr=1.0, lr_policy="fixed", momentum=0.9, weight_decay=0.1)
    assert run(param, one_parameter(lr_mult=0.0), 2) == [1.0, 1.0]


def test_nesterov():
    param = solver(type="Nesterov", base_lr=0.1, lr_policy="fixed", momentum=0.9)
    # it 0: h = 0.1;                update 1.9*0.1 = 0.19;               w = 0.81
    # it 1: h = 0.09 + 0.081 = 0.171; update 1.9*0.171 - 0.9*0.1 = 0.2349; w = 0.5751
    assert run(param, one_parameter(), 2) == pytest.approx([0.81, 0.5751], abs=1e-6)


def test_adam_first_steps():
    param = solver(type="Adam", base_lr=0.01, lr_policy="fixed", momentum=0.9, momentum2=0.999, delta=1e-8)
    learnable = one_parameter(value=2.0)
    state = new_state(param, learnable)
    assert len(state.history) == 2                       # m, then v, as Caffe saves them
    trace = run(param, learnable, 2, state)
    m, v, w = 0.0, 0.0, 2.0
    for t in (1, 2):
        g = w
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        w -= 0.01 * math.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t) * m / (math.sqrt(v) + 1e-8)
        assert trace[t - 1] == pytest.approx(w, abs=1e-6)


def test_clip_gradients_scales_the_global_norm():
    param = solver(clip_gradients=1.0)
    learnable = one_parameter() + one_parameter()
    learnable[0].blob.grad, learnable[1].blob.grad = torch.tensor([3.0]), torch.tensor([4.0])
    assert clip_gradients(param, learnable) == pytest.approx((5.0, 0.2))
    assert (learnable[0].blob.grad.item(), learnable[1].blob.grad.item()) == pytest.approx((0.6, 0.8))
    assert clip_gradients(solver(), learnable) is None     # -1: off


@pytest.mark.parametrize("fields, it, expected", [
    (dict(lr_policy="fixed"), 10, 0.01),
    (dict(lr_policy="step", gamma=0.5, stepsize=4), 10, 0.01 * 0.5 ** 2),
    (dict(lr_policy="exp", gamma=0.9), 10, 0.01 * 0.9 ** 10),
    (dict(lr_policy="inv", gamma=0.1, power=0.75), 10, 0.01 * 2 ** -0.75),
    (dict(lr_policy="poly", power=2, max_iter=20), 10, 0.01 * 0.5 ** 2),
    (dict(lr_policy="sigmoid", gamma=0.5, stepsize=12), 10, 0.01 / (1 + math.exp(1))),
])
def test_lr_policies(fields, it, expected):
    rate, _ = learning_rate(solver(base_lr=0.01, **fields), it)
    assert rate == pytest.approx(expected, rel=1e-6)


def test_sigmoid_whose_exp_overflows_trains_at_rate_zero_as_caffe_does():
    # gamma * (stepsize - iter) = 1000 at iteration 0: Caffe's float expf gives inf, the rate 0
    param = solver(base_lr=0.01, lr_policy="sigmoid", gamma=1.0, stepsize=1000)
    assert learning_rate(param, 0) == (0.0, 0)
    assert learning_rate(param, 1000)[0] == np.float32(0.005)


def test_multistep_advances_at_most_once_per_call():
    param = solver(base_lr=0.01, lr_policy="multistep", gamma=0.5, stepvalue=[3, 7])
    step, rates = 0, []
    for it in range(10):
        rate, step = learning_rate(param, it, step)
        rates.append(rate)
    assert rates == pytest.approx([0.01] * 3 + [0.005] * 4 + [0.0025] * 3)
    # Jumping straight to iteration 10 (e.g. a resume with current_step 0) moves one step only.
    assert learning_rate(param, 10, 0) == (pytest.approx(0.005), 1)


def test_deprecated_solver_type_enum():
    assert solver_type(solver(solver_type=caffe_pb2.SolverParameter.NESTEROV)) == "Nesterov"
    assert solver_type(solver(type="Adam", solver_type=caffe_pb2.SolverParameter.NESTEROV)) == "Adam"
    assert isinstance(new_state(solver(), one_parameter()), SolverState)


def test_sigmoid_policy_with_negative_gamma_is_refused_as_caffe_does():
    from plaquenet.engines.torch.solver import check_solver
    from plaquenet.errors import InputError

    param = solver(base_lr=0.1, lr_policy="sigmoid", gamma=-0.5, stepsize=10)
    with pytest.raises(InputError, match="gamma >= 0"):
        check_solver(param, "s.prototxt")
    check_solver(solver(base_lr=0.1, lr_policy="sigmoid", gamma=0.5, stepsize=10), "s.prototxt")


# SGDSolver::GetLearningRate's CHECKs at the oracle commit 99bd997 (sgd_solver.cpp:33-62).
REFUSED_SCHEDULES = [
    (dict(lr_policy="step", gamma=-0.5, stepsize=2), "gamma >= 0"),
    (dict(lr_policy="step", gamma=0.5, stepsize=0), "stepsize > 0"),
    (dict(lr_policy="exp", gamma=-0.5), "gamma >= 0"),
    (dict(lr_policy="inv", gamma=-0.5, power=0.75), "gamma >= 0"),
    (dict(lr_policy="multistep", gamma=-0.5, stepvalue=[2]), "gamma >= 0"),
    (dict(lr_policy="sigmoid", gamma=0.5), "stepsize > 0"),
    (dict(lr_policy="sigmoid", gamma=0.5, stepsize=-3), "stepsize > 0"),
]


@pytest.mark.parametrize("fields, message", REFUSED_SCHEDULES)
def test_schedules_caffe_aborts_on_are_refused(fields, message):
    from plaquenet.engines.torch.solver import check_solver
    from plaquenet.errors import InputError

    with pytest.raises(InputError, match=message):
        check_solver(solver(base_lr=0.1, max_iter=4, **fields), "s.prototxt")


@pytest.mark.parametrize("fields", [dict(lr_policy="fixed", gamma=-0.5),
                                    dict(lr_policy="poly", gamma=-0.5, power=1.0),
                                    dict(lr_policy="exp", gamma=0.0),
                                    dict(lr_policy="inv", gamma=0.0, power=1.0)])
def test_schedules_caffe_does_not_check_are_accepted(fields):
    from plaquenet.engines.torch.solver import check_solver

    check_solver(solver(base_lr=0.1, max_iter=4, **fields), "s.prototxt")
