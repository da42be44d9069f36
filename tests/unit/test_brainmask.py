"""`plaquenet brainmask` and `segment --brain`, with a fake extractor (the plumbing:
the cohort store, brain.json, --force, the study form, segment's outputs); the real
HD-BET runs in test_brain_hd_bet.py."""

import json

import nibabel as nib
import numpy as np
import pytest

import dicom_fixtures as F
from plaquenet import brain
from plaquenet.brainmask import brainmask_cohort, brainmask_study
from plaquenet.cli import main
from plaquenet.cohort import Scan, cohort_id, load_brain, load_scan, write_cohort
from plaquenet.errors import InputError
from plaquenet.io.orientation import to_cohort
from plaquenet.segment import segment


@pytest.fixture(autouse=True)
def tiny_brains_allowed(monkeypatch):
    monkeypatch.setattr(brain, "MIN_BRAIN_ML", 0.001)


def bright(volume_zyx, spacing):
    """The fake extractor: brain = voxels above 500."""
    return (volume_zyx > 500).astype(np.uint8)


def _scan(pid, slices=3):
    flair = np.full((slices, 6, 8), 100, np.float32)
    flair[:, 1:4, 2:6] = 1000
    regions = np.where(flair > 500, 1, 0).astype(np.uint8)
    regions[:, 1, 2:6] = 3  # scalp where the fake finds brain: Dice below 1
    return Scan(pid, flair, np.zeros(flair.shape, np.uint8), (3.0, 1.0, 1.0), np.eye(4), regions_shw=regions)


@pytest.fixture
def store(tmp_path):
    write_cohort(tmp_path, [_scan("P001"), _scan("P002"), _scan("P003", slices=1)],
                 regions_legend={0: "air", 1: "brain", 2: "csf", 3: "scalp"})
    return tmp_path


def test_masks_go_into_the_store_and_brain_json_records_them(store):
    before = cohort_id(store)
    summary = brainmask_cohort(store, bright, "fake 1.0")
    mask = load_brain(store, "P001")
    assert mask is not None and mask.dtype == np.uint8 and mask.sum() == 3 * 3 * 4
    assert load_scan(store, "P001").flair_shw.max() == 1000 and cohort_id(store) == before  # images, split kept
    record = json.loads((store / "brain.json").read_text())
    assert record["patients"] == ["P001", "P002"] and record["extractor"] == "fake 1.0"
    assert record["dice_true_brain"]["P001"] == pytest.approx(2 * 24 / (36 + 24), abs=1e-4)
    assert "single 2D slice" in record["skipped"]["P003"] and load_brain(store, "P003") is None
    assert "P003 skipped: a single 2D slice" in str(summary)


def test_masks_added_for_some_patients_keep_the_others_listed(store):
    """claims makes the test patients' masks first and the rest later: brain.json
    must list every patient whose mask is in the store, not only the last batch."""
    brainmask_cohort(store, bright, "fake 1.0", patients=["P001"])
    brainmask_cohort(store, bright, "fake 1.0", force=True, patients=["P002"])
    record = json.loads((store / "brain.json").read_text())
    assert record["patients"] == ["P001", "P002"] and set(record["dice_true_brain"]) == {"P001", "P002"}
    assert load_brain(store, "P001") is not None
    brainmask_cohort(store, bright, "other 2.0", force=True, patients=["P002"])   # another extractor: not merged
    assert json.loads((store / "brain.json").read_text())["patients"] == ["P002"]


def test_masks_are_not_replaced_without_force(store):
    brainmask_cohort(store, bright, "fake")
    with pytest.raises(InputError, match="already holds brain masks"):
        brainmask_cohort(store, lambda v, s: np.ones(v.shape, np.uint8), "fake")
    assert load_brain(store, "P001").sum() == 36
    brainmask_cohort(store, lambda v, s: np.ones(v.shape, np.uint8), "fake", force=True)
    assert load_brain(store, "P001").sum() == 3 * 6 * 8


def test_an_empty_mask_leaves_the_store_without_masks(store, monkeypatch):
    monkeypatch.setattr(brain, "MIN_BRAIN_ML", 10.0)
    with pytest.raises(InputError, match="P001: the brain extractor found"):
        brainmask_cohort(store, bright, "fake")
    assert load_brain(store, "P001") is None and not (store / "brain.json").exists()


def test_a_study_gets_its_mask_in_the_source_geometry(tmp_path):
    F.write_dicom_series(tmp_path / "Doe_Jane" / "flair")  # fake PHI in its headers
    out = brainmask_study(tmp_path / "Doe_Jane", tmp_path / "brain.nii.gz", lambda v, s: np.ones(v.shape, np.uint8))
    image = nib.load(out)
    assert image.shape == (F.COLS, F.ROWS, F.SLICES) and image.get_data_dtype() == np.uint8
    np.testing.assert_allclose(to_cohort(np.asarray(image.dataobj), image.affine)[1], F.EXPECTED_AFFINE_WHS)
    assert F.PHI["PatientName"].encode() not in out.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        brainmask_study(tmp_path / "Doe_Jane", out, bright)


@pytest.mark.parametrize("argv, message", [
    (["brainmask"], "either --cohort DIR or STUDY --out"),
    (["brainmask", "study"], "STUDY needs --out"),
    (["brainmask", "--cohort", "c", "--out", "x.nii.gz"], "not with --cohort"),
])
def test_bad_command_lines_are_one_line_and_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_segment_drops_plaques_outside_the_grown_brain(tmp_path, scored_snapshot, deploy):
    """The study's lesions (test_segment.py): A in columns 4-8, C in 2-3, B in 15-15.
    The fake brain is columns 0-9; grown by 3 mm (4 columns of 0.75 mm) it ends at 13."""
    study = F.write_three_lesion_study(tmp_path / "study")
    left_columns = F.left_columns_brain

    plain = segment(study, scored_snapshot, out=tmp_path / "plain", deploy=deploy)
    result = segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy, brain=True, extractor=left_columns)
    assert len(plain.lesions) == 3 and len(result.lesions) == 2
    assert result.mask_shw[:, :, 14:].sum() == 0 and result.mask_shw.sum() == 20 + 4
    about = json.loads((tmp_path / "out" / "segment.json").read_text())
    assert "brain.nii.gz" in about["files"] and "3 mm" in about["brain"]
    assert int(np.asarray(nib.load(tmp_path / "out" / "brain.nii.gz").dataobj).sum()) == F.SLICES * F.ROWS * 10
