"""`plaquenet import --bids` (issue #16): a BIDS dataset into the same cohort store folders give,
sessions under one pseudonym, no subject label or participants.tsv column in any output."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import bids_fixtures as B
from plaquenet.cli import main
from plaquenet.cohort import load_scan, make_split, patient_ids, person, read_split, write_split
from plaquenet.errors import InputError
from plaquenet.io.bids import entities, find_bids_volumes
from plaquenet.io.orientation import to_cohort


def run_import(capsys, root, cohort, *extra):
    code = main(["import", str(root), "--cohort", str(cohort), "--bids", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_entities_follow_the_bids_naming():
    found, suffix = entities(Path("sub-01_ses-2_space-orig_desc-lesion_mask.nii.gz"))
    assert (found, suffix) == ({"sub": "01", "ses": "2", "space": "orig", "desc": "lesion"}, "mask")


def test_bids_import_end_to_end(tmp_path, capsys):
    root = B.write_bids(tmp_path / "bids")
    code, out, err = run_import(capsys, root, tmp_path / "cohort")
    assert code == 0, err
    assert out.startswith("imported 3 BIDS subjects (P001-P003) as 4 volumes: 16 slices, 4 with lesions")
    assert patient_ids(tmp_path / "cohort") == ["P001", "P002-S1", "P002-S2", "P003"]
    for pid, (flair_ijk, mask_ijk) in zip(patient_ids(tmp_path / "cohort"), B.expected_masks_ijk()):
        scan = load_scan(tmp_path / "cohort", pid)
        flair_shw, affine_whs = to_cohort(flair_ijk, B.AFFINE)
        np.testing.assert_array_equal(scan.flair_shw, flair_shw)
        np.testing.assert_array_equal(scan.mask_shw, to_cohort(mask_ijk, B.AFFINE)[0])  # the dseg: label 2 only
        np.testing.assert_allclose(scan.affine_whs, affine_whs, atol=1e-6)  # NIfTI keeps float32
        assert scan.voxel_mm == pytest.approx((3.0, 0.9, 0.9))
    assert load_scan(tmp_path / "cohort", "P003").mask_source == "bids-dseg"


def test_no_subject_label_or_participants_column_reaches_any_output(tmp_path, capsys):
    root = B.write_bids(tmp_path / "bids")
    code, out, _ = run_import(capsys, root, tmp_path / "cohort")
    assert code == 0
    stored = b"".join(p.read_bytes() for p in (tmp_path / "cohort").rglob("*") if p.is_file())
    secrets = [B.SECRET] + list(B.SUBJECTS) + [s for sessions in B.SUBJECTS.values() for s in sessions if s]
    for secret in secrets:
        assert secret.encode().lower() not in stored.lower(), secret
        assert secret.lower() not in out.lower(), secret


def test_a_persons_sessions_are_never_on_both_sides_of_the_split():
    volumes = ["P001", "P002-S1", "P002-S2", "P002-S3", "P003", "P004-S1", "P004-S2", "P005"]
    for seed in range(30):
        split = make_split(volumes, test_fraction=0.4, seed=seed)
        assert not {person(p) for p in split["train"]} & {person(p) for p in split["test"]}
        assert sorted(split["train"] + split["test"]) == sorted(volumes)
        assert len({person(p) for p in split["test"]}) == 2  # 40 % of 5 persons, not of 8 volumes


def test_a_split_without_sessions_is_the_one_made_before():
    # the paper's cohorts: persons are the patients, so the split (same seed) is unchanged
    patients = [f"P{n:03d}" for n in range(1, 97)]
    for seed in (0, 1, 7):
        split = make_split(patients, seed=seed)
        before = sorted(patients[i] for i in np.random.default_rng(seed).permutation(96)[:19])  # the old draw
        assert split["test"] == before and len(split["train"]) == 77


def test_a_split_file_with_a_person_on_both_sides_is_refused(tmp_path, capsys):
    root = B.write_bids(tmp_path / "bids")
    assert run_import(capsys, root, tmp_path / "cohort")[0] == 0
    split = {"train": ["P001", "P002-S1"], "test": ["P002-S2", "P003"]}
    with pytest.raises(InputError, match="P002 has sessions in both"):
        write_split(tmp_path / "cohort", split)
    (tmp_path / "cohort" / "split.json").write_text(json.dumps(split))
    with pytest.raises(InputError, match="P002 has sessions in both"):
        read_split(tmp_path / "cohort")


def test_the_only_pipeline_with_lesion_masks_is_chosen_and_others_are_named(tmp_path, capsys):
    root = B.write_bids(tmp_path / "bids")
    (root / "derivatives" / "fmriprep" / "sub-DoeJaneX" / "anat").mkdir(parents=True)  # no lesion masks: ignored
    assert len(find_bids_volumes(root)) == 4
    shutil.copytree(root / "derivatives" / B.PIPELINE, root / "derivatives" / "otherseg")
    code, _, err = run_import(capsys, root, tmp_path / "cohort")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "several derivatives pipelines with lesion masks (lesionseg, otherseg)" in err and "--bids-pipeline" in err
    code, out, err = run_import(capsys, root, tmp_path / "cohort", "--bids-pipeline", "otherseg")
    assert code == 0, err


def _no_flair(root):
    for p in root.glob("sub-*/**/anat/*_FLAIR.*"):
        p.unlink()


def _no_masks_for_two(root):
    for subject in ("DoeJaneX", "RoeRickX"):
        for p in (root / "derivatives" / B.PIPELINE / f"sub-{subject}").rglob("*_mask.nii.gz"):
            p.unlink()


def _two_flairs(root):
    anat = B.folder(root, "DoeJaneX", "")
    shutil.copy(anat / "sub-DoeJaneX_FLAIR.nii.gz", anat / "sub-DoeJaneX_run-2_FLAIR.nii.gz")


def _mask_off_grid(root):
    path = next((root / "derivatives" / B.PIPELINE / "sub-DoeJaneX").rglob("*_mask.nii.gz"))
    B.save(path, B.lesion(1)[:, :, :3])


@pytest.mark.parametrize("spoil, extra, where, message", [
    (lambda r: (r / "dataset_description.json").unlink(), (), "bids",
     "not a BIDS dataset (no dataset_description.json)"),
    (_no_flair, (), "bids", "no FLAIR in this BIDS dataset"),
    (_no_masks_for_two, (), "derivatives/lesionseg",
     "no lesion mask for 3 of 4 FLAIR scans: sub-DoeJaneX, sub-RoeRickX (ses-baseline2019X), "
     "sub-RoeRickX (ses-followup2020X)"),
    (lambda r: None, ("--bids-pipeline", "nosuch"), "derivatives/nosuch",
     "--bids-pipeline: no such derivatives pipeline (found: lesionseg)"),
    (lambda r: shutil.rmtree(r / "derivatives"), (), "derivatives",
     "no derivatives pipelines with lesion masks (pipelines: none)"),
    (_two_flairs, (), "sub-DoeJaneX/anat", "ambiguous: 2 FLAIR images"),
    (_mask_off_grid, (), "sub-DoeJaneX_desc-lesion_mask.nii.gz", "mask of shape"),
])
def test_bad_bids_input_is_one_line_naming_the_path_and_writes_nothing(tmp_path, capsys, spoil, extra, where,
                                                                         message):
    root = B.write_bids(tmp_path / "bids")
    spoil(root)
    code, out, err = run_import(capsys, root, tmp_path / "cohort", *extra)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert where in err and message in err, err
    assert not (tmp_path / "cohort").exists()


def test_bids_flags_are_refused_where_they_mean_nothing(tmp_path, capsys):
    code = main(["import", str(tmp_path), "--cohort", str(tmp_path / "c"), "--bids-pipeline", "x"])
    assert code == 2 and "--bids-pipeline: only with --bids" in capsys.readouterr().err


def test_the_dataset_passes_the_bids_validator(tmp_path):
    validator = shutil.which("bids-validator")
    if validator is None:
        pytest.skip("bids-validator (npm install -g bids-validator) is not installed")
    root = B.write_bids(tmp_path / "bids")
    done = subprocess.run([validator, str(root)], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, NO_COLOR="1"))
    assert done.returncode == 0 and "[ERR" not in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]
