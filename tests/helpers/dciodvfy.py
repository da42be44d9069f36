"""dciodvfy (dicom3tools), the DICOM validator, run by the tests on every kind
of DICOM object plaquenet writes (`import dciodvfy`: tests/helpers is on
pytest's path).

Without dciodvfy on PATH the calling test skips, except under CI=true, where
it fails: .ci/run installs dicom3tools, so a missing validator there is a
broken CI, not a reason to pass."""

import os
import shutil
import subprocess
from pathlib import Path
from typing import List, Union

import pytest


def report(path: Union[str, Path]) -> List[str]:
    """dciodvfy's report on one DICOM file, one message a line: first the IOD
    it recognised ("MRImage", "RTStructureSet", "Segmentation"), then its
    "Error - ..." and "Warning - ..." lines (it writes them to stderr)."""
    tool = shutil.which("dciodvfy")
    if tool is None:
        message = "dciodvfy is not on PATH (apt-get install dicom3tools)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI=true, where the DICOM validity tests must run")
        pytest.skip(message)
    result = subprocess.run([tool, str(path)], capture_output=True, text=True, timeout=120)
    return (result.stderr + result.stdout).splitlines()


def errors(lines: List[str]) -> List[str]:
    """The lines of a report that make the object invalid ("Error - ...", and "Abort - ..." when unreadable)."""
    return [line for line in lines if line.startswith(("Error", "Abort"))]
