"""plaquenet's Caffe-format code imported by pycaffe's own Python: inside the
Caffe root (Debian bullseye: Python 3.9, protobuf 3.12, cpp implementation),
in the same process as `import caffe`. protobuf 3.12 cannot import the
generated caffe_pb2.py (protoc 3.21), so `plaquenet.caffe.caffe_pb2` is built
there from the embedded descriptor; the host-side test below checks that this
fallback gives the generated module's classes, field for field."""

import json
import subprocess
from pathlib import Path

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool

from plaquenet.caffe import caffe_pb2, descriptor_module
from plaquenet.caffe.regenerate import PB2, embedded_descriptor

REPO = Path(__file__).resolve().parents[2]
PROTOTXT = REPO / "prototxt"

# Runs in the root with the package copied next to it (PYTHONPATH=.). Writes
# written.npz / loaded.npz (layer/i -> array) and prints one JSON line.
PYCAFFE_SIDE = r'''
import json, sys

import numpy as np
from google.protobuf import __version__ as protobuf_version, text_format
from google.protobuf.internal import api_implementation

import caffe
from caffe.proto import caffe_pb2 as theirs
from plaquenet.caffe import caffe_pb2 as ours
from plaquenet.caffe import log  # imported for its dependencies: Python 3.9-clean
from plaquenet.caffe.prototxt import read_net, read_solver
from plaquenet.caffe.snapshot import caffemodel_weights, read_caffemodel, weights_net, write_caffemodel

deploy, solver = sys.argv[1], sys.argv[2]
net = read_net(deploy)
caffe.set_mode_cpu()
shapes = caffe.Net(deploy, caffe.TEST)   # pycaffe's own net: the parameter shapes
rng = np.random.default_rng(0) if hasattr(np.random, "default_rng") else np.random.RandomState(0)
written = {name: [rng.standard_normal(b.data.shape).astype(np.float32) for b in blobs]
           for name, blobs in shapes.params.items()}
types = {layer.name: layer.type for layer in net.layer}
write_caffemodel("w.caffemodel", weights_net(written, types, name=net.name))
loaded = caffe.Net(deploy, caffe.TEST, weights="w.caffemodel")
again = caffemodel_weights(read_caffemodel("w.caffemodel"))

def flat(weights):
    return {f"{name}/{i}": np.asarray(a) for name, arrays in weights.items() for i, a in enumerate(arrays)}

np.savez("written.npz", **flat(written))
np.savez("loaded.npz", **flat({name: [b.data for b in blobs] for name, blobs in loaded.params.items()}))
np.savez("read_back.npz", **flat(again))

def same_as_pycaffe(message, path, their_type):
    # Field numbers agree iff our bytes, parsed by pycaffe, equal pycaffe's own parse.
    expected = text_format.Merge(open(path).read(), their_type())
    return their_type.FromString(message.SerializeToString()) == expected

solver_param = read_solver(solver)
print(json.dumps({
    "python": sys.version.split()[0], "protobuf": protobuf_version, "implementation": api_implementation.Type(),
    "built_from_descriptor": not hasattr(ours, "__file__"),
    "layers": [layer.name for layer in net.layer], "pycaffe_layers": list(shapes._layer_names),
    "net_same_as_pycaffe": same_as_pycaffe(net, deploy, theirs.NetParameter),
    "solver_same_as_pycaffe": same_as_pycaffe(solver_param, solver, theirs.SolverParameter),
    "solver_base_lr": solver_param.base_lr, "solver_momentum": solver_param.momentum,
    "solver_mode_cpu": solver_param.solver_mode == ours.SolverParameter.CPU,
}))
'''


def _run_pycaffe_side(caffe, *args) -> dict:
    (caffe.scratch / "pycaffe_side.py").write_text(PYCAFFE_SIDE)
    cmd = ["chroot", str(caffe.root), "sh", "-c",
           f"cd {caffe.inside('.')} && GLOG_minloglevel=2 PYTHONPATH=. python3 pycaffe_side.py " + " ".join(args)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pycaffe side failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pycaffe_imports_our_caffe_code_and_loads_our_caffemodel(caffe):
    caffe.put(REPO / "plaquenet", "plaquenet")
    for name in ("plaquenet_deploy.prototxt", "solver.prototxt"):
        caffe.put(PROTOTXT / name, f"prototxt/{name}")
    report = _run_pycaffe_side(caffe, "prototxt/plaquenet_deploy.prototxt", "prototxt/solver.prototxt")
    print(report)
    assert report["python"].startswith("3.9")
    # The root's protobuf is older than the generated module's runtime (3.20):
    # the classes must have come from the embedded descriptor.
    major, minor = (int(x) for x in report["protobuf"].split(".")[:2])
    assert report["built_from_descriptor"] == ((major, minor) < (3, 20))
    assert report["layers"] == report["pycaffe_layers"]
    assert report["net_same_as_pycaffe"] and report["solver_same_as_pycaffe"]
    assert np.isclose(report["solver_base_lr"], 1e-5) and np.isclose(report["solver_momentum"], 0.9)
    assert report["solver_mode_cpu"]

    with np.load(caffe.scratch / "written.npz") as w, np.load(caffe.scratch / "loaded.npz") as l, \
            np.load(caffe.scratch / "read_back.npz") as r:
        assert set(w.files) == set(l.files) == set(r.files)
        assert {"conv1/0", "conv1/1", "prelu1/0", "conv6/0"} <= set(w.files)
        for key in w.files:   # float32 in, float32 out: bit for bit
            assert np.array_equal(w[key], l[key]), key
            assert np.array_equal(w[key], r[key]), key
        assert w["conv1/0"].shape == (20, 1, 5, 5)


# --- host side: the fallback gives the generated module's classes ---------------

def _messages(module) -> dict:
    """Message name -> its DescriptorProto (fields with number, label, type, default)."""
    found = {}
    for name, message in module.DESCRIPTOR.message_types_by_name.items():
        found[name] = descriptor_pb2.DescriptorProto()
        message.CopyToProto(found[name])
    return found


def test_descriptor_module_has_the_generated_modules_classes():
    built = descriptor_module(embedded_descriptor(PB2), "built_caffe_pb2")
    public = lambda m: sorted(n for n in dir(m) if not n.startswith("_"))
    assert public(built) == public(caffe_pb2)
    assert _messages(built) == _messages(caffe_pb2)
    assert sum(len(m.field) for m in _messages(built).values()) > 100
    assert built.DESCRIPTOR.pool is not descriptor_pool.Default()  # no clash with the generated module
    assert (built.TRAIN, built.TEST, built.Phase.Name(1)) == (caffe_pb2.TRAIN, caffe_pb2.TEST, "TEST")
    assert built.SolverParameter.NESTEROV == caffe_pb2.SolverParameter.NESTEROV

    net = caffe_pb2.NetParameter(name="n")
    conv = net.layer.add(name="conv1", type="Convolution")
    conv.convolution_param.num_output = 20
    conv.blobs.add().shape.dim.extend([20, 1, 5, 5])
    conv.include.add(phase=caffe_pb2.TEST)
    data = net.SerializeToString()
    assert built.NetParameter.FromString(data).SerializeToString() == data
    assert str(built.NetParameter.FromString(data)) == str(net)
