"""What Caffe defines, without Caffe: the caffe.proto subset and its generated
module (`caffe_pb2`), prototxt text io (`prototxt`), .caffemodel and
.solverstate files (`snapshot`), `caffe train`'s log format (`log`), and the
Split layers Caffe inserts before it builds a net (`splits`).
`make proto` regenerates caffe_pb2.py (see `regenerate`).

`plaquenet.caffe.caffe_pb2` is the one way in to the message classes. With
protobuf >= 3.20 it is the generated module itself. pycaffe in Debian bullseye
runs protobuf 3.12, which cannot import code from protoc 3.21 (no
`google.protobuf.internal.builder`); there the same classes are built at
import time from the FileDescriptorProto embedded in caffe_pb2.py (see
`descriptor_module`), and registered under the same module name, so callers
never know which they got. Field names and numbers are the embedded
descriptor's, i.e. Caffe's, either way."""

import importlib.util
import sys
import types
from typing import TYPE_CHECKING


def descriptor_module(serialized: bytes, name: str) -> types.ModuleType:
    """A module named `name` holding what a generated *_pb2 module holds for the
    FileDescriptorProto `serialized`: DESCRIPTOR, one class per top-level
    message (nested messages and enum values as their attributes), and each
    top-level enum's wrapper and values. Built in a private descriptor pool, so
    it never clashes with another copy of the same file (e.g. the generated
    module itself)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    from google.protobuf.internal import enum_type_wrapper

    file_proto = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_proto)  # protobuf 3.12's AddSerializedFile returns nothing: look it up after
    file = pool.FindFileByName(file_proto.name)
    if hasattr(message_factory, "GetMessageClass"):       # protobuf >= 4.22
        message_class = message_factory.GetMessageClass
    else:                                                 # protobuf 3.x
        message_class = message_factory.MessageFactory(pool).GetPrototype  # type: ignore[attr-defined]

    module = types.ModuleType(name, "Message classes built from the descriptor embedded in caffe_pb2.py.")
    setattr(module, "DESCRIPTOR", file)
    for message_name, message in file.message_types_by_name.items():
        setattr(module, message_name, message_class(message))
    for enum_name, enum in file.enum_types_by_name.items():
        setattr(module, enum_name, enum_type_wrapper.EnumTypeWrapper(enum))
        for value in enum.values:
            setattr(module, value.name, value.number)
    return module


def _load_caffe_pb2() -> types.ModuleType:
    name = __name__ + ".caffe_pb2"
    if importlib.util.find_spec("google.protobuf.internal.builder") is not None:
        return importlib.import_module(name)
    from .regenerate import PB2, embedded_descriptor

    module = descriptor_module(embedded_descriptor(PB2), name)
    sys.modules[name] = module
    return module


if TYPE_CHECKING:
    # mypy reads the message classes from caffe_pb2.pyi, which `make proto`
    # writes beside caffe_pb2.py (protoc --pyi_out).
    from . import caffe_pb2
else:
    caffe_pb2 = _load_caffe_pb2()
