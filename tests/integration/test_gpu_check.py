"""bench/gpu_check.sh's logic on the CPU (no GPU has been lent to this project):
the same code, tiny sizes, must print its one table with every row filled
where the device can compute it, and exit 0 when the device agrees with the CPU."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_prints_its_table_on_the_cpu(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--device", "cpu", "--quick",
                           "--skip-tests"], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("check"))
    assert header.split()[1:4] == ["fp32", "bf16", "tf32"]
    rows = {line[:28].strip(): line[28:].split() for line in lines[lines.index(header) + 1:]}
    assert rows["tests/cuda"] == ["skipped"]
    assert float(rows["forward vs CPU, max |diff|"][0]) == 0.0   # the CPU against itself
    for label in ("training tiles/s", "ms per 32x40 scan"):
        fp32, bf16, tf32 = rows[label][:3]
        for cell in (fp32, bf16):   # "noisy": a longer run timed no slower than a shorter one (tiny sizes)
            assert cell == "noisy" or float(cell.replace(",", "")) > 0, cell
        assert tf32 == "n/a"   # a GPU mode: refused on the CPU, reported, not fatal
    assert "tf32 is a mode of NVIDIA GPUs" in done.stdout
