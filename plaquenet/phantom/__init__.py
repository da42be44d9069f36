"""The embedded synthetic FLAIR cohort: `make demo` runs anywhere, no download.

Each phantom patient is a procedural head, evaluated slice by slice in
millimetres (numpy, cv2, scipy.ndimage; no template). The flow, one module a
step:

* `head`: the patient and the scanner: size and pose, slices 3-5 mm thick of
  448x512 pixels of about 0.45 mm (§2, §4.1) from the skull base to the
  vertex, tissue signals, the maps of the skull base;
* `anatomy`: the healthy tissue labels of each slice (scalp, calvaria, skull
  base with orbits, sinuses and petrous bones: §4.1's false positives; brain
  with cortex, sulci, ventricles, deep grey nuclei, cerebellum, brainstem);
* `plaques`: 5-15 plaques where MS puts them (§2), painted over the tissue
  image, and the radiologist's approximate polygons around them (§6),
  rasterised with `plaquenet.io.polygons.rasterise_polygons`, the rule the
  RTSTRUCT import uses, so DICOM round trips give identical masks;
* `head.acquire`: smooth multiplicative bias field, Rician noise, 12-bit
  storage with a rescale slope/intercept;
* `regions`: where each voxel is (air, brain, csf, scalp, calvaria, skull
  base, temporal bone, orbit, sinus), replayed from the shapes `anatomy`
  drew, without a random number (the images do not change with it);
* `patients`, `writers`: fake identities and the files.

`write_phantom` writes the cohort as a hospital would hand it over (with FAKE
patient data in every header, so tests can prove the import strips it)::

    OUT/dicom/<Surname_Name>/flair/<random hex>.dcm   MR Image Storage, one per slice
    OUT/dicom/<Surname_Name>/outlines.dcm             RTSTRUCT (patients 0, 2, ...)
                                                      or DICOM SEG (patients 1, 3, ...)
    OUT/nifti/<Surname_Name>/flair.nii.gz             float32, RAS-ordered voxels
    OUT/nifti/<Surname_Name>/mask.nii.gz              uint8, same grid and affine
    OUT/truth/<Surname_Name>/regions.nii.gz           uint8, same grid and affine: where each
                                                      voxel is (`regions`), labels of ...
    OUT/truth/regions.json                            ... this legend: {"0": "air", ...}
    OUT/truth/<Surname_Name>/plaques_exact.nii.gz     uint8 0/1, same grid and affine: the plaques
                                                      themselves (`PhantomScan.mask_exact_shw`)

`truth/` is what a hospital cannot hand over; `plaquenet import OUT/dicom
--truth OUT/truth` carries it into the cohort store beside the outlines. Its
files hold no header text; the folder names are the fake patients', as in
`nifti/`.

Everything is seeded: the same seed gives byte-identical files.
`phantom_patient` gives one patient as arrays (tests, figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Union

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..io.polygons import rasterise_polygons
from ..progress import progress
from .anatomy import slice_labels
from .head import PARENCHYMA, SHAPE_HW, TISSUE, acquire, draw_head, tissue_image
from .patients import FakePatient, fake_patients
from .plaques import draw_plaques, outline_plaques, paint_plaque, plaque_fractions
from .regions import REGIONS, slice_regions
from ..presets import PRESETS, Preset
from .scan import PhantomScan
from .writers import (nifti_affine, to_nifti_order, write_dicom_study, write_nifti_study, write_regions_legend,
                      write_truth_study)

__all__ = ["SHAPE_HW", "TISSUE", "PARENCHYMA", "REGIONS", "PRESETS", "Preset", "PhantomScan", "phantom_patient",
           "write_phantom", "FakePatient", "fake_patients", "write_dicom_study", "write_nifti_study",
           "write_truth_study", "nifti_affine", "to_nifti_order"]




def phantom_patient(seed: int = 0, n_slices: int = 20, patient: int = 0) -> PhantomScan:
    """Synthetic axial FLAIR study of one patient: 448x512 slices from the skull
    base to the vertex, plaques, and the radiologist's polygon outlines; beside
    them the truth: tissue and region labels, and the plaques' voxel fractions
    (`mask_exact_shw`: 1 where a plaque fills at least half the voxel).

    Deterministic in (seed, patient); patients of one seed are independent.
    """
    if n_slices < 1:
        raise InputError(None, f"a phantom patient needs at least 1 slice, got {n_slices}")
    rng = np.random.default_rng([seed, patient, 0])
    head = draw_head(rng, n_slices)
    labels_shw = np.stack([slice_labels(head, z) for z in head.z_model])
    regions_shw = np.stack([slice_regions(head, z, labels) for z, labels in zip(head.z_model, labels_shw)])
    plaques = draw_plaques(rng, head, labels_shw)
    flair_shw = np.empty(labels_shw.shape, np.float32)
    plaque_shw = np.zeros(labels_shw.shape, np.float32)
    mask_shw = np.zeros(labels_shw.shape, np.uint8)
    polygons_cr: List[List[np.ndarray]] = []
    for k in range(n_slices):
        image = tissue_image(rng, head, labels_shw[k])
        fractions = plaque_fractions(head, plaques, k, labels_shw[k])
        for plaque, frac in zip(plaques, fractions):
            if frac is not None:
                paint_plaque(image, plaque, frac, head)
                plaque_shw[k][frac[0]] = np.maximum(plaque_shw[k][frac[0]], frac[1])
        polygons_cr.append(outline_plaques(rng, plaques, fractions))
        mask_shw[k] = rasterise_polygons(polygons_cr[k], SHAPE_HW)
        flair_shw[k] = acquire(rng, head, image, k)
    return PhantomScan(
        flair_shw=flair_shw,
        mask_shw=mask_shw,
        plaque_shw=plaque_shw,
        tissue_shw=labels_shw,
        regions_shw=regions_shw,
        polygons_cr=polygons_cr,
        voxel_mm=(head.spacing_mm, head.pixel_mm, head.pixel_mm),
        slice_thickness_mm=head.thickness_mm,
        origin_lps=head.origin_lps,
        rescale=head.rescale,
    )


def write_phantom(out: Union[str, Path], n_patients: int = PRESETS["demo"].patients,
                  n_slices: int = PRESETS["demo"].slices, seed: int = 0) -> Path:
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
            write_truth_study(tmp / "truth" / who.folder, scan)
        write_regions_legend(tmp / "truth" / "regions.json")
    return out
