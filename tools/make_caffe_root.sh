#!/usr/bin/env bash
# Build a Debian bullseye root holding real Caffe (Debian's 1.0.0+git20180821.99bd997; CPU, OpenBLAS) and pycaffe
# on Python 3.9: the oracle the conformance tests compare our engine against.
# Needs root and mmdebstrap (apt-get install mmdebstrap); about 30-60 s and 750 MB.
# Run it with `chroot ROOT python3 ...`.
#
# The packages and the default mirror are docker/caffe-cpu/packages.txt's,
# shared with the CPU-Caffe Docker image (docker/caffe-cpu/Dockerfile): the
# root and the image hold the same Caffe. DEBIAN_MIRROR=URL takes another
# mirror (Debian's archive, once bullseye has moved there).
set -euo pipefail
root=${1:-build/caffe-root}
list="$(dirname "$0")/../docker/caffe-cpu/packages.txt"
if [ -x "$root/usr/bin/caffe" ]; then
  echo "Caffe root already at $root"
  exit 0
fi
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^DEBIAN_MIRROR=//p' "$list")}
packages=$(sed 's/#.*//; /=/d' "$list" | xargs | tr ' ' ,)
command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap; }
tmp="$root.partial"
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
mmdebstrap --quiet --variant=apt --include="$packages" bullseye "$tmp" "$mirror"
mv "$tmp" "$root"
echo "Caffe root ready at $root"
