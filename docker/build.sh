#!/usr/bin/env bash
# Build one of plaquenet's images from the repository root (the Makefile's
# docker targets call this):
#
#   docker/build.sh NAME [--test] [BUILD ARGUMENTS...]
#
# NAME: caffe-cpu | torch | caffe-cuda, i.e. docker/NAME/Dockerfile, tagged
# plaquenet/NAME. --test builds the Dockerfile's `test` stage instead (the
# smoke test runs in a RUN step: a failing test fails the build) under a
# unique tag, quietly (the log goes to build/docker-test-NAME.log), and
# removes that image afterwards. Further arguments go to the build
# (e.g. --build-arg TORCH=cuda).
#
# podman where installed (daemonless; as root, --isolation=chroot, the base
# image must be local: `make docker-base` makes one without a registry),
# otherwise docker. pip inside the build reads this machine's own pip
# configuration (`pip config list`: index, find-links and constraint
# settings, PIP_* variables included; see below). Nothing of it is kept in
# the image.
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: docker/build.sh caffe-cpu|torch|caffe-cuda [--test] [BUILD ARGUMENTS...]}
shift
test_stage=0
if [ "${1:-}" = --test ]; then test_stage=1; shift; fi
dockerfile=docker/$name/Dockerfile
[ -f "$dockerfile" ] || { echo "docker/build.sh: no $dockerfile (written so far:" $(ls docker/*/Dockerfile)")"; exit 2; }

# --- the builder ------------------------------------------------------------------
engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
    if command -v podman >/dev/null; then engine=podman
    elif command -v docker >/dev/null; then engine=docker
    else
        echo "docker/build.sh: neither podman nor docker is installed: apt-get install -y podman (or Docker Engine, docs.docker.com/engine/install)"
        exit 2
    fi
fi
base=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' "$dockerfile" | head -n 1)
build=("$engine" build -f "$dockerfile")
if [ "$engine" = podman ]; then
    [ "$(id -u)" = 0 ] || { echo "docker/build.sh: podman builds these images as root (--isolation=chroot): sudo make docker-${name#caffe-}"; exit 2; }
    case $base in */*) full=$base ;; *) full=docker.io/library/$base ;; esac
    podman image exists "$full" || {
        echo "docker/build.sh: no base image $full: podman pull $full (without a registry: make docker-base)"
        exit 2
    }
    build+=(--pull=never --isolation=chroot)
else
    docker info >/dev/null 2>&1 || {
        echo "docker/build.sh: cannot reach the Docker daemon: sudo systemctl start docker (and run as root or a member of the docker group)"
        exit 2
    }
    export DOCKER_BUILDKIT=1   # RUN --mount=type=secret
fi

# --- this machine's pip configuration, for pip inside the build --------------------
# Written to a pip.conf given to the build as the secret `pipconf` (mounted at
# /etc/pip.conf in the RUN steps that use pip; never stored in a layer), its
# certificate bundle (a proxy's CA, say) as the secret `pipcert`. With
# podman, whose RUN steps share this machine's network, the local folders it
# names (find-links, file:// indexes, constraints) are served read-only on
# 127.0.0.1 for the length of the build, so that nothing is mounted into the
# image either; docker gets only the remote sources.
work=$(mktemp -d)
server=
cleanup() { [ -z "$server" ] || kill "$server" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work" "$engine" <<'EOF' &
"""`pip config list` -> $work/pip.conf (the PIP_* variables as [global]); the
local paths it names, linked under $work/share, served on 127.0.0.1."""
import ast, functools, http.server, os, subprocess, sys
from urllib.parse import urlparse

work, engine = sys.argv[1:3]
share = os.path.join(work, "share")
os.makedirs(share)
class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=share))
base = f"http://127.0.0.1:{httpd.server_address[1]}"
PATH_KEYS = {"find-links", "index-url", "extra-index-url", "constraint"}
CERT = "/etc/pip-cert.pem"   # where the Dockerfiles mount the secret `pipcert`
try:
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
except OSError:
    listed = ""
sections = {}
for line in sorted(listed.splitlines(), key=lambda l: l.startswith(":env:")):   # the environment wins
    name, _, value = line.partition("=")
    section, _, key = name.rpartition(".")
    sections.setdefault("global" if section == ":env:" else section, {})[key] = ast.literal_eval(value)

def served(key, token):
    local = urlparse(token).path if token.startswith("file://") else token if token.startswith("/") else None
    if local is None:
        return token
    if engine != "podman" or not os.path.exists(local):
        return None
    # an index's pages link to ../../files/...: share the folder above the index
    root = os.path.dirname(local.rstrip("/")) if key.endswith("index-url") else local
    link = os.path.join(share, root.lstrip("/"))
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(root, link)
    return base + local + ("/" if os.path.isdir(local) else "")

shared = 0
with open(os.path.join(work, "pip.conf.partial"), "w") as f:
    for section, values in sections.items():
        f.write(f"[{section}]\n")
        for key, value in values.items():
            if key == "client-cert":
                continue
            if key == "cert":
                if not os.path.isfile(value):
                    continue
                os.symlink(value, os.path.join(work, "cert"))
                value = CERT
            elif key in PATH_KEYS:
                value = " ".join(t for t in (served(key, t) for t in value.split()) if t)
            if value:
                f.write(f"{key} = {value}\n")
os.rename(os.path.join(work, "pip.conf.partial"), os.path.join(work, "pip.conf"))
if os.listdir(share):
    httpd.serve_forever()
EOF
server=$!
for _ in $(seq 100); do [ -f "$work/pip.conf" ] || ! kill -0 "$server" 2>/dev/null && break; sleep 0.1; done
[ -f "$work/pip.conf" ] || : >"$work/pip.conf"
build+=(--secret "id=pipconf,src=$work/pip.conf")
[ ! -e "$work/cert" ] || build+=(--secret "id=pipcert,src=$work/cert")

# --- build ---------------------------------------------------------------------------
if [ "$test_stage" = 0 ]; then
    "${build[@]}" -t "plaquenet/$name" "$@" .
    echo "built plaquenet/$name ($engine, $SECONDS s): $("$engine" image inspect --format '{{.Size}}' "plaquenet/$name" | awk '{printf "%.0f MB", $1/1e6}')"
    exit 0
fi
tag=localhost/plaquenet-ci-$$-$name
log=build/docker-test-$name.log
mkdir -p build
[ "$engine" = podman ] && build+=(--layers=false --force-rm)
echo "smoke test of the $name image ($engine build --target test; log: $log) ..."
if "${build[@]}" --target test -t "$tag" "$@" . >"$log" 2>&1; then
    result=0
    grep '^smoke test:' "$log" || true
    echo "smoke test of the $name image passed ($SECONDS s)"
else
    result=$?
    tail -n 40 "$log"
    echo "smoke test of the $name image FAILED ($SECONDS s; the whole log: $log)"
fi
"$engine" rmi -f "$tag" >/dev/null 2>&1 || true
exit "$result"
