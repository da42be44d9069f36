#!/usr/bin/env bash
# Build a Debian bullseye root holding real Caffe (Debian's 1.0.0+git20180821.99bd997; CPU, OpenBLAS) and pycaffe
# on Python 3.9: the oracle the conformance tests compare our engine against, and
# the base of the Docker image. Needs root and mmdebstrap (apt-get install
# mmdebstrap); about 30-60 s and 750 MB. Run it with `chroot ROOT python3 ...`.
#
# Without libopenblas0-pthread Caffe falls back to reference BLAS, ~8x slower.
# The python3-* packages after numpy are what `plaquenet score --engine caffe`
# imports when it runs inside the root (scoring, report figures, progress,
# --save-probabilities); torch is not needed there.
set -euo pipefail
root=${1:-build/caffe-root}
if [ -x "$root/usr/bin/caffe" ]; then
  echo "Caffe root already at $root"
  exit 0
fi
command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap; }
tmp="$root.partial"
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
mmdebstrap --quiet --variant=apt \
  --include=caffe,python3-caffe,python3-h5py,python3-numpy,libopenblas0-pthread,\
python3-scipy,python3-matplotlib,python3-tqdm,python3-nibabel,python3-protobuf \
  bullseye "$tmp"
mv "$tmp" "$root"
echo "Caffe root ready at $root"
