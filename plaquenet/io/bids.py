"""A BIDS dataset, read by its file names: which file is each session's FLAIR
and which its lesion mask (`plaquenet import --bids`).

Parsed by the BIDS specification's naming rules (no pybids: see README,
"Dependencies"):

* FLAIR: `sub-<s>/[ses-<t>/]anat/sub-<s>[_ses-<t>][_<entity>-<value>...]_FLAIR.nii[.gz]`,
  one per session (sessions, or subjects without sessions, that have no FLAIR
  are not volumes: BIDS datasets often hold T1-only sessions).
* Lesion masks, from one derivatives pipeline
  `derivatives/<pipeline>/sub-<s>/[ses-<t>/]anat/`: a binary mask whose `desc`
  or `label` entity starts with "lesion" (`..._desc-lesion_mask.nii.gz`,
  BIDS derivatives "Masks"), or a discrete segmentation `..._dseg.nii.gz`
  whose look-up table (the `_dseg.tsv` beside it, else the pipeline's
  top-level `[desc-<d>_]dseg.tsv`, columns `index` and `name`) names a
  label containing "lesion"; voxels with those labels are the mask.
* The pipeline: the one given, else the only pipeline with lesion masks.

Subject and session labels stay in memory, for error messages on the user's
terminal; the importer gives them pseudonyms.
"""

import csv
import dataclasses
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import InputError
from ..typing import PathLike
from .nifti import is_nifti, read_nifti
from .orientation import SourceVolume

DERIVATIVES = "derivatives"
LESION = re.compile(r"lesion", re.IGNORECASE)
ENTITY = re.compile(r"([a-zA-Z0-9]+)-([a-zA-Z0-9]+)")


@dataclasses.dataclass
class BidsVolume:
    """One session's FLAIR and lesion mask (session "" for a subject without sessions)."""

    subject: str  # the BIDS label: never written, only shown in errors
    session: str
    flair: Path
    mask: Path
    lesion_labels: Tuple[int, ...] = ()  # dseg: the lesion labels; () for a binary mask


def entities(path: Path) -> Tuple[Dict[str, str], str]:
    """`sub-01_ses-2_desc-lesion_mask.nii.gz` -> ({"sub": "01", "ses": "2", "desc": "lesion"}, "mask")."""
    name = re.sub(r"\.(nii(\.gz)?|tsv|json)$", "", path.name, flags=re.IGNORECASE)
    *pairs, suffix = name.split("_")
    found = {}
    for pair in pairs:
        match = ENTITY.fullmatch(pair)
        if match:
            found[match[1]] = match[2]
    return found, suffix


def find_bids_volumes(root: PathLike, pipeline: Optional[str] = None) -> List[BidsVolume]:
    """Every session with a FLAIR, with its lesion mask, sorted by subject then session.

    InputError (one line naming the path) when `root` is no BIDS dataset, has no
    FLAIR, the pipeline does not exist or is not unique, or some sessions have no
    lesion mask in it (the subjects are named)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a folder")
    if not (root / "dataset_description.json").is_file():
        raise InputError(root, "not a BIDS dataset (no dataset_description.json)")
    flairs = find_flairs(root)
    if not flairs:
        raise InputError(root, "no FLAIR in this BIDS dataset (expected sub-*/[ses-*/]anat/*_FLAIR.nii[.gz])")
    pipeline_dir = choose_pipeline(root, pipeline)
    volumes, missing = [], []
    for (subject, session), flair in sorted(flairs.items()):
        found = lesion_mask(pipeline_dir, subject, session)
        if found is None:
            missing.append(f"sub-{subject}" + (f" (ses-{session})" if session else ""))
        else:
            volumes.append(BidsVolume(subject, session, flair, *found))
    if missing:
        shown = ", ".join(missing[:8]) + (", ..." if len(missing) > 8 else "")
        raise InputError(pipeline_dir, f"no lesion mask for {len(missing)} of {len(flairs)} FLAIR scans: {shown}")
    return volumes


def find_flairs(root: Path) -> Dict[Tuple[str, str], Path]:
    """(subject, session) -> the session's FLAIR; InputError when a session has several."""
    flairs: Dict[Tuple[str, str], Path] = {}
    for anat in _anat_folders(root):
        subject, session = _labels(anat)
        found = sorted(p for p in anat.iterdir() if is_nifti(p) and entities(p)[1] == "FLAIR"
                       and not p.name.startswith("."))
        if len(found) > 1:
            raise InputError(anat, f"ambiguous: {len(found)} FLAIR images ({found[0].name}, {found[1].name})")
        if found:
            flairs[subject, session] = found[0]
    return flairs


def choose_pipeline(root: Path, pipeline: Optional[str]) -> Path:
    """derivatives/<pipeline>: the one named, else the only one with lesion masks."""
    derivatives = root / DERIVATIVES
    names = sorted(p.name for p in derivatives.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if derivatives.is_dir() else []
    if pipeline is not None:
        if pipeline not in names:
            raise InputError(derivatives / pipeline, "--bids-pipeline: no such derivatives pipeline (found: "
                                                     f"{', '.join(names) or 'none'})")
        return derivatives / pipeline
    candidates = [n for n in names if _has_lesion_masks(derivatives / n)]
    if len(candidates) != 1:
        what = "several" if candidates else "no"
        raise InputError(derivatives, f"{what} derivatives pipelines with lesion masks "
                                      f"({', '.join(candidates) or 'pipelines: ' + (', '.join(names) or 'none')}): "
                                      "name one with --bids-pipeline")
    return derivatives / candidates[0]


def lesion_mask(pipeline_dir: Path, subject: str, session: str) -> Optional[Tuple[Path, Tuple[int, ...]]]:
    """The session's lesion mask in the pipeline -> (path, lesion labels: () for a binary mask), or None."""
    anat = pipeline_dir / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"
    if not anat.is_dir():
        return None
    found = [m for m in (_lesion_file(pipeline_dir, p) for p in sorted(anat.iterdir())) if m is not None]
    if len(found) > 1:
        raise InputError(anat, f"ambiguous: {len(found)} lesion masks ({found[0][0].name}, {found[1][0].name})")
    return found[0] if found else None


def read_lesion_mask(volume: BidsVolume) -> SourceVolume:
    """The mask file -> uint8 0/1 in its file's voxel order: > 0 for a mask, one of the lesion labels for a dseg."""
    if not volume.lesion_labels:
        return read_nifti(volume.mask, mask=True)
    labels = read_nifti(volume.mask)
    if not np.array_equal(labels.data_ijk, np.rint(labels.data_ijk)):
        raise InputError(volume.mask, "a dseg must hold whole-number labels")
    mask = np.isin(np.rint(labels.data_ijk).astype(np.int64), volume.lesion_labels).astype(np.uint8)
    return SourceVolume(data_ijk=mask, affine_ras=labels.affine_ras, path=labels.path)


# --- helpers ---------------------------------------------------------------

def _anat_folders(root: Path) -> List[Path]:
    subjects = sorted(p for p in root.glob("sub-*") if p.is_dir())
    folders = []
    for subject in subjects:
        sessions = sorted(p for p in subject.glob("ses-*") if p.is_dir())
        folders += [s / "anat" for s in sessions or [subject] if (s / "anat").is_dir()]
    return folders


def _labels(anat: Path) -> Tuple[str, str]:
    """.../sub-<s>/[ses-<t>/]anat -> (s, t or "")."""
    parent = anat.parent
    if parent.name.startswith("ses-"):
        return parent.parent.name[len("sub-"):], parent.name[len("ses-"):]
    return parent.name[len("sub-"):], ""


def _has_lesion_masks(pipeline_dir: Path) -> bool:
    return any(_lesion_file(pipeline_dir, p) is not None for p in pipeline_dir.glob("sub-*/**/anat/*"))


def _lesion_file(pipeline_dir: Path, path: Path) -> Optional[Tuple[Path, Tuple[int, ...]]]:
    if not is_nifti(path) or path.name.startswith("."):
        return None
    found, suffix = entities(path)
    if suffix == "mask" and any(found.get(key, "").lower().startswith("lesion") for key in ("desc", "label")):
        return path, ()
    if suffix == "dseg":
        labels = _dseg_lesion_labels(pipeline_dir, path, found)
        return (path, labels) if labels else None
    return None


def _dseg_lesion_labels(pipeline_dir: Path, path: Path, found: Dict[str, str]) -> Tuple[int, ...]:
    """The labels whose name says lesion, from the dseg's look-up table (beside it, else the pipeline's)."""
    stem = re.sub(r"\.nii(\.gz)?$", "", path.name, flags=re.IGNORECASE)
    desc = f"desc-{found['desc']}_" if "desc" in found else ""
    for table in (path.with_name(stem + ".tsv"), pipeline_dir / f"{desc}dseg.tsv", pipeline_dir / "dseg.tsv"):
        if table.is_file():
            return _lesion_rows(table)
    return ()


def _lesion_rows(table: Path) -> Tuple[int, ...]:
    try:
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return tuple(sorted(int(r["index"]) for r in rows if LESION.search(r.get("name") or "")))
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(table, f"not a BIDS dseg look-up table (columns index, name: {e})") from None
