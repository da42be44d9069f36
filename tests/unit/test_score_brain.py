"""`plaquenet score --brain`: outputs far from the brain mask count for nothing,
threshold choice included. The net is the identity; the scans hold a bright ring
(the 'skull') at their corners beside bright plaques in the middle."""

import json

import numpy as np
import pytest

from plaquenet.cohort import Scan, write_brain_masks, write_cohort, write_split
from plaquenet.errors import InputError
from plaquenet.score import score_with_forward

SIDE = 32


def identity(image_hw):
    return image_hw


def _scan(pid):
    rows, cols = np.mgrid[:SIDE, :SIDE]
    radius = np.hypot(rows - 15.5, cols - 15.5)
    flair = np.full((3, SIDE, SIDE), 200, np.float32)
    flair[:, radius > 20] = 1000  # the corners: 9.5 mm from the centre and beyond
    mask = np.zeros(flair.shape, np.uint8)
    mask[:, 14:18, 14:18] = 1
    flair[mask == 1] = 900
    return Scan(pid, flair, mask, (5.0, 0.5, 0.5), np.eye(4))


@pytest.fixture
def ringed(tmp_path):
    write_cohort(tmp_path, [_scan(f"P00{i}") for i in range(1, 5)])
    write_split(tmp_path, {"train": ["P001", "P002"], "test": ["P003", "P004"]})
    return tmp_path


def test_the_skull_ring_stops_counting_once_the_brain_is_masked(ringed, tmp_path):
    rows, cols = np.mgrid[:SIDE, :SIDE]
    disc = (np.hypot(rows - 15.5, cols - 15.5) <= 6)  # 3 mm; grown by 3 mm: 6 mm, short of the ring's 10 mm
    write_brain_masks(ringed, {f"P00{i}": np.broadcast_to(disc, (3, SIDE, SIDE)).astype(np.uint8)
                               for i in range(1, 5)}, "fake")
    plain = score_with_forward(identity, ringed, tmp_path / "plain", whole_volume=False)
    masked = score_with_forward(identity, ringed, tmp_path / "masked", whole_volume=False, brain=True)
    assert plain["test"]["pixel"]["precision"] < 0.5  # the ring is brighter than the plaques
    assert masked["test"]["pixel"]["precision"] == 1.0 and masked["test"]["pixel"]["recall"] == 1.0
    saved = json.loads((tmp_path / "masked" / "results.json").read_text())
    assert saved["brain"]["grow_mm"] == 3.0 and saved["brain"]["unfiltered_single_slices"] == []
    assert "brain" not in json.loads((tmp_path / "plain" / "results.json").read_text())


def test_scoring_with_brain_needs_the_masks(ringed, tmp_path):
    with pytest.raises(InputError, match="no brain mask for P001 .*plaquenet brainmask"):
        score_with_forward(identity, ringed, tmp_path / "out", whole_volume=False, brain=True)
