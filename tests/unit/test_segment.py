"""`plaquenet segment`: a net on a new study -> NIfTI, DICOM SEG, overlays, lesion table.

The net is tests/conftest.py's `scored_snapshot` of `deploy`: output = sigmoid(x - 0.5) of
the normalised FLAIR x, so with threshold 0.5 the voxels at full brightness are plaques and
the background (x ~ 0.1) is not."""

import csv
import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from scipy import ndimage

import dciodvfy
import dicom_fixtures as F
from plaquenet.cli import main
from plaquenet.errors import InputError
from plaquenet.io.orientation import to_cohort
from plaquenet.segment import segment

VOXEL_MM3 = F.SLICE_MM * F.ROW_MM * F.COL_MM  # 0.9375
# lesions in scan order: A spans slices 1-2 (20 + 4 voxels), B one voxel, C four voxels
LESIONS = {"A": [(1, 3, 7, 4, 9), (2, 3, 5, 4, 6)], "B": [(3, 10, 11, 15, 16)], "C": [(3, 12, 14, 2, 4)]}


def bright_mask_shw() -> np.ndarray:
    mask = np.zeros((F.SLICES, F.ROWS, F.COLS), np.uint8)
    for boxes in LESIONS.values():
        for s, r0, r1, c0, c1 in boxes:
            mask[s, r0:r1, c0:c1] = 1
    return mask


def stored_shw() -> np.ndarray:
    return np.where(bright_mask_shw() > 0, 1000, 100).astype(np.uint16)


@pytest.fixture
def study(tmp_path):
    """One patient folder: the DICOM series (fake PHI in every header), no outlines."""
    folder = tmp_path / "Doe_Jane_study"
    F.write_dicom_series(folder / "flair", stored=stored_shw())
    return folder


def test_dicom_study_gives_masks_in_the_source_geometry(study, scored_snapshot, deploy, tmp_path):
    result = segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    assert result.threshold == 0.5  # from score/results.json
    mask = nib.load(tmp_path / "out" / "mask.nii.gz")
    probability = nib.load(tmp_path / "out" / "probability.nii.gz")
    assert mask.get_data_dtype() == np.uint8 and probability.get_data_dtype() == np.float32
    mask_shw, affine_whs = to_cohort(np.asarray(mask.dataobj), mask.affine)
    np.testing.assert_array_equal(mask_shw, bright_mask_shw())
    np.testing.assert_allclose(affine_whs, F.EXPECTED_AFFINE_WHS)
    assert mask.shape == (F.COLS, F.ROWS, F.SLICES)  # DICOM order: column, row, slice
    np.testing.assert_allclose(probability.affine, mask.affine)
    assert np.asarray(probability.dataobj).max() == pytest.approx(1 / (1 + np.exp(-0.5)), abs=1e-6)


def test_nifti_study_keeps_the_files_own_axes(tmp_path, scored_snapshot, deploy):
    folder = tmp_path / "nifti_study"
    folder.mkdir()
    flair = F.write_nifti(folder / "flair.nii.gz", stored_shw().astype(np.float32), axcodes=("R", "A", "S"))
    segment(folder, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    source, mask = nib.load(flair), nib.load(tmp_path / "out" / "mask.nii.gz")
    assert mask.shape == source.shape
    np.testing.assert_allclose(mask.affine, source.affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.asarray(source.dataobj) > 500)
    assert not (tmp_path / "out" / "segmentation.dcm").exists()


def test_seg_references_the_source_instances(study, scored_snapshot, deploy, tmp_path):
    segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    series = [pydicom.dcmread(p) for p in sorted((study / "flair").iterdir())]
    by_z = sorted(series, key=lambda ds: float(ds.ImagePositionPatient[2]))  # cohort slice order
    seg = hd.seg.segread(tmp_path / "out" / "segmentation.dcm")
    assert seg.SegmentSequence[0].SegmentLabel == "MS plaques"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "52988006"
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.PatientName == F.PHI["PatientName"]  # a SEG carries its source's patient by design
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in series}
    assert seg.NumberOfFrames == 3  # slices 1, 2, 3 hold plaques; slice 0 none
    uids = [by_z[s].SOPInstanceUID for s in (1, 2, 3)]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0]
    np.testing.assert_array_equal(pixels, bright_mask_shw()[1:])


def test_seg_is_valid_dicom_and_names_its_creator(study, scored_snapshot, deploy, tmp_path):
    segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    path = tmp_path / "out" / "segmentation.dcm"
    assert str(pydicom.dcmread(path).ContentCreatorName) == "plaquenet^"  # dcmqi warns without it
    assert dciodvfy.errors(dciodvfy.report(path)) == []


def test_nifti_outputs_say_their_units_are_mm(study, scored_snapshot, deploy, tmp_path):
    segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    for name in ("mask.nii.gz", "probability.nii.gz"):
        assert nib.load(tmp_path / "out" / name).header.get_xyzt_units()[0] == "mm"


def test_lesion_table_names_its_frame_and_its_ras_centroids_follow_the_affine(study, scored_snapshot, deploy,
                                                                             tmp_path):
    segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    rows = list(csv.DictReader(open(tmp_path / "out" / "lesions.csv")))
    affine = nib.load(tmp_path / "out" / "mask.nii.gz").affine
    mask_ijk = np.asarray(nib.load(tmp_path / "out" / "mask.nii.gz").dataobj)
    labels, _ = ndimage.label(mask_ijk, structure=np.ones((3, 3, 3)))
    centroid_ijk = np.argwhere(labels == labels[tuple(np.argwhere(mask_ijk)[0])]).mean(axis=0)
    centroids = [tuple(float(r[f"centroid_{a}_ras_mm"]) for a in "xyz") for r in rows]
    expected = tuple((affine @ [*centroid_ijk, 1.0])[:3])
    assert min(np.abs(np.subtract(c, expected)).max() for c in centroids) < 0.01  # RAS mm, the NIfTI's world
    about = json.loads((tmp_path / "out" / "segment.json").read_text())
    assert "RAS" in about["lesions_csv"]


def test_lesion_table_volumes_slices_and_centroids(study, scored_snapshot, deploy, tmp_path):
    result = segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy)
    rows = list(csv.DictReader(open(tmp_path / "out" / "lesions.csv")))
    assert [int(r["voxels"]) for r in rows] == [24, 1, 4]
    assert [float(r["volume_mm3"]) for r in rows] == pytest.approx([24 * VOXEL_MM3, VOXEL_MM3, 4 * VOXEL_MM3])
    assert [(int(r["first_slice"]), int(r["last_slice"])) for r in rows] == [(1, 2), (3, 3), (3, 3)]
    assert [float(r[f"centroid_{a}"]) for a in "shw" for r in rows[1:2]] == [3.0, 10.0, 15.0]
    assert result.total_volume_mm3 == pytest.approx(29 * VOXEL_MM3)
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == [
        "slice_001.png", "slice_002.png", "slice_003.png"]


def test_min_lesion_volume_drops_lesions_of_that_volume_or_less(study, scored_snapshot, deploy, tmp_path):
    # The lesion-wise evaluation's rule (MSSEG-2016, evaluate.lesions): kept when larger than the minimum.
    result = segment(study, scored_snapshot, out=tmp_path / "a", deploy=deploy, min_lesion_mm3=3.5 * VOXEL_MM3)
    assert [lesion.voxels for lesion in result.lesions] == [24, 4]
    expected = bright_mask_shw()
    expected[3, 10, 15] = 0
    np.testing.assert_array_equal(result.mask_shw, expected)
    exactly = segment(study, scored_snapshot, out=tmp_path / "b", deploy=deploy, min_lesion_mm3=4 * VOXEL_MM3)
    assert [lesion.voxels for lesion in exactly.lesions] == [24]  # C, exactly the minimum, goes


def test_a_given_threshold_wins_over_results_json(study, scored_snapshot, deploy, tmp_path):
    result = segment(study, scored_snapshot, out=tmp_path / "out", deploy=deploy, threshold=0.7)
    assert result.lesions == [] and not result.mask_shw.any()
    assert json.loads((tmp_path / "out" / "segment.json").read_text())["threshold_from"] == "--threshold"
    assert list((tmp_path / "out" / "overlays").iterdir()) == []


def test_bad_input_is_one_line_and_leaves_nothing(study, scored_snapshot, deploy, tmp_path):
    out = tmp_path / "out"
    (scored_snapshot.parent / "score" / "results.json").unlink()
    with pytest.raises(InputError, match="--threshold"):
        segment(study, scored_snapshot, out=out, deploy=deploy)
    corrupt = tmp_path / "bad_iter_1.caffemodel"
    corrupt.write_bytes(b"\x08\x96\x01garbage")
    with pytest.raises(InputError, match="bad_iter_1.caffemodel"):
        segment(study, corrupt, out=out, deploy=deploy, threshold=0.5)
    with pytest.raises(InputError, match="no such snapshot"):
        segment(study, tmp_path / "missing.caffemodel", out=out, deploy=deploy, threshold=0.5)
    empty = tmp_path / "empty_study"
    empty.mkdir()
    with pytest.raises(InputError, match="no FLAIR"):
        segment(empty, scored_snapshot, out=out, deploy=deploy, threshold=0.5)
    assert not out.exists() and not list(tmp_path.glob(".out*"))
    out.mkdir()
    with pytest.raises(InputError, match="already exists"):
        segment(study, scored_snapshot, out=out, deploy=deploy, threshold=0.5)
    segment(study, scored_snapshot, out=out, deploy=deploy, threshold=0.5, force=True)
    assert (out / "mask.nii.gz").is_file()


def test_cli_prints_one_line_and_no_phi_leaves_except_in_the_seg(study, scored_snapshot, deploy, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["segment", str(study), "--snapshot", str(scored_snapshot.parent), "--out", str(out),
                 "--deploy", str(deploy), "--min-lesion-mm3", "1"])
    printed = capsys.readouterr()
    assert code == 0
    assert printed.out.strip().startswith("2 lesions, 26.2 mm^3") and len(printed.out.splitlines()) == 1
    secrets = list(F.PHI.values()) + ["Doe_Jane", "ACC-PHI-99", "20160102"]
    for path in out.rglob("*"):
        if path.is_file() and path.name != "segmentation.dcm":
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data and secret not in str(path.relative_to(out)), (path, secret)
    for secret in secrets:
        assert secret not in printed.out + printed.err
    assert main(["segment", str(study), "--snapshot", str(scored_snapshot), "--out", str(out),
                 "--deploy", str(deploy)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
