"""plaquenet: Stasiak et al. (BIOIMAGING 2017), MS plaque localisation in FLAIR
MRI with a six-layer fully convolutional network, reproduced with Caffe's
numerics."""

__version__ = "0.1.0"
