"""onnxruntime for the export tests (`from onnx_runtime import onnxruntime`:
tests/helpers is on pytest's path)."""

import os

import pytest


def onnxruntime():
    """The onnxruntime module; a skip where it is missing, a failure under CI=true (CI must run these)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"onnxruntime is missing ({e}); CI=true, where the export tests must run "
                        f"(pip install -e '.[test]')")
        pytest.skip(f"onnxruntime is missing ({e}): pip install -e '.[test]'")
    return ort
