"""Progress bars on a terminal, silence in CI and in pipes."""

import os
import sys

from tqdm import tqdm


def quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


def progress(iterable=None, **kwargs):
    """tqdm, disabled unless stderr is a terminal (and never under CI=true)."""
    kwargs.setdefault("disable", quiet())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
