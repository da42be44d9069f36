"""Time and memory of `plaquenet score` on a small synthetic cohort, split into
network inference and everything else (sweep, metrics, lesions, figures, report),
and scans scored per second one patient at a time, batched, and over workers.

    .venv/bin/python bench/bench_score.py [--patients 4] [--slices 6] [--tiles 512] [--threads N]
                                          [--modes one,default,batched,workers] [--batch-slices 4] [--workers 2]

Builds (once, cached under /tmp/plaquenet-bench-score) a cohort of P patients
x S axial 448x512 slices with a few bright plaques on every slice (so every
slice is scored, §4.1), half train, half test, plus a Caffe HDF5Data file of
50x50 training tiles (the §4.3 tiles' threshold); and the paper's deploy net
(prototxt/plaquenet_deploy.prototxt) with random filler weights written as a
.caffemodel. Runs `score_with_forward` with the torch engine's forward (`get_engine("torch").load_deploy`), timing
every forward call. Prints slices and tiles scored, total seconds, seconds per
scored slice for inference and for the rest, and peak RSS; then one row per
mode (results.json "timing": scans scored per second of the evaluation):

    one       every slice and every tile forwarded alone (the path before #15 item 3)
    default   the engine's default batch (CPU: one 448x512 slice's pixels per call, so
              91 tiles of 50x50 per call), the next patient read while one forwards
    batched   --batch-slices slices per call
    workers   --workers processes, each with cores / workers threads, default batch

Every mode must give the same threshold and test F (checked: the run fails otherwise).
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from plaquenet.caffe.prototxt import read_net
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.cohort import Scan, split_file, write_cohort, write_split
from plaquenet.engines import get_engine, with_batch_slices
from plaquenet.engines.torch.net import TEST, Net, net_to_proto
from plaquenet.evaluate.parallel import Workers
from plaquenet.score import ForwardLoader, score_with_forward

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "prototxt" / "plaquenet_deploy.prototxt"
CACHE = Path("/tmp/plaquenet-bench-score")
S_H_W = (448, 512)
YY, XX = np.mgrid[:S_H_W[0], :S_H_W[1]]


def synthetic_scan(patient: str, slices: int, rng) -> Scan:
    """(S, 448, 512) FLAIR: noisy tissue, 1-4 bright discs (plaques) per slice."""
    h, w = S_H_W
    flair = rng.normal(300, 40, size=(slices, h, w)).astype(np.float32)
    mask = np.zeros((slices, h, w), np.uint8)
    for s in range(slices):
        for _ in range(rng.integers(1, 5)):
            cy, cx, r = rng.integers(80, h - 80), rng.integers(80, w - 80), rng.integers(3, 12)
            mask[s][(YY - cy) ** 2 + (XX - cx) ** 2 < r * r] = 1
    flair[mask == 1] += 250
    return Scan(patient, np.clip(flair, 0, None), mask, (5.0, 0.45, 0.45), np.eye(4))


def build_cohort(patients: int, slices: int, tiles: int) -> Path:
    cohort_dir = CACHE / f"cohort-{patients}x{slices}-t{tiles}"
    if split_file(cohort_dir).is_file():  # written last: the cohort is complete
        return cohort_dir
    rng = np.random.default_rng(0)
    scans = [synthetic_scan(f"P{i:03d}", slices, rng) for i in range(patients)]
    write_cohort(cohort_dir, scans, name="bench")
    if tiles:
        (cohort_dir / "tiles").mkdir(exist_ok=True)
        data = rng.random((tiles, 1, 50, 50)).astype(np.float32)
        label = (data > 0.9).astype(np.float32)
        with h5py.File(cohort_dir / "tiles" / "train_0.h5", "w") as f:
            f["data"], f["label"] = data, label
    ids = [s.patient for s in scans]
    write_split(cohort_dir, {"train": ids[:patients // 2], "test": ids[patients // 2:]})
    return cohort_dir


def random_snapshot() -> Path:
    path = CACHE / "random_deploy.caffemodel"
    if not path.is_file():
        net = Net(read_net(DEPLOY), TEST, source=DEPLOY, seed=0)
        write_caffemodel(path, net_to_proto(net))
    return path


def run_mode(mode, cohort_dir, snapshot, batch_slices, workers):
    """results.json's content of one scoring in `mode`."""
    net = get_engine("torch").load_deploy(DEPLOY, snapshot)
    spread = None
    if mode == "batched":
        net = with_batch_slices(net, batch_slices)
    elif mode == "workers":
        spread = Workers(workers, ForwardLoader("torch", str(DEPLOY), str(snapshot)))
    with tempfile.TemporaryDirectory(prefix="bench-score-", dir=CACHE) as work:
        results = score_with_forward(net, cohort_dir, Path(work) / "score", workers=spread)
    return results


def print_modes(rows):
    print()
    print("| mode | workers | slices per call (448x512) | seconds | scans | scans/s | slices forwarded/s | tiles |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, t in rows:
        print(f"| {mode} | {t['workers']} | {t['batch_slices'] if mode != 'one' else '1 (tiles 1)'} | "
              f"{t['seconds']:.1f} | {t['scans']} | {t['scans_per_second']:.3f} | "
              f"{t['slices_forwarded'] / t['seconds']:.3f} | {t['tiles_forwarded']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--slices", type=int, default=6)
    parser.add_argument("--tiles", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--modes", default="one,default,batched,workers",
                        help="comma list of one, default, batched, workers (empty: only the split above)")
    parser.add_argument("--batch-slices", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    CACHE.mkdir(parents=True, exist_ok=True)
    cohort_dir = build_cohort(args.patients, args.slices, args.tiles)
    net = get_engine("torch").load_deploy(DEPLOY, random_snapshot())

    calls = {"slices": 0, "tiles": 0, "slice_s": 0.0, "tile_s": 0.0}

    def forward(image_hw):
        t = time.perf_counter()
        output = net(image_hw)
        kind = "slice" if image_hw.shape == S_H_W else "tile"
        calls[f"{kind}_s"] += time.perf_counter() - t
        calls[f"{kind}s"] += 1
        return output

    with tempfile.TemporaryDirectory(prefix="bench-score-", dir=CACHE) as work:
        t = time.perf_counter()
        results = score_with_forward(forward, cohort_dir, Path(work) / "score")
        total = time.perf_counter() - t
    scored = results["counts"]["train"]["scans"] + results["counts"]["test"]["scans"]
    inference = calls["slice_s"] + calls["tile_s"]
    rest = total - inference
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 1 << 20)
    print(f"torch threads          {torch.get_num_threads()}")
    print(f"slices scored          {scored} (448x512; forwards: {calls['slices']} slices, {calls['tiles']} tiles 50x50)")
    print(f"seconds total          {total:.2f}")
    print(f"  inference            {inference:.2f}  (slices {calls['slice_s']:.2f}: "
          f"{calls['slice_s'] / max(calls['slices'], 1):.3f} s per slice; tiles {calls['tile_s']:.2f})")
    print(f"  rest                 {rest:.2f}  ({rest / scored:.3f} s per scored slice: sweep, metrics, lesions, "
          "figures, report)")
    print(f"peak RSS               {peak_mib:.0f} MiB")
    print(f"test F (random weights) {results['test']['pixel']['f1']:.3f}")

    rows = []
    for mode in [m for m in args.modes.split(",") if m]:
        if mode == "one":   # the run above: its forward has no `many`, so one slice or tile per call
            rows.append((mode, results["timing"]))
            continue
        done = run_mode(mode, cohort_dir, random_snapshot(), args.batch_slices, args.workers)
        if (done["threshold"], done["test"]["pixel"]) != (results["threshold"], results["test"]["pixel"]):
            raise SystemExit(f"mode {mode}: threshold {done['threshold']} or test F differs from the first run's")
        rows.append((mode, done["timing"]))
    print_modes(rows)


if __name__ == "__main__":
    main()
