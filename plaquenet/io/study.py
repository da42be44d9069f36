"""One patient's study folder, read by content: which files are the FLAIR and
which the outlines, and reading them (`plaquenet import` reads one such folder
per patient, `plaquenet segment` one folder without outlines).

Each folder is searched (all files below it, hidden ones skipped) and its
files are recognised by content:

* FLAIR: the MR DICOM series (if several, the one whose SeriesDescription,
  ProtocolName or SequenceName says FLAIR, TIRM or dark-fluid, Siemens' name:
  `t2_tirm_tra_dark-fluid`), or a NIfTI volume: `flair.nii[.gz]`, else the only
  NIfTI whose name does not say mask/label/lesion.
* Outlines, exactly one kind: a NIfTI whose name contains mask/label/lesion,
  PNGs in a folder `mask/` (see `masks.read_png_masks`), a DICOM SEG, or a
  DICOM RTSTRUCT.
* Every other file must be DICOM (MR, SEG or RTSTRUCT), except DICOMDIR and
  files whose suffix says they are not (`IGNORED_SUFFIXES`): a file that
  cannot be read is an error, never silently dropped.
"""

import collections
import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pydicom

from ..errors import InputError
from ..typing import PathLike
from .dicom import read_dicom_series, read_header
from .masks import read_png_masks, read_rtstruct, read_seg
from .nifti import is_nifti, read_nifti
from .orientation import SourceVolume, cohort_grid, to_cohort, voxel_mm

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
    flair_dicom: List[Tuple[Path, pydicom.Dataset]]  # (path, header) of the FLAIR series files
    flair_nifti: Optional[Path]
    outline_kind: str  # a key of OUTLINE_SOURCE
    outline_paths: List[Path]


def read_flair(found: PatientFiles) -> Tuple[SourceVolume, Optional[List[pydicom.Dataset]]]:
    """The FLAIR that discovery found -> (SourceVolume, the DICOM headers in its
    slice order k, or None for NIfTI)."""
    if not found.flair_dicom:
        assert found.flair_nifti is not None  # discovery found the FLAIR as DICOM or NIfTI
        return read_nifti(found.flair_nifti), None
    image = read_dicom_series([p for p, _ in found.flair_dicom], [h for _, h in found.flair_dicom])
    assert image.sop_uids is not None  # set for every DICOM series
    by_uid = {str(h.SOPInstanceUID): h for _, h in found.flair_dicom}
    return image, [by_uid[uid] for uid in image.sop_uids]


def read_outlines(found: PatientFiles, image: SourceVolume, affine_whs: np.ndarray) -> np.ndarray:
    """The outlines -> mask (S, H, W) on the grid of `image` (checked for NIfTI masks)."""
    paths, kind = found.outline_paths, found.outline_kind
    if kind == "NIfTI mask":
        mask = read_nifti(paths[0], mask=True)
        mask_shw, mask_affine = to_cohort(mask.data_ijk, mask.affine_ras)
        check_same_grid(paths[0], mask_shw.shape, mask_affine, image, affine_whs)
        return mask_shw
    reader = {"PNG": read_png_masks, "SEG": lambda p, im: read_seg(p[0], im),
              "RTSTRUCT": lambda p, im: read_rtstruct(p[0], im)}[kind]
    return to_cohort(reader(paths, image), image.affine_ras)[0]


def check_same_grid(path: PathLike, mask_shape: Tuple[int, ...], mask_affine: np.ndarray, image: SourceVolume,
                    affine_whs: np.ndarray, what: str = "mask") -> None:
    """InputError naming `path` unless a volume in cohort order (shape, affine_whs)
    lies on the FLAIR's grid: same shape, affines within a tenth of a voxel."""
    flair_shape = cohort_grid(image.data_ijk.shape, image.affine_ras)[0]
    if mask_shape != flair_shape:
        raise InputError(path, f"{what} of shape {mask_shape} (S, H, W), the FLAIR is {flair_shape}")
    off_mm = float(np.abs(mask_affine - affine_whs).max())
    if off_mm > 0.1 * min(voxel_mm(affine_whs)):
        raise InputError(path, f"{what} geometry differs from the FLAIR's (affines differ by up to {off_mm:.3g} mm)")


# --- discovery -------------------------------------------------------------

def discover_patient(folder: Path, need_outlines: bool = True) -> PatientFiles:
    """Sort the files below `folder` into FLAIR and outlines; InputError when absent or ambiguous.

    need_outlines=False (`plaquenet segment`): outlines are not looked for (outline_kind "")."""
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    niftis = [p for p in files if is_nifti(p)]
    nifti_masks = [p for p in niftis if any(w in p.name.lower() for w in MASK_WORDS)]
    png_folders = sorted({p.parent for p in files if p.suffix.lower() == ".png" and p.parent.name.lower() == "mask"})
    dicoms: Dict[str, List[Tuple[Path, pydicom.Dataset]]] = collections.defaultdict(list)  # modality -> [(path, header)]
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


def _flair_series(folder: Path, mr_files: List[Tuple[Path, pydicom.Dataset]]) -> List[Tuple[Path, pydicom.Dataset]]:
    by_series: Dict[str, List[Tuple[Path, pydicom.Dataset]]] = collections.defaultdict(list)
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
