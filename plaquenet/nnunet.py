"""Cohort store + its split -> an nnU-Net v2 raw dataset (`plaquenet export-nnunet`).

So that nnU-Net can be trained and tested on exactly the paper's split (§4.1,
`COHORT/split.json`, made by `plaquenet tiles`)::

    OUT/Dataset<NNN>_<Name>/
        dataset.json     channel_names {"0": "FLAIR"}, labels {"background": 0, "lesion": 1},
                         numTraining, file_ending ".nii.gz" (+ where it came from: "plaquenet")
        imagesTr/<case>_0000.nii.gz   labelsTr/<case>.nii.gz     the split's train volumes
        imagesTs/<case>_0000.nii.gz   labelsTs/<case>.nii.gz     its test volumes

One case per cohort volume, named by its pseudonym (P001, P002-S1, ...). The
cohort store keeps each volume's geometry (`affine_whs`, voxel size in mm),
so every file is written on the scan's own grid: the voxels in the cohort's
(w, h, s) order with that RAS affine (as qform and sform), images and labels
alike. Images are the FLAIR in scanner units, float32 (as imported, resampled
only if `import --resample` was given); nnU-Net normalises them itself. Labels
are uint8, 1 = lesion (the radiologist's outline).

nnU-Net's own 5-fold cross-validation inside imagesTr draws cases, not persons:
where a person has several sessions they may fall in different folds (the
train/test split here never separates them).
"""

import json
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional

from .atomic import atomic_path
from .cohort import cohort_id, cohort_name, iter_scans, read_split
from .errors import InputError
from .io.nifti import write_nifti
from .typing import PathLike

CHANNEL = "_0000"  # nnU-Net's channel suffix: FLAIR is channel 0, the only one
FILE_ENDING = ".nii.gz"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")  # nnU-Net splits Dataset<NNN>_<Name> at the first "_"


def dataset_folder_name(dataset_id: int, name: str) -> str:
    return f"Dataset{dataset_id:03d}_{name}"


def export_nnunet(cohort_dir: PathLike, dataset_id: int, out_dir: PathLike, name: Optional[str] = None,
                  force: bool = False) -> Dict[str, Any]:
    """Write OUT/Dataset<NNN>_<Name>/ atomically; return {"out", "train", "test"}.

    InputError when the id is not 1-999, the name is not letters, digits and
    hyphens, the cohort has no split, or OUT already holds a dataset with this id
    (any name; replaced, and the others of the id removed, only with `force`)."""
    if not 1 <= dataset_id <= 999:
        raise InputError("--dataset-id", f"nnU-Net dataset ids are 1-999, got {dataset_id}")
    name = name if name is not None else re.sub(r"[^A-Za-z0-9-]", "", cohort_name(cohort_dir).title())
    if not NAME.fullmatch(name):
        raise InputError("--name", f"expected letters, digits and hyphens (nnU-Net's Dataset<NNN>_<Name>), "
                                   f"got {name!r}")
    split = read_split(cohort_dir)
    out = Path(out_dir) / dataset_folder_name(dataset_id, name)
    same_id = existing_datasets(out_dir, dataset_id)
    if same_id and not force:
        raise InputError(same_id[0], f"dataset id {dataset_id} already exists in {out_dir} (use --force to replace it)")
    with atomic_path(out) as tmp:
        write_dataset(tmp, cohort_dir, split, name)
    for other in same_id:
        if other != out:
            shutil.rmtree(other)
    return {"out": out, "train": len(split["train"]), "test": len(split["test"])}


def existing_datasets(out_dir: PathLike, dataset_id: int) -> List[Path]:
    """The folders Dataset<NNN>_* of OUT with this id, sorted."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    return sorted(p for p in out_dir.glob(f"Dataset{dataset_id:03d}_*") if p.is_dir())


def write_dataset(folder: Path, cohort_dir: PathLike, split: Dict[str, Any], name: str) -> None:
    """imagesTr/, labelsTr/, imagesTs/, labelsTs/ and dataset.json into `folder` (which must not exist)."""
    for side, suffix in (("train", "Tr"), ("test", "Ts")):
        images, labels = folder / f"images{suffix}", folder / f"labels{suffix}"
        images.mkdir(parents=True)
        labels.mkdir()
        for scan in iter_scans(cohort_dir, split[side]):
            # affine_whs is the affine of flair.transpose(2, 1, 0): (S, H, W) -> (W, H, S) voxels
            write_nifti(images / f"{scan.patient}{CHANNEL}{FILE_ENDING}", scan.flair_shw.transpose(2, 1, 0),
                        scan.affine_whs, dtype="float32")
            write_nifti(labels / f"{scan.patient}{FILE_ENDING}", scan.mask_shw.transpose(2, 1, 0),
                        scan.affine_whs, dtype="uint8")
    (folder / "dataset.json").write_text(json.dumps(dataset_json(cohort_dir, split, name), indent=2) + "\n")


def dataset_json(cohort_dir: PathLike, split: Dict[str, Any], name: str) -> Dict[str, Any]:
    return {
        "name": name,
        "description": "MS plaques on axial FLAIR, the train/test split of Stasiak et al. 2017 (§4.1), "
                       "exported by plaquenet",
        "channel_names": {"0": "FLAIR"},
        "labels": {"background": 0, "lesion": 1},
        "numTraining": len(split["train"]),
        "file_ending": FILE_ENDING,
        "plaquenet": {"cohort_id": cohort_id(cohort_dir), "split_seed": split.get("seed"),
                      "test_fraction": split.get("test_fraction"), "numTest": len(split["test"]),
                      "intensity": "scanner units, not normalised"},
    }
