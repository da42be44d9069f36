"""The slice figures' zoomed insets (report/figures.py): windows around each plaque
and false positive, kept inside the slice, drawn large enough to see a 2x2 plaque."""

import matplotlib.image as mpimg
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from plaquenet.report.figures import (CROP_PX, FIGURE_WIDTH_PX, FN_RGB, lesion_windows, raw_threshold_figure,
                                      save_png, slice_outcome_figure)

SLICE_HW = (448, 512)


def plaque_slice(row, col, size=2):
    """(448, 512) image, truth and output: flat tissue, one size x size plaque at
    (row, col), bright in the input, missed by the output (yellow, FN_RGB)."""
    image = np.full(SLICE_HW, 0.3)
    truth = np.zeros(SLICE_HW, np.uint8)
    truth[row:row + size, col:col + size] = 1
    image[truth == 1] = 0.9
    return image, truth, np.zeros(SLICE_HW)


def saved_rgb(fig, path):
    """The figure saved by save_png and read back: (H, W, 3) floats in [0, 1]."""
    return mpimg.imread(save_png(fig, path))[..., :3]


def png_pixels_of(rgb_png, ax, colour):
    """How many PNG pixels inside `ax` have `colour` (8 bits, +-1 for rounding)."""
    x0, y0, x1, y1 = np.round(ax.get_window_extent().extents).astype(int)
    region = rgb_png[rgb_png.shape[0] - y1:rgb_png.shape[0] - y0, x0:x1]
    return int(np.all(np.abs(region - np.asarray(colour)) < 1.5 / 255, axis=2).sum())


def insets(fig):
    return [ax for ax in fig.axes if ax.get_label().startswith("inset ")]


def outlines(fig):
    return [p for ax in fig.axes for p in ax.patches if isinstance(p, Rectangle)]


def test_a_2x2_plaque_is_zoomed_to_at_least_a_6x6_block_of_png_pixels(tmp_path):
    image, truth, output = plaque_slice(200, 300)
    [window] = lesion_windows(truth)
    assert window.crop(truth).sum() == 4
    fig = slice_outcome_figure(image, truth, output, 0.5, "one missed plaque")
    [outcome] = [ax for ax in insets(fig) if ax.get_label() == "inset 1: output >= 0.5"]
    # In the whole-slice panel (~0.84 PNG pixel per image pixel) it covers at most 3 x 3.
    assert png_pixels_of(saved_rgb(fig, tmp_path / "slice.png"), outcome, FN_RGB) >= 36


@pytest.mark.parametrize("row, col", [(0, 0), (0, 510), (446, 0), (446, 510)])
def test_windows_and_outlines_stay_inside_the_slice_for_a_plaque_at_a_corner(row, col):
    image, truth, output = plaque_slice(row, col)
    [window] = lesion_windows(truth)
    assert 0 <= window.top < window.bottom <= SLICE_HW[0] and 0 <= window.left < window.right <= SLICE_HW[1]
    assert (window.bottom - window.top, window.right - window.left) == (CROP_PX, CROP_PX)  # shifted, not cut
    assert window.crop(truth).sum() == 4
    for fig in (slice_outcome_figure(image, truth, output, 0.5, ""), raw_threshold_figure(image, truth)):
        for rect in outlines(fig):
            assert rect.get_x() >= -0.5 and rect.get_x() + rect.get_width() <= SLICE_HW[1] - 0.5
            assert rect.get_y() >= -0.5 and rect.get_y() + rect.get_height() <= SLICE_HW[0] - 0.5


def test_an_empty_slice_gets_no_insets_and_still_saves(tmp_path):
    empty = np.zeros(SLICE_HW)
    assert lesion_windows(empty, empty) == []
    for fig in (slice_outcome_figure(empty, empty, empty, 0.5, "empty"), raw_threshold_figure(empty, empty)):
        assert insets(fig) == [] and outlines(fig) == []
        assert saved_rgb(fig, tmp_path / "empty.png").shape[1] == FIGURE_WIDTH_PX


def test_windows_go_to_plaques_largest_first_then_to_false_positives_at_most_max():
    truth = np.zeros(SLICE_HW, np.uint8)
    truth[100:102, 100:102] = 1  # small plaque
    truth[300:310, 300:310] = 1  # large plaque
    truth[305:307, 315:317] = 1  # its neighbour: inside the large one's window, no window of its own
    prediction = np.zeros(SLICE_HW, bool)
    prediction[20:30, 400:430] = True  # a false positive larger than every plaque
    centres = [((w.top + w.bottom) // 2, (w.left + w.right) // 2) for w in lesion_windows(truth, prediction)]
    assert centres == [(305, 305), (101, 101), (25, 415)]
    assert len(lesion_windows(truth, prediction, max_windows=2)) == 2


def test_raw_threshold_figure_zooms_each_plaque_in_the_input_and_at_every_threshold():
    image, truth, _ = plaque_slice(200, 300)
    truth[50:53, 60:63] = 1
    fig = raw_threshold_figure(image, truth, thresholds=(0.5, 0.4))
    assert sorted(ax.get_label() for ax in insets(fig)) == [
        f"inset {n}: {name}" for n in (1, 2) for name in ("input", "input >= 40 %", "input >= 50 %")]
    assert len(outlines(fig)) == 2 * 2  # two windows on each of the two whole-slice panels


def test_a_slice_the_panels_already_draw_at_the_magnification_gets_no_insets():
    truth = np.zeros((16, 16), np.uint8)
    truth[5:7, 5:7] = 1
    assert lesion_windows(truth) != []
    assert insets(slice_outcome_figure(truth * 0.9, truth, np.zeros((16, 16)), 0.5, "")) == []
