"""A tiny BIDS dataset: three subjects (one with two sessions), 4 x 8 x 10 FLAIR
volumes in RAS (i = right -> left flipped by the cohort's to_cohort), lesion
masks from one derivatives pipeline. The subject labels and a participants.tsv
column hold fake identifying text that the import must never write."""

import json
from pathlib import Path

import nibabel as nib
import numpy as np

SHAPE_IJK = (10, 8, 4)  # (I, J, K): 10 columns, 8 rows, 4 slices
AFFINE = np.diag([0.9, 0.9, 3.0, 1.0])
PIPELINE = "lesionseg"
# subject label -> session labels ("" = no sessions); the labels are what must not leak
SUBJECTS = {"DoeJaneX": [""], "RoeRickX": ["baseline2019X", "followup2020X"], "SmithAnnX": [""]}
SECRET = "Doe-Jane-PHI-Column"  # participants.tsv content


def volume(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(10, 100, SHAPE_IJK).astype(np.float32)


def lesion(seed: int) -> np.ndarray:
    mask = np.zeros(SHAPE_IJK, np.uint8)
    mask[2 + seed % 3:5 + seed % 3, 3:6, seed % 4] = 1
    return mask


def save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path


def stem(subject: str, session: str) -> str:
    return f"sub-{subject}" + (f"_ses-{session}" if session else "")


def folder(root: Path, subject: str, session: str) -> Path:
    return root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "anat"


def write_bids(root: Path, dseg_for: str = "SmithAnnX") -> Path:
    """The dataset; `dseg_for`'s lesion mask is a dseg (labels 1 = WM, 2 = lesion) with its look-up table."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "tiny", "BIDSVersion": "1.9.0", "Authors": ["plaquenet"]}))
    (root / "participants.tsv").write_text(f"participant_id\tcomment\n" + "".join(
        f"sub-{s}\t{SECRET}\n" for s in SUBJECTS))
    (root / "README").write_text("A tiny synthetic dataset for plaquenet's tests.\n")
    pipeline = root / "derivatives" / PIPELINE
    pipeline.mkdir(parents=True)
    (pipeline / "dataset_description.json").write_text(json.dumps({
        "Name": "lesions", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "manual"}]}))
    seed = 0
    for subject, sessions in SUBJECTS.items():
        for session in sessions:
            seed += 1
            name = stem(subject, session)
            save(folder(root, subject, session) / f"{name}_FLAIR.nii.gz", volume(seed))
            (folder(root, subject, session) / f"{name}_FLAIR.json").write_text(json.dumps({"EchoTime": 0.1}))
            out = folder(pipeline, subject, session)
            if subject == dseg_for:
                labels = lesion(seed) * 2
                labels[0, 0, :] = 1
                save(out / f"{name}_dseg.nii.gz", labels)
                (out / f"{name}_dseg.tsv").write_text("index\tname\n1\tWM\n2\tlesion\n")
            else:
                save(out / f"{name}_desc-lesion_mask.nii.gz", lesion(seed))
    return root


def expected_masks_ijk():
    """Volume order (sorted subject, session) -> (FLAIR, lesion mask) in file order."""
    out, seed = {}, 0
    for subject, sessions in SUBJECTS.items():
        for session in sessions:
            seed += 1
            out[subject, session] = (volume(seed), lesion(seed))
    return [out[k] for k in sorted(out)]
