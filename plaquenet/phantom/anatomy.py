"""The healthy anatomy of one axial slice: tissue labels (H, W) at a model
height z, from the head drawn by `head.draw_head`.

Scalp (bright subcutaneous fat) and calvaria (dark cortical tables, brighter
marrow) whose layers are measured in 3D, so the topmost slices cut them
obliquely and show the broad bone the paper blames for false positives (§5);
skull base with eye globes, orbital fat, optic nerves, nasal cavity,
ethmoid, sphenoid and maxillary sinuses (dark air, bright mucosa), petrous
ridges and mastoids (§4.1: "skull bones, areas around eye globes and sinuses" were
mistaken for plaques); brain: cortex a little brighter than white matter
(FLAIR), sulci, fissures and ventricles dark (fluid suppressed), deep grey
nuclei, cerebellum and brainstem on the low slices, the normal bright caps at
the frontal horns.

Every size and position is in model mm (u left, v posterior, z superior; see
`head`). A structure is an ellipsoid (centre (u, v, z), semi-axes (u, v, z)),
a tube (two end points and a radius) or a layer thickness; a paired
structure is given on the patient's left (u > 0) and mirrored.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import numpy as np

from .head import SHAPE_HW, TISSUE, Head, sample_field

Point = Sequence[float]  # model (u, v, z) or (u, v), mm

# --- scalp and calvaria: layers in mm under the skin, along its normal ---------------
NECK_Z_MM = 5.0  # below it the head's cross-section narrows a little downwards ...
NECK_TAPER, NECK_TAPER_MM = 0.08, 50  # ... by 8 % at 50 mm under it
SKIN_MM = 1.2
FAT_WAVE = 0.15  # scalp fat varies around the head by +-15 % ...
FAT_LATERAL_THINNING = 0.5  # ... and thins by half over the temporal muscle
TEMPORAL_FROM, TEMPORAL_RAMP = 0.55, 0.25  # temporal region: |u| / skin half-width from 0.55, full at 0.8
TEMPORALIS_MM = 7  # thickness of the temporal muscle at its centre ...
TEMPORALIS_VZ_MM = (-10, -5)  # ... here ...
TEMPORALIS_EXTENT_VZ_MM = (40, 30)  # ... falling off over these (Gaussian)
OUTER_TABLE_MM, INNER_TABLE_MM = 1.6, 1.4  # the skull's cortical tables
DIPLOE_LATERAL_THINNING = 0.6  # the temporal squama is thin
NOSE = ((0, -88, -40), (9, 16, 24))
EAR = ((3, 8, -22), (5, 13, 20))  # u: outside the skin's half-width
NOSE_AND_EARS_BELOW_Z_MM = -12  # they stick out of the skull's ellipsoid below this

# --- skull base (below the fossa floors) ---------------------------------------------
BASE_CENTRAL_U_MM = 15  # central skull base: clivus, sphenoid body ...
BASE_CORTEX_MM = 2.5  # ... marrow under this much dense bone
BASE_BONE_MM = (12, 9)  # bone under the floor, central and lateral; soft tissue of face and neck below
FACE_BELOW_Z_MM, FACE_FRONT_V_MM = -14, -45  # the face: no calvaria in front of the orbits and sinuses
SPHENOID_SINUS = ((0, -22, -30), (13, 12, 10))
MAXILLARY_SINUS = ((27, -55, -56), (14, 18, 17))
NASAL_CAVITY = ((0, -70, -50), (9, 22, 16))
ETHMOID = ((0, -58, -26), (10, 18, 12))
MASTOID = ((52, 18, -38), (11, 12, 11))
AIR_CELL_MM = 4.0  # ethmoid and mastoid cells
FIELD_CELL_MM = 4.0  # the cell size of the random field at its own scale
SEPTUM = 0.15  # air cells: |field| under this is bony septum, under this + mucosa is mucosa
WALL = 1.3  # squared normalised radius of the bony wall around sinuses and orbits

# --- orbits ----------------------------------------------------------------------------
ORBIT = ((30, -56, -27), (16, 26, 13))  # the fat cone
ORBIT_RIM_V_MM = -70  # no orbital wall in front of it
LIDS = ((32, -79, -27), (13, 7, 11))
GLOBE = ((32, -68, -27), (12, 12, 12))
VITREOUS = 0.85  # squared normalised radius of the vitreous in the globe
LENS = ((32, -78.5, -27), (4.5, 2, 4.5))
MEDIAL_RECTUS = ((14, -32, -24), (20, -64, -27), 2.5)  # from, to, radius
LATERAL_RECTUS = ((18, -32, -24), (43, -62, -27), 2.5)
OPTIC_NERVE = ((31, -56, -26), (13, -32, -20), 2.2)  # from the globe to the optic canal
OPTIC_TRACT = ((13, -32, -20), (4, -12, -13), 2.0)  # from the canal to the chiasm

# --- cerebrum ----------------------------------------------------------------------------
TENTORIUM_MM = 0.6  # half-thickness
CORTEX_MM = 3.2
CAUDATE = ((6, -14, 10), (5, 9, 9))  # head of the caudate; u also grows with the ventricles
VENTRICLE_SPREAD_MM = 5  # per unit of ventricle size, ventricles and caudates move outwards
THALAMUS = ((9, 8, 4), (8, 13, 8))
LENTIFORM = ((22, -2, 2), (6, 16, 9))
CALLOSAL_CORE = ((0, 0, 2), (18, 46, 27))  # the interhemispheric fissure stops at it
FISSURE_CORTEX_MM = 4.0  # half-width of the interhemispheric fissure's cortex ...
FISSURE_CSF_MM = 0.6  # ... and of its CSF: this much plus this much times the sulcus factor
SYLVIAN_Z_MM = (-14, 12)
INSULA_U_MM = 37  # the insula's cortex, |u| at v = -4, ...
BEND, BEND_V_MM = 0.006, -4  # ... curving out by 0.006 (v + 4)^2 (the ventricles' atria diverge alike)
INSULA_V_MM = (-26, 16)
SYLVIAN_STEM = ((60, -24), (35, -10))  # (u, v) from the lateral surface in to the insula
SYLVIAN_CORTEX_MM, SYLVIAN_CSF_MM = 4.5, 0.8  # half-widths (CSF: times the sulcus factor)

# --- sulci: zero lines of the random field, sampled on a sphere round the brain's centre -------
SULCI_DEPTH_MM = 18  # sulci only this deep under the brain's surface
BRAIN_CENTRE_Z_MM = 8.0
SULCI_SPHERE_MM = 75
SULCI_MEANDER = 0.6  # field displacement per mm of depth
FUNDUS_MM = (7, 8)  # depth of a sulcus: 7 mm plus up to about 8
FUNDUS_CORTEX_MM = 2.5  # cortex under the fundus
SULCUS_WIDTH = 0.12  # half-width in field units, times the sulcus factor ...
SULCUS_OPENING = 1.8  # ... times (1.8 - depth / fundus): sulci open towards the surface
SULCUS_CORTEX = 0.35  # cortex on each bank, field units

# --- ventricles ----------------------------------------------------------------------------
LATERAL_VENTRICLE_Z_MM = (-24, 32)  # planes that can cut the ventricles
VENTRICLE_MIDLINE_MM = 2  # septum pellucidum half-width
VENTRICLE_WIDTH_MM = (5.0, 2.5)  # half-width at the front horn, and more by the atrium ...
VENTRICLE_WIDENING_V_MM = (-32, 64)  # ... widening from this v over this length
VENTRICLE_ROOF_Z_MM, VENTRICLE_ARCH = 15, 0.002  # centre height 15 - 0.002 v^2
VENTRICLE_HALF_LENGTH_MM = 34
VENTRICLE_HALF_HEIGHT_MM = 7  # times the size factor
HORN_TIPS_V_MM = (-20, 24)  # caps: in front of, behind these ...
CAP = 1.5  # ... out to this squared normalised radius
OCCIPITAL_HORN = ((22, 38, 9), (3, 10, 4))  # u and z semi-axes times the size factor
TEMPORAL_HORN = ((30, -8, -14), (2.5, 12, 3))  # u and z semi-axes times the size factor
THIRD_VENTRICLE = ((0, 2, 0), (1.2, 14, 9))  # half-width 1.2 + 0.8 times the size factor
THIRD_VENTRICLE_GROWTH_MM = 0.8

# --- posterior fossa --------------------------------------------------------------------------
FOLIA_CENTRE = (0, 30, -28)  # folia curve around the fourth ventricle ...
FOLIA_Z_STRETCH = 1.5  # ... on flattened shells ...
FOLIUM_MM = 6.0  # ... this far apart ...
FOLIA_WARP = 2.5  # ... bent by the random field (radians) ...
FOLIA_FIELD_SCALE = 1.5  # ... sampled at this scale ...
FOLIA_FISSURE = 0.96  # ... fissures where cos(phase) exceeds this ...
FOLIA_FROM_MM = 18  # ... and not nearer the ventricle than this
CEREBELLAR_WHITE = ((22, 48, -32), (10, 12, 9))
CISTERNA_MAGNA = ((0, 76, -44), (6, 12, 10))
BRAINSTEM = (  # painted in this order, each over the last
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
)


def slice_labels(head: Head, z: float) -> np.ndarray:
    """Tissue labels (H, W) uint8 of the axial plane at model height z (mm)."""
    labels = np.zeros(SHAPE_HW, np.uint8)
    depth, inner = _scalp_and_calvaria(head, z, labels)
    if z < 0:
        _skull_base(head, z, labels, depth, inner)
    _brain(head, z, labels, depth, inner)
    for side in (1, -1):  # optic nerves, from the globe to the chiasm
        for p0, p1, radius in (OPTIC_NERVE, OPTIC_TRACT):
            _paint(labels, _tube(head, z, _side(p0, side), _side(p1, side), radius), "nerve")
    return labels


# --- shapes ---------------------------------------------------------------------------------


def _ellipsoid(head: Head, z: float, centre: Point, radii: Point) -> Optional[np.ndarray]:
    """Squared normalised radius of an ellipsoid (model mm) in the plane z, or
    None where the plane misses it."""
    dz = ((z - centre[2]) / radii[2]) ** 2
    if dz >= 1:
        return None
    return ((head.u_hw - centre[0]) / radii[0]) ** 2 + ((head.v_hw - centre[1]) / radii[1]) ** 2 + dz


def _side(point: Point, side: int) -> Point:
    """A point given on the patient's left, on `side` (1 left, -1 right)."""
    return (point[0] * side, *point[1:])


def _both(centre: Point) -> List[Point]:
    """A centre (u, v, z) on the patient's left and its mirror on the right."""
    return [(centre[0], *centre[1:]), (-centre[0], *centre[1:])]


def _tube(head: Head, z: float, p0: Point, p1: Point, radius: float) -> Optional[np.ndarray]:
    """Bool map of the pixels within `radius` mm of the segment p0-p1 (model mm)."""
    a, b = np.asarray(p0, float), np.asarray(p1, float)
    if z < min(a[2], b[2]) - radius or z > max(a[2], b[2]) + radius:
        return None
    d = b - a
    du, dv, dz = head.u_hw - a[0], head.v_hw - a[1], z - a[2]
    t = np.clip((du * d[0] + dv * d[1] + dz * d[2]) / (d @ d), 0, 1)
    return (du - t * d[0]) ** 2 + (dv - t * d[1]) ** 2 + (dz - t * d[2]) ** 2 < radius ** 2


def _segment_distance(head: Head, p0: Point, p1: Point) -> np.ndarray:
    """In-plane distance (mm) of every pixel to the segment p0-p1 (model u, v)."""
    d = np.subtract(p1, p0, dtype=float)
    du, dv = head.u_hw - p0[0], head.v_hw - p0[1]
    t = np.clip((du * d[0] + dv * d[1]) / (d @ d), 0, 1)
    return np.hypot(du - t * d[0], dv - t * d[1])


def _paint(labels: np.ndarray, where: Optional[np.ndarray], tissue: str) -> None:
    if where is not None:
        labels[where] = TISSUE[tissue]


def _lt(q: Optional[np.ndarray], limit: float) -> Optional[np.ndarray]:
    return None if q is None else q < limit


def _inside(head: Head, z: float, centre: Point, radii: Point) -> Optional[np.ndarray]:
    """Bool map of an ellipsoid's cross-section, or None where the plane misses it."""
    return _lt(_ellipsoid(head, z, centre, radii), 1)


# --- scalp, calvaria, skull base --------------------------------------------------------------


def _skin_depth(head: Head, z: float) -> np.ndarray:
    """Depth below the skin surface (mm, < 0 outside), measured in 3D, so that a
    plane near the vertex cuts every layer obliquely (§5: the calvaria "appear
    much broader" on the topmost scans)."""
    a, b, c = head.radii
    zc = NECK_Z_MM
    if z < zc:  # face and neck: the cross-section narrows a little downwards
        taper = 1 - NECK_TAPER * ((zc - z) / NECK_TAPER_MM) ** 2
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


def _scalp_and_calvaria(head: Head, z: float, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Skin, scalp fat, temporalis, outer table, diploe, inner table; returns
    the skin depth and the depth of the inner skull surface (mm)."""
    u, v = head.u_hw, head.v_hw
    depth = _skin_depth(head, z)
    lateral = np.clip((np.abs(u) / head.radii[0] - TEMPORAL_FROM) / TEMPORAL_RAMP, 0, 1)
    (mv, mz), (ev, ez) = TEMPORALIS_VZ_MM, TEMPORALIS_EXTENT_VZ_MM
    muscle = TEMPORALIS_MM * lateral * np.exp(-((v - mv) / ev) ** 2 - ((z - mz) / ez) ** 2)
    fat = head.fat_mm * (1 + FAT_WAVE * np.sin(2 * np.arctan2(v, u) + 1.0)) * (1 - FAT_LATERAL_THINNING * lateral)
    layers = [(0, "skin"), (SKIN_MM, "fat"), (SKIN_MM + fat, "muscle"), (SKIN_MM + fat + muscle, "bone")]
    layers.append((layers[-1][0] + OUTER_TABLE_MM, "marrow"))
    layers.append((layers[-1][0] + head.diploe_mm * (1 - DIPLOE_LATERAL_THINNING * lateral), "bone"))
    inner = layers[-1][0] + INNER_TABLE_MM
    for start, tissue in layers:
        labels[depth >= start] = TISSUE[tissue]
    if z < NOSE_AND_EARS_BELOW_Z_MM:
        _paint(labels, _inside(head, z, *NOSE), "skin")
    (eu, ev, ez), ear_radii = EAR
    for centre in _both((head.radii[0] + eu, ev, ez)):
        _paint(labels, _inside(head, z, centre, ear_radii), "skin")
    return depth, inner


def _skull_base(head: Head, z: float, labels: np.ndarray, depth: np.ndarray, inner: np.ndarray) -> None:
    """Below the fossae: bony floor, marrow, soft tissue; orbits, sinuses, mastoids."""
    u, v = head.u_hw, head.v_hw
    below = (head.floor_hw - z) * head.floor_norm_hw  # mm under the fossa floor
    base = (depth >= inner) & (below > 0)
    central = np.abs(u) < BASE_CENTRAL_U_MM
    labels[base] = TISSUE["bone"]  # dense: petrous bones, orbital roofs
    labels[base & central & (below > BASE_CORTEX_MM)] = TISSUE["marrow"]  # clivus, sphenoid body
    labels[base & (below > np.where(central, *BASE_BONE_MM))] = TISSUE["muscle"]  # soft tissue of face and neck
    if z < FACE_BELOW_Z_MM:
        labels[(v < FACE_FRONT_V_MM) & (depth >= SKIN_MM + head.fat_mm)] = TISSUE["muscle"]
    _sinus(head, z, labels, *SPHENOID_SINUS)
    for centre in _both(MAXILLARY_SINUS[0]):
        _sinus(head, z, labels, centre, MAXILLARY_SINUS[1])
    _sinus(head, z, labels, *NASAL_CAVITY)
    _cells(head, z, labels, *ETHMOID, AIR_CELL_MM)
    for centre in _both(MASTOID[0]):
        _cells(head, z, labels, centre, MASTOID[1], AIR_CELL_MM)
    for side in (1, -1):
        _orbit(head, z, labels, side)


def _sinus(head: Head, z: float, labels: np.ndarray, centre: Point, radii: Point) -> None:
    q = _ellipsoid(head, z, centre, radii)
    if q is not None:
        _paint(labels, q < WALL, "bone")
        _paint(labels, q < 1.0, "mucosa")
        _paint(labels, q < (1 - head.mucosa) ** 2, "air")


def _cells(head: Head, z: float, labels: np.ndarray, centre: Point, radii: Point, cell_mm: float) -> None:
    """Air cells (ethmoid, mastoid): air between thin bony septa lined with mucosa."""
    q = _ellipsoid(head, z, centre, radii)
    if q is None:
        return
    inside = q < 1
    k = FIELD_CELL_MM / cell_mm  # irregular cells: the zero lines of a fine random field are the septa
    wall = np.ones(q.shape, np.float32)
    wall[inside] = np.abs(sample_field(head.sulci, k * head.u_hw[inside], k * head.v_hw[inside],
                                       np.full(int(inside.sum()), k * z, np.float32)))
    labels[inside] = TISSUE["air"]
    labels[inside & (wall < SEPTUM + head.mucosa)] = TISSUE["mucosa"]
    labels[inside & (wall < SEPTUM)] = TISSUE["bone"]


def _orbit(head: Head, z: float, labels: np.ndarray, side: int) -> None:
    """Orbital fat cone with its walls, globe (sclera, vitreous, lens), recti."""
    q = _ellipsoid(head, z, _side(ORBIT[0], side), ORBIT[1])
    if q is None:
        return
    _paint(labels, (q < WALL) & (head.v_hw > ORBIT_RIM_V_MM), "bone")
    _paint(labels, _inside(head, z, _side(LIDS[0], side), LIDS[1]), "fat")
    _paint(labels, q < 1, "fat")
    for p0, p1, radius in (MEDIAL_RECTUS, LATERAL_RECTUS):
        _paint(labels, _tube(head, z, _side(p0, side), _side(p1, side), radius), "muscle")
    globe = _ellipsoid(head, z, _side(GLOBE[0], side), GLOBE[1])
    if globe is not None:
        _paint(labels, globe < 1, "sclera")
        _paint(labels, globe < VITREOUS, "vitreous")
    _paint(labels, _inside(head, z, _side(LENS[0], side), LENS[1]), "lens")


# --- brain ----------------------------------------------------------------------------------


def _brain(head: Head, z: float, labels: np.ndarray, depth: np.ndarray, inner: np.ndarray) -> None:
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
    brain = np.where(head.posterior_hw, np.minimum(brain, z - head.tent_hw - TENTORIUM_MM), brain)
    _cerebrum(head, z, labels, supra & (brain > 0), brain, depth, inner)
    _posterior_fossa(head, z, labels, infra & (wall > head.csf_mm) & (z < head.tent_hw - TENTORIUM_MM))


def _cerebrum(head: Head, z: float, labels: np.ndarray, tissue: np.ndarray, brain: np.ndarray, depth: np.ndarray,
              inner: np.ndarray) -> None:
    u, v = head.u_hw, head.v_hw
    labels[tissue] = TISSUE["white"]
    labels[tissue & (brain < CORTEX_MM)] = TISSUE["grey"]
    (cu, cv, cz), caudate_radii = CAUDATE
    caudate = ((cu + VENTRICLE_SPREAD_MM * head.ventricles, cv, cz), caudate_radii)
    for centre, radii in (caudate, THALAMUS, LENTIFORM):
        for c in _both(centre):
            q = _ellipsoid(head, z, c, radii)
            _paint(labels, None if q is None else (q < 1) & tissue, "deep_grey")
    _sulci(head, z, labels, tissue, depth - inner - head.csf_mm)
    # interhemispheric fissure (stops at the corpus callosum)
    core = _ellipsoid(head, z, *CALLOSAL_CORE)
    fissure = tissue & (core > 1 if core is not None else True)
    labels[fissure & (np.abs(u) < FISSURE_CORTEX_MM)] = TISSUE["grey"]
    labels[fissure & (np.abs(u) < FISSURE_CSF_MM + FISSURE_CSF_MM * head.sulcus)] = TISSUE["csf"]
    if SYLVIAN_Z_MM[0] < z < SYLVIAN_Z_MM[1]:  # Sylvian fissures: stem from the lateral surface, then around the insula
        insula = np.abs(np.abs(u) - (INSULA_U_MM - BEND * (v - BEND_V_MM) ** 2))
        insula = np.where((v > INSULA_V_MM[0]) & (v < INSULA_V_MM[1]), insula, 99)
        stems = [_segment_distance(head, _side(SYLVIAN_STEM[0], side), _side(SYLVIAN_STEM[1], side))
                 for side in (1, -1)]
        for dist in [insula] + stems:
            labels[tissue & (dist < SYLVIAN_CORTEX_MM)] = TISSUE["grey"]
            labels[tissue & (dist < SYLVIAN_CSF_MM * head.sulcus)] = TISSUE["csf"]
    _ventricles(head, z, labels, tissue)


def _sulci(head: Head, z: float, labels: np.ndarray, tissue: np.ndarray, convexity: np.ndarray) -> None:
    """Sulci: zero lines of a smooth random function of the direction from the
    brain's centre, so they run in from the surface (meandering with depth),
    lined with cortex. `convexity`: mm below the brain's outer surface."""
    band = tissue & (convexity < SULCI_DEPTH_MM)
    if not band.any():
        return
    u, v, w = head.u_hw[band], head.v_hw[band], np.float32(z - BRAIN_CENTRE_Z_MM)
    depth = convexity[band]
    reach = SULCI_SPHERE_MM / (np.sqrt(u * u + v * v + w * w) + 1e-3)  # onto the sphere
    pu, pv, pw = u * reach, v * reach, w * reach
    bend = SULCI_MEANDER * depth  # sulci meander as they go deeper
    # the offsets (mm) sample the one field at unrelated places: independent functions
    pu = pu + bend * sample_field(head.sulci, pv + 30, pw, pu)
    pv = pv + bend * sample_field(head.sulci, pw, pu - 30, pv)
    n = np.abs(sample_field(head.sulci, pu, pv, pw + 8.0))
    fundus = FUNDUS_MM[0] + FUNDUS_MM[1] * np.abs(sample_field(head.sulci, pv + 20, pw + 8, pu))
    width = SULCUS_WIDTH * head.sulcus * (SULCUS_OPENING - np.clip(depth / fundus, 0, 1))
    grey, csf = np.zeros_like(band), np.zeros_like(band)
    grey[band] = (n < width + SULCUS_CORTEX) & (depth < fundus + FUNDUS_CORTEX_MM)
    csf[band] = (n < width) & (depth < fundus)
    labels[grey] = TISSUE["grey"]
    labels[csf] = TISSUE["csf"]


def _ventricles(head: Head, z: float, labels: np.ndarray, tissue: np.ndarray) -> None:
    """Lateral (with frontal, occipital, temporal horns), third ventricle; the
    bright caps at the horn tips are normal on FLAIR."""
    u, v, s = head.u_hw, head.v_hw, head.ventricles
    if not LATERAL_VENTRICLE_Z_MM[0] < z < LATERAL_VENTRICLE_Z_MM[1]:
        return
    (front, extra), (v0, length) = VENTRICLE_WIDTH_MM, VENTRICLE_WIDENING_V_MM
    for side in (1, -1):
        cu = side * (VENTRICLE_MIDLINE_MM + VENTRICLE_SPREAD_MM * s + BEND * (v - BEND_V_MM) ** 2)  # horns diverge
        wu = s * (front + extra * np.clip((v - v0) / length, 0, 1))
        cz = VENTRICLE_ROOF_Z_MM - VENTRICLE_ARCH * v ** 2
        along = (v / VENTRICLE_HALF_LENGTH_MM) ** 2
        q = ((u - cu) / wu) ** 2 + along * along + ((z - cz) / (VENTRICLE_HALF_HEIGHT_MM * s)) ** 2
        tips = (v < HORN_TIPS_V_MM[0]) | (v > HORN_TIPS_V_MM[1])
        labels[tissue & (q < CAP) & tips] = TISSUE["cap"]
        labels[tissue & (q < 1)] = TISSUE["ventricle"]
    for centre, (ru, rv, rz) in (OCCIPITAL_HORN, TEMPORAL_HORN):
        for c in _both(centre):
            _paint(labels, _inside(head, z, c, (ru * s, rv, rz * s)), "ventricle")
    centre, (ru, rv, rz) = THIRD_VENTRICLE
    _paint(labels, _inside(head, z, centre, (ru + THIRD_VENTRICLE_GROWTH_MM * s, rv, rz)), "ventricle")


def _posterior_fossa(head: Head, z: float, labels: np.ndarray, fossa: np.ndarray) -> None:
    """Cerebellum fills the fossa (cortex with folia, white core), brainstem in
    front of the fourth ventricle, cisterns around."""
    u, v = head.u_hw, head.v_hw
    if fossa.any():
        labels[fossa] = TISSUE["cerebellum"]
        # folia: thin fissures curving around the fourth ventricle, fingerprint-like
        uf, vf = u[fossa], v[fossa]
        _, fv, fz = FOLIA_CENTRE
        r = np.sqrt(uf * uf + (vf - fv) ** 2 + (FOLIA_Z_STRETCH * (z - fz)) ** 2)
        k = FOLIA_FIELD_SCALE
        warp = sample_field(head.sulci, k * uf, k * vf, np.full_like(uf, k * z))
        folia = np.zeros_like(fossa)
        folia[fossa] = (np.cos(2 * np.pi * r / FOLIUM_MM + FOLIA_WARP * warp) > FOLIA_FISSURE) & (r > FOLIA_FROM_MM)
        labels[folia] = TISSUE["csf"]
        for centre in _both(CEREBELLAR_WHITE[0]):
            _paint(labels, _inside(head, z, centre, CEREBELLAR_WHITE[1]), "cerebellar_white")
        _paint(labels, _inside(head, z, *CISTERNA_MAGNA), "csf")
    for centre, radii, tissue in BRAINSTEM:
        _paint(labels, _inside(head, z, centre, radii), tissue)
