"""`--engine caffe` and Python layers: `caffe train`'s own Python must find
plaquenet.caffe_layers (the conformance test test_caffe_python_losses.py runs
it for real, without PYTHONPATH)."""

from pathlib import Path

from plaquenet.engines.caffe import python_layer_path

CHECKOUT = Path(__file__).resolve().parents[3]


def test_a_source_checkouts_root_goes_first_on_caffes_pythonpath():
    assert (CHECKOUT / "plaquenet" / "caffe_layers.py").is_file()
    assert python_layer_path("") == str(CHECKOUT)
    assert python_layer_path("/opt/mine:/x") == f"{CHECKOUT}:/opt/mine:/x"
