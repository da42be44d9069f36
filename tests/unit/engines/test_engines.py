"""plaquenet.engines: the one place that knows engines and devices."""

import numpy as np
import pytest
import torch

from plaquenet.engines import ENGINES, get_engine, parse_device
from plaquenet.errors import InputError


@pytest.mark.parametrize("typed, canonical", [("cpu", "cpu"), ("CPU", "cpu"), ("cuda", "cuda:0"), ("gpu", "cuda:0"),
                                              ("cuda:1", "cuda:1"), ("gpu:2", "cuda:2")])
def test_devices_as_users_type_them(typed, canonical):
    assert parse_device(typed) == canonical


@pytest.mark.parametrize("typed", ["tpu", "cuda:x", "cuda:-1", "", "mps"])
def test_other_devices_are_one_input_error(typed):
    with pytest.raises(InputError, match="not a device"):
        parse_device(typed)


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(InputError, match="torch, caffe"):
        get_engine("tensorflow")
    assert {get_engine(name).name for name in ENGINES} == set(ENGINES)


def test_the_torch_engine_turns_tf32_off_and_cudnn_deterministic(deploy, scored_snapshot):
    # torch's defaults on Ampere and newer GPUs use TF32 (~1e-3 relative error): not Caffe's
    # float32. The engine's default mode sets the flags whatever the device, so this runs on a CPU.
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = True, True
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = True, False
    try:
        forward = get_engine("torch").load_deploy(deploy, scored_snapshot, "cpu")
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert forward(np.zeros((8, 8), np.float32)).shape == (8, 8)
    finally:
        torch.backends.cudnn.allow_tf32 = True  # torch's own default, for the tests after this one
