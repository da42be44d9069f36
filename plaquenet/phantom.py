"""The embedded synthetic FLAIR cohort: `make demo` runs anywhere, no download.

Each phantom patient is a procedural head, evaluated slice by slice in
millimetres (numpy, cv2, scipy.ndimage; no template):

* scalp (bright subcutaneous fat), calvaria (dark cortical tables, brighter
  marrow) whose layers are measured in 3D, so the topmost slices cut them
  obliquely and show the broad bone the paper blames for false positives
  (§5); skull base with eye globes, orbital fat, optic nerves, ethmoid,
  sphenoid, frontal and maxillary sinuses (dark air, bright mucosa), petrous
  ridges and mastoids (§4.1: "skull bones, areas around eye globes and
  sinuses" were mistaken for plaques);
* brain: cortex a little brighter than white matter (FLAIR), sulci, fissures
  and ventricles dark (fluid suppressed), deep grey nuclei, cerebellum and
  brainstem on the low slices, the normal bright caps at the frontal horns;
* 5-15 plaques per patient where MS puts them (§2): periventricular ovoids
  with their long axis perpendicular to the ventricle wall (Dawson's
  fingers), juxtacortical, deep white matter, infratentorial; 3D blobs that
  span 1-3 slices, some small and faint;
* acquisition: axial slices of 448x512 pixels of about 0.45 mm, 3-5 mm thick
  (§2, §4.1), spread from the skull base to the vertex; smooth multiplicative
  bias field; Rician noise; 12-bit storage with a rescale slope/intercept.

The radiologist's mask is not the plaque itself but an approximate polygon
drawn a little generously around each visible plaque on each slice (§6: "the
gold standard consisted of approximate polygons"), rasterised with
`plaquenet.io.polygons.rasterise_polygons`, the rule the RTSTRUCT import
uses, so DICOM round trips give identical masks.

`write_phantom` writes the cohort as a hospital would hand it over (with FAKE
patient data in every header, so tests can prove the import strips it)::

    OUT/dicom/<Surname_Name>/flair/<random hex>.dcm   MR Image Storage, one per slice
    OUT/dicom/<Surname_Name>/outlines.dcm             RTSTRUCT (patients 0, 2, ...)
                                                      or DICOM SEG (patients 1, 3, ...)
    OUT/nifti/<Surname_Name>/flair.nii.gz             float32, RAS-ordered voxels
    OUT/nifti/<Surname_Name>/mask.nii.gz              uint8, same grid and affine

Everything is seeded: the same seed gives byte-identical files.
`phantom_patient` gives one patient as arrays (tests, figures);
`render_phantom_figure` draws docs/phantom_slice.png.
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from scipy import ndimage

from .atomic import atomic_path
from .errors import InputError
from .io.polygons import rasterise_polygons
from .progress import progress

SHAPE_HW = (448, 512)  # §4.1: "scans of the size 448x512 pixels"

# --- tissues ----------------------------------------------------------------
# FLAIR signal relative to normal white matter, and the amplitude of its
# texture. Fluid is suppressed (CSF, vitreous); fat, marrow and inflamed
# mucosa are brighter than plaques; grey matter is a little brighter than white.
_TISSUES = (
    # name              signal  texture
    ("air", 0.0, 0.0),
    ("skin", 0.8, 0.06),
    ("fat", 2.0, 0.07),
    ("muscle", 0.6, 0.06),
    ("bone", 0.06, 0.3),
    ("marrow", 1.6, 0.15),
    ("mucosa", 1.7, 0.1),
    ("csf", 0.13, 0.25),
    ("ventricle", 0.11, 0.15),
    ("grey", 1.25, 0.04),
    ("white", 1.0, 0.03),
    ("deep_grey", 1.06, 0.035),
    ("cap", 1.3, 0.05),  # normal bright rim at the horns of the lateral ventricles
    ("cerebellum", 1.15, 0.04),
    ("cerebellar_white", 1.0, 0.03),
    ("brainstem", 1.07, 0.03),
    ("vitreous", 0.1, 0.15),
    ("sclera", 0.4, 0.05),
    ("lens", 0.7, 0.05),
    ("nerve", 1.1, 0.04),
)
TISSUE = {name: label for label, (name, _, _) in enumerate(_TISSUES)}
PARENCHYMA = tuple(TISSUE[n] for n in ("grey", "white", "deep_grey", "cap", "cerebellum", "cerebellar_white",
                                        "brainstem"))  # where plaques can be


@dataclasses.dataclass
class PhantomScan:
    """One synthetic patient, in the cohort's axis convention (s inferior ->
    superior, h anterior -> posterior, w patient right -> left).

    `flair_shw` holds exactly the values a DICOM reader gets after applying
    `rescale` to the stored 12-bit pixels, so imports reproduce it bit for bit.
    """

    flair_shw: np.ndarray  # float32 (S, H, W), scanner units
    mask_shw: np.ndarray  # uint8 (S, H, W), the radiologist's polygons rasterised
    plaque_shw: np.ndarray  # float32 (S, H, W) in [0, 1]: fraction of each voxel that is plaque
    tissue_shw: np.ndarray  # uint8 (S, H, W): the healthy anatomy, labels of TISSUE (e.g. TISSUE["white"])
    polygons_cr: List[List[np.ndarray]]  # per slice, (K, 2) float (column, row) pixel vertices
    voxel_mm: Tuple[float, float, float]  # (between slices, between rows, between columns)
    slice_thickness_mm: float
    origin_lps: Tuple[float, float, float]  # DICOM ImagePositionPatient of slice 0, mm
    rescale: Tuple[float, float]  # (slope, intercept): flair = stored * slope + intercept

    @property
    def affine_whs(self) -> np.ndarray:
        """NIfTI affine of flair_shw.transpose(2, 1, 0): index (w, h, s) -> RAS mm."""
        ds, dr, dc = self.voxel_mm
        x0, y0, z0 = self.origin_lps
        return np.array([[-dc, 0, 0, -x0], [0, -dr, 0, -y0], [0, 0, ds, z0], [0, 0, 0, 1]], dtype=np.float64)

    def slice_z_mm(self, k: int) -> float:
        return round(self.origin_lps[2] + k * self.voxel_mm[0], 4)


# --- one patient ---------------------------------------------------------------


def phantom_patient(seed: int = 0, n_slices: int = 20, patient: int = 0) -> PhantomScan:
    """Synthetic axial FLAIR study of one patient: 448x512 slices from the skull
    base to the vertex, plaques, and the radiologist's polygon outlines.

    Deterministic in (seed, patient); patients of one seed are independent.
    """
    if n_slices < 1:
        raise InputError(None, f"a phantom patient needs at least 1 slice, got {n_slices}")
    rng = np.random.default_rng([seed, patient, 0])
    head = _draw_head(rng, n_slices)
    labels_shw = np.stack([_anatomy(head, z) for z in head.z_model])
    plaques = _draw_plaques(rng, head, labels_shw)
    flair_shw = np.empty(labels_shw.shape, np.float32)
    plaque_shw = np.zeros(labels_shw.shape, np.float32)
    mask_shw = np.zeros(labels_shw.shape, np.uint8)
    polygons_cr: List[List[np.ndarray]] = []
    for k in range(n_slices):
        image = _tissue_image(rng, head, labels_shw[k])
        fractions = _plaque_fractions(head, plaques, k, labels_shw[k])
        for plaque, frac in zip(plaques, fractions):
            if frac is not None:
                _paint_plaque(image, plaque, frac, head)
                plaque_shw[k][frac[0]] = np.maximum(plaque_shw[k][frac[0]], frac[1])
        polygons_cr.append(_outline_plaques(rng, plaques, fractions))
        mask_shw[k] = rasterise_polygons(polygons_cr[k], SHAPE_HW)
        flair_shw[k] = _acquire(rng, head, image, k)
    return PhantomScan(
        flair_shw=flair_shw,
        mask_shw=mask_shw,
        plaque_shw=plaque_shw,
        tissue_shw=labels_shw,
        polygons_cr=polygons_cr,
        voxel_mm=(head.spacing_mm, head.pixel_mm, head.pixel_mm),
        slice_thickness_mm=head.thickness_mm,
        origin_lps=head.origin_lps,
        rescale=head.rescale,
    )


@dataclasses.dataclass
class _Head:
    """Per-patient anatomy and acquisition. Model coordinates (u, v, z) are mm
    in the head's own frame, origin near the anterior commissure: u to the
    patient's left, v posterior, z superior (DICOM LPS, rotated and scaled)."""

    scale: float
    u_hw: np.ndarray  # model u of every pixel centre
    v_hw: np.ndarray  # model v
    z_model: np.ndarray  # (S,) model z of every slice
    pixel_mm: float
    spacing_mm: float
    thickness_mm: float
    origin_lps: Tuple[float, float, float]
    rescale: Tuple[float, float]
    signal: np.ndarray  # per tissue, scanner units
    texture: np.ndarray  # per tissue
    noise_sigma: float  # Rician noise, scanner units
    bias_hw: np.ndarray  # in-plane part of the multiplicative bias field
    bias_z: np.ndarray  # (a, b): the bias field of slice k is bias_hw * exp(a z + b z^2), z = model z / 100 mm
    ventricles: float  # size factor (atrophy)
    csf_mm: float  # subarachnoid space
    fat_mm: float
    diploe_mm: float
    sulcus: float
    mucosa: float  # sinus mucosa thickness (0.1 healthy .. 0.5 sinusitis), fraction of radius
    radii: Tuple[float, float, float]  # skin surface: left-right, antero-posterior, vertex semi-axes
    floor_hw: np.ndarray  # model z of the skull base / fossa floors under every pixel
    floor_norm_hw: np.ndarray  # cos of the floor's slope: vertical -> normal distance
    posterior_hw: np.ndarray  # bool: behind the petrous ridges / clivus
    tent_hw: np.ndarray  # model z of the tentorium
    sulci: np.ndarray  # 3D smooth random field on a 2 mm grid (model coordinates)


_FIELD_MM = 2.0
_FIELD_ORIGIN = np.array([-84.0, -104.0, -72.0])  # model (u, v, z) of the field's first voxel


def _draw_head(rng, n_slices) -> _Head:
    scale = rng.uniform(0.9, 1.02)
    yaw = np.deg2rad(rng.uniform(-4, 4))
    pixel_mm = round(rng.uniform(0.43, 0.47), 3)  # "about 0.45 mm"
    h, w = SHAPE_HW
    x0 = round(-(w - 1) / 2 * pixel_mm + rng.uniform(-4, 4), 4)
    y0 = round(-(h - 1) / 2 * pixel_mm + rng.uniform(-4, 4), 4)
    centre = np.array([rng.uniform(-4, 4), rng.uniform(-5, 3)])  # head centre in scanner x, y
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = x0 + cols * pixel_mm - centre[0], y0 + rows * pixel_mm - centre[1]
    c, s = np.cos(yaw), np.sin(yaw)
    u_hw = ((c * dx + s * dy) / scale).astype(np.float32)
    v_hw = ((-s * dx + c * dy) / scale).astype(np.float32)

    # §2: slices 3-5 mm thick; here spread from the skull base to the vertex.
    thickness = float(rng.choice([3.0, 3.5, 4.0, 4.5, 5.0]))
    z_lo, z_hi = -44 + rng.uniform(-3, 3), 70 + rng.uniform(-2, 2)
    z_table = round(rng.uniform(-30, 30), 2)  # scanner z of the model origin
    spacing = round((z_hi - z_lo) * scale / max(n_slices - 1, 1), 2) if n_slices > 1 else thickness
    z_first = round(z_table + (z_lo if n_slices > 1 else 15.0) * scale, 2)
    z_model = np.array([(z_first + k * spacing - z_table) / scale for k in range(n_slices)])

    signal = np.array([t[1] for t in _TISSUES]) * rng.uniform(0.95, 1.05, len(_TISSUES))
    signal[TISSUE["white"]] = signal[TISSUE["cerebellar_white"]] = 1.0
    wm_units = rng.uniform(330, 430)
    fields = _head_fields(rng, u_hw, v_hw)
    return _Head(
        scale=scale, u_hw=u_hw, v_hw=v_hw, z_model=z_model, pixel_mm=pixel_mm,
        spacing_mm=spacing, thickness_mm=thickness, origin_lps=(x0, y0, z_first),
        rescale=(float(rng.choice([0.5, 0.375])), float(-rng.integers(4, 33))),
        signal=signal * wm_units, texture=np.array([t[2] for t in _TISSUES]),
        noise_sigma=wm_units * rng.uniform(0.015, 0.04), bias_hw=_bias_field(rng, u_hw, v_hw),
        bias_z=rng.normal(0, 0.1, 2),
        ventricles=rng.uniform(0.8, 1.6), csf_mm=rng.uniform(1.2, 3.0), fat_mm=rng.uniform(3.0, 6.0),
        diploe_mm=rng.uniform(2.0, 4.0), sulcus=rng.uniform(0.8, 1.4), mucosa=rng.uniform(0.1, 0.45),
        radii=(74.0, 93.0, 77.0), **fields,
    )


def _bias_field(rng, u_hw, v_hw) -> np.ndarray:
    """Smooth multiplicative coil shading, in-plane part: exp of a quadratic, about +-15 %."""
    x, y = u_hw / 100, v_hw / 100
    b = rng.normal(0, 0.1, 4)
    return np.exp(b[0] * x + b[1] * y + b[2] * (x * x + y * y) + b[3] * x * y).astype(np.float32)


def _head_fields(rng, u_hw, v_hw) -> Dict[str, np.ndarray]:
    """Slice-independent maps: skull base height, tentorium, posterior fossa;
    and the 3D random field that draws the sulci."""
    gu, gv = np.mgrid[-90:90:1.0, -110:110:1.0].astype(np.float32)  # model (u, v), 1 mm
    au = np.abs(gu)
    ridge_v = np.where(au < 14, 10.0, -2 + (au - 14) * 0.68)  # petrous ridges meet the clivus
    posterior = gv > ridge_v
    bowl = -64 + 14 * ((gu / 45) ** 2 + ((gv - 45) / 40) ** 2)
    floor = np.where(gv < -28, -14 - 8 * np.exp(-(gu / 7) ** 2), np.where(au < 14, -16.0, -42.0))
    floor = np.where(posterior, np.minimum(bowl, -30), floor)
    # the petrous ridge: a bony wedge from the clivus out to the mastoid
    t = np.clip(((au - 14) * 44 + (gv + 2) * 30) / (44 ** 2 + 30 ** 2), 0, 1)
    d = np.hypot(au - 14 - 44 * t, gv + 2 - 30 * t)
    floor = np.maximum(floor, np.where(au > 12, -23 - 2.5 * d, -99))
    floor = ndimage.gaussian_filter(floor, 3.0)
    gz, gx = np.gradient(floor)
    norm = 1 / np.sqrt(1 + gz ** 2 + gx ** 2)
    tent = -24 + 20 * np.exp(-(gu / 24) ** 2) * np.clip(1 - ((gv - 30) / 50) ** 2, 0, 1)
    coords = np.stack([u_hw + 90, v_hw + 110])

    def sample(grid):  # 1 mm grid -> every pixel of the patient's slices
        return ndimage.map_coordinates(grid, coords, order=1, mode="nearest")

    field = rng.standard_normal((84, 104, 84)).astype(np.float32)
    field = ndimage.gaussian_filter(field, 1.6)
    return dict(
        floor_hw=sample(floor).astype(np.float32),
        floor_norm_hw=sample(norm).astype(np.float32),
        posterior_hw=sample(posterior.astype(np.float32)) > 0.5,
        tent_hw=sample(tent).astype(np.float32),
        sulci=field / field.std(),
    )


# --- anatomy of one slice ---------------------------------------------------------------


def _ellipsoid(head, z, centre, radii) -> Optional[np.ndarray]:
    """Squared normalised radius of an ellipsoid (model mm) in the plane z, or
    None where the plane misses it."""
    dz = ((z - centre[2]) / radii[2]) ** 2
    if dz >= 1:
        return None
    return ((head.u_hw - centre[0]) / radii[0]) ** 2 + ((head.v_hw - centre[1]) / radii[1]) ** 2 + dz


def _both(centre):
    """A centre (u, v, z) on the patient's left and its mirror on the right."""
    return [(centre[0], *centre[1:]), (-centre[0], *centre[1:])]


def _tube(head, z, p0, p1, radius) -> Optional[np.ndarray]:
    """Bool map of the pixels within `radius` mm of the segment p0-p1 (model mm)."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    if z < min(p0[2], p1[2]) - radius or z > max(p0[2], p1[2]) + radius:
        return None
    d = p1 - p0
    du, dv, dz = head.u_hw - p0[0], head.v_hw - p0[1], z - p0[2]
    t = np.clip((du * d[0] + dv * d[1] + dz * d[2]) / (d @ d), 0, 1)
    return (du - t * d[0]) ** 2 + (dv - t * d[1]) ** 2 + (dz - t * d[2]) ** 2 < radius ** 2


def _segment_distance(head, p0, p1) -> np.ndarray:
    """In-plane distance (mm) of every pixel to the segment p0-p1 (model u, v)."""
    d = np.subtract(p1, p0, dtype=float)
    du, dv = head.u_hw - p0[0], head.v_hw - p0[1]
    t = np.clip((du * d[0] + dv * d[1]) / (d @ d), 0, 1)
    return np.hypot(du - t * d[0], dv - t * d[1])


def _paint(labels, where, tissue):
    if where is not None:
        labels[where] = TISSUE[tissue]


def _anatomy(head: _Head, z: float) -> np.ndarray:
    """Tissue labels (H, W) uint8 of the axial plane at model height z (mm)."""
    labels = np.zeros(SHAPE_HW, np.uint8)
    depth, inner = _scalp_and_calvaria(head, z, labels)
    if z < 0:
        _skull_base(head, z, labels, depth, inner)
    _brain(head, z, labels, depth, inner)
    for side in (1, -1):  # optic nerves, from the globe to the chiasm
        _paint(labels, _tube(head, z, (31 * side, -56, -26), (13 * side, -32, -20), 2.2), "nerve")
        _paint(labels, _tube(head, z, (13 * side, -32, -20), (4 * side, -12, -13), 2.0), "nerve")
    return labels


def _skin_depth(head, z) -> np.ndarray:
    """Depth below the skin surface (mm, < 0 outside), measured in 3D, so that a
    plane near the vertex cuts every layer obliquely (§5: the calvaria "appear
    much broader" on the topmost scans)."""
    a, b, c = head.radii
    zc = 5.0
    if z < zc:  # face and neck: the cross-section narrows a little downwards
        taper = 1 - 0.08 * ((zc - z) / 50) ** 2
        a, b, wz, gz = a * taper, b * taper, 0.0, 0.0
    else:
        wz, gz = ((z - zc) / c) ** 2, (z - zc) / c ** 2
    u, v = head.u_hw, head.v_hw
    f = (u / a) ** 2 + (v / b) ** 2 + wz
    g2 = (u / a ** 2) ** 2 + (v / b ** 2) ** 2 + gz ** 2
    rho = np.sqrt(f)
    # one Newton step to the surface f = 1: exact for a sphere, good near the skin
    reach = np.where(g2 > 1e-12, np.sqrt(f / np.maximum(g2, 1e-12)), min(a, b))
    return ((1 - rho) * reach).astype(np.float32)


def _scalp_and_calvaria(head, z, labels):
    """Skin, scalp fat, temporalis, outer table, diploe, inner table; returns
    the skin depth and the depth of the inner skull surface (mm)."""
    u, v = head.u_hw, head.v_hw
    depth = _skin_depth(head, z)
    lateral = np.clip((np.abs(u) / head.radii[0] - 0.55) / 0.25, 0, 1)
    muscle = 7 * lateral * np.exp(-((v + 10) / 40) ** 2 - ((z + 5) / 30) ** 2)
    fat = head.fat_mm * (1 + 0.15 * np.sin(2 * np.arctan2(v, u) + 1.0)) * (1 - 0.5 * lateral)
    layers = [(0, "skin"), (1.2, "fat"), (1.2 + fat, "muscle"), (1.2 + fat + muscle, "bone")]
    layers.append((layers[-1][0] + 1.6, "marrow"))
    layers.append((layers[-1][0] + head.diploe_mm * (1 - 0.6 * lateral), "bone"))
    inner = layers[-1][0] + 1.4
    for start, tissue in layers:
        labels[depth >= start] = TISSUE[tissue]
    if z < -12:  # the nose and the ears stick out of the skull's ellipsoid
        _paint(labels, _lt(_ellipsoid(head, z, (0, -88, -40), (9, 16, 24)), 1), "skin")
    for centre in _both((head.radii[0] + 3, 8, -22)):
        _paint(labels, _lt(_ellipsoid(head, z, centre, (5, 13, 20)), 1), "skin")
    return depth, inner


def _lt(q, limit):
    return None if q is None else q < limit


def _skull_base(head, z, labels, depth, inner):
    """Below the fossae: bony floor, marrow, soft tissue; orbits, sinuses, mastoids."""
    u, v = head.u_hw, head.v_hw
    below = (head.floor_hw - z) * head.floor_norm_hw  # mm under the fossa floor
    base = (depth >= inner) & (below > 0)
    central = np.abs(u) < 15
    labels[base] = TISSUE["bone"]  # dense: petrous bones, orbital roofs
    labels[base & central & (below > 2.5)] = TISSUE["marrow"]  # clivus, sphenoid body
    labels[base & (below > np.where(central, 12, 9))] = TISSUE["muscle"]  # soft tissue of the face and neck
    if z < -14:  # the face: no calvaria in front of the orbits and sinuses
        labels[(v < -45) & (depth >= 1.2 + head.fat_mm)] = TISSUE["muscle"]
    _sinus(head, z, labels, (0, -22, -30), (13, 12, 10))  # sphenoid
    for centre in _both((27, -55, -56)):
        _sinus(head, z, labels, centre, (14, 18, 17))  # maxillary
    _sinus(head, z, labels, (0, -70, -50), (9, 22, 16))  # nasal cavity
    _cells(head, z, labels, (0, -58, -26), (10, 18, 12), 4.0)  # ethmoid
    for centre in _both((52, 18, -38)):
        _cells(head, z, labels, centre, (11, 12, 11), 4.0)  # mastoid
    for side in (1, -1):
        _orbit(head, z, labels, side)


def _sinus(head, z, labels, centre, radii):
    q = _ellipsoid(head, z, centre, radii)
    if q is not None:
        _paint(labels, q < 1.3, "bone")
        _paint(labels, q < 1.0, "mucosa")
        _paint(labels, q < (1 - head.mucosa) ** 2, "air")


def _cells(head, z, labels, centre, radii, cell_mm):
    """Air cells (ethmoid, mastoid): air between thin bony septa lined with mucosa."""
    q = _ellipsoid(head, z, centre, radii)
    if q is None:
        return
    inside = q < 1
    k = 4.0 / cell_mm  # irregular cells: the zero lines of a fine random field are the septa
    wall = np.ones(q.shape, np.float32)
    wall[inside] = np.abs(_sample_field(head.sulci, k * head.u_hw[inside], k * head.v_hw[inside],
                                        np.full(int(inside.sum()), k * z, np.float32)))
    labels[inside] = TISSUE["air"]
    labels[inside & (wall < 0.15 + head.mucosa)] = TISSUE["mucosa"]
    labels[inside & (wall < 0.15)] = TISSUE["bone"]


def _orbit(head, z, labels, side):
    """Orbital fat cone with its walls, globe (sclera, vitreous, lens), recti."""
    q = _ellipsoid(head, z, (30 * side, -56, -27), (16, 26, 13))
    if q is None:
        return
    _paint(labels, (q < 1.3) & (head.v_hw > -70), "bone")
    _paint(labels, _lt(_ellipsoid(head, z, (32 * side, -79, -27), (13, 7, 11)), 1), "fat")  # lids
    _paint(labels, q < 1, "fat")
    _paint(labels, _tube(head, z, (14 * side, -32, -24), (20 * side, -64, -27), 2.5), "muscle")
    _paint(labels, _tube(head, z, (18 * side, -32, -24), (43 * side, -62, -27), 2.5), "muscle")
    globe = _ellipsoid(head, z, (32 * side, -68, -27), (12, 12, 12))
    if globe is not None:
        _paint(labels, globe < 1, "sclera")
        _paint(labels, globe < 0.85, "vitreous")
    _paint(labels, _lt(_ellipsoid(head, z, (32 * side, -78.5, -27), (4.5, 2, 4.5)), 1), "lens")


def _brain(head, z, labels, depth, inner):
    """Intracranial space: CSF, cerebrum with cortex and sulci, ventricles, deep
    grey nuclei, and below the tentorium cerebellum and brainstem."""
    wall = np.minimum(depth - inner, (z - head.floor_hw) * head.floor_norm_hw)  # mm to the skull
    cranium = wall > 0
    if not cranium.any():
        return
    labels[cranium] = TISSUE["csf"]
    infra = cranium & head.posterior_hw & (z < head.tent_hw)
    supra = cranium & ~infra
    brain = wall - head.csf_mm
    brain = np.where(head.posterior_hw, np.minimum(brain, z - head.tent_hw - 0.6), brain)
    _cerebrum(head, z, labels, supra & (brain > 0), brain, depth, inner)
    _posterior_fossa(head, z, labels, infra & (wall > head.csf_mm) & (z < head.tent_hw - 0.6))


def _cerebrum(head, z, labels, tissue, brain, depth, inner):
    u, v = head.u_hw, head.v_hw
    labels[tissue] = TISSUE["white"]
    labels[tissue & (brain < 3.2)] = TISSUE["grey"]
    for centre, radii in [((6 + 5 * head.ventricles, -14, 10), (5, 9, 9)),  # caudate head
                          ((9, 8, 4), (8, 13, 8)),  # thalamus
                          ((22, -2, 2), (6, 16, 9))]:  # lentiform nucleus
        for c in _both(centre):
            q = _ellipsoid(head, z, c, radii)
            _paint(labels, None if q is None else (q < 1) & tissue, "deep_grey")
    _sulci(head, z, labels, tissue, depth - inner - head.csf_mm)
    # interhemispheric fissure (stops at the corpus callosum)
    core = _ellipsoid(head, z, (0, 0, 2), (18, 46, 27))
    fissure = tissue & (core > 1 if core is not None else True)
    labels[fissure & (np.abs(u) < 4.0)] = TISSUE["grey"]
    labels[fissure & (np.abs(u) < 0.6 + 0.6 * head.sulcus)] = TISSUE["csf"]
    if -14 < z < 12:  # Sylvian fissures: stem from the lateral surface, then around the insula
        insula = np.abs(np.abs(u) - (37 - 0.006 * (v + 4) ** 2))
        insula = np.where((v > -26) & (v < 16), insula, 99)
        stems = [_segment_distance(head, (60 * side, -24), (35 * side, -10)) for side in (1, -1)]
        for dist in [insula] + stems:
            labels[tissue & (dist < 4.5)] = TISSUE["grey"]
            labels[tissue & (dist < 0.8 * head.sulcus)] = TISSUE["csf"]
    _ventricles(head, z, labels, tissue)


def _sulci(head, z, labels, tissue, convexity):
    """Sulci: zero lines of a smooth random function of the direction from the
    brain's centre, so they run in from the surface (meandering with depth),
    lined with cortex. `convexity`: mm below the brain's outer surface."""
    band = tissue & (convexity < 18)
    if not band.any():
        return
    u, v, w = head.u_hw[band], head.v_hw[band], np.float32(z - 8.0)
    depth = convexity[band]
    reach = 75 / (np.sqrt(u * u + v * v + w * w) + 1e-3)  # onto a sphere of 75 mm
    pu, pv, pw = u * reach, v * reach, w * reach
    bend = 0.6 * depth  # sulci meander as they go deeper
    pu = pu + bend * _sample_field(head.sulci, pv + 30, pw, pu)
    pv = pv + bend * _sample_field(head.sulci, pw, pu - 30, pv)
    n = np.abs(_sample_field(head.sulci, pu, pv, pw + 8.0))
    fundus = 7 + 8 * np.abs(_sample_field(head.sulci, pv + 20, pw + 8, pu))
    width = 0.12 * head.sulcus * (1.8 - np.clip(depth / fundus, 0, 1))  # sulci open towards the surface
    grey, csf = np.zeros_like(band), np.zeros_like(band)
    grey[band] = (n < width + 0.35) & (depth < fundus + 2.5)
    csf[band] = (n < width) & (depth < fundus)
    labels[grey] = TISSUE["grey"]
    labels[csf] = TISSUE["csf"]


def _sample_field(field, u, v, z):
    """A 3D random field (2 mm grid) at model points (linear interpolation)."""
    idx = np.stack([(u - _FIELD_ORIGIN[0]) / _FIELD_MM, (v - _FIELD_ORIGIN[1]) / _FIELD_MM,
                    (z - _FIELD_ORIGIN[2]) / _FIELD_MM]).astype(np.float32)
    return ndimage.map_coordinates(field, idx, order=1, mode="nearest")


def _ventricles(head, z, labels, tissue):
    """Lateral (with frontal, occipital, temporal horns), third ventricle; the
    bright caps at the horn tips are normal on FLAIR."""
    u, v, s = head.u_hw, head.v_hw, head.ventricles
    if -24 < z < 32:
        for side in (1, -1):
            cu = side * (2 + 5 * s + 0.006 * (v + 4) ** 2)  # frontal horns and atria diverge
            wu = s * (5.0 + 2.5 * np.clip((v + 32) / 64, 0, 1))
            cz = 15 - 0.002 * v ** 2
            along = (v / 34) ** 2
            q = ((u - cu) / wu) ** 2 + along * along + ((z - cz) / (7 * s)) ** 2
            tips = (v < -20) | (v > 24)
            labels[tissue & (q < 1.5) & tips] = TISSUE["cap"]
            labels[tissue & (q < 1)] = TISSUE["ventricle"]
        for centre, radii in [((22, 38, 9), (3 * s, 10, 4 * s)),  # occipital horns
                              ((30, -8, -14), (2.5 * s, 12, 3 * s))]:  # temporal horns
            for c in _both(centre):
                _paint(labels, _lt(_ellipsoid(head, z, c, radii), 1), "ventricle")
        _paint(labels, _lt(_ellipsoid(head, z, (0, 2, 0), (1.2 + 0.8 * s, 14, 9)), 1), "ventricle")


def _posterior_fossa(head, z, labels, fossa):
    """Cerebellum fills the fossa (cortex with folia, white core), brainstem in
    front of the fourth ventricle, cisterns around."""
    u, v = head.u_hw, head.v_hw
    if fossa.any():
        labels[fossa] = TISSUE["cerebellum"]
        # folia: thin fissures curving around the fourth ventricle, fingerprint-like
        uf, vf = u[fossa], v[fossa]
        r = np.sqrt(uf * uf + (vf - 30) ** 2 + (1.5 * (z + 28)) ** 2)
        warp = _sample_field(head.sulci, 1.5 * uf, 1.5 * vf, np.full_like(uf, 1.5 * z))
        folia = np.zeros_like(fossa)
        folia[fossa] = (np.cos(2 * np.pi * r / 6.0 + 2.5 * warp) > 0.96) & (r > 18)
        labels[folia] = TISSUE["csf"]
        for side in (1, -1):
            _paint(labels, _lt(_ellipsoid(head, z, (22 * side, 48, -32), (10, 12, 9)), 1), "cerebellar_white")
        _paint(labels, _lt(_ellipsoid(head, z, (0, 76, -44), (6, 12, 10)), 1), "csf")  # cisterna magna
    for centre, radii, tissue in [
        ((0, 20, -28), (17, 15, 15), "csf"),  # prepontine cistern
        ((0, 22, -28), (13, 12, 13), "brainstem"),  # pons
        ((0, 26, -50), (9, 9, 14), "brainstem"),  # medulla
        ((16, 32, -28), (8, 10, 8), "brainstem"), ((-16, 32, -28), (8, 10, 8), "brainstem"),  # peduncles
        ((0, 38, -30), (6, 4, 8), "ventricle"),  # fourth ventricle
        ((0, 12, -6), (16, 14, 7), "csf"),  # ambient cistern
        ((0, 14, -6), (12, 11, 7), "brainstem"),  # midbrain
        ((0, 3, -6), (4, 5, 7), "csf"),  # interpeduncular cistern
        ((0, 18, -6), (1.3, 1.3, 7), "csf"),  # aqueduct
        ((0, -8, -12), (14, 8, 5), "csf"),  # suprasellar cistern
    ]:
        _paint(labels, _lt(_ellipsoid(head, z, centre, radii), 1), tissue)


# --- image of one slice ----------------------------------------------------------


def _tissue_image(rng, head, labels) -> np.ndarray:
    """Noise-free signal (H, W) float32 in scanner units: tissue signal times a
    fine texture, edges softened by the in-plane point spread."""
    grain = cv2.GaussianBlur(rng.standard_normal(SHAPE_HW, dtype=np.float32), (0, 0), 1.2) * 2.6
    image = head.signal.astype(np.float32)[labels] * (1 + head.texture.astype(np.float32)[labels] * grain)
    return cv2.GaussianBlur(image, (0, 0), 0.6)


def _acquire(rng, head, image, k) -> np.ndarray:
    """Bias field, Rician noise, 12-bit quantisation with rescale: what the scanner stores."""
    zk = head.z_model[k] / 100
    image = image * (head.bias_hw * np.float32(np.exp(head.bias_z[0] * zk + head.bias_z[1] * zk * zk)))
    sigma = np.float32(head.noise_sigma)
    real = image + sigma * rng.standard_normal(SHAPE_HW, dtype=np.float32)
    imag = sigma * rng.standard_normal(SHAPE_HW, dtype=np.float32)
    magnitude = np.sqrt(real * real + imag * imag)
    slope, intercept = head.rescale
    stored = np.clip(np.round((magnitude - intercept) / slope), 0, 4095)
    return (stored * np.float32(slope) + np.float32(intercept)).astype(np.float32)


# --- plaques ---------------------------------------------------------------------


@dataclasses.dataclass
class _Plaque:
    kind: str
    # (centre (row, col, scanner z mm from the model origin), rotation, semi-axes mm) of 1-3 ellipsoids
    lobes: List[Tuple[np.ndarray, np.ndarray, np.ndarray]]
    contrast: float  # signal relative to white matter
    reach_px: float


def _draw_plaques(rng, head, labels_shw) -> List[_Plaque]:
    """5-15 plaques where MS puts them (§2): periventricular, juxtacortical,
    deep white matter, infratentorial. Each is centred within a quarter of the
    slice spacing of one slice and at most 0.9 spacings high, so it shows on
    1-3 slices."""
    kinds = ["periventricular", "juxtacortical", "deep", "infratentorial"]
    candidates, distances = {}, {}
    plaques = []
    for _ in range(int(rng.integers(5, 16))):
        kind = str(rng.choice(kinds, p=[0.45, 0.2, 0.2, 0.15]))
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


def _candidates(head, labels, kind, cache):
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
        where = {"periventricular": white & (vent > 1.5) & (vent < 5),
                 "juxtacortical": white & (cortex < 2.0) & (vent > 8),
                 "deep": white & (cortex > 5) & (vent > 8)}[kind]
    rows, cols = np.nonzero(where)
    normal = np.zeros(len(rows))
    if kind == "periventricular" and len(rows):
        # Dawson's fingers: the long axis follows the gradient of the distance to the ventricle
        vent = cache["ventricle"]
        normal = np.arctan2(cv2.Sobel(vent, cv2.CV_32F, 0, 1)[rows, cols], cv2.Sobel(vent, cv2.CV_32F, 1, 0)[rows, cols])
    return rows, cols, normal


def _plaque_shape(rng, head, kind, k, row, col, normal) -> _Plaque:
    """Union of 1-3 ellipsoids, sized and oriented by kind; some small and faint."""
    if kind == "periventricular":
        axes = np.array([rng.uniform(3.5, 8), rng.uniform(2, 3.5), rng.uniform(2.5, 6)])
        angle = normal  # long axis perpendicular to the ventricle wall
    else:
        size = {"juxtacortical": (1.5, 4), "deep": (2, 6), "infratentorial": (1.5, 4.5), "any": (2, 5)}[kind]
        axes = rng.uniform(*size, 3)
        angle = rng.uniform(0, np.pi)
    if rng.random() < 0.2:
        axes = np.maximum(axes * 0.5, 1.2)  # small
    axes[2] = min(axes[2], 0.9 * max(head.spacing_mm, head.thickness_mm))
    z = head.z_model[k] * head.scale + rng.uniform(-0.25, 0.25) * min(head.spacing_mm, 6)
    centre = np.array([row, col, z], float)
    lobes = [(centre, _rotation(angle, rng.normal(0, 0.15)), axes)]
    for _ in range(int(rng.choice(3, p=[0.5, 0.3, 0.2]))):  # irregular, confluent shapes
        direction = rng.normal(size=3) * [1, 1, 0.3]
        offset_mm = 0.6 * axes.max() * direction / np.linalg.norm(direction)
        offset = offset_mm / [head.pixel_mm, head.pixel_mm, 1]
        lobes.append((centre + offset, _rotation(rng.uniform(0, np.pi), 0), axes * rng.uniform(0.5, 0.8, 3)))
    faint = rng.random() < 0.2
    contrast = rng.uniform(1.2, 1.35) if faint else rng.uniform(1.45, 2.0)
    reach = max(np.abs(l[0][:2] - centre[:2]).max() + l[2].max() / head.pixel_mm for l in lobes) + 3
    return _Plaque(kind, lobes, contrast, reach)


def _rotation(angle, tilt):
    """Rotation taking the plaque's (long, short, height) axes to (col, row, z)."""
    c, s = np.cos(angle), np.sin(angle)
    yaw = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    ct, st = np.cos(tilt), np.sin(tilt)
    return yaw @ np.array([[ct, 0, st], [0, 1, 0], [-st, 0, ct]])


def _plaque_fractions(head, plaques, k, labels):
    """Per plaque, (window, fraction) of slice k: the fraction of each pixel's
    voxel (over the slice thickness) inside the plaque, within brain
    parenchyma; None where the plaque misses the slice."""
    zk = head.z_model[k] * head.scale
    subplanes = zk + head.thickness_mm * (np.arange(4) + 0.5 - 2) / 4
    out = []
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
                inside = np.maximum(inside, np.clip((1 - rho) / 0.25 + 0.5, 0, 1))
            frac += inside / len(subplanes)
        frac *= np.isin(labels[win], PARENCHYMA)
        out.append((win, frac) if frac.max() > 0.05 else None)
    return out


def _paint_plaque(image, plaque, frac, head):
    win, f = frac
    lesion = head.signal[TISSUE["white"]] * plaque.contrast
    image[win] = image[win] * (1 - f) + lesion * f


def _outline_plaques(rng, plaques, fractions) -> List[np.ndarray]:
    """The radiologist's outlines on one slice: for every plaque visible there
    (enough of it, bright enough), a few-vertex polygon drawn a little
    generously around it. §6: "the gold standard consisted of approximate
    polygons"."""
    polygons = []
    for plaque, frac in zip(plaques, fractions):
        if frac is None or (plaque.contrast - 1) * frac[1].max() < 0.12:
            continue
        win, f = frac
        visible = (f > 0.35).astype(np.uint8)
        contours, _ = cv2.findContours(visible, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        for contour in contours:
            if cv2.contourArea(contour) < 2:
                continue
            points = contour[:, 0, :].astype(np.float64) + [win[1].start, win[0].start]
            polygons.append(_approximate_polygon(rng, points))
    return polygons


def _approximate_polygon(rng, points_cr) -> np.ndarray:
    """A star polygon of 5-12 vertices around boundary points (column, row):
    each vertex as far out as the boundary in its direction plus a generous,
    jittered margin; vertices on rasterise_polygons' 1/16-pixel grid so that
    writing them to an RTSTRUCT and back loses nothing."""
    centre = points_cr.mean(axis=0)
    rel = points_cr - centre
    angles = np.arctan2(rel[:, 1], rel[:, 0])
    radii = np.hypot(rel[:, 0], rel[:, 1]) + 0.5  # pixel centres -> pixel edges
    n = int(np.clip(round(len(points_cr) / 5), 5, 12))
    theta = rng.uniform(0, 2 * np.pi) + (np.arange(n) + rng.uniform(-0.2, 0.2, n)) * 2 * np.pi / n
    gap = np.abs((angles[None, :] - theta[:, None] + np.pi) % (2 * np.pi) - np.pi)
    near = gap < np.pi / n
    reach = np.where(near.any(1), np.where(near, radii[None, :], 0).max(1), radii[gap.argmin(1)])
    reach = reach + rng.uniform(0.3, 1.3) + rng.normal(0, 0.3, n)
    vertices = centre + np.maximum(reach, 1.0)[:, None] * np.stack([np.cos(theta), np.sin(theta)], 1)
    return np.round(vertices * 16) / 16


# --- the cohort on disk -------------------------------------------------------------

_SURNAMES = (("Kowalski", "Kowalska"), ("Nowak", "Nowak"), ("Wisniewski", "Wisniewska"), ("Wojcik", "Wojcik"),
             ("Kaminski", "Kaminska"), ("Lewandowski", "Lewandowska"), ("Zielinski", "Zielinska"),
             ("Szymanski", "Szymanska"), ("Dabrowski", "Dabrowska"), ("Kozlowski", "Kozlowska"),
             ("Jankowski", "Jankowska"), ("Mazur", "Mazur"))
_NAMES = {"M": ("Jan", "Piotr", "Krzysztof", "Andrzej", "Tomasz", "Pawel", "Michal", "Marcin"),
          "F": ("Anna", "Maria", "Katarzyna", "Malgorzata", "Agnieszka", "Barbara", "Ewa", "Joanna")}
_HOSPITALS = ("Szpital Wojewodzki nr 2", "Uniwersytecki Szpital Kliniczny", "Centrum Medyczne Zdrowie")


@dataclasses.dataclass
class FakePatient:
    """FAKE identifying data, as a hospital's DICOM headers carry it: the import must strip all of it."""

    folder: str  # e.g. "Kowalska_Anna": a name, on purpose, so ids never come from folders
    name: str  # DICOM PN, "Kowalska^Anna"
    patient_id: str
    birth_date: str
    sex: str
    institution: str
    referring_physician: str
    accession: str
    study_date: str


def fake_patients(seed: int, n_patients: int) -> List[FakePatient]:
    """Seeded fake identities of the phantom's patients, folder names all different."""
    people: List[FakePatient] = []
    for i in range(n_patients):
        people.append(_fake_patient(seed, i, [p.folder for p in people]))
    return people


def _fake_patient(seed: int, patient: int, taken: Sequence[str]) -> FakePatient:
    rng = np.random.default_rng([seed, patient, 1])
    sex = "FM"[(seed + patient) % 2]  # §2: fifty men and fifty women
    for attempt in range(100):
        surname = _SURNAMES[rng.integers(len(_SURNAMES))][sex == "F"]
        first = str(rng.choice(_NAMES[sex]))
        folder = f"{surname}_{first}" + (f"_{attempt}" if attempt >= 50 else "")
        if folder not in taken:
            break
    study = datetime.date(2015, 1, 1) + datetime.timedelta(days=int(rng.integers(730)))
    birth = study - datetime.timedelta(days=int(rng.integers(19 * 365, 66 * 365)))  # §2: aged 19 to 66
    doctor = f"{_SURNAMES[rng.integers(len(_SURNAMES))][0]}^{rng.choice(_NAMES['M'])}"
    return FakePatient(
        folder=folder, name=folder.replace("_", "^", 1), patient_id=f"{rng.integers(10 ** 10, 10 ** 11)}",
        birth_date=birth.strftime("%Y%m%d"), sex=sex, institution=str(rng.choice(_HOSPITALS)),
        referring_physician=doctor, accession=f"A{rng.integers(10 ** 7, 10 ** 8)}",
        study_date=study.strftime("%Y%m%d"),
    )


def write_phantom(out, n_patients: int = 10, n_slices: int = 20, seed: int = 0) -> Path:
    """Write the synthetic cohort under `out` (layout in the module docstring),
    atomically: the whole folder appears at once or not at all."""
    if n_patients < 1:
        raise InputError(None, f"--patients must be at least 1, got {n_patients}")
    if n_slices < 1:
        raise InputError(None, f"--slices must be at least 1, got {n_slices}")
    out = Path(out)
    people = fake_patients(seed, n_patients)
    with atomic_path(out) as tmp:
        for i in progress(range(n_patients), desc="phantom", unit="patient"):
            scan = phantom_patient(seed, n_slices, patient=i)
            who = people[i]
            write_dicom_study(tmp / "dicom" / who.folder, scan, who, uid_seed=(seed, i), seg=i % 2 == 1)
            write_nifti_study(tmp / "nifti" / who.folder, scan)
    return out


# --- DICOM ---------------------------------------------------------------------


def _uid(uid_seed, *what) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["plaquenet-phantom", *map(str, uid_seed), *map(str, what)])


def _ds(value: float) -> str:
    """A decimal string (DICOM DS) that parses back to the same float."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def write_dicom_study(folder, scan: PhantomScan, who: FakePatient, uid_seed=(0, 0), seg: bool = False) -> None:
    """`folder`/flair/<hex>.dcm, one MR image per slice (names in no slice
    order), and `folder`/outlines.dcm: the polygons as an RTSTRUCT, or the mask
    as a DICOM SEG when `seg`."""
    rng = np.random.default_rng([*uid_seed, 2])
    slices = [_mr_slice(scan, who, uid_seed, k) for k in range(len(scan.flair_shw))]
    names = [f"{rng.integers(2 ** 63):016x}.dcm" for _ in slices]
    if len(names) > 1 and sorted(names) == names:  # never in slice order
        names[0], names[1] = names[1], names[0]
    (Path(folder) / "flair").mkdir(parents=True)
    for ds, name in zip(slices, names):
        _save(ds, Path(folder) / "flair" / name)
    outlines = _segmentation(scan, slices, uid_seed) if seg else _rtstruct(scan, slices, uid_seed)
    _save(outlines, Path(folder) / "outlines.dcm")


def _save(ds, path) -> None:
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _patient_and_study(ds, who: FakePatient, uid_seed) -> None:
    ds.PatientName = who.name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.InstitutionName = who.institution
    ds.ReferringPhysicianName = who.referring_physician
    ds.AccessionNumber = who.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = who.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.StudyID = "1"
    ds.StudyInstanceUID = _uid(uid_seed, "study")
    ds.FrameOfReferenceUID = _uid(uid_seed, "frame")
    ds.Manufacturer = "plaquenet phantom"


def _mr_slice(scan: PhantomScan, who: FakePatient, uid_seed, k: int):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    slope, intercept = scan.rescale
    stored = np.round((scan.flair_shw[k].astype(np.float64) - intercept) / slope).astype(np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = _uid(uid_seed, "mr", k)
    _patient_and_study(ds, who, uid_seed)
    ds.Modality = "MR"
    ds.SeriesInstanceUID = _uid(uid_seed, "series")
    ds.SeriesNumber, ds.InstanceNumber = 3, k + 1
    ds.SeriesDescription = "AX FLAIR"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.BodyPartExamined = "BRAIN"
    ds.PatientPosition = "HFS"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = ["SE", "IR"], ["SK", "SP"], ""
    ds.MRAcquisitionType = "2D"
    ds.MagneticFieldStrength = "1.5"  # §2: "obtained using 1,5 Tesla scanner"
    ds.RepetitionTime, ds.EchoTime, ds.InversionTime = "9000", "120", "2500"
    ds.EchoTrainLength = 16
    x0, y0, _ = scan.origin_lps
    ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(scan.slice_z_mm(k))]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(scan.voxel_mm[1]), _ds(scan.voxel_mm[2])]
    ds.SliceThickness = _ds(scan.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds(scan.voxel_mm[0])
    ds.SliceLocation = _ds(scan.slice_z_mm(k))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = scan.flair_shw.shape[1:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "US"
    ds.WindowCenter, ds.WindowWidth = "400", "900"
    ds.PixelData = stored.tobytes()
    return ds


def _rtstruct(scan: PhantomScan, slices, uid_seed):
    """RT Structure Set: one ROI "MS plaques", one CLOSED_PLANAR contour per
    plaque per slice, in patient (LPS) mm, each referencing its image."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    first = slices[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set Storage
    ds.SOPInstanceUID = _uid(uid_seed, "rtstruct")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "InstitutionName",
                    "ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyTime", "StudyID",
                    "StudyInstanceUID", "Manufacturer"):
        setattr(ds, keyword, getattr(first, keyword))
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = _uid(uid_seed, "rtstruct-series")
    ds.SeriesNumber, ds.InstanceNumber = 200, 1
    ds.SeriesDescription = "plaque outlines"
    ds.StructureSetLabel = "MS plaques"
    ds.StructureSetDate, ds.StructureSetTime = first.StudyDate, "120000"
    ds.OperatorsName = "Radiologist^Phantom"

    def image_ref(mr):
        ref = Dataset()
        ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = mr.SOPClassUID, mr.SOPInstanceUID
        return ref

    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = [image_ref(mr) for mr in slices]
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]

    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID = 1, first.FrameOfReferenceUID
    roi.ROIName, roi.ROIGenerationAlgorithm = "MS plaques", "MANUAL"
    ds.StructureSetROISequence = [roi]
    contours = []
    x0, y0, _ = scan.origin_lps
    ps_row, ps_col = scan.voxel_mm[1], scan.voxel_mm[2]
    for k, polygons in enumerate(scan.polygons_cr):
        for poly in polygons:
            c = Dataset()
            c.ContourImageSequence = [image_ref(slices[k])]
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            # ImageOrientationPatient [1,0,0,0,1,0]: x follows columns, y follows rows
            c.ContourData = [_ds(v) for col, row in poly
                             for v in (x0 + col * ps_col, y0 + row * ps_row, scan.slice_z_mm(k))]
            contours.append(c)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    if contours:
        roi_contour.ContourSequence = contours
    ds.ROIContourSequence = [roi_contour]
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
    ds.RTROIObservationsSequence = [observation]
    return ds


def _segmentation(scan: PhantomScan, slices, uid_seed):
    """DICOM SEG (highdicom), BINARY, one segment "MS plaques"; frames only for
    the slices with plaque pixels (highdicom omits empty frames; a patient
    without any plaque gets all frames, empty)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="MS plaques",
        segmented_property_category=codes.cid7150.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=slices,
        pixel_array=scan.mask_shw.astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=_uid(uid_seed, "seg-series"),
        series_number=100,
        sop_instance_uid=_uid(uid_seed, "seg"),
        instance_number=1,
        manufacturer="plaquenet phantom",
        manufacturer_model_name="radiologist outlines",
        software_versions="plaquenet",
        device_serial_number="0",
        series_description="plaque outlines",
    )
    # highdicom stamps the clock and fresh UIDs: pin them, so the same seed gives the same file
    seg.InstanceCreationDate = seg.ContentDate = slices[0].StudyDate
    seg.InstanceCreationTime = seg.ContentTime = "120000"
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = slices[0].StudyDate + "120000"
    organisation = _uid(uid_seed, "seg-dimensions")
    for item in list(seg.DimensionOrganizationSequence) + list(seg.DimensionIndexSequence):
        item.DimensionOrganizationUID = organisation
    return seg


# --- NIfTI ------------------------------------------------------------------------


def nifti_affine(scan: PhantomScan) -> np.ndarray:
    """Affine of the NIfTI files: their voxels are RAS-ordered (i towards the
    patient's right, j anterior, k superior), unlike the cohort's (w, h, s)."""
    s, h, w = scan.flair_shw.shape
    flip = np.array([[-1, 0, 0, w - 1], [0, -1, 0, h - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    return scan.affine_whs @ flip


def to_nifti_order(volume_shw: np.ndarray) -> np.ndarray:
    """(S, H, W) cohort order -> (I, J, K) RAS voxel order of the NIfTI files."""
    return np.ascontiguousarray(volume_shw.transpose(2, 1, 0)[::-1, ::-1, :])


def write_nifti_study(folder, scan: PhantomScan) -> None:
    """`folder`/flair.nii.gz (float32) and `folder`/mask.nii.gz (uint8), same affine."""
    import nibabel as nib

    folder = Path(folder)
    folder.mkdir(parents=True)
    affine = nifti_affine(scan)
    for name, volume, dtype in (("flair", scan.flair_shw, np.float32), ("mask", scan.mask_shw, np.uint8)):
        image = nib.Nifti1Image(to_nifti_order(volume.astype(dtype)), affine)
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, folder / f"{name}.nii.gz")


# --- figure -----------------------------------------------------------------------


def render_phantom_figure(path, seed: int = 0, patient: int = 0, n_slices: int = 20) -> Path:
    """PNG for the README: two slices of one phantom patient, the input on the
    left and the radiologist's polygons over it on the right; top the slice
    with the most plaque outlines, bottom the slice through the eye globes
    (orbits, sinuses, petrous bones: §4.1's sources of false positives)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scan = phantom_patient(seed, n_slices, patient)
    busiest = int(np.argmax([len(p) for p in scan.polygons_cr]))
    low = int(np.argmax((scan.tissue_shw == TISSUE["vitreous"]).sum(axis=(1, 2))))  # the eye globes
    vmax = float(np.percentile(scan.flair_shw, 99.5))
    fig, axes = plt.subplots(2, 2, figsize=(10.24, 8.96 + 0.6), dpi=100)
    for row, k in zip(axes, (busiest, low)):
        for ax, outline in zip(row, (False, True)):
            ax.imshow(scan.flair_shw[k], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
            if outline:
                for poly in scan.polygons_cr[k]:
                    closed = np.vstack([poly, poly[:1]])
                    ax.plot(closed[:, 0], closed[:, 1], color="red", linewidth=0.8)
            ax.set_axis_off()
            ax.set_title(f"slice {k + 1}/{n_slices}" + (", radiologist's polygons" if outline else ", FLAIR"),
                         fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path
