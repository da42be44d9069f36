"""What Caffe defines, without Caffe: the caffe.proto subset and its generated
module (`caffe_pb2`), prototxt text io (`prototxt`), .caffemodel and
.solverstate files (`snapshot`), and `caffe train`'s log format (`log`).
`make proto` regenerates caffe_pb2.py (see `regenerate`)."""
