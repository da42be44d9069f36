"""`plaquenet segment` on a phantom patient's DICOM study and the whole-volume
score of the same patient, imported into a cohort, agree (#14): the same
probabilities, the same mask at the threshold score chose, the same counts.

The net is tests/conftest.py's `scored_snapshot` (output sigmoid(x - 0.5) of
the normalised FLAIR x); score writes the run's score/results.json, from which
segment takes its threshold, as a user's run would."""

import nibabel as nib
import numpy as np

from plaquenet.cli import main
from plaquenet.cohort import iter_scans, write_split
from plaquenet.evaluate.lesions import all_rules
from plaquenet.evaluate.metrics import count_pixels
from plaquenet.io.orientation import to_cohort
from plaquenet.phantom import write_phantom
from plaquenet.score import score
from plaquenet.segment import segment


def cohort_volume(path):
    image = nib.load(str(path))
    return to_cohort(np.asarray(image.dataobj), image.affine)[0]


def test_segment_and_the_whole_volume_score_agree_on_a_phantom_patient(scored_snapshot, deploy, tmp_path):
    write_phantom(tmp_path / "phantom", n_patients=2, n_slices=4, seed=3)
    assert main(["import", str(tmp_path / "phantom" / "dicom"), "--cohort", str(tmp_path / "cohort")]) == 0
    cohort = tmp_path / "cohort"
    write_split(cohort, {"train": ["P001"], "test": ["P002"]})
    study = sorted((tmp_path / "phantom" / "dicom").iterdir())[1]  # P002: ids in folder-name order

    results = score(scored_snapshot, cohort_dir=cohort, deploy=deploy, force=True,  # the run's score/
                    probabilities_dir=tmp_path / "probabilities")
    segmented = segment(study, scored_snapshot, out=tmp_path / "segment-out", deploy=deploy)

    threshold = results["whole_volume"]["threshold"]
    assert segmented.threshold == threshold == results["threshold"]
    scan = next(iter_scans(cohort, ["P002"]))
    probability_shw = cohort_volume(tmp_path / "segment-out" / "probability.nii.gz")
    np.testing.assert_array_equal(probability_shw, cohort_volume(tmp_path / "probabilities" / "P002.nii.gz"))
    mask_shw = cohort_volume(tmp_path / "segment-out" / "mask.nii.gz")
    np.testing.assert_array_equal(mask_shw, probability_shw >= threshold)

    row, = results["whole_volume"]["patients"]
    counts = count_pixels(mask_shw, scan.mask_shw)
    assert row["patient"] == "P002" and row["slices"] == len(mask_shw)
    assert (row["tp"], row["fp"], row["fn"]) == (counts.tp, counts.fp, counts.fn)
    assert counts.fp > 0 and counts.tp > 0  # a case where the two could disagree
    for rule, expected in all_rules(mask_shw, scan.mask_shw, scan.voxel_mm).items():
        patient, = results["whole_volume"]["lesion"][rule]["patients"]
        assert (patient["reference_lesions"], patient["automatic_components"], patient["detected"],
                patient["true_automatic"]) == (expected.reference, expected.automatic, expected.detected,
                                               expected.true_automatic)
    # segment's lesions: 26-connected, none dropped (--min-lesion-mm3 0) = WMH-2017's automatic components
    assert len(segmented.lesions) == results["whole_volume"]["lesion"]["wmh2017"]["automatic_components"] > 0
