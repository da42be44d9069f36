"""pycaffe in Debian bullseye runs Python 3.9 and imports our code: no 3.10+
syntax (match, parenthesised context managers...) and no `X | Y` unions in
annotations that are evaluated at run time."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for top in ("plaquenet", "tools", "eval", "data_prep", "bench") for p in (REPO / top).rglob("*.py")
                 if p.name != "caffe_pb2.py")


def _annotations(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            yield from (a.annotation for a in args if a.annotation is not None)
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def _postponed(tree) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and any(a.name == "annotations" for a in n.names)
               for n in tree.body)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_parses_as_python_39(path):
    tree = ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9))
    if _postponed(tree):
        return
    for annotation in _annotations(tree):
        unions = [n for n in ast.walk(annotation) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)]
        assert not unions, f"{path.name}:{annotation.lineno}: `X | Y` annotation needs Python 3.10 at run time"
