"""`python eval/score.py --snapshot X.caffemodel [...]` is `plaquenet score --snapshot X.caffemodel [...]`:
full-scan inference, threshold on the training scans, F-measure, report (see `plaquenet score --help`)."""

import sys

from plaquenet.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
