"""The torch engine on a CUDA device (issue #15): the same numbers as the CPU
at Caffe's numerics, tiles kept on the device, no host sync inside an
iteration, and the opt-in precisions. Every test skips where torch sees no
GPU (all of this project's CI machines so far); `bench/gpu_check.sh` runs
them first on a machine that has one."""

from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_nets
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.engines import get_engine
from plaquenet.engines.torch.data import HDF5Rows
from plaquenet.engines.torch.layers import HDF5Data
from plaquenet.engines.torch.solver import apply_update, new_state, zero_gradients
from plaquenet.engines.torch.train import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device here")

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "prototxt" / "plaquenet_deploy.prototxt"


@pytest.fixture
def paper_snapshot(tmp_path):
    path = tmp_path / "w.caffemodel"
    write_caffemodel(path, tiny_nets.paper_weights())
    return path


def test_the_paper_net_on_cuda_gives_the_cpu_output_within_1e_5(paper_snapshot):
    image = np.random.default_rng(0).random((448, 512), dtype=np.float32)
    engine = get_engine("torch")
    on_cpu = engine.load_deploy(DEPLOY, paper_snapshot, device="cpu")(image)
    on_gpu = engine.load_deploy(DEPLOY, paper_snapshot, device="cuda")(image)
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    assert float(np.abs(on_gpu.astype(np.float64) - on_cpu).max()) <= 1e-5


@pytest.mark.parametrize("precision", ["bf16", "tf32"])
def test_the_faster_precisions_run_on_cuda_near_fp32(paper_snapshot, precision):
    image = np.random.default_rng(1).random((448, 512), dtype=np.float32)
    engine = get_engine("torch")
    exact = engine.load_deploy(DEPLOY, paper_snapshot, device="cuda")(image)
    rounded = engine.load_deploy(DEPLOY, paper_snapshot, device="cuda", precision=precision)(image)
    assert rounded.dtype == np.float32 and float(np.abs(rounded - exact).max()) < 2e-2
    engine.load_deploy(DEPLOY, paper_snapshot, device="cuda")   # back to Caffe's numerics
    assert not torch.backends.cudnn.allow_tf32


def test_training_on_cuda_tracks_the_cpu(train_workdir):
    cpu = train("solver.prototxt", device="cpu")
    (train_workdir / "solver.prototxt").write_text(
        (train_workdir / "solver.prototxt").read_text().replace("runs/tiny/tiny", "runs/gpu/tiny"))
    gpu = train("solver.prototxt", device="cuda")
    cpu_rows = (cpu.run_dir / "train.csv").read_text().splitlines()[1:]
    gpu_rows = (gpu.run_dir / "train.csv").read_text().splitlines()[1:]
    assert len(cpu_rows) == len(gpu_rows) == 4
    for a, b in zip(cpu_rows, gpu_rows):
        assert float(b.split(",")[1]) == pytest.approx(float(a.split(",")[1]), rel=1e-4)


def test_tiles_on_the_device_are_the_host_batches(train_workdir):
    layers = {resident: HDF5Data(HDF5Rows("tiles/train.txt", ["data", "label"], 3, shuffle=True),
                                 torch.device("cuda"), resident=resident) for resident in (False, True)}
    for _ in range(5):
        for a, b in zip(layers[False](), layers[True]()):
            assert torch.equal(a, b)


def test_an_iteration_waits_for_the_host_nowhere(train_workdir):
    """Forward (device-resident tiles), backward and the SGD update with CUDA's
    sync debugging set to error: any host synchronisation inside raises."""
    from plaquenet.caffe.prototxt import read_net, read_solver
    from plaquenet.engines.torch.net import TRAIN, Net

    param = read_solver("solver.prototxt")
    net = Net(read_net("nets/tiny_train.prototxt"), TRAIN, device="cuda", seed=0)
    state = new_state(param, net.learnable)
    net()   # first call: the tiles copied to the device, kernels loaded
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            zero_gradients(net.learnable)
            _, loss = net()
            loss.backward()
            apply_update(param, net.learnable, state, 0.01)
    finally:
        torch.cuda.set_sync_debug_mode("default")
