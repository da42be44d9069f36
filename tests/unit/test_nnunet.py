"""`plaquenet export-nnunet` (issue #16): the cohort and its split as an nnU-Net v2 raw dataset."""

import json

import nibabel as nib
import numpy as np
import pytest

import bids_fixtures as B
from plaquenet.cli import main
from plaquenet.cohort import load_scan, make_split, patient_ids, write_split
from plaquenet.ingest import import_bids
from plaquenet.io.orientation import to_cohort
from plaquenet.nnunet import export_nnunet


@pytest.fixture
def cohort(tmp_path):
    """The BIDS fixture imported (4 volumes of 3 persons), with a split that keeps P002's sessions together."""
    cohort = tmp_path / "cohort"
    import_bids(B.write_bids(tmp_path / "bids"), cohort)
    write_split(cohort, {"seed": 0, "test_fraction": 0.3, "train": ["P001", "P002-S1", "P002-S2"], "test": ["P003"]})
    return cohort


def export(capsys, cohort, out, *extra):
    code = main(["export-nnunet", "--cohort", str(cohort), "--dataset-id", "16", "--out", str(out), *extra])
    out_text, err = capsys.readouterr()
    return code, out_text, err


def test_the_dataset_has_nnunets_layout_and_the_cohorts_split(cohort, tmp_path, capsys):
    code, out, err = export(capsys, cohort, tmp_path / "raw", "--name", "MSPlaques")
    assert code == 0, err
    folder = tmp_path / "raw" / "Dataset016_MSPlaques"
    assert out.startswith(f"{folder}: nnU-Net v2 raw dataset, 3 training and 1 test cases")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["dataset.json", "imagesTr/P001_0000.nii.gz", "imagesTr/P002-S1_0000.nii.gz",
                     "imagesTr/P002-S2_0000.nii.gz", "imagesTs/P003_0000.nii.gz", "labelsTr/P001.nii.gz",
                     "labelsTr/P002-S1.nii.gz", "labelsTr/P002-S2.nii.gz", "labelsTs/P003.nii.gz"]
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "FLAIR"} and meta["labels"] == {"background": 0, "lesion": 1}
    assert (meta["numTraining"], meta["file_ending"], meta["plaquenet"]["numTest"]) == (3, ".nii.gz", 1)


def test_images_and_labels_keep_the_scans_voxels_and_geometry(cohort, tmp_path):
    folder = export_nnunet(cohort, 16, tmp_path / "raw")["out"]
    assert folder.name == "Dataset016_Cohort"  # the cohort's name by default
    for pid in patient_ids(cohort):
        side = "Ts" if pid == "P003" else "Tr"
        image = nib.load(str(folder / f"images{side}" / f"{pid}_0000.nii.gz"))
        label = nib.load(str(folder / f"labels{side}" / f"{pid}.nii.gz"))
        scan = load_scan(cohort, pid)
        assert image.get_data_dtype() == np.float32 and label.get_data_dtype() == np.uint8
        np.testing.assert_allclose(image.affine, scan.affine_whs, atol=1e-5)
        np.testing.assert_array_equal(label.affine, image.affine)
        # read back through the importer's own reorientation: the cohort's arrays again
        np.testing.assert_array_equal(to_cohort(np.asanyarray(image.dataobj), image.affine)[0], scan.flair_shw)
        np.testing.assert_array_equal(to_cohort(np.asanyarray(label.dataobj), label.affine)[0], scan.mask_shw)
        assert label.header.get_zooms() == pytest.approx((0.9, 0.9, 3.0))


def test_an_existing_dataset_id_is_refused_without_force(cohort, tmp_path, capsys):
    (tmp_path / "raw" / "Dataset016_Other").mkdir(parents=True)
    code, out, err = export(capsys, cohort, tmp_path / "raw")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "Dataset016_Other: dataset id 16 already exists" in err and "--force" in err
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset016_Other"]
    code, _, err = export(capsys, cohort, tmp_path / "raw", "--force")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset016_Cohort"]


@pytest.mark.parametrize("extra, message", [
    (("--name", "my_study"), "--name: expected letters, digits and hyphens"),
    (("--dataset-id", "1000"), "--dataset-id: nnU-Net dataset ids are 1-999"),
])
def test_bad_options_are_one_line(cohort, tmp_path, capsys, extra, message):
    code, _, err = export(capsys, cohort, tmp_path / "raw", *extra)
    assert code == 2 and message in err and not (tmp_path / "raw").exists()


def test_a_cohort_without_split_is_refused(cohort, tmp_path, capsys):
    (cohort / "split.json").unlink()
    code, _, err = export(capsys, cohort, tmp_path / "raw")
    assert code == 2 and "split.json: no split file (run `plaquenet tiles` first)" in err


def test_nnunets_own_integrity_check_accepts_the_dataset(cohort, tmp_path):
    verify = pytest.importorskip("nnunetv2.experiment_planning.verify_dataset_integrity",
                                 reason="nnunetv2 is not installed (README, \"Interop\": its --no-deps install)")
    folder = export_nnunet(cohort, 16, tmp_path / "raw")["out"]
    verify.verify_dataset_integrity(str(folder), num_processes=1)


def test_a_split_by_person_keeps_sessions_on_one_side_of_the_export(tmp_path):
    cohort = tmp_path / "cohort"
    import_bids(B.write_bids(tmp_path / "bids"), cohort)
    write_split(cohort, make_split(patient_ids(cohort), test_fraction=0.34, seed=3))
    folder = export_nnunet(cohort, 5, tmp_path / "raw", name="X")["out"]
    train = {p.name.split("_")[0].split("-")[0] for p in (folder / "imagesTr").iterdir()}
    test = {p.name.split("_")[0].split("-")[0] for p in (folder / "imagesTs").iterdir()}
    assert train and test and not train & test
