"""bench/bench_engine.py's plain-PyTorch reference does the engine's work:
the deploy net's layers, nothing more or less (its speed is the bench's, not a test's)."""

import importlib.util
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_engine", REPO / "bench" / "bench_engine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plain_reference_is_the_deploy_nets_layers():
    bench = _bench()
    net = bench.plain_net(bench.DEPLOY_NET)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.in_channels * c.out_channels * c.kernel_size[0] * c.kernel_size[1] for c in convs) == \
        bench.macs_per_pixel(bench.DEPLOY_NET)
    assert all(c.padding[0] == (c.kernel_size[0] - 1) // 2 for c in convs)   # same size out as in
    assert sum(isinstance(m, torch.nn.PReLU) for m in net) == len(convs) - 1
    assert isinstance(net[-1], torch.nn.Sigmoid)
    out = net(torch.rand(1, 1, 50, 50).to(memory_format=torch.channels_last))
    assert out.shape == (1, 1, 50, 50)
