"""prototxt files (protobuf text format) in and out, through protobuf's own
`text_format`: a net (`NetParameter`) or a solver (`SolverParameter`)."""

from pathlib import Path
from typing import Type, TypeVar

from google.protobuf import text_format
from google.protobuf.message import Message

from ..atomic import atomic_path
from ..errors import InputError
from ..typing import PathLike
from . import caffe_pb2

M = TypeVar("M", bound=Message)


def parse_prototxt(text: str, message: M, source: PathLike = "<string>") -> M:
    """Merge prototxt `text` into `message` and return it. A syntax error is an
    InputError "SOURCE:LINE:COLUMN: problem"."""
    try:
        text_format.Merge(text, message)
    except text_format.ParseError as e:
        raise InputError(_where(source, e), _problem(e)) from None
    return message


def read_prototxt(path: PathLike, message_type: Type[M]) -> M:
    """`message_type` (e.g. caffe_pb2.NetParameter) read from a prototxt file."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        # a UnicodeDecodeError has no strerror
        raise InputError(path, f"cannot read prototxt ({getattr(e, 'strerror', None) or e})") from None
    return parse_prototxt(text, message_type(), source=path)


def read_net(path: PathLike) -> "caffe_pb2.NetParameter":
    return read_prototxt(path, caffe_pb2.NetParameter)


def read_solver(path: PathLike) -> "caffe_pb2.SolverParameter":
    return read_prototxt(path, caffe_pb2.SolverParameter)


def prototxt_text(message: Message) -> str:
    """Text format as Caffe writes it (two-space indent, fields in number order)."""
    return text_format.MessageToString(message)


def write_prototxt(path: PathLike, message: Message) -> None:
    """Write `message` as a prototxt file, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(prototxt_text(message))


def _where(source: PathLike, error: text_format.ParseError) -> str:
    line, column = error.GetLine(), error.GetColumn()
    return f"{source}:{line}:{column}" if line else str(source)


def _problem(error: text_format.ParseError) -> str:
    # text_format puts "LINE:COL : " in front of its message; the location is
    # already in the path part, and the package is ours, not Caffe's.
    problem = str(error)
    head, sep, rest = problem.partition(" : ")
    if sep and head.replace(":", "").isdigit():
        problem = rest
    return problem.replace("plaquenet.caffe.", "caffe.")
