"""The CUDA path end to end on a machine with one NVIDIA GPU, in under 5 minutes, as one table.

    bench/gpu_check.sh                     (the same: .venv/bin/python bench/gpu_check.py)
    bench/gpu_check.sh --device cpu --quick   (the same code on the CPU, small: what CI runs)

1. tests/cuda (pytest): the CUDA tests; they skip where torch sees no GPU.
2. The device against the CPU engine: the paper's deploy net on one 448x512
   scan with the weights of the fp32 training below, TF32 off: the largest
   difference of the sigmoid output (goal <= 1e-5).
3. Per precision (fp32: Caffe's numerics; tf32; bf16): training tiles per
   second with the paper's train net and solver on 100-tile batches of 50x50
   (the wall time between a short and a longer run, so start-up and the last
   sync are paid by both), and milliseconds per 448x512 scan of the deploy
   net (the output copied to the host, as score does; median).

The goals printed beside the figures are issue #15's for an H100/H200-class
GPU: >= 8,000 tiles/s at Caffe's numerics, >= 20,000 in bf16, < 2 ms per scan
in bf16. Exit status 1 when the tests fail or the device disagrees with the
CPU beyond 1e-5; the speed goals are reported, not enforced.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from plaquenet.caffe.prototxt import read_net, read_solver, write_prototxt  # noqa: E402
from plaquenet.engines import PRECISIONS, get_engine  # noqa: E402
from plaquenet.errors import InputError  # noqa: E402

TRAIN_NET = REPO / "prototxt" / "plaquenet_train.prototxt"
DEPLOY_NET = REPO / "prototxt" / "plaquenet_deploy.prototxt"
PAPER_SOLVER = REPO / "prototxt" / "solver.prototxt"
AGREEMENT = 1e-5
GOALS = {("tiles/s", "fp32"): ">= 8,000", ("tiles/s", "bf16"): ">= 20,000", ("ms/scan", "bf16"): "< 2"}


def write_tiles(folder: Path, rows: int, tile: int) -> Path:
    """`rows` random tiles in one HDF5 file and the list HDF5Data reads (paths relative to `folder`)."""
    rng = np.random.default_rng(0)
    (folder / "tiles").mkdir(parents=True, exist_ok=True)
    with h5py.File(folder / "tiles" / "train_000.h5", "w") as f:
        f["data"] = rng.random((rows, 1, tile, tile), dtype=np.float32)
        f["label"] = (rng.random((rows, 1, tile, tile)) < 0.05).astype(np.float32)
    (folder / "tiles" / "train.txt").write_text("tiles/train_000.h5\n")
    return folder / "tiles" / "train.txt"


def train_seconds(folder: Path, device: str, precision: str, iterations: int, batch: int) -> Tuple[float, Path]:
    """Wall seconds of `plaquenet train`'s engine call for `iterations` of the
    paper's solver on the tiles in `folder` (the working directory), and its last snapshot."""
    param = read_solver(PAPER_SOLVER)
    param.net = str(folder / "train.prototxt")
    param.max_iter, param.snapshot, param.snapshot_after_train, param.display = iterations, 0, True, 0
    param.snapshot_prefix = str(folder / f"run-{precision}-{iterations}" / "net")
    solver = folder / f"solver-{precision}-{iterations}.prototxt"
    write_prototxt(solver, param)
    started = time.perf_counter()
    result = get_engine("torch").train(solver, device=device, precision=precision, on_estimate=lambda line: None)
    return time.perf_counter() - started, Path(result.last_snapshot)


def write_train_net(folder: Path, batch: int) -> None:
    """The paper's train net reading the tiles above, `batch` at a time."""
    net = read_net(TRAIN_NET)
    for layer in net.layer:
        if layer.type == "HDF5Data":
            layer.hdf5_data_param.source, layer.hdf5_data_param.batch_size = "tiles/train.txt", batch
    write_prototxt(folder / "train.prototxt", net)


def scan_ms(snapshot: Path, device: str, precision: str, size: Tuple[int, int], repeats: int) -> float:
    forward = get_engine("torch").load_deploy(DEPLOY_NET, snapshot, device=device, precision=precision)
    image = np.random.default_rng(1).random(size, dtype=np.float32)
    forward(image)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        forward(image)
        times.append(time.perf_counter() - started)
    return 1000 * float(np.median(times))


def agreement(snapshot: Path, device: str, size: Tuple[int, int]) -> float:
    """max |device - CPU| of the fp32 deploy output on one random scan."""
    image = np.random.default_rng(2).random(size, dtype=np.float32)
    engine = get_engine("torch")
    on_cpu = engine.load_deploy(DEPLOY_NET, snapshot, device="cpu")(image)
    on_device = engine.load_deploy(DEPLOY_NET, snapshot, device=device)(image)
    return float(np.abs(on_device.astype(np.float64) - on_cpu).max())


def cuda_tests() -> str:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", str(REPO / "tests" / "cuda")],
                          capture_output=True, text=True, cwd=REPO)
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return ("passed: " if done.returncode == 0 else "FAILED: ") + last


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI: the logic, not the speed)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out tests/cuda")
    args = parser.parse_args(argv)
    try:
        device = get_engine("torch").check_device(args.device)
    except InputError as e:
        print(f"gpu_check: {e}", file=sys.stderr)
        return 2
    batch, tile, short, long, size, repeats = ((4, 8, 1, 3, (32, 40), 2) if args.quick
                                              else (100, 50, 5, 45, (448, 512), 20))
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"
    print(f"gpu_check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda or 'none'}"
          + (" (quick: tiny sizes)" if args.quick else ""))
    rows: Dict[Tuple[str, str], str] = {}
    tests = "skipped" if args.skip_tests else cuda_tests()
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="plaquenet-gpu-check-") as tmp:
        folder = Path(tmp)
        os.chdir(folder)   # the train net's HDF5Data source is relative to the working directory
        try:
            write_tiles(folder, rows=4 * batch, tile=tile)
            write_train_net(folder, batch)
            fp32_snapshot = None
            for precision in PRECISIONS:
                try:
                    train_seconds(folder, device, precision, 1, batch)   # warm-up: kernels chosen and loaded
                    first, _ = train_seconds(folder, device, precision, short, batch)
                    second, snapshot = train_seconds(folder, device, precision, long, batch)
                except InputError as e:
                    rows[("tiles/s", precision)] = rows[("ms/scan", precision)] = "n/a"
                    print(f"  {precision}: {e}")
                    continue
                rows[("tiles/s", precision)] = (f"{batch * (long - short) / (second - first):,.0f}"
                                                if second > first else "noisy")
                rows[("ms/scan", precision)] = f"{scan_ms(snapshot, device, precision, size, repeats):.2f}"
                if precision == "fp32":
                    fp32_snapshot = snapshot
            difference = agreement(fp32_snapshot, device, size) if fp32_snapshot else float("nan")
        finally:
            os.chdir(cwd)
    print()
    print(f"{'check':28} " + " ".join(f"{p:>12}" for p in PRECISIONS)
          + f"   goal ({'H100/H200' if not args.quick else 'GPU'})")
    print(f"{'tests/cuda':28} {tests}")
    print(f"{'forward vs CPU, max |diff|':28} {difference:12.2e} {'':>12} {'':>12}   <= {AGREEMENT:.0e} (fp32)")
    for what, label in (("tiles/s", "training tiles/s"), ("ms/scan", f"ms per {size[0]}x{size[1]} scan")):
        cells = " ".join(f"{rows.get((what, p), 'n/a'):>12}" for p in PRECISIONS)
        goals = ", ".join(f"{p} {g}" for (w, p), g in GOALS.items() if w == what)
        print(f"{label:28} {cells}   {goals}")
    ok = not tests.startswith("FAILED") and difference <= AGREEMENT
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
