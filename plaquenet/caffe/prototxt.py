"""prototxt files (protobuf text format) in and out, through protobuf's own
`text_format`: a net (`NetParameter`) or a solver (`SolverParameter`).

Read as Caffe reads them (src/caffe/util/io.cpp ReadProtoFromTextFile calls
protobuf's TextFormat::Parse): a field that is not repeated given twice is an
error, not "the last one wins" (that is text_format.Merge); a solver is then
upgraded as upgrade_proto.cpp's ReadSolverParamsFromTextFileOrDie does."""

import re
from pathlib import Path
from typing import Optional, Type, TypeVar

from google.protobuf import text_format
from google.protobuf.message import Message

from ..atomic import atomic_path
from ..errors import InputError
from ..typing import PathLike
from . import caffe_pb2

M = TypeVar("M", bound=Message)


def parse_prototxt(text: str, message: M, source: PathLike = "<string>") -> M:
    """Parse prototxt `text` into the empty `message` and return it, as
    TextFormat::Parse does. A syntax error, or a field that is not repeated
    given twice, is an InputError "SOURCE:LINE:COLUMN: problem"."""
    try:
        text_format.Parse(text, message)
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


# upgrade_proto.cpp UpgradeSolverType: the old enum's values as `type` strings.
_SOLVER_TYPE_NAMES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                      "ADADELTA": "AdaDelta", "ADAM": "Adam"}


def read_solver(path: PathLike) -> "caffe_pb2.SolverParameter":
    """A solver prototxt as Caffe reads it: the deprecated `solver_type` enum
    is upgraded to the string `type` (UpgradeSolverType); both given is an
    InputError, as Caffe's CHECK there."""
    param = read_prototxt(path, caffe_pb2.SolverParameter)
    if param.HasField("solver_type"):
        if param.HasField("type"):
            raise InputError(field_location(path, "solver_type"),
                             "give the solver's type or the old solver_type, not both (Caffe refuses both)")
        param.type = _SOLVER_TYPE_NAMES[caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)]
        param.ClearField("solver_type")
    return param


def prototxt_text(message: Message) -> str:
    """Text format as Caffe writes it (two-space indent, fields in number order)."""
    return text_format.MessageToString(message)


def write_prototxt(path: PathLike, message: Message) -> None:
    """Write `message` as a prototxt file, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(prototxt_text(message))


# A prototxt token: a comment, a quoted string, a name or number, or one other character.
_TOKEN = re.compile(r"""#[^\n]*|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|[\w.+-]+|\S""")


def field_line(text: str, field: str) -> Optional[int]:
    """The line (from 1) where the top-level `field` is first given in prototxt
    `text`; None if it is not (fields of nested messages do not count)."""
    depth, previous = 0, ""
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("{", "<"):
            depth += 1
        elif token in ("}", ">"):
            depth -= 1
        elif depth == 0 and token == field and previous != ":":
            return text.count("\n", 0, match.start()) + 1
        if not token.startswith("#"):
            previous = token
    return None


def field_location(path: PathLike, field: str) -> str:
    """Where the top-level `field` is in the prototxt file at `path`, as
    PATH:LINE, for errors found after parsing; PATH alone where the file or the
    field is not found."""
    try:
        line = field_line(Path(path).read_text(), field)
    except (OSError, UnicodeDecodeError):
        line = None
    return f"{path}:{line}" if line else str(path)


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
    # A field given twice, in the words of Caffe's (C++) parser.
    twice = re.fullmatch(r'Message type "(.*)" should not have multiple "(.*)" fields\.', problem)
    if twice:
        problem = f'Non-repeated field "{twice.group(2)}" is specified multiple times (in {twice.group(1)})'
    return problem.replace("plaquenet.caffe.", "caffe.")
