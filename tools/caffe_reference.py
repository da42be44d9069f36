"""Reference figures from real Caffe 1.0, run INSIDE the Caffe root (Python 3.9,
pycaffe, numpy, h5py from Debian bullseye): `chroot ROOT python3 caffe_reference.py ...`.

Imports nothing from plaquenet, so what it prints is Caffe's word alone.

  parse    FILE...                       each prototxt parsed by pycaffe's caffe_pb2
  deploy   DEPLOY WEIGHTS IN.npy OUT.npy  full-scan forward of the deploy net
  batch    TRAIN_NET OUT_DATA.npy OUT_LABEL.npy   one TRAIN forward: what HDF5Data fed
  grads    DIR TRAIN_NET WEIGHTS OUT.npz  in DIR, one TRAIN forward+backward from WEIGHTS: the
                                          net's outputs ("out/<name>"), every blob ("blob/<name>")
                                          and every parameter diff ("diff/<layer>/<i>")
  forward  DIR TRAIN_NET WEIGHTS OUT.npz BLOB...   in DIR, one TRAIN forward (no backward) from
                                          WEIGHTS: the outputs ("out/<name>") and the named blobs
                                          ("blob/<name>")
  rates    DIR POLICY_FILE N OUT.npy       the learning rate of iterations 0..N-1 under the lr
                                          policy fields in POLICY_FILE (base_lr, lr_policy, gamma,
                                          ...), read off Caffe's own update: a one-weight net whose
                                          gradient is exactly 1, reset to 0 before each step, so
                                          the weight after step i is -rate(i), bit for bit
  train    DIR CAFFE_TRAIN_FLAGS...       `caffe train FLAGS...` in DIR (paths in the solver
                                          resolve against it, as for the user); its full glog
                                          output into DIR/caffe.log
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


def grads(folder, net_path, weights, out_path):
    import os

    import caffe

    os.chdir(folder)   # where the net's HDF5Data source and the paths given resolve
    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TRAIN, weights=weights)
    # A new net's parameter diffs are zero and Backward accumulates into them:
    # what comes out is the gradient of this one batch.
    out = net.forward()
    net.backward()
    arrays = {f"out/{name}": value.copy() for name, value in out.items()}
    arrays.update({f"blob/{name}": blob.data.copy() for name, blob in net.blobs.items()})
    for layer, blobs in net.params.items():
        arrays.update({f"diff/{layer}/{i}": b.diff.copy() for i, b in enumerate(blobs)})
    np.savez(out_path, **arrays)


def forward(folder, net_path, weights, out_path, *blob_names):
    import os

    import caffe

    os.chdir(folder)
    caffe.set_mode_cpu()
    net = caffe.Net(net_path, caffe.TRAIN, weights=weights)
    out = net.forward()
    arrays = {f"out/{name}": value.copy() for name, value in out.items()}
    arrays.update({f"blob/{name}": net.blobs[name].data.copy() for name in blob_names})
    np.savez(out_path, **arrays)


# One weight w (reset to 0), input 1, label -1: EuclideanLoss's gradient of w is
# (w * 1 - (-1)) * 1 / batch 1 = 1 exactly, so plain SGD (momentum 0, no decay)
# leaves w = -rate.
RATES_NET = """
layer { name: "one" type: "DummyData" top: "one" top: "minus_one"
        dummy_data_param { shape { dim: 1 dim: 1 } shape { dim: 1 dim: 1 }
                           data_filler { type: "constant" value: 1 } data_filler { type: "constant" value: -1 } } }
layer { name: "w" type: "InnerProduct" bottom: "one" top: "out"
        inner_product_param { num_output: 1 bias_term: false weight_filler { type: "constant" value: 0 } } }
layer { name: "loss" type: "EuclideanLoss" bottom: "out" bottom: "minus_one" top: "loss" }
"""


def rates(folder, policy_file, n, out_path):
    import os

    import caffe

    os.chdir(folder)
    with open("rates_net.prototxt", "w") as f:
        f.write(RATES_NET)
    with open("rates_solver.prototxt", "w") as f:
        f.write(open(policy_file).read() + '\nnet: "rates_net.prototxt" type: "SGD" momentum: 0 weight_decay: 0'
                ' display: 0 snapshot_after_train: false\n')
    caffe.set_mode_cpu()
    solver = caffe.SGDSolver("rates_solver.prototxt")
    weight = solver.net.params["w"][0]
    out = np.empty(int(n), np.float32)
    for i in range(int(n)):
        weight.data[...] = 0
        solver.step(1)
        out[i] = -weight.data.ravel()[0]
    np.save(out_path, out)


def train(folder, flags):
    import os
    import subprocess

    # The whole glog output into FOLDER/caffe.log (none into the root's /tmp),
    # for tests that read Caffe's own lines.
    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    log_path = os.path.join(folder, "caffe.log")
    with open(log_path, "w") as log:
        done = subprocess.run(["caffe", "train", *flags], cwd=folder, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        sys.stderr.write(open(log_path).read()[-3000:])
        sys.exit(f"caffe train {' '.join(flags)} (in {folder}): exit status {done.returncode}")


def train_status(folder, flags):
    """`caffe train FLAGS...` in FOLDER, its glog output into FOLDER/caffe.log as
    for `train`; prints "exit status N" instead of failing, for the tests of
    what Caffe refuses (a CHECK failure aborts: N is 134)."""
    import os
    import subprocess

    env = dict(os.environ, GLOG_logtostderr="1", GLOG_minloglevel="0")
    with open(os.path.join(folder, "caffe.log"), "w") as log:
        done = subprocess.run(["caffe", "train", *flags], cwd=folder, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    print(f"exit status {done.returncode}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    {"parse": lambda: parse(args), "deploy": lambda: deploy(*args), "batch": lambda: batch(*args),
     "grads": lambda: grads(*args), "forward": lambda: forward(*args),
     "rates": lambda: rates(*args), "train": lambda: train(args[0], args[1:]),
     "train_status": lambda: train_status(args[0], args[1:])}[command]()
