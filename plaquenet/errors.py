"""The one exception type for problems with the user's input."""

from typing import Optional

from .typing import PathLike


class InputError(Exception):
    """Bad input (a file, a flag, a cohort): the message is one line that names
    the file and the problem. The CLI prints it and exits non-zero; nothing
    half-written is left behind (see `plaquenet.atomic`)."""

    def __init__(self, path: Optional[PathLike], problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)
