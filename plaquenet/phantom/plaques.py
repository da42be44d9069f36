"""Plaques and the radiologist's outlines.

5-15 plaques per patient where MS puts them (§2): periventricular ovoids with
their long axis perpendicular to the ventricle wall (Dawson's fingers),
juxtacortical, deep white matter, infratentorial; 3D blobs (unions of 1-3
ellipsoids) that span 1-3 slices, some small and faint. Each is painted over
the tissue image with the fraction of every voxel it fills.

The radiologist's mask is not the plaque itself but an approximate polygon
drawn a little generously around each visible plaque on each slice (§6: "the
gold standard consisted of approximate polygons"), rasterised by
`plaquenet.io.polygons.rasterise_polygons`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .head import PARENCHYMA, SHAPE_HW, TISSUE, Head

# --- where and how many ---------------------------------------------------------------
PLAQUES_PER_PATIENT = (5, 16)  # integers in [5, 16)
KIND_SHARE = {"periventricular": 0.45, "juxtacortical": 0.2, "deep": 0.2, "infratentorial": 0.15}
PERIVENTRICULAR_MM = (1.5, 5)  # centre this far from the ventricle
JUXTACORTICAL_MM = 2.0  # centre nearer the cortex than this ...
DEEP_MM = 5  # ... deep: farther from it than this ...
AWAY_FROM_VENTRICLE_MM = 8  # ... and both farther than this from the ventricle

# --- shape (mm) -----------------------------------------------------------------------------
PERIVENTRICULAR_AXES_MM = ((3.5, 8), (2, 3.5), (2.5, 6))  # long (along the normal), short, height
AXES_MM = {"juxtacortical": (1.5, 4), "deep": (2, 6), "infratentorial": (1.5, 4.5), "any": (2, 5)}
TILT_SD = 0.15  # radians, of the long axis out of the slice plane
SMALL_SHARE, SMALL_FACTOR, SMALL_MIN_MM = 0.2, 0.5, 1.2  # a fifth are half size, axes at least 1.2 mm
MAX_HEIGHT = 0.9  # height semi-axis at most this many slice spacings (or thicknesses): 1-3 slices
OFF_CENTRE = 0.25  # centre within this many slice spacings (at most 6 mm) of a slice
EXTRA_LOBES_P = (0.5, 0.3, 0.2)  # chance of 0, 1, 2 more ellipsoids: irregular, confluent shapes
LOBE_FLATTEN = 0.3  # lobes sit mostly beside the first, little above or below
LOBE_OFFSET = 0.6  # lobe centre at this times the longest semi-axis from the first's
LOBE_SCALE = (0.5, 0.8)
EDGE = 0.25  # soft edge: the fraction falls from 1 to 0 over this much normalised radius

# --- signal ------------------------------------------------------------------------------
FAINT_SHARE = 0.2
FAINT_CONTRAST = (1.2, 1.35)  # signal against white matter
CONTRAST = (1.45, 2.0)
SUBPLANES = 4  # samples of a voxel over the slice thickness
MIN_FRACTION = 0.05  # a plaque filling less of every voxel of a slice misses the slice

# --- the radiologist's outlines ---------------------------------------------------------------
MIN_VISIBLE_CONTRAST = 0.12  # outlined when (contrast - 1) * the fullest voxel's fraction reaches this ...
VISIBLE_FRACTION = 0.35  # ... around the voxels at least this full ...
MIN_AREA_PX = 2  # ... in patches of at least this area
VERTICES = (5, 12)  # a polygon of 5-12 vertices ...
POINTS_PER_VERTEX = 5  # ... one per 5 boundary points ...
ANGLE_JITTER = 0.2  # ... at jittered angles (fraction of their spacing) ...
MARGIN_PX = (0.3, 1.3)  # ... this generous (one margin per polygon) ...
MARGIN_SD_PX = 0.3  # ... plus this per vertex ...
MIN_REACH_PX = 1.0  # ... at least this far from the centre
GRID = 16  # vertices on rasterise_polygons' 1/16-pixel grid


@dataclasses.dataclass
class Plaque:
    """One plaque in 3D: a union of ellipsoids in the slices' pixel grid (rows, columns) and scanner z."""

    kind: str
    # (centre (row, col, scanner z mm from the model origin), rotation, semi-axes mm) of 1-3 ellipsoids
    lobes: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]
    contrast: float  # signal relative to white matter
    reach_px: float


Fraction = Tuple[Tuple[slice, slice], np.ndarray]  # (window (rows, cols), fraction of each voxel in it)


def draw_plaques(rng: np.random.Generator, head: Head, labels_shw: np.ndarray) -> List[Plaque]:
    """5-15 plaques where MS puts them (§2): periventricular, juxtacortical,
    deep white matter, infratentorial. Each is centred within a quarter of the
    slice spacing of one slice and at most 0.9 spacings high, so it shows on
    1-3 slices."""
    candidates: Dict[str, list] = {}
    distances: Dict[int, Dict[str, np.ndarray]] = {}
    plaques = []
    for _ in range(int(rng.integers(*PLAQUES_PER_PATIENT))):
        kind = str(rng.choice(list(KIND_SHARE), p=list(KIND_SHARE.values())))
        for kind in (kind, "any"):
            if kind not in candidates:
                candidates[kind] = [_candidates(head, labels, kind, distances.setdefault(k, {}))
                                    for k, labels in enumerate(labels_shw)]
            counts = np.array([len(c[0]) for c in candidates[kind]], float)
            if counts.sum() > 0:
                break
        else:
            break  # no white matter in any slice: a plaque-free patient
        k = int(rng.choice(len(counts), p=counts / counts.sum()))
        i = int(rng.integers(counts[k]))
        rows, cols, normals = candidates[kind][k]
        plaques.append(_plaque_shape(rng, head, kind, k, rows[i], cols[i], normals[i]))
    return plaques


def _candidates(head: Head, labels: np.ndarray, kind: str,
                cache: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (rows, cols, normal angle) of one slice where a plaque of `kind` may sit."""
    white = labels == TISSUE["white"]
    if kind == "infratentorial":
        where = (labels == TISSUE["brainstem"]) | (labels == TISSUE["cerebellar_white"])
    elif kind == "any" or not white.any():
        where = white
    else:
        if not cache:
            for name in ("ventricle", "grey"):
                mask = (labels != TISSUE[name]).astype(np.uint8)
                cache[name] = cv2.distanceTransform(mask, cv2.DIST_L2, 5) * head.pixel_mm
        vent, cortex = cache["ventricle"], cache["grey"]
        near, far = PERIVENTRICULAR_MM
        where = {"periventricular": white & (vent > near) & (vent < far),
                 "juxtacortical": white & (cortex < JUXTACORTICAL_MM) & (vent > AWAY_FROM_VENTRICLE_MM),
                 "deep": white & (cortex > DEEP_MM) & (vent > AWAY_FROM_VENTRICLE_MM)}[kind]
    rows, cols = np.nonzero(where)
    normal = np.zeros(len(rows))
    if kind == "periventricular" and len(rows):
        # Dawson's fingers: the long axis follows the gradient of the distance to the ventricle
        vent = cache["ventricle"]
        normal = np.arctan2(cv2.Sobel(vent, cv2.CV_32F, 0, 1)[rows, cols],
                            cv2.Sobel(vent, cv2.CV_32F, 1, 0)[rows, cols])
    return rows, cols, normal


def _plaque_shape(rng: np.random.Generator, head: Head, kind: str, k: int, row: int, col: int,
                  normal: float) -> Plaque:
    """Union of 1-3 ellipsoids, sized and oriented by kind; some small and faint."""
    if kind == "periventricular":
        axes = np.array([rng.uniform(*span) for span in PERIVENTRICULAR_AXES_MM])
        angle = normal  # long axis perpendicular to the ventricle wall
    else:
        axes = rng.uniform(*AXES_MM[kind], 3)
        angle = rng.uniform(0, np.pi)
    if rng.random() < SMALL_SHARE:
        axes = np.maximum(axes * SMALL_FACTOR, SMALL_MIN_MM)
    axes[2] = min(axes[2], MAX_HEIGHT * max(head.spacing_mm, head.thickness_mm))
    z = head.z_model[k] * head.scale + rng.uniform(-OFF_CENTRE, OFF_CENTRE) * min(head.spacing_mm, 6)
    centre = np.array([row, col, z], float)
    lobes = [(centre, _rotation(angle, rng.normal(0, TILT_SD)), axes)]
    for _ in range(int(rng.choice(3, p=list(EXTRA_LOBES_P)))):
        direction = rng.normal(size=3) * [1, 1, LOBE_FLATTEN]
        offset_mm = LOBE_OFFSET * axes.max() * direction / np.linalg.norm(direction)
        offset = offset_mm / [head.pixel_mm, head.pixel_mm, 1]
        lobes.append((centre + offset, _rotation(rng.uniform(0, np.pi), 0), axes * rng.uniform(*LOBE_SCALE, 3)))
    faint = rng.random() < FAINT_SHARE
    contrast = rng.uniform(*FAINT_CONTRAST) if faint else rng.uniform(*CONTRAST)
    reach = max(np.abs(l[0][:2] - centre[:2]).max() + l[2].max() / head.pixel_mm for l in lobes) + 3
    return Plaque(kind, lobes, contrast, reach)


def _rotation(angle: float, tilt: float) -> np.ndarray:
    """Rotation taking the plaque's (long, short, height) axes to (col, row, z)."""
    c, s = np.cos(angle), np.sin(angle)
    yaw = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    ct, st = np.cos(tilt), np.sin(tilt)
    return yaw @ np.array([[ct, 0, st], [0, 1, 0], [-st, 0, ct]])


def plaque_fractions(head: Head, plaques: List[Plaque], k: int, labels: np.ndarray) -> List[Optional[Fraction]]:
    """Per plaque, (window, fraction) of slice k: the fraction of each pixel's
    voxel (over the slice thickness) inside the plaque, within brain
    parenchyma; None where the plaque misses the slice."""
    zk = head.z_model[k] * head.scale
    subplanes = zk + head.thickness_mm * (np.arange(SUBPLANES) + 0.5 - SUBPLANES / 2) / SUBPLANES
    out: List[Optional[Fraction]] = []
    for p in plaques:
        r0, c0 = p.lobes[0][0][:2].round().astype(int)
        reach = int(np.ceil(p.reach_px))
        win = (slice(max(r0 - reach, 0), min(r0 + reach + 1, SHAPE_HW[0])),
               slice(max(c0 - reach, 0), min(c0 + reach + 1, SHAPE_HW[1])))
        rows, cols = np.mgrid[win]
        frac = np.zeros(rows.shape, np.float32)
        for zs in subplanes:
            inside = np.zeros(rows.shape, np.float32)
            for centre, rot, axes in p.lobes:
                d = np.stack([(cols - centre[1]) * head.pixel_mm, (rows - centre[0]) * head.pixel_mm,
                              np.full(rows.shape, zs - centre[2])], -1) @ rot
                rho = np.sqrt(((d / axes) ** 2).sum(-1))
                inside = np.maximum(inside, np.clip((1 - rho) / EDGE + 0.5, 0, 1))
            frac += inside / len(subplanes)
        frac *= np.isin(labels[win], PARENCHYMA)
        out.append((win, frac) if frac.max() > MIN_FRACTION else None)
    return out


def paint_plaque(image: np.ndarray, plaque: Plaque, frac: Fraction, head: Head) -> None:
    """Mix the plaque's signal into `image` (H, W) by the fraction of each voxel it fills."""
    win, f = frac
    lesion = head.signal[TISSUE["white"]] * plaque.contrast
    image[win] = image[win] * (1 - f) + lesion * f


def outline_plaques(rng: np.random.Generator, plaques: List[Plaque],
                    fractions: List[Optional[Fraction]]) -> List[np.ndarray]:
    """The radiologist's outlines on one slice: for every plaque visible there
    (enough of it, bright enough), a few-vertex polygon drawn a little
    generously around it. §6: "the gold standard consisted of approximate
    polygons"."""
    polygons = []
    for plaque, frac in zip(plaques, fractions):
        if frac is None or (plaque.contrast - 1) * frac[1].max() < MIN_VISIBLE_CONTRAST:
            continue
        win, f = frac
        visible = (f > VISIBLE_FRACTION).astype(np.uint8)
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            if cv2.contourArea(contour) < MIN_AREA_PX:
                continue
            points = contour[:, 0, :].astype(np.float64) + [win[1].start, win[0].start]
            polygons.append(_approximate_polygon(rng, points))
    return polygons


def _approximate_polygon(rng: np.random.Generator, points_cr: np.ndarray) -> np.ndarray:
    """A star polygon of 5-12 vertices around boundary points (column, row):
    each vertex as far out as the boundary in its direction plus a generous,
    jittered margin; vertices on rasterise_polygons' 1/16-pixel grid so that
    writing them to an RTSTRUCT and back loses nothing."""
    centre = points_cr.mean(axis=0)
    rel = points_cr - centre
    angles = np.arctan2(rel[:, 1], rel[:, 0])
    radii = np.hypot(rel[:, 0], rel[:, 1]) + 0.5  # pixel centres -> pixel edges
    n = int(np.clip(round(len(points_cr) / POINTS_PER_VERTEX), *VERTICES))
    theta = rng.uniform(0, 2 * np.pi) + (np.arange(n) + rng.uniform(-ANGLE_JITTER, ANGLE_JITTER, n)) * 2 * np.pi / n
    gap = np.abs((angles[None, :] - theta[:, None] + np.pi) % (2 * np.pi) - np.pi)
    near = gap < np.pi / n
    reach = np.where(near.any(1), np.where(near, radii[None, :], 0).max(1), radii[gap.argmin(1)])
    reach = reach + rng.uniform(*MARGIN_PX) + rng.normal(0, MARGIN_SD_PX, n)
    vertices = centre + np.maximum(reach, MIN_REACH_PX)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    return np.round(vertices * GRID) / GRID
