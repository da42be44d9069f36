"""Tiny FLAIR scans for the stages after import (`import tiny_cohort`: tests/helpers
is on pytest's path); the `cohort` fixture of tests/conftest.py is five of them."""

from typing import Sequence

import numpy as np

from plaquenet.cohort import Scan


def tiny_scan(patient: str, rng: np.random.Generator, lesion_slices: Sequence[int] = (1, 2)) -> Scan:
    """(4, 16, 16) volume: noisy tissue, plaques brighter than it on some slices."""
    flair = rng.uniform(100, 300, size=(4, 16, 16)).astype(np.float32)
    mask = np.zeros((4, 16, 16), np.uint8)
    for s in lesion_slices:
        r, c = rng.integers(2, 11, size=2)
        mask[s, r:r + 3, c:c + 4] = 1
    flair[mask == 1] += rng.uniform(150, 400, size=int(mask.sum()))
    return Scan(patient, flair, mask, (5.0, 0.5, 0.5), np.eye(4))
