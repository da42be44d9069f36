"""Training and inference engines; each reads the same prototxt files and
writes/reads Caffe's snapshot formats. `torch`: a Caffe-faithful PyTorch
implementation."""
