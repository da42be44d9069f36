"""Progress bars on a terminal, silence in CI and in pipes."""

import os
import sys
from typing import Any, Iterable, NoReturn, Optional, TypeVar, overload

from tqdm import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return bool(os.environ.get("CI")) or not sys.stderr.isatty()


@overload
def progress(iterable: Iterable[T], **kwargs: Any) -> "tqdm[T]": ...
@overload
def progress(iterable: None = None, **kwargs: Any) -> "tqdm[NoReturn]": ...   # a bar to update()


def progress(iterable: Optional[Iterable[T]] = None, **kwargs: Any) -> "tqdm[Any]":
    """tqdm, disabled unless stderr is a terminal (and never under CI=true)."""
    kwargs.setdefault("disable", quiet())
    kwargs.setdefault("leave", False)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
