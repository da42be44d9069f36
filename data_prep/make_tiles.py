"""Paper §4.1 tiles for Caffe's HDF5Data: the same as `plaquenet tiles ...`.

    python data_prep/make_tiles.py --cohort data/demo [--out DIR] [--tile 50]
        [--negative-share 0.333] [--test-fraction 0.2] [--seed 0] [--lmdb] [--force]

Run it from the repository root: train.txt lists the .h5 files relative to
the working directory, as Caffe reads them.
"""

import sys

from plaquenet.cli import main

if __name__ == "__main__":
    sys.exit(main(["tiles"] + sys.argv[1:]))
