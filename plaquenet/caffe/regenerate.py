"""Regenerate `caffe_pb2.py` from `caffe.proto` with protobuf's own protoc
(`make proto`), and record what it was generated from.

    python -m plaquenet.caffe.regenerate                 # protoc on PATH
    python -m plaquenet.caffe.regenerate --compare-with /path/to/BVLC/caffe.proto

The stamp file `caffe_pb2.sha256` records the SHA-256 of `caffe.proto` and of
the serialized FileDescriptorProto embedded in `caffe_pb2.py`. The unit test
checks both, so an edit of either file without `make proto` fails even where
no protoc is installed; where one is, the test also regenerates and compares
the descriptors themselves.

`--compare-with` checks every message, field (name, number, label, type,
default, packed) and enum value of our subset against Caffe's own
caffe.proto, and lists what the subset leaves out."""

import argparse
import ast
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Union

from ..typing import PathLike

if TYPE_CHECKING:
    from google.protobuf import descriptor_pb2

HERE = Path(__file__).resolve().parent
PROTO = HERE / "caffe.proto"
PB2 = HERE / "caffe_pb2.py"
PYI = HERE / "caffe_pb2.pyi"  # the message classes' types, for mypy
STAMP = HERE / "caffe_pb2.sha256"
ROOT = HERE.parent.parent  # protoc runs from here so the module is plaquenet.caffe.caffe_pb2
PROTO_REL = PROTO.relative_to(ROOT).as_posix()


def protoc() -> str:
    exe = shutil.which("protoc")
    if exe is None:
        raise SystemExit("protoc not found: apt-get install protobuf-compiler "
                         "(or run protoc from `pip download grpcio-tools`)")
    return exe


def protoc_version() -> str:
    return subprocess.run([protoc(), "--version"], check=True, capture_output=True,
                          text=True).stdout.strip()


def generate(out_root: Path) -> Path:
    """protoc --python_out=out_root --pyi_out=out_root; returns the generated
    caffe_pb2.py (its stub caffe_pb2.pyi beside it)."""
    subprocess.run([protoc(), f"--proto_path={ROOT}", f"--python_out={out_root}", f"--pyi_out={out_root}",
                    PROTO_REL], check=True)
    return Path(out_root) / PROTO_REL.replace(".proto", "_pb2.py")


def embedded_descriptor(pb2_path: PathLike) -> bytes:
    """The serialized FileDescriptorProto literal inside a generated *_pb2.py
    (read from the source: the runtime's own copy is re-serialized by upb)."""
    source = Path(pb2_path).read_text()
    found = re.search(r"AddSerializedFile\((b'.*?')\)\n", source, re.S)
    if found is None:
        raise ValueError(f"{pb2_path}: no AddSerializedFile(...) literal")
    return ast.literal_eval(found.group(1))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stamp_text(version: str) -> str:
    return ("# written by `make proto` (python -m plaquenet.caffe.regenerate); "
            "checked by tests/unit/caffe/test_regenerate.py\n"
            f"caffe.proto {sha256(PROTO.read_bytes())}\n"
            f"descriptor {sha256(embedded_descriptor(PB2))}\n"
            f"protoc {version}\n")


def read_stamp() -> Dict[str, str]:
    fields = {}
    for line in STAMP.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split(" ", 1)
            fields[key] = value
    return fields


def regenerate() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pb2 = generate(Path(tmp))
        shutil.copyfile(pb2, PB2)
        shutil.copyfile(pb2.with_suffix(".pyi"), PYI)
    STAMP.write_text(stamp_text(protoc_version()))
    print(f"wrote {PB2.relative_to(ROOT)}, {PYI.name} and {STAMP.relative_to(ROOT)} ({protoc_version()})")


# --- comparison with BVLC's caffe.proto --------------------------------------

def _descriptor_of(proto_path: Path) -> "descriptor_pb2.FileDescriptorProto":
    from google.protobuf import descriptor_pb2

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "set.pb"
        subprocess.run([protoc(), f"--proto_path={proto_path.parent}",
                        f"--descriptor_set_out={out}", proto_path.name], check=True)
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[0]


def _messages(container: Union["descriptor_pb2.FileDescriptorProto", "descriptor_pb2.DescriptorProto"],
              prefix: str = "") -> Dict[str, "descriptor_pb2.DescriptorProto"]:
    found = {}
    for m in getattr(container, "message_type", None) or getattr(container, "nested_type", []):
        found[prefix + m.name] = m
        found.update(_messages(m, prefix + m.name + "."))
    return found


def _enums(file: "descriptor_pb2.FileDescriptorProto") -> Dict[str, "descriptor_pb2.EnumDescriptorProto"]:
    found = {e.name: e for e in file.enum_type}
    for name, m in _messages(file).items():
        found.update({f"{name}.{e.name}": e for e in m.enum_type})
    return found


def compare_with(original: PathLike) -> int:
    """Differences between our subset and Caffe's caffe.proto; returns their count."""
    ours, theirs = _descriptor_of(PROTO), _descriptor_of(Path(original).resolve())
    their_messages, problems = _messages(theirs), []
    for name, msg in _messages(ours).items():
        if name not in their_messages:
            problems.append(f"message {name} is not in Caffe")
            continue
        their_fields = {f.name: f for f in their_messages[name].field}
        for f in msg.field:
            g = their_fields.get(f.name)
            if g is None:
                problems.append(f"{name}.{f.name} is not in Caffe")
                continue
            for attr in ("number", "label", "type", "default_value"):
                if getattr(f, attr) != getattr(g, attr):
                    problems.append(f"{name}.{f.name}: {attr} {getattr(f, attr)!r} != {getattr(g, attr)!r}")
            if f.type_name.rsplit(".", 1)[-1] != g.type_name.rsplit(".", 1)[-1]:
                problems.append(f"{name}.{f.name}: type {f.type_name} != {g.type_name}")
            if f.options.packed != g.options.packed:
                problems.append(f"{name}.{f.name}: packed differs")
        omitted = sorted(set(their_fields) - {f.name for f in msg.field})
        if omitted:
            print(f"{name} omits {', '.join(omitted)}")
    their_enums = _enums(theirs)
    for name, enum in _enums(ours).items():
        values = {v.name: v.number for v in enum.value}
        if name not in their_enums or values != {v.name: v.number for v in their_enums[name].value}:
            problems.append(f"enum {name} differs")
    for p in problems:
        print("DIFF", p)
    print(f"{len(_messages(ours))} messages, {len(_enums(ours))} enums, {len(problems)} differences")
    return len(problems)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", type=Path, metavar="CAFFE_PROTO",
                        help="only compare our subset with this caffe.proto")
    args = parser.parse_args(argv)
    if args.compare_with:
        return 1 if compare_with(args.compare_with) else 0
    regenerate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
