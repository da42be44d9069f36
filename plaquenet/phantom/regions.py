"""Where each pixel is: the region label map of a phantom slice, beside its
tissue labels, so that findings (§4.1, §5: false positives on "skull bones,
areas around eye globes and sinuses") can be counted per region.

`slice_regions` replays, on the finished tissue labels of `anatomy.slice_labels`,
the shapes that drew them (same constants, same painting order, no random
number), so a region is what the phantom drew there, not a guess from the
image:

* brain: parenchyma (`head.PARENCHYMA`): grey, white, deep grey, caps,
  cerebellum, cerebellar white, brainstem; csf: subarachnoid CSF, cisterns
  and ventricles. Plaques are drawn only in parenchyma, so the exact plaque
  mask lies in "brain".
* scalp: skin, fat and muscle outside the skull and the orbits: the scalp and
  temporal muscles, and on skull-base slices the nose, ears, the face and
  the soft tissue of face and neck under the skull base (the phantom draws
  them as one muscle tissue, so they are not told apart).
* calvaria / skull_base: bone and marrow above / below the fossa floor
  (`head.floor_hw`, the surface the phantom builds the skull base under).
  The vault's ring is one layer all the way down, so its part below the
  local fossa floor (around the orbits, the occiput low in the neck) is
  skull base; the temporal squama above the middle fossa is calvaria.
  Bony walls of the orbits and of the sphenoid, maxillary and nasal
  sinuses are skull base.
* temporal_bone: bone and marrow under the petrous ridges (`head.petrous_hw`),
  and everything inside the mastoids (air cells, their mucosa and septa).
* orbit: globes (vitreous, sclera, lens), the orbital fat cone with the
  rectus muscles, the lids' fat, and every pixel of optic nerve tissue: the
  phantom draws nerve and tract as one tissue, so the optic tract up to the
  chiasm is "orbit" too.
* sinus: air and mucosa inside the sphenoid, maxillary and ethmoid sinuses
  and the nasal cavity (counted with them: the phantom draws it as one more
  sinus, open in front like the nostrils), and the ethmoid's bony septa.
* air: outside the head.
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np

from .anatomy import (ETHMOID, LATERAL_RECTUS, LIDS, MASTOID, MAXILLARY_SINUS, MEDIAL_RECTUS, NASAL_CAVITY,
                      ORBIT, ORBIT_RIM_V_MM, SPHENOID_SINUS, WALL, _both, _ellipsoid, _side, _tube)
from .head import PARENCHYMA, TISSUE, Head

REGIONS: Dict[int, str] = {0: "air", 1: "brain", 2: "csf", 3: "scalp", 4: "calvaria", 5: "skull_base",
                           6: "temporal_bone", 7: "orbit", 8: "sinus"}
REGION = {name: label for label, name in REGIONS.items()}

_TISSUE_REGION = {"air": "air", "skin": "scalp", "fat": "scalp", "muscle": "scalp", "bone": "calvaria",
                  "marrow": "calvaria", "mucosa": "sinus", "csf": "csf", "ventricle": "csf", "vitreous": "orbit",
                  "sclera": "orbit", "lens": "orbit", "nerve": "orbit",
                  **{name: "brain" for name, label in TISSUE.items() if label in PARENCHYMA}}
REGION_OF_TISSUE = np.array([REGION[_TISSUE_REGION[name]] for name in TISSUE], np.uint8)  # indexed by tissue label


def slice_regions(head: Head, z: float, tissue_hw: np.ndarray) -> np.ndarray:
    """Region labels (H, W) uint8 of `REGIONS` for the tissue labels (H, W) that
    `anatomy.slice_labels(head, z)` drew at model height z (mm)."""
    regions = REGION_OF_TISSUE[tissue_hw]
    bony = _is(tissue_hw, "bone", "marrow")
    below = bony & (z < head.floor_hw)
    regions[below] = REGION["skull_base"]
    regions[below & head.petrous_hw] = REGION["temporal_bone"]
    if z < 0:  # where anatomy draws the skull base, in its order
        _skull_base(head, z, tissue_hw, regions, bony)
    return regions


def _is(tissue_hw: np.ndarray, *names: str) -> np.ndarray:
    return np.isin(tissue_hw, [TISSUE[n] for n in names])


def _set(regions: np.ndarray, where: Optional[np.ndarray], region: str) -> None:
    if where is not None:
        regions[where] = REGION[region]


def _skull_base(head: Head, z: float, tissue_hw: np.ndarray, regions: np.ndarray, bony: np.ndarray) -> None:
    """Sinuses and nasal cavity, ethmoid, mastoids, orbits (`anatomy._skull_base`)."""
    hollow = _is(tissue_hw, "air", "mucosa")
    sinuses = [SPHENOID_SINUS] + [(c, MAXILLARY_SINUS[1]) for c in _both(MAXILLARY_SINUS[0])] + [NASAL_CAVITY]
    for centre, radii in sinuses:
        q = _ellipsoid(head, z, centre, radii)
        if q is not None:
            _set(regions, bony & (q < WALL), "skull_base")
            _set(regions, hollow & (q < 1), "sinus")
    q = _ellipsoid(head, z, *ETHMOID)
    _set(regions, None if q is None else (hollow | bony) & (q < 1), "sinus")
    for centre in _both(MASTOID[0]):
        q = _ellipsoid(head, z, centre, MASTOID[1])
        _set(regions, None if q is None else (hollow | bony) & (q < 1), "temporal_bone")
    for side in (1, -1):
        _orbit(head, z, tissue_hw, regions, bony, side)


def _orbit(head: Head, z: float, tissue_hw: np.ndarray, regions: np.ndarray, bony: np.ndarray, side: int) -> None:
    """Orbital walls (skull base), fat cone, lids and recti (orbit): `anatomy._orbit`."""
    q = _ellipsoid(head, z, _side(ORBIT[0], side), ORBIT[1])
    if q is None:
        return
    _set(regions, bony & (q < WALL) & (head.v_hw > ORBIT_RIM_V_MM), "skull_base")
    lids = _ellipsoid(head, z, _side(LIDS[0], side), LIDS[1])
    cone = (q < 1) if lids is None else (q < 1) | (lids < 1)
    _set(regions, cone & _is(tissue_hw, "fat"), "orbit")
    muscle = _is(tissue_hw, "muscle")
    for p0, p1, radius in (MEDIAL_RECTUS, LATERAL_RECTUS):
        tube = _tube(head, z, _side(p0, side), _side(p1, side), radius)
        _set(regions, None if tube is None else tube & muscle, "orbit")
