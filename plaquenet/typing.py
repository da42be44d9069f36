"""Type aliases the library's annotations share (as torchio's `typing.py`).

Runs on Python 3.9 (pycaffe's): `typing.Union`, no `X | Y` at run time."""

import os
from typing import Union

# A file or folder as the library's functions take it: a str or any
# os.PathLike (pathlib.Path, ...). Functions return pathlib.Path.
PathLike = Union[str, "os.PathLike[str]"]
