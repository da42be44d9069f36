"""The paper's figures, drawn from arrays: a slice with its outcome (Figs. 6-8),
the raw image thresholded at fixed levels (Fig. 9), the precision-recall
trade-off behind the chosen threshold (§3.3).

The slice figures keep the whole slice and add each lesion zoomed below it
(`lesion_windows`): at report width a 448 x 512 slice is drawn at about 0.8
screen pixel per image pixel, where a 2 x 2 plaque is a dot.

Figures are built as `matplotlib.figure.Figure` on the Agg canvas (no pyplot,
no display), saved as PNG.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from scipy import ndimage

from ..typing import PathLike

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Panel = Tuple[np.ndarray, str]   # an (H, W) or (H, W, 3) image and its title

# Outcome colours of a thresholded output against the ground truth.
TP_RGB = (0.0, 0.85, 0.0)  # green: plaque found
FP_RGB = (0.95, 0.0, 0.0)  # red: marked, not a plaque
FN_RGB = (1.0, 0.85, 0.0)  # yellow: plaque missed (visible on dark tissue)
WINDOW_RGB = (0.0, 0.75, 1.0)  # cyan: where each zoomed window lies, apart from the outcome colours

# Zoomed insets: a square window around each lesion, every image pixel drawn as
# a MAGNIFICATION x MAGNIFICATION block (nearest neighbour: pixels stay pixels).
CROP_PX = 40  # window side in image pixels (20 mm at 0.5 mm pixels)
MAGNIFICATION = 4  # PNG pixels per image pixel in an inset: a 2 x 2 plaque is 8 x 8
MAX_INSETS = 5  # windows per figure: 5 x 160 px + gaps fit FIGURE_WIDTH_PX (a larger max_insets overflows it)

# Slice figures are laid out in PNG pixels (saved at FIGURE_DPI: one layout
# pixel is one PNG pixel); 900 px fit the report's 60em column unscaled, so
# the insets reach the reader at MAGNIFICATION.
FIGURE_DPI = 100
FIGURE_WIDTH_PX = 900
MARGIN_PX = 15  # figure edge to the panels
GAP_PX = 12  # between panels, and between insets
TITLE_PX = 22  # a panel's title band
HEADER_PX = 36  # the figure's title
HEADING_PX = 30  # the line above the insets
FOOTER_PX = 30  # the colour legend


def outcome_rgb(image_hw: np.ndarray, prediction_hw: np.ndarray, truth_hw: np.ndarray) -> np.ndarray:
    """(H, W, 3) float RGB in [0, 1]: the image dimmed to half, with TP green,
    FP red and FN yellow painted over it; true negatives show the image."""
    grey = 0.5 * np.clip(np.asarray(image_hw, dtype=np.float64), 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    prediction = np.asarray(prediction_hw) != 0
    truth = np.asarray(truth_hw) != 0
    rgb[prediction & truth] = TP_RGB
    rgb[prediction & ~truth] = FP_RGB
    rgb[~prediction & truth] = FN_RGB
    return rgb


# --- where to zoom -----------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Window:
    """Rows [top, bottom) and columns [left, right) of an (H, W) slice, in pixels."""
    top: int
    bottom: int
    left: int
    right: int

    def crop(self, image_hw: np.ndarray) -> np.ndarray:
        """The window's part of an (H, W) or (H, W, C) image."""
        return image_hw[self.top:self.bottom, self.left:self.right]

    def contains(self, row: int, col: int) -> bool:
        return self.top <= row < self.bottom and self.left <= col < self.right


def window_around(row: int, col: int, shape_hw: Tuple[int, int], side: int = CROP_PX) -> Window:
    """The side x side window centred on pixel (row, col) of an (H, W) slice,
    shifted (not cut) to lie inside it; a side longer than H or W is cut to it."""
    (top, bottom), (left, right) = (_span(c, n, side) for c, n in zip((row, col), shape_hw))
    return Window(top, bottom, left, right)


def _span(centre: int, n: int, side: int) -> Tuple[int, int]:
    side = min(side, n)
    start = min(max(centre - side // 2, 0), n - side)
    return start, start + side


def lesion_windows(truth_hw: np.ndarray, prediction_hw: Optional[np.ndarray] = None, side: int = CROP_PX,
                   max_windows: Optional[int] = MAX_INSETS) -> List[Window]:
    """Windows to zoom into: one per 8-connected component of the truth, largest
    first, then per component of the prediction outside the truth (false
    positives), largest first; each centred on its component's bounding box
    (a component wider than `side` shows its middle). A component whose centre
    lies in an earlier window adds none. At most `max_windows` (None: all);
    empty masks give []. truth_hw, prediction_hw: (H, W), nonzero = lesion."""
    truth = np.asarray(truth_hw) != 0
    masks = [truth] if prediction_hw is None else [truth, (np.asarray(prediction_hw) != 0) & ~truth]
    windows: List[Window] = []
    for row, col in (centre for mask in masks for centre in _component_centres(mask)):
        if max_windows is not None and len(windows) >= max_windows:
            break
        if not any(w.contains(row, col) for w in windows):
            windows.append(window_around(row, col, truth.shape, side))
    return windows


def _component_centres(mask_hw: np.ndarray) -> List[Tuple[int, int]]:
    """Bounding-box centres (row, col) of the 8-connected components of a boolean
    (H, W) mask, the largest component first (ties: raster order)."""
    labels, n = ndimage.label(mask_hw, structure=np.ones((3, 3)))
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    return [((boxes[i][0].start + boxes[i][0].stop) // 2, (boxes[i][1].start + boxes[i][1].stop) // 2)
            for i in np.argsort(-sizes, kind="stable")]


# --- drawing -----------------------------------------------------------------

def _legend(fig: Figure) -> None:
    fig.legend(handles=[Patch(color=TP_RGB, label="true positive"), Patch(color=FP_RGB, label="false positive"),
                        Patch(color=FN_RGB, label="false negative")],
               loc="lower center", ncol=3, frameon=False, fontsize=8)


def _show(ax: Axes, image: np.ndarray, title: str, fontsize: float = 9, **kwargs: Any) -> None:
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=fontsize)
    ax.set_axis_off()


def _show_slice(ax: Axes, image: np.ndarray, title: str, fontsize: float = 9) -> None:
    """An (H, W) image in [0, 1] as grey, an (H, W, 3) one as RGB."""
    grey = {} if np.ndim(image) == 3 else {"cmap": "gray", "vmin": 0, "vmax": 1}
    _show(ax, image, title, fontsize, **grey)


def _axes_px(fig: Figure, left: float, top: float, width: float, height: float) -> Axes:
    """Axes placed in PNG pixels, measured from the figure's top-left corner."""
    fig_w, fig_h = fig.get_size_inches() * fig.dpi
    return fig.add_axes((left / fig_w, 1 - (top + height) / fig_h, width / fig_w, height / fig_h))


def _outline(ax: Axes, windows: Sequence[Window]) -> None:
    """Each window's rectangle and number on a whole-slice panel."""
    for number, w in enumerate(windows, 1):
        ax.add_patch(Rectangle((w.left - 0.5, w.top - 0.5), w.right - w.left, w.bottom - w.top,
                               fill=False, edgecolor=WINDOW_RGB, lw=1.0))
        above = w.top >= CROP_PX // 2  # room for the number above the window, else below it
        ax.text(w.left - 0.5, w.top - 1.5 if above else w.bottom + 0.5, str(number), color=WINDOW_RGB,
                fontsize=8, fontweight="bold", ha="left", va="bottom" if above else "top", clip_on=True)


def _slice_figure(panels: Sequence[Sequence[Panel]], insets: Sequence[Panel], windows: Sequence[Window], title: str,
                  heading: str) -> Figure:
    """Rows of whole-slice panels ((H, W) or (H, W, 3) image, title), each window
    outlined on them; below, one row of crops per `insets` entry (image, name),
    one column per window, each crop at MAGNIFICATION. No insets without windows,
    nor for a slice so small that the panels already draw it at MAGNIFICATION."""
    shape = np.shape(panels[0][0][0])[:2]
    columns = max(len(row) for row in panels)
    panel_w = (FIGURE_WIDTH_PX - 2 * MARGIN_PX - (columns - 1) * GAP_PX) / columns
    if panel_w / shape[1] >= MAGNIFICATION:
        windows = []
    panel_h = panel_w * shape[0] / shape[1]
    crop_h, crop_w = (min(CROP_PX, n) * MAGNIFICATION for n in shape)
    insets_h = HEADING_PX + len(insets) * (TITLE_PX + crop_h) if windows else 0
    height = math.ceil(HEADER_PX + len(panels) * (TITLE_PX + panel_h) + insets_h + FOOTER_PX)
    fig = Figure(figsize=(FIGURE_WIDTH_PX / FIGURE_DPI, height / FIGURE_DPI), dpi=FIGURE_DPI)
    fig.suptitle(title, fontsize=10, y=1 - 8 / height, va="top")
    top = HEADER_PX
    for row in panels:
        for i, (image, name) in enumerate(row):
            ax = _axes_px(fig, MARGIN_PX + i * (panel_w + GAP_PX), top + TITLE_PX, panel_w, panel_h)
            _show_slice(ax, image, name)
            _outline(ax, windows)
        top += TITLE_PX + panel_h
    if windows:
        _inset_rows(fig, math.ceil(top), crop_h, crop_w, insets, windows, heading)
    _legend(fig)
    return fig


def _inset_rows(fig: Figure, top: int, crop_h: int, crop_w: int, insets: Sequence[Panel], windows: Sequence[Window],
                heading: str) -> None:
    """The zoomed crops, centred, on whole PNG pixels so each image pixel is
    exactly MAGNIFICATION x MAGNIFICATION; each axes labelled "inset N: name"."""
    fig.text(0.5, 1 - (top + HEADING_PX / 2) / (fig.get_size_inches()[1] * fig.dpi), heading,
             ha="center", va="center", fontsize=9)
    top += HEADING_PX
    left = (FIGURE_WIDTH_PX - len(windows) * (crop_w + GAP_PX) + GAP_PX) // 2
    for image, name in insets:
        for number, w in enumerate(windows, 1):
            ax = _axes_px(fig, left + (number - 1) * (crop_w + GAP_PX), top + TITLE_PX, crop_w, crop_h)
            _show_slice(ax, w.crop(image), f"{number}: {name}", fontsize=8)
            ax.set_label(f"inset {number}: {name}")
        top += TITLE_PX + crop_h


def slice_outcome_figure(image_hw: np.ndarray, truth_hw: np.ndarray, output_hw: np.ndarray, threshold: float, title: str,
                         max_insets: int = MAX_INSETS) -> Figure:
    """Paper Figs. 7-8: input and ground truth (left), network output before and
    after thresholding at `threshold` (right, outcome colours); below, each
    lesion zoomed (`lesion_windows`: the truth's, then the false positives'),
    its input above its outcome. A slice with no truth and nothing marked has
    no insets. image_hw, output_hw: (H, W) in [0, 1]; truth_hw: (H, W), nonzero
    = plaque."""
    prediction = np.asarray(output_hw) >= threshold
    outcome = outcome_rgb(image_hw, prediction, truth_hw)
    marked = f"output >= {threshold:.4g}"
    panels = [[(image_hw, "input (normalised FLAIR)"), (output_hw, "network output")],
              [(truth_hw, "ground truth"), (outcome, marked)]]
    heading = (f"Zoomed ×{MAGNIFICATION}: the {CROP_PX} × {CROP_PX}-pixel windows numbered above; "
               "plaques first, then false positives, largest first")
    windows = lesion_windows(truth_hw, prediction, max_windows=max_insets)
    return _slice_figure(panels, [(image_hw, "input"), (outcome, marked)], windows, title, heading)


def raw_threshold_figure(image_hw: np.ndarray, truth_hw: np.ndarray, thresholds: Sequence[float] = (0.50, 0.45, 0.40),
                         title: str = "", max_insets: int = MAX_INSETS) -> Figure:
    """Paper Fig. 9: the normalised input itself thresholded at 50, 45 and 40 %;
    below, each plaque of the truth zoomed (`lesion_windows`), its input above
    its outcome at each threshold. No plaque, no insets. image_hw: (H, W) in
    [0, 1]; truth_hw: (H, W), nonzero = plaque."""
    image_hw = np.asarray(image_hw)
    outcomes = [(outcome_rgb(image_hw, image_hw >= t, truth_hw), f"input >= {100 * t:.0f} %") for t in thresholds]
    heading = (f"Zoomed ×{MAGNIFICATION}: the {CROP_PX} × {CROP_PX}-pixel windows numbered above; "
               "plaques, largest first")
    # Only the truth's components: the question here is whether a plaque clears the threshold.
    windows = lesion_windows(truth_hw, max_windows=max_insets)
    return _slice_figure([outcomes], [(image_hw, "input"), *outcomes], windows, title, heading)


def precision_recall_figure(curves: Dict[str, Dict[str, Any]], title: str = "") -> Figure:
    """Precision against recall over all thresholds, one line per curve, the
    chosen threshold marked. curves: {label: {"precision", "recall" (K,) arrays,
    "chosen": (recall, precision), "threshold": float}}."""
    fig = Figure(figsize=(5.5, 5.0))
    ax = fig.subplots()
    for label, c in curves.items():
        line, = ax.plot(c["recall"], c["precision"], lw=1.2, label=label)
        r, p = c["chosen"]
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        ax.plot([r], [p], "o", color=line.get_color(), ms=6, label=f"chosen: t = {c['threshold']:.4g}, F = {f1:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def training_curves_figure(loss_iteration: Optional[np.ndarray], loss: Optional[np.ndarray],
                           snapshot_iteration: Sequence[float], test_f1: Sequence[float],
                           train_f1: Optional[Sequence[float]] = None,
                           loss_label: str = "training loss") -> Figure:
    """Paper Fig. 5: the training loss per iteration (top) above the pixel
    F-measure of each snapshot on the test scans (bottom), iterations shared.
    loss_iteration/loss: (K,) arrays, or None when no loss was logged;
    snapshot_iteration, test_f1, train_f1: (M,) arrays."""
    fig = Figure(figsize=(7.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True)
    if loss_iteration is not None and len(loss_iteration):
        top.plot(loss_iteration, loss, lw=1.0, color="tab:blue")
    else:
        top.text(0.5, 0.5, "no training loss logged (train.csv / train.log)", ha="center", va="center",
                 transform=top.transAxes, fontsize=9)
    top.set_ylabel(loss_label)
    top.grid(alpha=0.3)
    bottom.plot(snapshot_iteration, test_f1, "o-", color="tab:red", label="test F-measure")
    if train_f1 is not None:
        bottom.plot(snapshot_iteration, train_f1, "s--", color="tab:gray", ms=4, label="train F-measure")
    bottom.set_xlabel("iteration")
    bottom.set_ylabel("pixel F-measure")
    bottom.set_ylim(0, 1)
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def save_png(fig: Figure, path: PathLike) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=FIGURE_DPI)
    return Path(path)
