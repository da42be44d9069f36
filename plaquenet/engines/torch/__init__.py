"""Caffe 1.0's training and inference in PyTorch.

layers.py   one builder per layer type (LAYERS), swappable convolution
fillers.py  Caffe's weight fillers
data.py     HDF5Data's row order
net.py      Net (built from a NetParameter), weights in/out, load_deploy
solver.py   lr policies and the SGD/Nesterov/Adam update, Caffe's arithmetic
train.py    train(): `caffe train` with snapshots, resume and Caffe's log
"""
