"""NIfTI-1 in and out. In: a volume -> `SourceVolume` (the file's own voxel
order + its RAS affine). Out: `write_nifti`, the one writer of every NIfTI
plaquenet makes.

`data_ijk` keeps the file's axes; `orientation.to_cohort` turns it into the
cohort's (S, H, W). The affine is nibabel's `img.affine` (sform if set, else
qform). A 4D file is accepted only when its extra axes have length 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union, cast

import numpy as np
import nibabel as nib

from ..errors import InputError
from .dicom import one_line
from .orientation import SourceVolume

if TYPE_CHECKING:  # numpy.typing is numpy >= 1.20; pycaffe's Debian bullseye has 1.19
    from numpy.typing import DTypeLike

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Union[str, Path]) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: Union[str, Path], mask: bool = False) -> SourceVolume:
    """FLAIR: float32 in scanner units (scl_slope/inter applied). mask=True: uint8, 1 where > 0."""
    try:
        img = cast(nib.Nifti1Image, nib.load(str(path)))  # or Nifti2Image, Nifti1Pair: the same interface
        data = np.asanyarray(img.dataobj)
    except Exception as e:  # nibabel raises several types on damaged files
        raise InputError(path, f"unreadable NIfTI file ({one_line(e)})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(path, f"expected a 3D volume, got shape {tuple(img.shape)}")
    data = (data > 0).astype(np.uint8) if mask else data.astype(np.float32)
    return SourceVolume(data_ijk=data, affine_ras=np.asarray(img.affine, dtype=np.float64), path=str(path))


def write_nifti(path: Union[str, Path], data_ijk: np.ndarray, affine_ras: np.ndarray,
                dtype: Optional[DTypeLike] = None) -> Path:
    """Write a 3D volume as NIfTI-1 (`.nii` or `.nii.gz` by the name) and return the path.

    data_ijk: the voxels in the affine's (i, j, k) order, stored as `dtype`
        (default: the array's own); no scaling (scl_slope unset).
    affine_ras: 4x4, voxel index (i, j, k) -> RAS mm; written as both qform
        and sform with code 1 (scanner coordinates, as dcm2niix writes them).
    Units (xyzt_units): mm in space, seconds in time.
    """
    data = np.asarray(data_ijk) if dtype is None else np.asarray(data_ijk, dtype=dtype)
    image = nib.Nifti1Image(data, affine_ras)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine_ras, code=1)
    image.set_sform(affine_ras, code=1)
    nib.save(image, str(path))
    return Path(path)
