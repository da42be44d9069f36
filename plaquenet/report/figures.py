"""The paper's figures, drawn from arrays: a slice with its outcome (Figs. 6-8),
the raw image thresholded at fixed levels (Fig. 9), the precision-recall
trade-off behind the chosen threshold (§3.3).

Figures are built as `matplotlib.figure.Figure` on the Agg canvas (no pyplot,
no display), saved as PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Outcome colours of a thresholded output against the ground truth.
TP_RGB = (0.0, 0.85, 0.0)  # green: plaque found
FP_RGB = (0.95, 0.0, 0.0)  # red: marked, not a plaque
FN_RGB = (1.0, 0.85, 0.0)  # yellow: plaque missed (visible on dark tissue)


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


def _legend(fig: Figure) -> None:
    fig.legend(handles=[Patch(color=TP_RGB, label="true positive"), Patch(color=FP_RGB, label="false positive"),
                        Patch(color=FN_RGB, label="false negative")],
               loc="lower center", ncol=3, frameon=False, fontsize=8)


def _show(ax, image, title, **kwargs) -> None:
    ax.imshow(image, interpolation="nearest", **kwargs)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def slice_outcome_figure(image_hw, truth_hw, output_hw, threshold: float, title: str) -> Figure:
    """Paper Figs. 7-8: input and ground truth (left), network output before and
    after thresholding at `threshold` (right, outcome colours)."""
    fig = Figure(figsize=(7.0, 7.4))
    axes = fig.subplots(2, 2)
    _show(axes[0, 0], image_hw, "input (normalised FLAIR)", cmap="gray", vmin=0, vmax=1)
    _show(axes[0, 1], output_hw, "network output", cmap="gray", vmin=0, vmax=1)
    _show(axes[1, 0], truth_hw, "ground truth", cmap="gray", vmin=0, vmax=1)
    _show(axes[1, 1], outcome_rgb(image_hw, output_hw >= threshold, truth_hw), f"output >= {threshold:.4g}")
    fig.suptitle(title, fontsize=10)
    _legend(fig)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.9, bottom=0.06, wspace=0.05, hspace=0.12)
    return fig


def raw_threshold_figure(image_hw, truth_hw, thresholds: Sequence[float] = (0.50, 0.45, 0.40),
                         title: str = "") -> Figure:
    """Paper Fig. 9: the normalised input itself thresholded at 50, 45 and 40 %."""
    fig = Figure(figsize=(10.0, 4.0))
    axes = fig.subplots(1, len(thresholds))
    for ax, t in zip(np.atleast_1d(axes), thresholds):
        _show(ax, outcome_rgb(image_hw, image_hw >= t, truth_hw), f"input >= {100 * t:.0f} %")
    fig.suptitle(title, fontsize=10)
    _legend(fig)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.86, bottom=0.1, wspace=0.03)
    return fig


def precision_recall_figure(curves: Dict[str, dict], title: str = "") -> Figure:
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


def training_curves_figure(loss_iteration, loss, snapshot_iteration, test_f1, train_f1=None,
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


def save_png(fig: Figure, path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)
    return Path(path)
