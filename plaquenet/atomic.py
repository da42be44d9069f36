"""Write-then-rename, so that a failed or killed stage leaves only whole files."""

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from .typing import PathLike


def refuse_existing(path: PathLike, force: bool) -> None:
    """An output that exists is replaced only when the user said --force."""
    from .errors import InputError

    if Path(path).exists() and not force:
        raise InputError(path, "already exists (use --force to replace it)")


@contextlib.contextmanager
def atomic_path(path: PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (file or directory) to write into;
    on success it is renamed onto `path`, on any exception it is removed.

    The temporary name starts with '.' and ends with '.partial', so a killed
    process leaves at most a hidden '*.partial' that no stage ever reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    _remove(tmp)
    try:
        yield tmp
        if path.exists():
            if not overwrite:
                raise FileExistsError(path)
            if path.is_dir() and not path.is_symlink():
                # A directory cannot be replaced by rename in one step: move the
                # old one aside first, then drop it once the new one is in place.
                old = path.with_name(f".{path.name}.{os.getpid()}.old")
                os.replace(path, old)
                try:
                    os.replace(tmp, path)
                except BaseException:
                    os.replace(old, path)  # put the old one back: never neither
                    raise
                _remove(old)
                return
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    elif p.exists() or p.is_symlink():
        p.unlink()
