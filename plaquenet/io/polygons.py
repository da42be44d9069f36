"""Outline polygons -> pixel masks, one rule for every source of polygons
(RTSTRUCT contours on import, the phantom's radiologist outlines)."""

from typing import Iterable, Tuple

import cv2
import numpy as np

_SHIFT = 4  # cv2 sub-pixel bits: vertices are kept to 1/16 pixel


def rasterise_polygons(polygons_cr: Iterable[np.ndarray], shape_hw: Tuple[int, int]) -> np.ndarray:
    """Fill closed polygons given in pixel coordinates (column, row), float, pixel
    centres at integer coordinates; returns a uint8 (H, W) mask of 0/1.

    The rule (cv2.fillPoly at 1/16-pixel precision): a pixel is set when its
    centre is inside the polygon OR the outline passes through it, the outline
    being drawn as a line of pixels (each outline point rounded to the nearest
    pixel centre, ties to the larger column/row). So an outline through the
    centres of the border pixels gives exactly those pixels and the interior;
    an outline along pixel edges ((c - 0.5, r - 0.5), ...) also gets the
    column to its right and the row below. Overlapping polygons are united,
    not XORed (a hole contour is filled)."""
    mask = np.zeros(shape_hw, dtype=np.uint8)
    for poly in polygons_cr:
        pts = np.round(np.asarray(poly, dtype=np.float64) * (1 << _SHIFT)).astype(np.int32)
        if len(pts) >= 3:
            cv2.fillPoly(mask, [pts.reshape(-1, 1, 2)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask
