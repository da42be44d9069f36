"""Every learning-rate policy against real Caffe, bit for bit, over long
schedules (the paper's 75,000 iterations where the policy has an end):
Caffe computes inv, poly and sigmoid in float with powf/expf and step, exp
and multistep through double pow, and plaquenet must give the same float at
every iteration. Caffe's rates are read off its own SGD update
(tools/caffe_reference.py `rates`), computed at test time."""

import numpy as np
import pytest

from plaquenet.caffe import caffe_pb2
from plaquenet.caffe.prototxt import parse_prototxt
from plaquenet.engines.torch.solver import learning_rate

POLICIES = {
    # name: (policy fields, iterations)
    "fixed": ('base_lr: 0.00001 lr_policy: "fixed"', 2000),
    "step": ('base_lr: 0.01 lr_policy: "step" gamma: 0.1 stepsize: 5000', 75000),
    "exp": ('base_lr: 0.01 lr_policy: "exp" gamma: 0.99995', 75000),
    "inv": ('base_lr: 0.01 lr_policy: "inv" gamma: 0.0001 power: 0.75', 75000),   # Caffe's LeNet example
    "multistep": ('base_lr: 0.01 lr_policy: "multistep" gamma: 0.5 stepvalue: 1000 stepvalue: 20000 '
                  'stepvalue: 60000', 75000),
    "poly": ('base_lr: 0.01 lr_policy: "poly" power: 0.9 max_iter: 75000', 75000),
    "sigmoid": ('base_lr: 0.01 lr_policy: "sigmoid" gamma: 0.0002 stepsize: 40000', 75000),
    # gamma * (stepsize - iter) = 1000 at iteration 0: expf overflows to inf, the rate is 0
    "sigmoid_overflow": ('base_lr: 0.01 lr_policy: "sigmoid" gamma: 1 stepsize: 1000', 3000),
}


def _our_rates(fields: str, n: int) -> np.ndarray:
    param = parse_prototxt(fields, caffe_pb2.SolverParameter())
    rates, step = np.empty(n, np.float32), 0
    for it in range(n):
        rate, step = learning_rate(param, it, step)
        rates[it] = rate
    return rates


@pytest.mark.parametrize("name", POLICIES)
def test_every_iteration_has_caffes_learning_rate_bit_for_bit(caffe, tmp_path, name):
    fields, n = POLICIES[name]
    folder = caffe.scratch / name
    folder.mkdir()
    (folder / "policy.prototxt").write_text(fields + "\n")
    caffe.run("rates", caffe.inside(name), "policy.prototxt", str(n), "rates.npy")
    theirs = np.load(folder / "rates.npy") + np.float32(0)   # -w of w = 0 reads -0.0: the same rate 0
    ours = _our_rates(fields, n)
    differ = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))
    assert differ.size == 0, (f"{differ.size} of {n} iterations differ, first at {differ[0]}: "
                              f"ours {ours[differ[0]]!r}, Caffe's {theirs[differ[0]]!r}")
    if name == "sigmoid_overflow":
        assert theirs[0] == 0 and theirs[-1] > 0
