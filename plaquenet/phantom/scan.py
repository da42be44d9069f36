"""`PhantomScan`: one synthetic patient as arrays, what `phantom_patient`
returns and the writers put on disk."""

from __future__ import annotations

import dataclasses
from typing import List, Tuple

import numpy as np


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
    regions_shw: np.ndarray  # uint8 (S, H, W): where each voxel is, labels of regions.REGIONS (e.g. 7 "orbit")
    polygons_cr: List[List[np.ndarray]]  # per slice, (K, 2) float (column, row) pixel vertices
    voxel_mm: Tuple[float, float, float]  # (between slices, between rows, between columns)
    slice_thickness_mm: float
    origin_lps: Tuple[float, float, float]  # DICOM ImagePositionPatient of slice 0, mm
    rescale: Tuple[float, float]  # (slope, intercept): flair = stored * slope + intercept

    @property
    def mask_exact_shw(self) -> np.ndarray:
        """uint8 (S, H, W) 0/1: the plaques themselves, not the radiologist's
        polygons: 1 where a plaque fills at least half of the voxel
        (plaque_shw >= 0.5), the rule that makes a voxel one of the plaque's."""
        return (self.plaque_shw >= 0.5).astype(np.uint8)

    @property
    def affine_whs(self) -> np.ndarray:
        """NIfTI affine of flair_shw.transpose(2, 1, 0): index (w, h, s) -> RAS mm."""
        ds, dr, dc = self.voxel_mm
        x0, y0, z0 = self.origin_lps
        return np.array([[-dc, 0, 0, -x0], [0, -dr, 0, -y0], [0, 0, ds, z0], [0, 0, 0, 1]], dtype=np.float64)

    def slice_z_mm(self, k: int) -> float:
        """Scanner z (DICOM LPS, mm) of slice k, as ImagePositionPatient carries it."""
        return round(self.origin_lps[2] + k * self.voxel_mm[0], 4)
