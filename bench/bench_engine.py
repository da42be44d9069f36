"""Real Caffe (Debian's 1.0.0+git20180821.99bd997) and our torch engine side by side, in one run on the same cores.

    .venv/bin/python bench/bench_engine.py [--caffe-root build/caffe-root] [--iters 5] [--scans 5]
                                           [--precision fp32,bf16]

Both run the paper's prototxt files unchanged with the same weights, our
engine through the engine interface (`plaquenet.engines.get_engine`): seconds
per 100-tile training iteration (forward, backward, SGD update) and per
448x512 forward pass of the deploy net, their ratio, achieved GFLOP/s, and
the share of the machine's FP32 peak (measured here with the project's
shared probe, ../shared/tools/cpu_peak.c, when it builds). Real Caffe runs
only as root with the Caffe root built (`make caffe-root`); without it the
torch figures are printed alone. Beside them, the reference the engine is
held to (#15): plain PyTorch's best layout on the same work, the same layers
as torch.nn modules in channels-last memory, an SGD step with momentum on a
sum-of-squares loss and an inference-mode scan, at each precision timed.
Medians after one warm-up; absolute times differ between machines, so only
the same-run ratios compare.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from plaquenet.caffe.prototxt import prototxt_text, read_net, read_solver, write_prototxt
from plaquenet.engines import get_engine

REPO = Path(__file__).resolve().parents[1]
TRAIN_NET = REPO / "prototxt" / "plaquenet_train.prototxt"
DEPLOY_NET = REPO / "prototxt" / "plaquenet_deploy.prototxt"
H, W = 448, 512

CAFFE_SCRIPT = r"""
import sys, time, numpy as np, caffe
caffe.set_mode_cpu()
iters, scans = int(sys.argv[1]), int(sys.argv[2])
solver = caffe.SGDSolver("solver.prototxt")
solver.net.copy_from("w.caffemodel")
times = []
for _ in range(iters + 1):
    t = time.perf_counter(); solver.step(1); times.append(time.perf_counter() - t)
print("train", np.median(times[1:]))
net = caffe.Net("deploy.prototxt", caffe.TEST, weights="w.caffemodel")
net.blobs["data"].reshape(1, 1, %d, %d); net.reshape()
net.blobs["data"].data[...] = np.random.default_rng(0).random((%d, %d), dtype=np.float32)
times = []
for _ in range(scans + 1):
    t = time.perf_counter(); net.forward(); times.append(time.perf_counter() - t)
print("scan", np.median(times[1:]))
""" % (H, W, H, W)

PAPER_SOLVER = REPO / "prototxt" / "solver.prototxt"


def bench_solver():
    """The paper's solver (its update: SGD, lr, momentum, policy) with the
    schedule made endless and snapshots off, for timing single steps."""
    param = read_solver(PAPER_SOLVER)
    param.max_iter, param.snapshot, param.snapshot_after_train = 1_000_000, 0, False
    param.display, param.snapshot_prefix = 0, "unused"
    param.net = "prototxt/plaquenet_train.prototxt"
    return param


def macs_per_pixel(deploy) -> int:
    """Multiply-adds per output pixel of the padded, stride-1 convolutions (from the prototxt)."""
    channels, total = 1, 0
    for layer in read_net(deploy).layer:
        if layer.type == "Convolution":
            p = layer.convolution_param
            k = p.kernel_size[0] if p.kernel_size else p.kernel_h
            total += channels * p.num_output * k * k
            channels = p.num_output
    return total


def write_tiles(work: Path, rng) -> None:
    tiles = work / "data" / "current" / "tiles"
    tiles.mkdir(parents=True)
    data = rng.random((100, 1, 50, 50), dtype=np.float32)
    label = (rng.random((100, 1, 50, 50)) < 0.05).astype(np.float32)
    with h5py.File(tiles / "train_000.h5", "w") as f:
        f["data"], f["label"] = data, label
    (tiles / "train.txt").write_text("data/current/tiles/train_000.h5\n")


def median_seconds(step, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times[1:]))


def torch_figures(work: Path, iters: int, scans: int, precision: str = "fp32"):
    """Through the engine interface, as `plaquenet train` and `score` use it:
    seconds per iteration from train.csv (after the first), seconds per scan
    of the deploy forward on the trained weights, in `precision`."""
    os.chdir(work)  # the train prototxt's HDF5Data source is relative to the working directory
    engine = get_engine("torch")
    param = bench_solver()
    param.net, param.max_iter, param.snapshot_after_train = str(TRAIN_NET), iters + 1, True
    param.snapshot_prefix = f"run-{precision}/bench"
    write_prototxt("solver.prototxt", param)
    result = engine.train("solver.prototxt", on_estimate=lambda line: None, precision=precision)
    with open(result.run_dir / "train.csv", newline="") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    train_s = float(np.median(np.diff(seconds)))  # iterations 2.. (the first is the warm-up)
    if precision == "fp32":
        shutil.copy(result.last_snapshot, work / "w.caffemodel")  # real Caffe starts from the same weights
    forward = engine.load_deploy(DEPLOY_NET, result.last_snapshot, precision=precision)
    image_hw = np.random.default_rng(0).random((H, W), dtype=np.float32)
    return train_s, median_seconds(lambda: forward(image_hw), scans)


def plain_net(deploy: Path) -> torch.nn.Module:
    """The deploy net's layers as torch.nn modules (Conv2d with its padding,
    PReLU per channel, Sigmoid), in channels-last memory: no engine in between."""
    layers, channels = [], 1
    for layer in read_net(deploy).layer:
        if layer.type == "Convolution":
            p = layer.convolution_param
            k = p.kernel_size[0] if p.kernel_size else p.kernel_h
            pad = p.pad[0] if p.pad else 0
            layers.append(torch.nn.Conv2d(channels, p.num_output, k, padding=pad))
            channels = p.num_output
        elif layer.type == "PReLU":
            layers.append(torch.nn.PReLU(channels))
        elif layer.type == "Sigmoid":
            layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers).to(memory_format=torch.channels_last)


def plain_torch_figures(iters: int, scans: int, precision: str = "fp32"):
    """Plain PyTorch on the engine's work: seconds per 100-tile SGD step
    (forward, Caffe's EuclideanLoss sum / 2N, backward, momentum update) and
    per 448x512 scan in inference mode; bf16 through autocast, as the engine."""
    torch.manual_seed(0)
    net = plain_net(DEPLOY_NET)
    optimiser = torch.optim.SGD(net.parameters(), lr=1e-5, momentum=0.9)
    rng = np.random.default_rng(0)
    tiles = torch.from_numpy(rng.random((100, 1, 50, 50), dtype=np.float32)).to(memory_format=torch.channels_last)
    labels = torch.from_numpy((rng.random((100, 1, 50, 50)) < 0.05).astype(np.float32))
    image = torch.from_numpy(rng.random((1, 1, H, W), dtype=np.float32)).to(memory_format=torch.channels_last)
    cast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def step():
        optimiser.zero_grad(set_to_none=True)
        with cast:
            out = net(tiles)
        loss = ((out.float() - labels) ** 2).sum() / (2 * len(tiles))
        loss.backward()
        optimiser.step()

    def scan():
        with torch.inference_mode(), cast:
            net(image)

    return median_seconds(step, iters), median_seconds(scan, scans)


def caffe_figures(root: Path, work: Path, iters: int, scans: int):
    if os.geteuid() != 0 or not (root / "usr" / "bin" / "caffe").exists():
        print(f"real Caffe: skipped (needs root and a Caffe root at {root}: `make caffe-root`)")
        return None
    box = root / "tmp" / f"plaquenet-bench-{os.getpid()}"
    shutil.copytree(work, box)
    try:
        shutil.copytree(REPO / "prototxt", box / "prototxt")
        shutil.copy(DEPLOY_NET, box / "deploy.prototxt")
        (box / "solver.prototxt").write_text(prototxt_text(bench_solver()))
        (box / "bench.py").write_text(CAFFE_SCRIPT)
        inside = "/" + str(box.relative_to(root))
        done = subprocess.run(["chroot", str(root), "sh", "-c",
                               f"cd {inside} && GLOG_minloglevel=2 python3 bench.py {iters} {scans}"],
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"real Caffe failed:\n{done.stderr[-2000:]}")
        figures = dict(line.split() for line in done.stdout.splitlines() if line.strip())
        return float(figures["train"]), float(figures["scan"])
    finally:
        shutil.rmtree(box, ignore_errors=True)


def fp32_peak():
    probe = REPO.parent / "shared" / "tools" / "cpu_peak.c"
    if not probe.exists() or not shutil.which("gcc"):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "cpu_peak"
        built = subprocess.run(["gcc", "-O2", "-mavx512f", "-fopenmp", str(probe), "-o", str(exe)],
                               capture_output=True)
        if built.returncode != 0:
            return None
        out = subprocess.run([str(exe)], capture_output=True, text=True).stdout
    lines = [l for l in out.splitlines() if l.startswith("peak")]
    return float(lines[-1].split("~")[1].split()[0]) if lines else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caffe-root", type=Path, default=REPO / "build" / "caffe-root")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--scans", type=int, default=5)
    parser.add_argument("--precision", default=None,
                        help="comma-separated precisions of the torch engine to time (fp32,bf16); fp32 is Caffe's "
                             "(default: fp32, and bf16 where this CPU computes in it)")
    args = parser.parse_args()
    if args.precision is None:
        from plaquenet.engines.torch.precision import cpu_has_bf16
        args.precision = "fp32,bf16" if cpu_has_bf16() else "fp32"

    macs = macs_per_pixel(DEPLOY_NET)
    gflop_scan = 2 * macs * H * W / 1e9
    gflop_iter = 3 * 2 * macs * 100 * 50 * 50 / 1e9  # forward + the two backward passes
    print(f"paper net: {macs} multiply-adds per pixel; {gflop_iter:.0f} GFLOP per 100-tile iteration, "
          f"{gflop_scan:.0f} GFLOP per {H}x{W} scan; torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = fp32_peak()
    print(f"FP32 peak (cpu_peak.c): {peak:.0f} GFLOP/s" if peak else "FP32 peak: probe not built here")

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="plaquenet-bench-") as tmp:
        work = Path(tmp)
        write_tiles(work, np.random.default_rng(0))
        precisions = ["fp32"] + [p for p in args.precision.split(",") if p and p != "fp32"]
        ours = {p: torch_figures(work, args.iters, args.scans, p) for p in precisions}
        os.chdir(cwd)
        theirs = caffe_figures(args.caffe_root.resolve(), work, args.iters, args.scans)

    plain = {p: plain_torch_figures(args.iters, args.scans, p) for p in precisions}

    rows = [(f"torch engine {p}", figures) for p, figures in ours.items()]
    rows += [(f"plain PyTorch {p}", figures) for p, figures in plain.items()]
    rows += [("real Caffe", theirs)] if theirs else []
    print(f"\nGFLOP/s and shares of the peak count the direct convolutions' FLOPs; the engine's FFT ones (NNPACK)"
          " do fewer")
    print(f"{'':20} {'s/iteration':>12} {'GFLOP/s':>8} {'s/scan':>8} {'GFLOP/s':>8}")
    for name, (it, sc) in rows:
        share = (f"   ({100 * gflop_iter / it / peak:.0f}% / {100 * gflop_scan / sc / peak:.0f}% of FP32 peak)"
                 if peak else "")   # of the nominal FLOPs: FFT convolutions (NNPACK) do fewer, so over 100 % can be
        print(f"{name:20} {it:12.3f} {gflop_iter / it:8.1f} {sc:8.3f} {gflop_scan / sc:8.1f}{share}")
    for p, (it, sc) in ours.items():
        reference = plain[p]
        print(f"torch {p} against plain PyTorch {p} (channels-last): {reference[0] / it:.2f}x per iteration, "
              f"{reference[1] / sc:.2f}x per scan (1 = as fast)")
    if theirs:
        for p, (it, sc) in ours.items():
            print(f"torch {p} over real Caffe: {theirs[0] / it:.2f}x per iteration, {theirs[1] / sc:.2f}x per scan")


if __name__ == "__main__":
    main()
