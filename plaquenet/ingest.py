"""Clinical studies -> the cohort store (`plaquenet import`).

STUDIES holds one sub-folder per patient, each read by content
(`io.study.discover_patient`: a FLAIR DICOM series or NIfTI, and one kind of
outlines). Slices must be axial acquisitions (`orientation.check_axial`).

Patients get pseudonymous ids P001, P002, ... in sorted order of the folder
names; no folder name and no header field is written. Image and mask are
turned into the cohort's (S, H, W) by one `orientation.to_cohort` step.
Scans keep their own in-plane size unless `resample="HxW"` is given (§4: the
paper's scans are 448x512).
"""

import collections
import dataclasses
import re
from pathlib import Path
from typing import Counter, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from .cohort import Scan, check_scan, cohort_file, write_cohort
from .errors import InputError
from .io.orientation import check_axial, to_cohort, voxel_mm
from .io.study import OUTLINE_SOURCE, discover_patient, read_flair, read_outlines
from .progress import progress
from .typing import PathLike


@dataclasses.dataclass
class ImportSummary:
    cohort: Path
    patients: int = 0
    slices: int = 0
    lesion_slices: int = 0
    sizes: Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def add(self, scan: Scan) -> None:
        self.patients += 1
        self.slices += len(scan.flair_shw)
        self.lesion_slices += len(scan.lesion_slices())
        self.sizes["{}x{}".format(*scan.flair_shw.shape[1:])] += 1

    def __str__(self) -> str:
        sizes = ", ".join(f"{size} ({n})" for size, n in sorted(self.sizes.items()))
        return (f"imported {self.patients} patients (P001-P{self.patients:03d}): {self.slices} slices, "
                f"{self.lesion_slices} with lesions; slice sizes HxW (patients): {sizes} -> {self.cohort}")


def import_studies(studies_dir: PathLike, cohort_dir: PathLike, resample: Optional[str] = None) -> ImportSummary:
    """Read every patient folder of `studies_dir` and write `<cohort_dir>/cohort.h5` atomically.

    Any bad input raises InputError before the store is complete, so none is left."""
    shape_hw = parse_size(resample) if resample else None
    folders = patient_folders(studies_dir)
    summary = ImportSummary(cohort=cohort_file(cohort_dir))
    created = not Path(cohort_dir).exists()

    def scans() -> Iterator[Scan]:
        for n, folder in enumerate(progress(folders, desc="import", unit="patient")):
            scan = read_patient(folder, f"P{n + 1:03d}", shape_hw)
            summary.add(scan)
            yield scan
        if summary.lesion_slices == 0:
            raise InputError(studies_dir, "no lesions: no patient has any outlined pixel")

    try:
        write_cohort(cohort_dir, scans())
    except BaseException:
        if created and Path(cohort_dir).is_dir() and not any(Path(cohort_dir).iterdir()):
            Path(cohort_dir).rmdir()
        raise
    return summary


def patient_folders(studies_dir: PathLike) -> List[Path]:
    studies_dir = Path(studies_dir)
    if not studies_dir.is_dir():
        raise InputError(studies_dir, "not a folder")
    folders = sorted(p for p in studies_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(studies_dir, "no patient folders (expected one sub-folder per patient)")
    return folders


def parse_size(text: str) -> Tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise InputError("--resample", f"expected HxW such as 448x512, got {text!r}")
    return int(match[1]), int(match[2])


def read_patient(folder: Path, patient: str, shape_hw: Optional[Tuple[int, int]] = None) -> Scan:
    """One patient folder -> Scan in the cohort convention (pseudonymous id `patient`)."""
    found = discover_patient(folder)
    image, _ = read_flair(found)
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    mask_shw = read_outlines(found, image, affine_whs)
    scan = Scan(patient, flair_shw, mask_shw, voxel_mm(affine_whs), affine_whs,
                flair_source="dicom" if found.flair_dicom else "nifti",
                mask_source=OUTLINE_SOURCE[found.outline_kind])
    check_scan(scan, source=image.path)
    return resample_scan(scan, shape_hw) if shape_hw else scan


def resample_scan(scan: Scan, shape_hw: Tuple[int, int]) -> Scan:
    """In-plane resampling to (H, W): linear for FLAIR, nearest for the mask; voxel_mm and affine follow.

    cv2 puts pixel centres at (x + 0.5) * scale - 0.5 in the source, so the affine's origin moves by
    half the change in pixel size."""
    (_, h, w), (new_h, new_w) = scan.flair_shw.shape, shape_hw
    if (h, w) == (new_h, new_w):
        return scan
    resize = lambda v, how: np.stack([cv2.resize(x, (new_w, new_h), interpolation=how) for x in v])  # noqa: E731
    scale_w, scale_h = w / new_w, h / new_h
    index_map = np.array([[scale_w, 0, 0, 0.5 * scale_w - 0.5], [0, scale_h, 0, 0.5 * scale_h - 0.5],
                          [0, 0, 1, 0], [0, 0, 0, 1]])
    affine_whs = scan.affine_whs @ index_map
    return dataclasses.replace(scan, flair_shw=resize(scan.flair_shw.astype(np.float32), cv2.INTER_LINEAR),
                               mask_shw=resize(scan.mask_shw.astype(np.uint8), cv2.INTER_NEAREST_EXACT),
                               affine_whs=affine_whs, voxel_mm=voxel_mm(affine_whs))


