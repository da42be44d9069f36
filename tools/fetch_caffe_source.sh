#!/usr/bin/env bash
# BVLC's log parser (tools/extra/parse_log.py and extract_seconds.py) from the source of the oracle itself:
# Debian's source package caffe 1.0.0+git20180821.99bd997-8, whose .orig.tar.gz is BVLC/caffe at 99bd997
# (docs/CAFFE_ORACLE.md). The binary packages do not ship it; a conformance test runs it on our train.log.
#
# Usage: tools/fetch_caffe_source.sh [CAFFE_ROOT] [DEST]   (as root; defaults build/caffe-root build/caffe-src)
# apt-get inside the Caffe root downloads the source package into a scratch folder (its own apt lists and
# cache: the root's apt configuration is left as it is); the two files are unpacked into DEST/tools/extra/.
# DEBIAN_MIRROR picks another Debian mirror than docker/caffe-cpu/packages.txt's (Debian's archive once
# bullseye has moved there).
set -euo pipefail
root=${1:-build/caffe-root}
dest=${2:-build/caffe-src}
version=1.0.0+git20180821.99bd997
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^DEBIAN_MIRROR=//p' "$(dirname "$0")/../docker/caffe-cpu/packages.txt")}
if [ -f "$dest/tools/extra/parse_log.py" ] && [ -f "$dest/tools/extra/extract_seconds.py" ]; then
  echo "Caffe's log parser already at $dest/tools/extra"
  exit 0
fi
[ -x "$root/usr/bin/apt-get" ] || { echo "no Caffe root at $root: run tools/make_caffe_root.sh $root first" >&2; exit 1; }
scratch=$(mktemp -d "$root/tmp/caffe-source.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
inside=${scratch#"$root"}
echo "deb-src $mirror bullseye main" > "$scratch/sources.list"
mkdir -p "$scratch/lists/partial" "$scratch/cache/archives/partial"
apt="apt-get -qq -o APT::Sandbox::User=root -o Dir::Etc::SourceList=$inside/sources.list -o Dir::Etc::SourceParts=/nonexistent \
     -o Dir::State::Lists=$inside/lists -o Dir::Cache=$inside/cache"
chroot "$root" sh -c "cd $inside && $apt update && $apt source --download-only caffe=$version-8" >/dev/null
tarball="$scratch/caffe_$version.orig.tar.gz"
[ -f "$tarball" ] || { echo "apt-get source caffe=$version-8 gave no $tarball" >&2; exit 1; }
mkdir -p "$dest.partial/tools/extra"
tar -xzf "$tarball" -C "$dest.partial" tools/extra/parse_log.py tools/extra/extract_seconds.py
rm -rf "$dest"
mv "$dest.partial" "$dest"
echo "Caffe's log parser (caffe $version) at $dest/tools/extra"
