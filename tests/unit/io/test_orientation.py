"""Source voxel order <-> the cohort's (S, H, W) (plaquenet/io/orientation.py)."""

import numpy as np

import dicom_fixtures as F
from plaquenet.io.nifti import read_nifti
from plaquenet.io.orientation import from_cohort, to_cohort


def test_from_cohort_inverts_to_cohort(tmp_path):
    nifti = read_nifti(F.write_nifti(tmp_path / "f.nii", F.expected_flair_shw(), axcodes=("A", "R", "I")))
    flair_shw, _ = to_cohort(nifti.data_ijk, nifti.affine_ras)
    np.testing.assert_array_equal(from_cohort(flair_shw, nifti.affine_ras), nifti.data_ijk)
