"""A NIfTI volume -> `SourceVolume` (the file's own voxel order + its RAS affine).

`data_ijk` keeps the file's axes; `orientation.to_cohort` turns it into the
cohort's (S, H, W). The affine is nibabel's `img.affine` (sform if set, else
qform). A 4D file is accepted only when its extra axes have length 1.
"""

import numpy as np
import nibabel as nib

from ..errors import InputError
from .dicom import one_line
from .orientation import SourceVolume

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path, mask: bool = False) -> SourceVolume:
    """FLAIR: float32 in scanner units (scl_slope/inter applied). mask=True: uint8, 1 where > 0."""
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types on damaged files
        raise InputError(path, f"unreadable NIfTI file ({one_line(e)})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {tuple(img.shape)}")
    data = (data > 0).astype(np.uint8) if mask else data.astype(np.float32)
    return SourceVolume(data_ijk=data, affine_ras=np.asarray(img.affine, dtype=np.float64), path=str(path))
