"""Clinical studies -> the cohort store (`plaquenet import`).

STUDIES holds one sub-folder per patient, each read by content
(`io.study.discover_patient`: a FLAIR DICOM series or NIfTI, and one kind of
outlines). Slices must be axial acquisitions (`orientation.check_axial`).

Patients get pseudonymous ids P001, P002, ... in sorted order of the folder
names; no folder name and no header field is written. Image and mask are
turned into the cohort's (S, H, W) by one `orientation.to_cohort` step.
Scans keep their own in-plane size unless `resample="HxW"` is given (§4: the
paper's scans are 448x512).

With `truth_dir` (`--truth`, what the phantom writes to OUT/truth/), each
patient's TRUTH/<same folder name>/regions.nii.gz (region labels, legend in
TRUTH/regions.json) and plaques_exact.nii.gz (the plaques themselves) become
the cohort's optional `regions` and `mask_exact`: turned into (S, H, W) as the
NIfTI FLAIR is, on the FLAIR's grid, resampled with the mask (nearest) under
`resample`. Each file is there for every patient or for none.

With `--bids` (`import_bids`), STUDIES is a BIDS dataset (`io.bids`): each
subject's sessions' FLAIR and the lesion masks of one derivatives pipeline.
Subjects get pseudonyms P001, ... in sorted order of their labels; a subject
with sessions gives one volume per session, P002-S1, P002-S2, ... in sorted
order of the session labels (`cohort.person` groups them again for the
split). No subject or session label, and no participants.tsv column, is written.
"""

import collections
import dataclasses
import json
import re
from pathlib import Path
from typing import Counter, Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from .cohort import SESSION_MARK, Scan, check_scan, cohort_file, write_cohort
from .errors import InputError
from .io.bids import BidsVolume, find_bids_volumes, read_lesion_mask
from .io.nifti import read_nifti
from .io.orientation import SourceVolume, check_axial, to_cohort, voxel_mm
from .io.study import OUTLINE_SOURCE, check_same_grid, discover_patient, read_flair, read_outlines
from .progress import progress
from .typing import PathLike

TRUTH_FILES = {"regions": "regions.nii.gz", "mask_exact": "plaques_exact.nii.gz"}  # cohort dataset: file name
REGIONS_LEGEND = "regions.json"  # in TRUTH: {"0": "air", ...}, the labels of every regions.nii.gz
TruthFiles = Dict[str, Path]  # one patient's: cohort dataset -> file


@dataclasses.dataclass
class ImportSummary:
    cohort: Path
    patients: int = 0
    slices: int = 0
    lesion_slices: int = 0
    sizes: Counter[str] = dataclasses.field(default_factory=collections.Counter)
    truth: Tuple[str, ...] = ()  # the optional datasets imported with --truth
    subjects: Optional[int] = None  # BIDS: the persons behind the volumes (`patients` counts volumes)

    def add(self, scan: Scan) -> None:
        self.patients += 1
        self.slices += len(scan.flair_shw)
        self.lesion_slices += len(scan.lesion_slices())
        self.sizes["{}x{}".format(*scan.flair_shw.shape[1:])] += 1

    def __str__(self) -> str:
        sizes = ", ".join(f"{size} ({n})" for size, n in sorted(self.sizes.items()))
        who = (f"{self.patients} patients (P001-P{self.patients:03d})" if self.subjects is None else
               f"{self.subjects} BIDS subjects (P001-P{self.subjects:03d}) as {self.patients} volumes")
        return (f"imported {who}: {self.slices} slices, {self.lesion_slices} with lesions; "
                f"slice sizes HxW ({'patients' if self.subjects is None else 'volumes'}): {sizes}"
                + (f"; truth: {', '.join(self.truth)}" if self.truth else "") + f" -> {self.cohort}")


def import_studies(studies_dir: PathLike, cohort_dir: PathLike, resample: Optional[str] = None,
                   truth_dir: Optional[PathLike] = None) -> ImportSummary:
    """Read every patient folder of `studies_dir` (and its truth files in
    `truth_dir`) and write `<cohort_dir>/cohort.h5` atomically.

    Any bad input raises InputError before the store is complete, so none is left."""
    shape_hw = parse_size(resample) if resample else None
    folders = patient_folders(studies_dir)
    truth = find_truth(truth_dir, folders) if truth_dir is not None else [{} for _ in folders]
    legend = read_regions_legend(Path(truth_dir)) if truth_dir is not None and "regions" in truth[0] else None
    summary = ImportSummary(cohort=cohort_file(cohort_dir), truth=tuple(truth[0]))
    created = not Path(cohort_dir).exists()

    def scans() -> Iterator[Scan]:
        for n, folder in enumerate(progress(folders, desc="import", unit="patient")):
            scan = read_patient(folder, f"P{n + 1:03d}", shape_hw, truth[n], legend)
            summary.add(scan)
            yield scan
        if summary.lesion_slices == 0:
            raise InputError(studies_dir, "no lesions: no patient has any outlined pixel")

    _write_or_nothing(cohort_dir, scans(), created, legend)
    return summary


def import_bids(bids_root: PathLike, cohort_dir: PathLike, pipeline: Optional[str] = None,
                resample: Optional[str] = None) -> ImportSummary:
    """Read every session's FLAIR of the BIDS dataset `bids_root` with its lesion mask from
    derivatives/`pipeline` (default: the only pipeline with lesion masks), write
    `<cohort_dir>/cohort.h5` atomically. Bad input raises InputError and writes nothing."""
    shape_hw = parse_size(resample) if resample else None
    volumes = find_bids_volumes(bids_root, pipeline)
    ids = bids_pseudonyms(volumes)
    summary = ImportSummary(cohort=cohort_file(cohort_dir), subjects=len({v.subject for v in volumes}))
    created = not Path(cohort_dir).exists()

    def scans() -> Iterator[Scan]:
        for volume, volume_id in zip(progress(volumes, desc="import", unit="volume"), ids):
            scan = read_bids_volume(volume, volume_id, shape_hw)
            summary.add(scan)
            yield scan
        if summary.lesion_slices == 0:
            raise InputError(bids_root, "no lesions: no lesion mask has any voxel")

    _write_or_nothing(cohort_dir, scans(), created)
    return summary


def bids_pseudonyms(volumes: List[BidsVolume]) -> List[str]:
    """P001, P002, ... by sorted subject label; P00n-S1, -S2, ... by sorted session label where the
    subject has sessions. `volumes` sorted by (subject, session), as `find_bids_volumes` returns them."""
    subjects = sorted({v.subject for v in volumes})
    sessions = {s: sorted(v.session for v in volumes if v.subject == s) for s in subjects}
    return [f"P{subjects.index(v.subject) + 1:03d}"
            + (f"{SESSION_MARK}{sessions[v.subject].index(v.session) + 1}" if v.session else "") for v in volumes]


def read_bids_volume(volume: BidsVolume, volume_id: str, shape_hw: Optional[Tuple[int, int]] = None) -> Scan:
    """One BIDS session -> Scan in the cohort convention, as a NIfTI patient folder is read."""
    image = read_nifti(volume.flair)
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    mask = read_lesion_mask(volume)
    mask_shw, mask_affine = to_cohort(mask.data_ijk, mask.affine_ras)
    check_same_grid(volume.mask, mask_shw.shape, mask_affine, image, affine_whs)
    scan = Scan(volume_id, flair_shw, mask_shw, voxel_mm(affine_whs), affine_whs, flair_source="bids",
                mask_source="bids-dseg" if volume.lesion_labels else "bids-mask")
    check_scan(scan, source=image.path)
    return resample_scan(scan, shape_hw) if shape_hw else scan


def _write_or_nothing(cohort_dir: PathLike, scans: Iterator[Scan], created: bool,
                      legend: Optional[Dict[int, str]] = None) -> None:
    """write_cohort; on failure also remove the cohort folder if this import created it empty."""
    try:
        write_cohort(cohort_dir, scans, regions_legend=legend)
    except BaseException:
        if created and Path(cohort_dir).is_dir() and not any(Path(cohort_dir).iterdir()):
            Path(cohort_dir).rmdir()
        raise


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


def read_patient(folder: Path, patient: str, shape_hw: Optional[Tuple[int, int]] = None,
                 truth: Optional[TruthFiles] = None, legend: Optional[Dict[int, str]] = None) -> Scan:
    """One patient folder -> Scan in the cohort convention (pseudonymous id
    `patient`), with its truth files (`find_truth`; region labels checked against `legend`)."""
    found = discover_patient(folder)
    image, _ = read_flair(found)
    flair_shw, affine_whs = to_cohort(image.data_ijk, image.affine_ras)
    check_axial(image.path, affine_whs)
    mask_shw = read_outlines(found, image, affine_whs)
    scan = Scan(patient, flair_shw, mask_shw, voxel_mm(affine_whs), affine_whs,
                flair_source="dicom" if found.flair_dicom else "nifti",
                mask_source=OUTLINE_SOURCE[found.outline_kind])
    check_scan(scan, source=image.path)
    if truth:
        regions_shw, mask_exact_shw = read_truth(truth, image, affine_whs, legend)
        scan = dataclasses.replace(scan, regions_shw=regions_shw, mask_exact_shw=mask_exact_shw)
    return resample_scan(scan, shape_hw) if shape_hw else scan


def find_truth(truth_dir: PathLike, folders: List[Path]) -> List[TruthFiles]:
    """Per patient folder, its files TRUTH/<folder name>/{regions,plaques_exact}.nii.gz;
    InputError unless each kind is there for every patient or for none, and some are."""
    truth_dir = Path(truth_dir)
    if not truth_dir.is_dir():
        raise InputError(truth_dir, "--truth: not a folder")
    found = [{key: truth_dir / f.name / name for key, name in TRUTH_FILES.items()
              if (truth_dir / f.name / name).is_file()} for f in folders]
    if not any(found):
        raise InputError(truth_dir, f"no truth files for any of the {len(folders)} patients (expected "
                                    f"<patient folder>/{' or '.join(TRUTH_FILES.values())})")
    for key, name in TRUTH_FILES.items():
        missing = [f.name for f, files in zip(folders, found) if key not in files]
        if 0 < len(missing) < len(folders):
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise InputError(truth_dir, f"no {name} for {len(missing)} of {len(folders)} patients ({shown}): "
                                        "give it for all patients or for none")
    return found


def read_regions_legend(truth_dir: Path) -> Dict[int, str]:
    """TRUTH/regions.json -> {label: region name}."""
    path = truth_dir / REGIONS_LEGEND
    try:
        legend = {int(k): str(v) for k, v in json.loads(path.read_text()).items()}
    except FileNotFoundError:
        raise InputError(path, "missing: the legend of the regions.nii.gz files") from None
    except (ValueError, AttributeError) as e:
        raise InputError(path, f"not a JSON object of label: region name ({e})") from None
    if not legend or min(legend) < 0 or max(legend) > 255:
        raise InputError(path, "region labels must be 0-255")
    return legend


def read_truth(files: TruthFiles, image: SourceVolume, affine_whs: np.ndarray,
               legend: Optional[Dict[int, str]]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """One patient's truth files -> (regions_shw uint8 labels, mask_exact_shw uint8 0/1), each
    (S, H, W) on the FLAIR's grid, turned as the NIfTI FLAIR import turns its voxels, or None."""
    out: Dict[str, np.ndarray] = {}
    for key, path in files.items():
        volume = read_nifti(path, mask=key == "mask_exact")
        data_shw, affine = to_cohort(volume.data_ijk, volume.affine_ras)
        check_same_grid(path, data_shw.shape, affine, image, affine_whs,
                        what="region map" if key == "regions" else "exact mask")
        out[key] = _region_labels(path, data_shw, legend or {}) if key == "regions" else data_shw
    return out.get("regions"), out.get("mask_exact")


def _region_labels(path: Path, data_shw: np.ndarray, legend: Dict[int, str]) -> np.ndarray:
    labels = data_shw.astype(np.uint8)
    if not np.array_equal(labels, data_shw):
        raise InputError(path, "region labels must be whole numbers 0-255")
    unknown = sorted(set(int(v) for v in np.flatnonzero(np.bincount(labels.ravel()))) - set(legend))
    if unknown:
        raise InputError(path, f"region labels {unknown} are not in {REGIONS_LEGEND}")
    return labels


def resample_scan(scan: Scan, shape_hw: Tuple[int, int]) -> Scan:
    """In-plane resampling to (H, W): linear for FLAIR, nearest for the mask and the truth (region map,
    exact mask); voxel_mm and affine follow.

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
    nearest = lambda v: resize(v.astype(np.uint8), cv2.INTER_NEAREST_EXACT)  # noqa: E731
    optional = lambda v: None if v is None else nearest(v)  # noqa: E731
    return dataclasses.replace(scan, flair_shw=resize(scan.flair_shw.astype(np.float32), cv2.INTER_LINEAR),
                               mask_shw=nearest(scan.mask_shw), affine_whs=affine_whs, voxel_mm=voxel_mm(affine_whs),
                               regions_shw=optional(scan.regions_shw), mask_exact_shw=optional(scan.mask_exact_shw))


