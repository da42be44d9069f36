"""glibc's `rand()` and libstdc++'s `std::random_shuffle`, which Caffe's
HDF5Data uses to shuffle (hdf5_data_layer.cpp: `std::random_shuffle(begin,
end)`, no generator argument).

Nothing in Caffe seeds `rand()` (no `srand` anywhere in libcaffe or the
`caffe` tool; `random_seed` seeds only Caffe's boost generator), so every
Caffe process draws the same stream: glibc's default TYPE_3 generator with
seed 1. One stream serves the whole process: every HDF5Data layer of the
train net and the test nets draws from it, at construction in the order the
nets are built, then in the order the layers wrap around their data.

glibc (stdlib/random_r.c): r[0] = seed; r[i] = 16807 r[i-1] mod (2^31 - 1)
for i = 1..30; r[i] = r[i-31] for i = 31..33; r[i] = r[i-31] + r[i-3]
(mod 2^32) from i = 34 on; the k-th rand() is r[k + 344] >> 1 (the first
310 values past the seeding are discarded).

libstdc++ (bits/stl_algo.h, the same in gcc 10, which built Debian's
libcaffe, and in gcc 12): for i = 1 .. n-1: j = rand() % (i + 1); swap
elements i and j. A range of n elements takes n - 1 draws (none for n <= 1).
"""

from typing import List, Sequence

import numpy as np

_MASK = 0xFFFFFFFF
_DEGREE, _SEPARATION = 31, 3


class GlibcRand:
    """The rand() stream of a process that never called srand (seed 1), or of
    srand(seed). `window` is the generator's whole state: its last 31 values,
    oldest first (what `state()` saves and `GlibcRand.from_state` restores)."""

    def __init__(self, seed: int = 1) -> None:
        seed = seed & _MASK or 1                           # glibc: seed 0 means 1
        r, word = [seed], seed - 2**32 if seed >= 2**31 else seed   # int32_t word = seed
        for _ in range(1, _DEGREE):
            hi = -(-word // 127773) if word < 0 else word // 127773   # C's division truncates
            word = 16807 * (word - hi * 127773) - 2836 * hi     # 16807 word mod (2^31 - 1), Schrage's method
            word += 2147483647 if word < 0 else 0
            r.append(word)
        r += r[:_SEPARATION]                               # r[31..33]
        self.window: List[int] = r[-_DEGREE:]
        self._advance(310)

    @classmethod
    def from_state(cls, window: Sequence[int]) -> "GlibcRand":
        if len(window) != _DEGREE or not all(isinstance(v, int) and 0 <= v <= _MASK for v in window):
            raise ValueError(f"a glibc rand() state is {_DEGREE} unsigned 32-bit integers")
        rand = cls.__new__(cls)
        rand.window = list(window)
        return rand

    def state(self) -> List[int]:
        return list(self.window)

    def _advance(self, n: int) -> List[int]:
        w = self.window
        for _ in range(n):
            w.append((w[-_DEGREE] + w[-_SEPARATION]) & _MASK)
        drawn = w[_DEGREE:]
        self.window = w[-_DEGREE:]
        return drawn

    def rand(self, n: int) -> List[int]:
        """The next `n` values of rand(), each in [0, RAND_MAX = 2^31 - 1]."""
        return [v >> 1 for v in self._advance(n)]

    def random_shuffle(self, values: np.ndarray) -> None:
        """std::random_shuffle(values.begin(), values.end()), in place."""
        n = len(values)
        if n <= 1:
            return
        items = values.tolist()
        for i, r in enumerate(self.rand(n - 1), 1):
            j = r % (i + 1)
            items[i], items[j] = items[j], items[i]
        values[:] = items
