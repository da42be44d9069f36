"""Reference figures from real Caffe 1.0, run INSIDE the Caffe root (Python 3.9,
pycaffe, numpy, h5py from Debian bullseye): `chroot ROOT python3 caffe_reference.py ...`.

Imports nothing from plaquenet, so what it prints is Caffe's word alone.

  parse    FILE...                       each prototxt parsed by pycaffe's caffe_pb2
  deploy   DEPLOY WEIGHTS IN.npy OUT.npy  full-scan forward of the deploy net
  batch    TRAIN_NET OUT_DATA.npy OUT_LABEL.npy   one TRAIN forward: what HDF5Data fed
"""

import sys

import numpy as np


def parse(paths):
    from google.protobuf import text_format
    from caffe.proto import caffe_pb2

    for path in paths:
        text = open(path).read()
        message = caffe_pb2.SolverParameter() if "solver" in path.rsplit("/", 1)[-1] else caffe_pb2.NetParameter()
        text_format.Merge(text, message)
        print(f"parsed {path}: {type(message).__name__}")


def deploy(net_path, weights, in_path, out_path):
    import caffe

    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TEST, weights=weights)
    image = np.load(in_path).astype(np.float32)
    name = net.inputs[0]
    net.blobs[name].reshape(1, 1, *image.shape)
    net.reshape()
    net.blobs[name].data[...] = image
    out = net.forward()
    np.save(out_path, out[net.outputs[0]][0, 0].copy())


def batch(net_path, data_path, label_path):
    import caffe

    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TRAIN)
    net.forward()
    np.save(data_path, net.blobs["data"].data.copy())
    np.save(label_path, net.blobs["label"].data.copy())


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"parse": lambda: parse(args), "deploy": lambda: deploy(*args), "batch": lambda: batch(*args)}[command]()
