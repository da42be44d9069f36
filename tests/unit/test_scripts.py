"""The thin scripts the user's design card names (`python eval/score.py
--snapshot ...`, `python data_prep/make_tiles.py ...`) work with whatever
`python` is on PATH: where plaquenet is not importable they re-run with the
repository's .venv/bin/python; the Makefile says in one line which Python
it needs."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_PYTHON = REPO / ".venv" / "bin" / "python"


@pytest.mark.parametrize("script, stage", [("eval/score.py", "score"), ("data_prep/make_tiles.py", "tiles")])
def test_a_python_without_plaquenet_runs_the_script_with_the_venv(script, stage, tmp_path):
    if not VENV_PYTHON.is_file():
        pytest.skip("no .venv in this checkout (make venv)")
    # -S: no site-packages, so neither plaquenet nor numpy can be imported by this interpreter
    done = subprocess.run([sys.executable, "-S", str(REPO / script), "--help"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PLAQUENET_REEXEC"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"usage: plaquenet {stage}" in done.stdout


def test_make_refuses_a_python_older_than_the_engine_needs_in_one_line(tmp_path):
    fake = tmp_path / "python3.9"  # answers as Python 3.9 would to the Makefile's check
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = -V ]; then echo 'Python 3.9.2'; exit 0; fi\n"
                    f"exec {sys.executable} -c 'import sys; sys.exit(1)'\n")
    fake.chmod(0o755)
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "venv", f"PYTHON={fake}",
                           f"VENV={venv}"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and not venv.exists()
    [line] = [line for line in done.stdout.splitlines() if "Python" in line]
    assert "needs Python >= 3.10" in line and "3.9.2" in line
