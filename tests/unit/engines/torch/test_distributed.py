"""distributed.launch: worker processes started as torchrun would, their
failures brought back as one error (without torch.distributed itself: the
training over gloo is tests/integration/test_distributed_training.py)."""

import os
import threading

import pytest

from plaquenet.engines.torch.distributed import from_environment, launch
from plaquenet.errors import InputError


def _refuses(rank_refusing):
    if os.environ["RANK"] == str(rank_refusing):
        raise InputError("net.prototxt", f"refused by rank {rank_refusing}")
    return "ok"


def _fails_or_waits():
    if os.environ["RANK"] == "1":
        raise ValueError("worker 1 broke")
    threading.Event().wait()   # rank 0: as a worker waiting in a collective for its partner


def test_an_input_error_in_a_worker_is_raised_as_one_line():
    with pytest.raises(InputError, match=r"^net.prototxt: refused by rank 1$"):
        launch(2, _refuses, {"rank_refusing": 1})


def test_a_failing_worker_ends_the_one_waiting_for_it():
    with pytest.raises(RuntimeError, match="worker 1 of 2 failed: ValueError: worker 1 broke"):
        launch(2, _fails_or_waits, {})


@pytest.mark.parametrize("env, problem", [
    ({"WORLD_SIZE": "2", "RANK": "two"}, "must be whole numbers"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "rank 2 of 2 workers is not a worker"),
])
def test_a_broken_torchrun_environment_is_one_line(monkeypatch, env, problem):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=problem):
        from_environment()


def test_the_per_iteration_decisions_travel_over_gloo_beside_nccl(tmp_path):
    """rank0_value and gather run every iteration; beside NCCL they take a gloo
    group of their own, so that they never pass through the GPU (a host sync).
    NCCL itself needs GPUs; the group made for it is checked here, in a
    one-process gloo world, to be gloo and to carry an object."""
    import torch.distributed as dist

    from plaquenet.engines.torch.distributed import _control_group

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert _control_group("gloo") is None   # the default group is gloo already
        group = _control_group("nccl")
        assert dist.get_backend(group) == "gloo"
        box = [{"effect": "snapshot"}]
        dist.broadcast_object_list(box, src=0, group=group)
        assert box == [{"effect": "snapshot"}]
    finally:
        dist.destroy_process_group()
