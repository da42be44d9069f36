"""Paper §4.1 tiles for Caffe's HDF5Data: the same as `plaquenet tiles ...`.

    python data_prep/make_tiles.py --cohort data/demo [--out DIR] [--tile 50]
        [--negative-share 0.333] [--test-fraction 0.2] [--seed 0] [--lmdb] [--force]

Run it from the repository root: train.txt lists the .h5 files relative to
the working directory, as Caffe reads them. Run with any Python: where
plaquenet is not importable (the system Python), the script re-runs itself
with the repository's .venv/bin/python (`make venv`).
"""

import os
import sys
from pathlib import Path

try:
    from plaquenet.cli import main
except ImportError:
    venv_python = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
    if not venv_python.is_file() or os.environ.get("PLAQUENET_REEXEC"):
        sys.exit(f"{sys.argv[0]}: error: plaquenet is not installed for {sys.executable}; run `make venv` first")
    os.environ["PLAQUENET_REEXEC"] = "1"  # once: the venv's Python must import it
    os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])

if __name__ == "__main__":
    sys.exit(main(["tiles", *sys.argv[1:]]))
