"""`python -m plaquenet`, as the `plaquenet` command: what torchrun starts
(`torchrun --nproc-per-node N -m plaquenet train --solver S`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
