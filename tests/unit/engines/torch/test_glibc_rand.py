"""glibc's rand() and libstdc++'s std::random_shuffle, against the C library
of this process and a C++ program compiled here (skipped without glibc or g++)."""

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from plaquenet.engines.torch.glibc_rand import GlibcRand


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        pytest.skip("not glibc")


@pytest.mark.parametrize("seed", [1, 0, 12345, 2**31 - 1, 2**31 + 5, 2**32 - 1])
def test_the_stream_is_glibcs_rand_after_srand(seed):
    libc = _libc()
    libc.srand(ctypes.c_uint(seed))
    expected = [libc.rand() for _ in range(1000)]
    rand = GlibcRand(seed)
    assert rand.rand(1) + rand.rand(499) + rand.rand(500) == expected


def test_a_saved_state_goes_on_with_the_same_values():
    rand = GlibcRand()
    rand.rand(77)
    copy = GlibcRand.from_state(rand.state())
    assert copy.rand(100) == rand.rand(100)
    with pytest.raises(ValueError):
        GlibcRand.from_state([1] * 30)


PROGRAM = r"""
#include <algorithm>
#include <cstdio>
#include <vector>
int main() {   // never seeded, as in Caffe
  for (int n : {1, 2, 5, 300}) {
    std::vector<int> v(n);
    for (int i = 0; i < n; ++i) v[i] = i;
    std::random_shuffle(v.begin(), v.end());
    for (int x : v) std::printf("%d ", x);
    std::printf("\n");
  }
}
"""


def test_random_shuffle_is_libstdcxxs(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("no g++ to compile libstdc++'s std::random_shuffle")
    (tmp_path / "shuffle.cpp").write_text(PROGRAM)
    subprocess.run(["g++", "-std=c++11", "-w", "-o", str(tmp_path / "shuffle"), str(tmp_path / "shuffle.cpp")],
                   check=True)
    expected = subprocess.run([str(tmp_path / "shuffle")], capture_output=True, text=True, check=True).stdout
    rand, lines = GlibcRand(), []
    for n in (1, 2, 5, 300):
        order = np.arange(n)
        rand.random_shuffle(order)
        lines.append(" ".join(map(str, order.tolist())) + " ")
    assert expected.splitlines() == lines
    assert lines[3] != " ".join(map(str, range(300))) + " "
