"""Brain extraction on phantom volumes: Dice against the phantom's true brain
(parenchyma and CSF) and seconds per volume, HD-BET's fast mode on the CPU.

    .venv/bin/python bench/bench_brain.py [SLICES ...]   (default: 20 33, patients 0 and 1)
"""

import sys
import time

from plaquenet.brain import brain_mask, dice, hd_bet, true_brain
from plaquenet.phantom import phantom_patient
from plaquenet.phantom.regions import REGIONS


def main(slice_counts):
    extractor = hd_bet(mode="fast")
    print("slices  patient  voxel_mm                 dice   seconds")
    for slices in slice_counts:
        for patient in (0, 1):
            scan = phantom_patient(seed=0, n_slices=slices, patient=patient)
            started = time.perf_counter()
            mask = brain_mask(scan.flair_shw, scan.voxel_mm, extractor)
            seconds = time.perf_counter() - started
            score = dice(mask, true_brain(scan.regions_shw, REGIONS))
            print(f"{slices:6d}  {patient:7d}  {str(scan.voxel_mm):23s}  {score:.3f}  {seconds:7.1f}", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20, 33])
