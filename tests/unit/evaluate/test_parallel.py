"""Scoring at scale (#15 item 3): several slices per forward call
(evaluate/inference.py forward_slices, the torch engine's `many`) and the
next patient read while the current one forwards (evaluate/parallel.py)."""

import threading

import numpy as np
import pytest

import tiny_nets
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.cohort import iter_scans
from plaquenet.engines import SLICE_PIXELS, checked, with_batch_slices
from plaquenet.engines.torch.net import load_deploy
from plaquenet.errors import InputError
from plaquenet.evaluate import parallel
from plaquenet.evaluate.inference import forward_scan, forward_slices, forward_volume, slices_per_call
from plaquenet.paths import DEPLOY

# tests/conformance/test_caffe_formats.py: a full scan of ours against real Caffe,
# element-wise relative difference (floor 1e-3) at most 1e-5
CONFORMANCE_RELATIVE = 1e-5


def recording(per_call_pixels):
    """A forward with the batch protocol: output = 2 x input, every stack it gets recorded."""
    calls = []

    def forward(image_hw):
        calls.append((1,) + image_hw.shape)
        return 2 * image_hw

    def many(images_nhw):
        calls.append(images_nhw.shape)
        return 2 * images_nhw

    forward.many, forward.batch_pixels = many, per_call_pixels
    return forward, calls


def test_slices_go_through_many_in_calls_of_the_pixel_budget():
    forward, calls = recording(2 * 16 * 16 + 5)  # room for two 16x16 slices, not three
    images = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(forward_slices(forward, images), 2 * images)
    assert calls == [(2, 16, 16), (2, 16, 16), (1, 16, 16)]
    assert slices_per_call(forward, (448, 512)) == 1  # never fewer than one


def test_a_forward_without_many_goes_one_slice_at_a_time():
    calls = []

    def one(image_hw):
        calls.append(image_hw.shape)
        return image_hw + 1

    images = np.zeros((3, 4, 5), np.float32)
    np.testing.assert_array_equal(forward_slices(one, images), images + 1)
    assert calls == [(4, 5)] * 3 and slices_per_call(one, (4, 5)) == 1
    assert with_batch_slices(one, 4) is one and not hasattr(one, "batch_pixels")  # the caffe engine's case
    assert forward_slices(one, np.zeros((0, 4, 5), np.float32)).shape == (0, 4, 5)


@pytest.mark.parametrize("slices", [0, -2])
def test_batch_slices_below_one_is_refused_in_one_line(slices):
    forward, _ = recording(SLICE_PIXELS)
    with pytest.raises(InputError, match="--batch-slices"):
        with_batch_slices(forward, slices)


def test_checked_keeps_the_batch_and_checks_stacks_for_nan():
    forward, _ = recording(3 * SLICE_PIXELS)
    guarded = checked(forward, "x_iter_1.caffemodel")
    assert guarded.batch_pixels == 3 * SLICE_PIXELS
    with pytest.raises(InputError, match="x_iter_1.caffemodel.*NaN"):
        forward_slices(guarded, np.full((2, 4, 4), np.nan, np.float32))


@pytest.fixture
def paper_net(tmp_path):
    """The paper's deploy net (prototxt/plaquenet_deploy.prototxt) with tiny_nets.paper_weights()."""
    snapshot = tmp_path / "paper.caffemodel"
    write_caffemodel(snapshot, tiny_nets.paper_weights())
    return load_deploy(DEPLOY, snapshot)


@pytest.mark.parametrize("per_call", [2, 5])
def test_the_paper_net_on_a_stack_matches_one_slice_at_a_time(paper_net, per_call):
    images = np.random.default_rng(per_call).random((5, 40, 48)).astype(np.float32)
    one_by_one = np.stack([paper_net(image) for image in images])
    paper_net.batch_pixels = per_call * 40 * 48
    batched = forward_slices(paper_net, images)
    assert batched.shape == one_by_one.shape and one_by_one.std() > 1e-3  # not a constant map
    relative = np.abs(batched - one_by_one) / np.maximum(np.abs(one_by_one), 1e-3)
    assert relative.max() <= CONFORMANCE_RELATIVE, relative.max()


def test_the_torch_forward_defaults_to_one_paper_slice_per_call_on_the_cpu(paper_net):
    assert paper_net.batch_pixels == SLICE_PIXELS
    assert slices_per_call(paper_net, (448, 512)) == 1 and slices_per_call(paper_net, (50, 50)) == 91


def test_forward_volume_batched_equals_forward_scan_of_every_slice(cohort):
    forward, calls = recording(3 * 16 * 16)
    scan = next(iter_scans(cohort, ["P001"]))
    whole = forward_scan(scan, forward, every_slice=True)
    np.testing.assert_array_equal(forward_volume(scan.flair_shw, forward), whole.output_shw)
    assert [c[0] for c in calls] == [3, 1, 3, 1]  # (4, 16, 16) twice, 3 slices per call


# --- reading ahead --------------------------------------------------------------

def test_read_ahead_gives_the_patients_in_order_with_the_same_outputs(cohort):
    forward, _ = recording(SLICE_PIXELS)
    patients = ["P005", "P001", "P003", "P002"]
    ahead = list(parallel.forwarded_scans(forward, cohort, patients, every_slice=False))
    assert [d.scan.patient for d in ahead] == patients
    for done, scan in zip(ahead, iter_scans(cohort, patients)):
        direct = forward_scan(scan, forward)
        np.testing.assert_array_equal(done.indices, scan.lesion_slices())
        np.testing.assert_array_equal(done.output_khw, direct.output_khw)
        np.testing.assert_array_equal(done.image_shw, direct.image_shw)


def test_reading_runs_in_another_thread_and_never_more_than_the_queue_ahead():
    produced, readers = [], set()

    def items():
        for i in range(8):
            readers.add(threading.current_thread().name)
            produced.append(i)
            yield i

    depth = 2
    for consumed, item in enumerate(parallel._read_ahead(items(), depth), 1):
        assert item == consumed - 1
        # queued items, plus one waiting to be queued
        assert len(produced) <= consumed + depth + 1
    assert readers == {"read-ahead"}


def test_a_reading_error_reaches_the_caller_as_it_was(cohort):
    forward, _ = recording(SLICE_PIXELS)
    with pytest.raises(InputError, match="no patient P404"):
        list(parallel.forwarded_scans(forward, cohort, ["P001", "P404"]))


def test_stopping_early_stops_the_reading_thread():
    def items():
        yield from range(100)

    ahead = parallel._read_ahead(items(), 1)
    assert next(ahead) == 0
    ahead.close()
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
