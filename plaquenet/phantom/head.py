"""One phantom patient's head and scanner, drawn once per patient: the
tissue table, size and pose, the slice geometry, the slice-independent maps
(skull base, tentorium, the random field of the sulci), and the acquisition
of a slice (texture, point spread, bias field, Rician noise, 12-bit storage).

Model coordinates (u, v, z) are mm in the head's own frame, origin near the
anterior commissure: u to the patient's left, v posterior, z superior (DICOM
LPS, rotated and scaled). Unless its comment says otherwise, a pair (lo, hi)
below is the range a patient's value is drawn from, uniformly.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple

import cv2
import numpy as np
from scipy import ndimage

SHAPE_HW = (448, 512)  # §4.1: "scans of the size 448x512 pixels"

# --- tissues ----------------------------------------------------------------
# FLAIR signal relative to normal white matter, and the amplitude of its
# texture. Fluid is suppressed (CSF, vitreous); fat, marrow and inflamed
# mucosa are brighter than plaques; grey matter is a little brighter than white.
TISSUES = (
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
TISSUE = {name: label for label, (name, _, _) in enumerate(TISSUES)}
PARENCHYMA = tuple(TISSUE[n] for n in ("grey", "white", "deep_grey", "cap", "cerebellum", "cerebellar_white",
                                        "brainstem"))  # where plaques can be

# --- the patient --------------------------------------------------------------
HEAD_SCALE = (0.9, 1.02)  # size of the head against the model's
YAW_DEG = (-4, 4)  # in-plane rotation of the head
HEAD_CENTRE_X_MM = (-4, 4)  # where the head sits in the scanner's x, y
HEAD_CENTRE_Y_MM = (-5, 3)
SKIN_RADII_MM = (74.0, 93.0, 77.0)  # skin surface: left-right, antero-posterior, vertex semi-axes
VENTRICLES = (0.8, 1.6)  # size factor of the ventricles (atrophy)
CSF_MM = (1.2, 3.0)  # subarachnoid space
FAT_MM = (3.0, 6.0)  # scalp fat
DIPLOE_MM = (2.0, 4.0)  # marrow between the skull's tables, at the vertex
SULCUS = (0.8, 1.4)  # width factor of sulci and fissures
MUCOSA = (0.1, 0.45)  # sinus mucosa thickness, fraction of the radius (0.1 healthy .. 0.5 sinusitis)

# --- the slices -----------------------------------------------------------------
PIXEL_MM = (0.43, 0.47)  # §4.1: "about 0.45 mm"
FOV_SHIFT_MM = (-4, 4)  # the field of view's centre off the isocentre, in x and in y
THICKNESS_MM = (3.0, 3.5, 4.0, 4.5, 5.0)  # §2: slices 3-5 mm thick, one of these
LOWEST_Z_MM, LOWEST_Z_JITTER = -44, (-3, 3)  # model z of the first slice: the skull base
HIGHEST_Z_MM, HIGHEST_Z_JITTER = 70, (-2, 2)  # model z of the last slice: the vertex
SINGLE_SLICE_Z_MM = 15.0  # model z of a one-slice phantom: through the lateral ventricles
TABLE_Z_MM = (-30, 30)  # scanner z of the model origin

# --- the scanner ----------------------------------------------------------------
WHITE_UNITS = (330, 430)  # white matter signal, scanner units
SIGNAL_JITTER = (0.95, 1.05)  # per tissue, the patient's signal against the table's
NOISE = (0.015, 0.04)  # Rician sigma, fraction of the white matter signal
RESCALE_SLOPES = (0.5, 0.375)  # DICOM RescaleSlope, one of these
RESCALE_INTERCEPTS = (4, 33)  # minus DICOM RescaleIntercept, integers in [4, 33)
STORED_MAX = 4095  # 12-bit storage
BIAS_SD = 0.1  # coefficients of the bias field's exponent, per 100 mm (about +-15 %)
BIAS_LENGTH_MM = 100
GRAIN_PX = 1.2  # correlation length (Gaussian sigma) of the tissue texture
GRAIN_GAIN = 2.6  # brings the blurred white noise back to about unit variance
PSF_PX = 0.6  # in-plane point spread (Gaussian sigma): soft tissue edges

# --- skull base maps (1 mm grid over model u, v) ----------------------------------------
MAP_HALF_U_MM, MAP_HALF_V_MM = 90, 110  # the grid spans [-90, 90) x [-110, 110)
CLIVUS_HALF_WIDTH_MM = 14  # the clivus and the sella, between the petrous apices
DORSUM_V_MM = 10.0  # v of the dorsum sellae: the posterior fossa begins behind it
PETROUS_APEX_V_MM = -2  # the petrous ridge runs from the apex (14, -2) ...
PETROUS_RIDGE_UV_MM = (44, 30)  # ... this far out and back, to the mastoid
PETROUS_RIDGE_SLOPE = 0.68  # v per u along the ridge: its front edge bounds the posterior fossa
PETROUS_CREST_Z_MM = -23  # height of the ridge's crest
PETROUS_FLANK = 2.5  # mm down per mm away from the crest
PETROUS_INNER_U_MM = 12  # no petrous bone nearer the midline
ANTERIOR_FOSSA_V_MM = -28  # in front of it: the anterior fossa (orbital roofs) ...
ANTERIOR_FOSSA_Z_MM = -14  # ... at this height ...
CRIBRIFORM_DEPTH_MM, CRIBRIFORM_WIDTH_MM = 8, 7  # ... sinking in the midline (the cribriform plate)
SELLA_Z_MM = -16.0  # floor between the petrous apices
MIDDLE_FOSSA_Z_MM = -42.0  # floor of the middle (temporal) fossae
FOSSA_BOTTOM_Z_MM = -64  # posterior fossa: a bowl this deep ...
FOSSA_CENTRE_V_MM = 45  # ... centred here ...
FOSSA_RISE_MM = 14  # ... rising this much at ...
FOSSA_RADII_MM = (45, 40)  # ... these u, v distances from its centre ...
FOSSA_RIM_Z_MM = -30  # ... and never above this
FLOOR_SMOOTH_MM = 3.0  # Gaussian sigma over the floor's seams
TENT_EDGE_Z_MM = -24  # tentorium: height at its free edge ...
TENT_PEAK_MM = 20  # ... rising this much in the midline ...
TENT_WIDTH_MM = 24  # ... over this half-width (Gaussian) ...
TENT_CENTRE_V_MM, TENT_LENGTH_MM = 30, 50  # ... and this antero-posterior extent

# --- the random field of the sulci and air cells -------------------------------------------
FIELD_MM = 2.0  # grid spacing
FIELD_SHAPE = (84, 104, 84)  # (u, v, z) voxels
FIELD_ORIGIN = np.array([-84.0, -104.0, -72.0])  # model (u, v, z) of the field's first voxel
FIELD_SMOOTH = 1.6  # Gaussian sigma, voxels


@dataclasses.dataclass
class Head:
    """Per-patient anatomy and acquisition, in model coordinates (module docstring)."""

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
    mucosa: float  # sinus mucosa thickness, fraction of radius
    radii: Tuple[float, float, float]  # skin surface: left-right, antero-posterior, vertex semi-axes
    floor_hw: np.ndarray  # model z of the skull base / fossa floors under every pixel
    floor_norm_hw: np.ndarray  # cos of the floor's slope: vertical -> normal distance
    posterior_hw: np.ndarray  # bool: behind the petrous ridges / clivus
    petrous_hw: np.ndarray  # bool: where the petrous ridge raises the skull base (the region map's temporal bone)
    tent_hw: np.ndarray  # model z of the tentorium
    sulci: np.ndarray  # 3D smooth random field on a FIELD_MM grid (model coordinates)


def draw_head(rng: np.random.Generator, n_slices: int) -> Head:
    """A patient: size and pose of the head, slice positions from the skull
    base to the vertex, tissue signals, noise, bias field and the maps."""
    scale = rng.uniform(*HEAD_SCALE)
    yaw = np.deg2rad(rng.uniform(*YAW_DEG))
    pixel_mm = round(rng.uniform(*PIXEL_MM), 3)
    h, w = SHAPE_HW
    x0 = round(-(w - 1) / 2 * pixel_mm + rng.uniform(*FOV_SHIFT_MM), 4)
    y0 = round(-(h - 1) / 2 * pixel_mm + rng.uniform(*FOV_SHIFT_MM), 4)
    centre = np.array([rng.uniform(*HEAD_CENTRE_X_MM), rng.uniform(*HEAD_CENTRE_Y_MM)])  # scanner x, y
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = x0 + cols * pixel_mm - centre[0], y0 + rows * pixel_mm - centre[1]
    c, s = np.cos(yaw), np.sin(yaw)
    u_hw = ((c * dx + s * dy) / scale).astype(np.float32)
    v_hw = ((-s * dx + c * dy) / scale).astype(np.float32)

    # §2: slices 3-5 mm thick; here spread from the skull base to the vertex.
    thickness = float(rng.choice(THICKNESS_MM))
    z_lo, z_hi = LOWEST_Z_MM + rng.uniform(*LOWEST_Z_JITTER), HIGHEST_Z_MM + rng.uniform(*HIGHEST_Z_JITTER)
    z_table = round(rng.uniform(*TABLE_Z_MM), 2)
    spacing = round((z_hi - z_lo) * scale / max(n_slices - 1, 1), 2) if n_slices > 1 else thickness
    z_first = round(z_table + (z_lo if n_slices > 1 else SINGLE_SLICE_Z_MM) * scale, 2)
    z_model = np.array([(z_first + k * spacing - z_table) / scale for k in range(n_slices)])

    signal = np.array([t[1] for t in TISSUES]) * rng.uniform(*SIGNAL_JITTER, len(TISSUES))
    signal[TISSUE["white"]] = signal[TISSUE["cerebellar_white"]] = 1.0
    white_units = rng.uniform(*WHITE_UNITS)
    fields = _head_fields(rng, u_hw, v_hw)
    return Head(
        scale=scale, u_hw=u_hw, v_hw=v_hw, z_model=z_model, pixel_mm=pixel_mm,
        spacing_mm=spacing, thickness_mm=thickness, origin_lps=(x0, y0, z_first),
        rescale=(float(rng.choice(RESCALE_SLOPES)), float(-rng.integers(*RESCALE_INTERCEPTS))),
        signal=signal * white_units, texture=np.array([t[2] for t in TISSUES]),
        noise_sigma=white_units * rng.uniform(*NOISE), bias_hw=_bias_field(rng, u_hw, v_hw),
        bias_z=rng.normal(0, BIAS_SD, 2),
        ventricles=rng.uniform(*VENTRICLES), csf_mm=rng.uniform(*CSF_MM), fat_mm=rng.uniform(*FAT_MM),
        diploe_mm=rng.uniform(*DIPLOE_MM), sulcus=rng.uniform(*SULCUS), mucosa=rng.uniform(*MUCOSA),
        radii=SKIN_RADII_MM, **fields,
    )


def _bias_field(rng: np.random.Generator, u_hw: np.ndarray, v_hw: np.ndarray) -> np.ndarray:
    """Smooth multiplicative coil shading, in-plane part: exp of a quadratic."""
    x, y = u_hw / BIAS_LENGTH_MM, v_hw / BIAS_LENGTH_MM
    b = rng.normal(0, BIAS_SD, 4)
    return np.exp(b[0] * x + b[1] * y + b[2] * (x * x + y * y) + b[3] * x * y).astype(np.float32)


def _head_fields(rng: np.random.Generator, u_hw: np.ndarray, v_hw: np.ndarray) -> Dict[str, np.ndarray]:
    """Slice-independent maps: skull base height, tentorium, posterior fossa;
    and the 3D random field that draws the sulci."""
    gu, gv = np.mgrid[-MAP_HALF_U_MM:MAP_HALF_U_MM:1.0, -MAP_HALF_V_MM:MAP_HALF_V_MM:1.0].astype(np.float32)
    floor, posterior, petrous = _skull_base_floor(gu, gv)
    gz, gx = np.gradient(floor)
    norm = 1 / np.sqrt(1 + gz ** 2 + gx ** 2)
    tent = TENT_EDGE_Z_MM + TENT_PEAK_MM * np.exp(-(gu / TENT_WIDTH_MM) ** 2) * np.clip(
        1 - ((gv - TENT_CENTRE_V_MM) / TENT_LENGTH_MM) ** 2, 0, 1)
    coords = np.stack([u_hw + MAP_HALF_U_MM, v_hw + MAP_HALF_V_MM])

    def sample(grid: np.ndarray) -> np.ndarray:  # 1 mm grid -> every pixel of the patient's slices
        return ndimage.map_coordinates(grid, coords, order=1, mode="nearest")

    field = rng.standard_normal(FIELD_SHAPE).astype(np.float32)
    field = ndimage.gaussian_filter(field, FIELD_SMOOTH)
    return dict(
        floor_hw=sample(floor).astype(np.float32),
        floor_norm_hw=sample(norm).astype(np.float32),
        posterior_hw=sample(posterior.astype(np.float32)) > 0.5,
        petrous_hw=sample(petrous.astype(np.float32)) > 0.5,
        tent_hw=sample(tent).astype(np.float32),
        sulci=field / field.std(),
    )


def _skull_base_floor(gu: np.ndarray, gv: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Model z of the fossa floors on the (u, v) grid (smoothed), the
    posterior fossa (bool): behind the petrous ridges and the dorsum sellae,
    and the petrous bones (bool): where the ridge's wedge tops the floor."""
    au = np.abs(gu)
    apex_u = CLIVUS_HALF_WIDTH_MM
    ridge_v = np.where(au < apex_u, DORSUM_V_MM, PETROUS_APEX_V_MM + (au - apex_u) * PETROUS_RIDGE_SLOPE)
    posterior = gv > ridge_v
    bowl = FOSSA_BOTTOM_Z_MM + FOSSA_RISE_MM * ((gu / FOSSA_RADII_MM[0]) ** 2
                                                + ((gv - FOSSA_CENTRE_V_MM) / FOSSA_RADII_MM[1]) ** 2)
    anterior = ANTERIOR_FOSSA_Z_MM - CRIBRIFORM_DEPTH_MM * np.exp(-(gu / CRIBRIFORM_WIDTH_MM) ** 2)
    floor = np.where(gv < ANTERIOR_FOSSA_V_MM, anterior, np.where(au < apex_u, SELLA_Z_MM, MIDDLE_FOSSA_Z_MM))
    floor = np.where(posterior, np.minimum(bowl, FOSSA_RIM_Z_MM), floor)
    # the petrous ridge: a bony wedge from the clivus out to the mastoid
    ru, rv = PETROUS_RIDGE_UV_MM
    t = np.clip(((au - apex_u) * ru + (gv - PETROUS_APEX_V_MM) * rv) / (ru ** 2 + rv ** 2), 0, 1)
    d = np.hypot(au - apex_u - ru * t, gv - PETROUS_APEX_V_MM - rv * t)
    wedge = np.where(au > PETROUS_INNER_U_MM, PETROUS_CREST_Z_MM - PETROUS_FLANK * d, -99)
    petrous = wedge > floor
    floor = np.maximum(floor, wedge)
    return ndimage.gaussian_filter(floor, FLOOR_SMOOTH_MM), posterior, petrous


def sample_field(field: np.ndarray, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A 3D random field (FIELD_MM grid) at model points (linear interpolation)."""
    idx = np.stack([(u - FIELD_ORIGIN[0]) / FIELD_MM, (v - FIELD_ORIGIN[1]) / FIELD_MM,
                    (z - FIELD_ORIGIN[2]) / FIELD_MM]).astype(np.float32)
    return ndimage.map_coordinates(field, idx, order=1, mode="nearest")


# --- acquisition of one slice -----------------------------------------------------------


def tissue_image(rng: np.random.Generator, head: Head, labels: np.ndarray) -> np.ndarray:
    """Noise-free signal (H, W) float32 in scanner units: tissue signal times a
    fine texture, edges softened by the in-plane point spread."""
    grain = cv2.GaussianBlur(rng.standard_normal(SHAPE_HW, dtype=np.float32), (0, 0), GRAIN_PX) * GRAIN_GAIN
    image = head.signal.astype(np.float32)[labels] * (1 + head.texture.astype(np.float32)[labels] * grain)
    return cv2.GaussianBlur(image, (0, 0), PSF_PX)


def acquire(rng: np.random.Generator, head: Head, image: np.ndarray, k: int) -> np.ndarray:
    """Bias field, Rician noise, 12-bit quantisation with rescale: what the scanner stores."""
    zk = head.z_model[k] / BIAS_LENGTH_MM
    image = image * (head.bias_hw * np.float32(np.exp(head.bias_z[0] * zk + head.bias_z[1] * zk * zk)))
    sigma = np.float32(head.noise_sigma)
    real = image + sigma * rng.standard_normal(SHAPE_HW, dtype=np.float32)
    imag = sigma * rng.standard_normal(SHAPE_HW, dtype=np.float32)
    magnitude = np.sqrt(real * real + imag * imag)
    slope, intercept = head.rescale
    stored = np.clip(np.round((magnitude - intercept) / slope), 0, STORED_MAX)
    return (stored * np.float32(slope) + np.float32(intercept)).astype(np.float32)
