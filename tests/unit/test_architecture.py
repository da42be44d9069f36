"""The import rules of docs/ARCHITECTURE.md, checked on the source: stages
import the library, never each other or the CLI; experiments (the layer
above the stages) compose them, and no stage or library module imports an
experiment; engines know nothing of evaluation; the modules pycaffe's Python
runs never import torch."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "plaquenet"
STAGES = {"phantom", "ingest", "tiles", "train", "score", "segment", "export", "nnunet", "brainmask"}
TORCH_FREE = ("engines/caffe.py", "engines/__init__.py", "engines/run.py", "engines/signals.py", "engines/snapshots.py",
              "score.py", "cohort.py", "tiles.py", "ingest.py", "paths.py", "caffe_layers.py", "nnunet.py", "brain.py",
              "skull_strip.py")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, at_import_time: bool = False):
    """Absolute names of the modules (and imported names) a file imports;
    `at_import_time`: only the module-level statements (not imports inside functions)."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in (tree.body if at_import_time else ast.walk(tree)):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


def _sources():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "caffe_pb2.py")


def _stage_of(name: str):
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_nothing_imports_the_cli_and_no_stage_imports_another(path):
    own = _stage_of(_module_name(path))
    composes = path == PACKAGE / "cli.py" or "experiments" in path.relative_to(PACKAGE).parts
    entry_point = path == PACKAGE / "__main__.py"   # `python -m plaquenet` (torchrun -m) is the CLI itself
    for name in _imports(path):
        assert entry_point or (name != "plaquenet.cli" and not name.startswith("plaquenet.cli.")), \
            f"{path} imports the CLI"
        other = _stage_of(name) if name.startswith("plaquenet.") else None
        assert composes or other is None or other == own, f"{path} (stage {own}) imports the stage {other}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_the_cli_imports_the_experiments(path):
    if path == PACKAGE / "cli.py" or "experiments" in path.relative_to(PACKAGE).parts:
        return
    for name in _imports(path):
        assert not name.startswith("plaquenet.experiments"), f"{path} imports {name}, the layer above it"


@pytest.mark.parametrize("path", sorted((PACKAGE / "engines").rglob("*.py")), ids=lambda p: p.name)
def test_engines_import_neither_evaluation_nor_stages(path):
    for name in _imports(path):
        assert not name.startswith("plaquenet.evaluate"), f"{path} imports {name}"
        assert _stage_of(name) is None, f"{path} imports the stage {name}"


@pytest.mark.parametrize("relative", TORCH_FREE)
def test_modules_run_beside_pycaffe_do_not_import_torch(relative):
    names = set(_imports(PACKAGE / relative, at_import_time=True))  # get_engine("torch") imports it when asked
    assert not any(n == "torch" or n.startswith("torch.") or n.startswith("plaquenet.engines.torch") for n in names)


def test_only_the_engines_package_names_an_engine_module():
    for path in _sources():
        if "engines" in path.relative_to(PACKAGE).parts:
            continue
        for name in _imports(path):
            assert not name.startswith(("plaquenet.engines.torch", "plaquenet.engines.caffe")), \
                f"{path} picks an engine itself ({name}): use plaquenet.engines.get_engine"
