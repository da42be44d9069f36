"""Speed and memory of the exact threshold sweep (§3.3) over 1,000 full scans.

    .venv/bin/python bench/bench_sweep.py [--scans 1000] [--check]

Streams N synthetic 448x512 network outputs (sigmoid of a noisy logit, a few
disc-shaped lesions per scan, almost every value distinct) from a seeded
generator, scan i drawn again identically in pass 2, never all in memory.
Prints scans, pixels, the sweep's own seconds (generation excluded), the
refined bins and peak RSS. Goal: under 10 s on 2 cores and under 2 GB for
1,000 scans (225 million probabilities). --check also runs the value-table
sweep (memory grows with the pixels: use with a few dozen scans) and
asserts the same threshold and counts.
"""

import argparse
import resource
import time

import numpy as np

from plaquenet.evaluate import sweep as sweep_module
from plaquenet.evaluate.sweep import SweepHistogram, best_f_threshold, best_f_threshold_two_pass, counts_at, \
    pool_tables, value_table

H, W = 448, 512
YY, XX = np.mgrid[:H, :W]


def synthetic_scan(seed: int, i: int):
    """(output float32 (H, W) in [0, 1], truth bool (H, W)) of scan i."""
    rng = np.random.default_rng([seed, i])
    truth = np.zeros((H, W), bool)
    for _ in range(rng.integers(1, 6)):
        cy, cx, r = rng.integers(60, H - 60), rng.integers(60, W - 60), rng.integers(3, 15)
        y0, x0 = cy - r, cx - r
        truth[y0:cy + r, x0:cx + r] |= (YY[y0:cy + r, x0:cx + r] - cy) ** 2 + (XX[y0:cy + r, x0:cx + r] - cx) ** 2 < r * r
    logit = rng.standard_normal((H, W), dtype=np.float32)
    logit *= 2.5
    logit += np.where(truth, np.float32(2.0), np.float32(-7.0))
    np.negative(logit, out=logit)
    np.exp(logit, out=logit)
    logit += 1
    return np.reciprocal(logit, out=logit), truth


class Timed:
    """The scans of one pass, with the time spent drawing them."""

    def __init__(self, seed, n):
        self.seed, self.n, self.seconds = seed, n, 0.0

    def __iter__(self):
        for i in range(self.n):
            start = time.perf_counter()
            scan = synthetic_scan(self.seed, i)
            self.seconds += time.perf_counter() - start
            yield scan


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="compare with the value-table sweep")
    args = parser.parse_args()

    rss_before = peak_rss_mb()
    passes, refined = [], []
    original = sweep_module._best_in_bins

    def counted(edges, which, rescan):  # how many bins pass 2 had to resolve
        refined.append(len(which))
        return original(edges, which, rescan)
    sweep_module._best_in_bins = counted

    def rescan():
        passes.append(Timed(args.seed, args.scans))
        return passes[-1]

    start = time.perf_counter()
    histogram = SweepHistogram()
    passes.append(Timed(args.seed, args.scans))
    for output, truth in passes[0]:
        histogram.add(output, truth)
    pass1 = time.perf_counter() - start - passes[0].seconds
    start = time.perf_counter()
    choice = best_f_threshold_two_pass(histogram, rescan)
    pass2 = time.perf_counter() - start - sum(p.seconds for p in passes[1:])
    drawing = sum(p.seconds for p in passes)

    print(f"scans {args.scans}, pixels {args.scans * H * W:,}")
    print(f"sweep {pass1 + pass2:.2f} s (pass 1 {pass1:.2f} s, pass 2 {pass2:.2f} s over "
          f"{len(passes) - 1} re-read(s), bins refined {refined}); drawing the scans {drawing:.2f} s")
    print(f"threshold {choice.threshold!r}: TP {choice.tp}, FP {choice.fp}, FN {choice.fn}, F {choice.f1:.4f}")
    print(f"peak RSS {peak_rss_mb():.0f} MB (before the sweep {rss_before:.0f} MB)")

    if args.check:
        table = pool_tables(value_table(*scan) for scan in Timed(args.seed, args.scans))
        t = best_f_threshold(table)
        assert (choice.threshold, (choice.tp, choice.fp, choice.fn)) == (t, counts_at(table, t)), (choice, t)
        print(f"value-table sweep agrees ({len(table):,} distinct values); peak RSS now {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
