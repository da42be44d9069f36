"""Real Caffe as the oracle (Debian's 1.0.0+git20180821.99bd997, docs/CAFFE_ORACLE.md): a Debian bullseye root (tools/make_caffe_root.sh,
`make caffe-root`) in which tools/caffe_reference.py runs under chroot.

Where the root is missing, or we are not root (chroot needs it), these tests
skip with a message saying how to get them running; under CI=true either is
a failure, not a skip: CI must run them."""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ROOT = REPO / "build" / "caffe-root"


class CaffeRoot:
    """Runs tools/caffe_reference.py inside the root, in a scratch folder of the root's /tmp."""

    def __init__(self, root: Path):
        self.root = root
        self.scratch = root / "tmp" / f"plaquenet-{uuid.uuid4().hex[:8]}"
        self.scratch.mkdir(parents=True)
        shutil.copy(REPO / "tools" / "caffe_reference.py", self.scratch)

    def inside(self, path) -> str:
        """The path, under the scratch folder, as the chrooted process sees it."""
        return "/" + str((self.scratch / path).relative_to(self.root))

    def put(self, src, name=None) -> Path:
        """Copy a file or folder into the scratch folder (symlinks followed)."""
        dst = self.scratch / (name or Path(src).name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if Path(src).is_dir():
            shutil.copytree(src, dst, symlinks=False)
        else:
            shutil.copy(src, dst)
        return dst

    def run(self, *args, timeout: int = 600) -> str:
        cmd = ["chroot", str(self.root), "sh", "-c",
               f"cd {self.inside('.')} && GLOG_minloglevel=2 python3 caffe_reference.py " + " ".join(args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"real Caffe failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done.stdout

    def cleanup(self):
        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.fixture
def caffe():
    if os.geteuid() != 0:
        message = "the conformance tests chroot into the Caffe root and need root"
        if os.environ.get("CI") == "true":   # a CI runner that cannot run them must not pass without them
            pytest.fail(f"{message}; CI=true, where they must run")
        pytest.skip(message)
    root = Path(os.environ.get("PLAQUENET_CAFFE_ROOT", DEFAULT_ROOT))
    if not (root / "usr" / "bin" / "caffe").exists():
        message = (f"no real Caffe root at {root}: run `make caffe-root` as root (or set PLAQUENET_CAFFE_ROOT) "
                   f"to enable the conformance tests")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    box = CaffeRoot(root)
    yield box
    box.cleanup()
