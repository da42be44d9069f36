"""Clinical studies -> the cohort store (`plaquenet import`).

STUDIES holds one sub-folder per patient; each is searched (all files below
it, hidden ones skipped) and its files are recognised by content:

* FLAIR: the MR DICOM series (if several, the one whose SeriesDescription,
  ProtocolName or SequenceName says FLAIR, TIRM or dark-fluid, Siemens' name:
  `t2_tirm_tra_dark-fluid`), or a NIfTI volume: `flair.nii[.gz]`, else the only
  NIfTI whose name does not say mask/label/lesion. Slices must be axial
  acquisitions (`orientation.check_axial`).
* Outlines, exactly one kind: a NIfTI whose name contains mask/label/lesion,
  PNGs in a folder `mask/` (see `masks.read_png_masks`), a DICOM SEG, or a
  DICOM RTSTRUCT.
* Every other file must be DICOM (MR, SEG or RTSTRUCT), except DICOMDIR and
  files whose suffix says they are not (`IGNORED_SUFFIXES`): a file that
  cannot be read is an error, never silently dropped.

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
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..cohort import Scan, check_scan, cohort_file, write_cohort
from ..errors import InputError
from ..progress import progress
from .dicom import read_dicom_series, read_header
from .masks import read_png_masks, read_rtstruct, read_seg
from .nifti import is_nifti, read_nifti
from .orientation import SourceVolume, check_axial, cohort_grid, to_cohort, voxel_mm

IGNORED_SUFFIXES = {".txt", ".json", ".csv", ".md", ".xml", ".html", ".htm", ".pdf", ".log", ".ini", ".yaml",
                    ".yml", ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".zip", ".gz", ".py"}
MASK_WORDS = ("mask", "label", "lesion")
FLAIR_NAMES = re.compile(r"FLAIR|TIRM|DARK[-_ ]?FLUID", re.IGNORECASE)
FLAIR_FIELDS = ("SeriesDescription", "ProtocolName", "SequenceName")
OUTLINE_SOURCE = {"NIfTI mask": "nifti", "PNG": "png", "SEG": "seg", "RTSTRUCT": "rtstruct"}


@dataclasses.dataclass
class PatientFiles:
    """What discovery found in one patient folder."""

    folder: Path
    flair_dicom: List[Tuple[Path, object]]  # (path, header) of the FLAIR series files
    flair_nifti: Optional[Path]
    outline_kind: str  # a key of OUTLINE_SOURCE
    outline_paths: List[Path]


@dataclasses.dataclass
class ImportSummary:
    cohort: Path
    patients: int = 0
    slices: int = 0
    lesion_slices: int = 0
    sizes: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, scan: Scan) -> None:
        self.patients += 1
        self.slices += len(scan.flair_shw)
        self.lesion_slices += len(scan.lesion_slices())
        self.sizes["{}x{}".format(*scan.flair_shw.shape[1:])] += 1

    def __str__(self) -> str:
        sizes = ", ".join(f"{size} ({n})" for size, n in sorted(self.sizes.items()))
        return (f"imported {self.patients} patients (P001-P{self.patients:03d}): {self.slices} slices, "
                f"{self.lesion_slices} with lesions; slice sizes HxW (patients): {sizes} -> {self.cohort}")


def import_studies(studies_dir, cohort_dir, resample: Optional[str] = None) -> ImportSummary:
    """Read every patient folder of `studies_dir` and write `<cohort_dir>/cohort.h5` atomically.

    Any bad input raises InputError before the store is complete, so none is left."""
    shape_hw = parse_size(resample) if resample else None
    folders = patient_folders(studies_dir)
    summary = ImportSummary(cohort=cohort_file(cohort_dir))
    created = not Path(cohort_dir).exists()

    def scans():
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


def patient_folders(studies_dir) -> List[Path]:
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
    if found.flair_dicom:
        image = read_dicom_series([p for p, _ in found.flair_dicom], [h for _, h in found.flair_dicom])
    else:
        image = read_nifti(found.flair_nifti)
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    mask_shw = read_outlines(found, image, affine_whs)
    scan = Scan(patient, flair_shw, mask_shw, voxel_mm(affine_whs), affine_whs,
                flair_source="dicom" if found.flair_dicom else "nifti",
                mask_source=OUTLINE_SOURCE[found.outline_kind])
    check_scan(scan, source=image.path)
    return resample_scan(scan, shape_hw) if shape_hw else scan


def read_outlines(found: PatientFiles, image: SourceVolume, affine_whs: np.ndarray) -> np.ndarray:
    """The outlines -> mask (S, H, W) on the grid of `image` (checked for NIfTI masks)."""
    paths, kind = found.outline_paths, found.outline_kind
    if kind == "NIfTI mask":
        mask = read_nifti(paths[0], mask=True)
        mask_shw, mask_affine = to_cohort(mask.data_ijk, mask.affine_ras)
        _check_same_grid(paths[0], mask_shw.shape, mask_affine, image, affine_whs)
        return mask_shw
    reader = {"PNG": read_png_masks, "SEG": lambda p, im: read_seg(p[0], im),
              "RTSTRUCT": lambda p, im: read_rtstruct(p[0], im)}[kind]
    return to_cohort(reader(paths, image), image.affine_ras)[0]


def _check_same_grid(path, mask_shape, mask_affine, image: SourceVolume, affine_whs) -> None:
    flair_shape = cohort_grid(image.data_ijk.shape, image.affine_ras)[0]
    if mask_shape != flair_shape:
        raise InputError(path, f"mask of shape {mask_shape} (S, H, W), the FLAIR is {flair_shape}")
    off_mm = float(np.abs(mask_affine - affine_whs).max())
    if off_mm > 0.1 * min(voxel_mm(affine_whs)):
        raise InputError(path, f"mask geometry differs from the FLAIR's (affines differ by up to {off_mm:.3g} mm)")


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


# --- discovery -------------------------------------------------------------

def discover_patient(folder: Path, need_outlines: bool = True) -> PatientFiles:
    """Sort the files below `folder` into FLAIR and outlines; InputError when absent or ambiguous.

    need_outlines=False (`plaquenet segment`): outlines are not looked for (outline_kind "")."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    niftis = [p for p in files if is_nifti(p)]
    nifti_masks = [p for p in niftis if any(w in p.name.lower() for w in MASK_WORDS)]
    png_folders = sorted({p.parent for p in files if p.suffix.lower() == ".png" and p.parent.name.lower() == "mask"})
    dicoms = collections.defaultdict(list)  # modality -> [(path, header)]
    for path in files:
        if not is_nifti(path) and path.name.upper() != "DICOMDIR" and path.suffix.lower() not in IGNORED_SUFFIXES:
            header = read_header(path)
            modality = str(header.get("Modality", ""))
            if modality not in ("MR", "SEG", "RTSTRUCT"):
                raise InputError(path, f"DICOM of modality {modality or 'unknown'}: expected MR images, SEG or RTSTRUCT")
            dicoms[modality].append((path, header))
    outlines = {"NIfTI mask": nifti_masks, "PNG": png_folders, "SEG": [p for p, _ in dicoms["SEG"]],
                "RTSTRUCT": [p for p, _ in dicoms["RTSTRUCT"]]}
    series = _flair_series(folder, dicoms["MR"])
    flair_nifti = _flair_nifti(folder, [p for p in niftis if p not in nifti_masks])
    if series and flair_nifti:
        raise InputError(folder, "ambiguous: found FLAIR as a DICOM series and as NIfTI")
    if not series and not flair_nifti:
        raise InputError(folder, "no FLAIR found (no MR DICOM series, no NIfTI volume)")
    if not need_outlines:
        return PatientFiles(folder, series, flair_nifti, "", [])
    kind, paths = _one_outline_kind(folder, outlines)
    if kind == "PNG":
        paths = sorted(p for p in paths[0].iterdir() if p.suffix.lower() == ".png" and not p.name.startswith("."))
    return PatientFiles(folder, series, flair_nifti, kind, paths)


def _one_outline_kind(folder: Path, outlines: Dict[str, List[Path]]) -> Tuple[str, List[Path]]:
    kinds = [k for k, paths in outlines.items() if paths]
    if len(kinds) > 1:
        raise InputError(folder, f"ambiguous: found {' and '.join(kinds)} outlines")
    if not kinds:
        raise InputError(folder, "no outlines found (NIfTI mask, mask/*.png, DICOM SEG or RTSTRUCT)")
    paths = outlines[kinds[0]]
    if len(paths) > 1:
        raise InputError(folder, f"ambiguous: {len(paths)} {kinds[0]} outlines ({paths[0].name}, {paths[1].name})")
    return kinds[0], paths


def _flair_series(folder: Path, mr_files) -> list:
    by_series = collections.defaultdict(list)
    for path, header in mr_files:
        by_series[str(header.get("SeriesInstanceUID", ""))].append((path, header))
    if len(by_series) <= 1:
        return next(iter(by_series.values()), [])
    flair = [files for files in by_series.values()
             if any(FLAIR_NAMES.search(str(files[0][1].get(key, ""))) for key in FLAIR_FIELDS)]
    if len(flair) != 1:
        raise InputError(folder, f"ambiguous: {len(by_series)} MR series, {len(flair)} of them described as FLAIR")
    return flair[0]


def _flair_nifti(folder: Path, candidates: List[Path]) -> Optional[Path]:
    named = [p for p in candidates if p.name.lower() in ("flair.nii", "flair.nii.gz")]
    if len(named) == 1 or len(candidates) == 1:
        return (named or candidates)[0]
    if candidates:
        raise InputError(folder, f"ambiguous: {len(candidates)} NIfTI volumes and none is flair.nii[.gz]")
    return None
