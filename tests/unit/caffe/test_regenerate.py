"""The caffe.proto subset and its generated module caffe_pb2.py (`make proto`,
plaquenet/caffe/regenerate.py): not stale, and with Caffe's field numbers."""

import shutil

import pytest
from google.protobuf import descriptor_pb2

from plaquenet.caffe import caffe_pb2, regenerate


# --- the generated module is not stale --------------------------------------

def test_caffe_pb2_matches_the_recorded_stamp():
    # Honest without protoc: `make proto` recorded both hashes when it generated
    # caffe_pb2.py; editing caffe.proto (or the module) without it fails here.
    stamp = regenerate.read_stamp()
    assert regenerate.sha256(regenerate.PROTO.read_bytes()) == stamp["caffe.proto"], \
        "caffe.proto changed since caffe_pb2.py was generated: run `make proto`"
    assert regenerate.sha256(regenerate.embedded_descriptor(regenerate.PB2)) == stamp["descriptor"], \
        "caffe_pb2.py is not what `make proto` generated: run `make proto`"


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc not installed")
def test_caffe_pb2_is_what_protoc_generates_now(tmp_path):
    fresh = regenerate.generate(tmp_path)
    def parsed(pb2):
        return descriptor_pb2.FileDescriptorProto.FromString(regenerate.embedded_descriptor(pb2))
    assert parsed(fresh) == parsed(regenerate.PB2)


def test_module_has_caffe_field_numbers():
    # A few numbers that real .caffemodel files depend on (BVLC caffe.proto, tag 1.0).
    numbers = {
        (caffe_pb2.NetParameter, "layer"): 100,
        (caffe_pb2.LayerParameter, "blobs"): 7,
        (caffe_pb2.LayerParameter, "convolution_param"): 106,
        (caffe_pb2.LayerParameter, "prelu_param"): 131,
        (caffe_pb2.BlobProto, "shape"): 7,
        (caffe_pb2.BlobProto, "data"): 5,
        (caffe_pb2.SolverState, "history"): 3,
        (caffe_pb2.SolverParameter, "momentum2"): 39,
        (caffe_pb2.Datum, "float_data"): 6,
    }
    for (message, field), number in numbers.items():
        assert message.DESCRIPTOR.fields_by_name[field].number == number
