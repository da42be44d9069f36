"""Speed of `plaquenet tiles` (§4.1 protocol): 1,000 training slices of 448x512.

    .venv/bin/python bench/bench_tiles.py [--root /tmp/plaquenet-bench-tiles]

Builds once (and reuses) a synthetic cohort under ROOT: 50 training patients
x 20 slices with 2-8 blob lesions each, plus 2 small test patients; a cheap
numpy/cv2 drawing, not the phantom module. Then times make_tiles and prints
slices, tiles, seconds and slices/s. Goal: under 20 s on 2 cores.
"""

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from plaquenet.cohort import Scan, cohort_file, cohort_name, write_cohort
from plaquenet.tiles import make_tiles

NAME = "bench-tiles-v1"
TRAIN, TEST, SLICES, H, W = 50, 2, 20, 448, 512


def synthetic_patient(patient, n_slices, rng):
    """(S, 448, 512) FLAIR-like volume: bright scalp ring, eyes, grey brain, bright blobs as lesions."""
    flair = rng.uniform(0, 20, (n_slices, H, W)).astype(np.float32)
    mask = np.zeros((n_slices, H, W), np.uint8)
    for s in range(n_slices):
        img = flair[s]
        cv2.ellipse(img, (W // 2, H // 2), (200, 180), 0, 0, 360, 900, -1)  # scalp and skull
        cv2.ellipse(img, (W // 2, H // 2), (185, 165), 0, 0, 360, 350, -1)  # brain
        for cx in (W // 2 - 60, W // 2 + 60):
            cv2.circle(img, (cx, H // 2 - 150), 22, 950, -1)  # eyes
        for _ in range(rng.integers(2, 9)):
            center = (int(rng.integers(W // 2 - 130, W // 2 + 130)), int(rng.integers(H // 2 - 110, H // 2 + 110)))
            axes = (int(rng.integers(2, 14)), int(rng.integers(2, 14)))
            cv2.ellipse(mask[s], center, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        img[mask[s] > 0] = 800
    flair += rng.uniform(0, 30, flair.shape).astype(np.float32)
    return Scan(patient=patient, flair_shw=flair, mask_shw=mask, voxel_mm=(5.0, 0.45, 0.45), affine_whs=np.eye(4))


def bench_cohort(root: Path) -> Path:
    if cohort_file(root).is_file() and cohort_name(root) == NAME:
        return root
    rng = np.random.default_rng(0)
    train = [f"P{i:03d}" for i in range(TRAIN)]
    test = [f"P{i:03d}" for i in range(TRAIN, TRAIN + TEST)]
    scans = (synthetic_patient(p, SLICES if p in train else 4, rng) for p in train + test)
    write_cohort(root, scans, name=NAME)
    (root / "split.json").write_text(json.dumps({"seed": None, "train": train, "test": test}))
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/plaquenet-bench-tiles"))
    parser.add_argument("--lmdb", action="store_true", help="also time the LMDB copy")
    args = parser.parse_args()
    t0 = time.perf_counter()
    cohort = bench_cohort(args.root)
    print(f"cohort ready in {time.perf_counter() - t0:.1f} s: {cohort}")
    t0 = time.perf_counter()
    summary = make_tiles(cohort, cohort / "tiles", lmdb=args.lmdb)
    seconds = time.perf_counter() - t0
    print(summary)
    print(f"slices {summary.train_scans}  tiles {summary.tiles}  seconds {seconds:.2f}  "
          f"slices/s {summary.train_scans / seconds:.1f}  (goal: 1000 slices < 20 s on 2 cores)")


if __name__ == "__main__":
    main()
