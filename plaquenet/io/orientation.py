"""One way from any source voxel order to the cohort's (S, H, W) convention.

Readers return a `SourceVolume`: the voxels in the order the file stores them,
`data_ijk[i, j, k]`, and the NIfTI-style affine mapping (i, j, k, 1) to RAS mm.
For a DICOM series i is the column, j the row and k the slice (sorted along the
slice normal); for a NIfTI file they are the file's own axes. `to_cohort` then
flips and permutes the axes (no interpolation) so that

    s runs inferior -> superior, h anterior -> posterior, w right -> left,

i.e. (w, h, s) points towards (L, P, S): each slice looks as a radiologist sees
an axial image, the layout of a standard axial DICOM (ImageOrientationPatient
[1,0,0,0,1,0]). The returned `affine_whs` is the RAS affine of
`volume_shw.transpose(2, 1, 0)`. Oblique scans are mapped to the nearest axes;
their affine keeps the obliquity. Only axial acquisitions make axial slices:
`check_axial` refuses a thick-slice sagittal or coronal series (its slices would
become one in-plane axis).
"""

import dataclasses
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

import nibabel.orientations as ornt
import numpy as np

from ..errors import InputError
from ..typing import PathLike

if TYPE_CHECKING:
    from numpy.typing import ArrayLike   # numpy >= 1.20; pycaffe's bullseye has 1.19

COHORT_AXCODES = ("L", "P", "S")  # where the w, h, s axes point
MAX_IN_PLANE_RATIO = 1.5  # h and w pixel sizes further apart than this: not an axial acquisition


@dataclasses.dataclass
class SourceVolume:
    """A 3D image in its file's voxel order, with what masks need to find its slices."""

    data_ijk: np.ndarray  # (I, J, K), file order
    affine_ras: np.ndarray  # 4x4, (i, j, k, 1) -> RAS mm
    path: str  # file or folder, for error messages only
    sop_uids: Optional[List[str]] = None  # DICOM: SOPInstanceUID of slice k
    stems: Optional[List[str]] = None  # DICOM: file name stem of slice k


def to_cohort(data_ijk: np.ndarray, affine_ras: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(I, J, K) array + its RAS affine -> (volume_shw, affine_whs), axes only flipped/permuted."""
    data_whs = ornt.apply_orientation(data_ijk, _cohort_transform(affine_ras))
    return np.ascontiguousarray(data_whs.transpose(2, 1, 0)), cohort_grid(data_ijk.shape, affine_ras)[1]


def cohort_grid(shape_ijk: Sequence[int], affine_ras: np.ndarray) -> Tuple[Tuple[int, int, int], np.ndarray]:
    """The (S, H, W) shape and the affine_whs that `to_cohort` gives an (I, J, K) array, moving no voxel."""
    transform = _cohort_transform(affine_ras)
    shape_whs = [0, 0, 0]
    for n, (axis, _) in enumerate(transform):
        shape_whs[int(axis)] = int(shape_ijk[n])
    affine_whs = np.asarray(affine_ras, dtype=np.float64) @ ornt.inv_ornt_aff(transform, shape_ijk)
    return (shape_whs[2], shape_whs[1], shape_whs[0]), affine_whs


def _cohort_transform(affine_ras: np.ndarray) -> np.ndarray:
    """nibabel orientation transform: for each of i, j, k the w/h/s axis it becomes and its flip."""
    return ornt.ornt_transform(ornt.io_orientation(affine_ras), ornt.axcodes2ornt(COHORT_AXCODES))


def check_axial(path: PathLike, affine_whs: np.ndarray) -> None:
    """InputError unless the cohort slices are axial acquisitions: pixels of similar h and w size.

    A thick-slice sagittal or coronal series reoriented to axial has its slice step as one pixel
    side (e.g. 0.5 x 5 mm), which no axial-trained net has seen; an isotropic 3D volume passes."""
    _, h_mm, w_mm = voxel_mm(affine_whs)
    if max(h_mm, w_mm) > MAX_IN_PLANE_RATIO * min(h_mm, w_mm):
        raise InputError(path, f"not an axial acquisition (in-plane voxel {h_mm:.2f} x {w_mm:.2f} mm); "
                               "reslice it to axial first")


def voxel_mm(affine_whs: np.ndarray) -> Tuple[float, float, float]:
    """Voxel size in (s, h, w) order, mm: the lengths of the affine's columns."""
    w, h, s = np.linalg.norm(np.asarray(affine_whs)[:3, :3], axis=0)
    return float(s), float(h), float(w)


def ras_to_ijk(points_ras: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """(N, 3) RAS mm -> (N, 3) fractional voxel indices (i, j, k)."""
    points = np.asarray(points_ras, dtype=np.float64).reshape(-1, 3)
    inverse = np.linalg.inv(affine_ras)
    return points @ inverse[:3, :3].T + inverse[:3, 3]


def lps_to_ras(points_lps: "ArrayLike") -> np.ndarray:
    """DICOM patient coordinates (LPS mm) -> NIfTI's RAS mm."""
    return np.asarray(points_lps, dtype=np.float64).reshape(-1, 3) * [-1.0, -1.0, 1.0]


def from_cohort(volume_shw: np.ndarray, affine_ras: np.ndarray) -> np.ndarray:
    """Inverse of `to_cohort` for an array on the same grid: (S, H, W) -> (I, J, K) file order."""
    transform = ornt.ornt_transform(ornt.axcodes2ornt(COHORT_AXCODES), ornt.io_orientation(affine_ras))
    return ornt.apply_orientation(np.asarray(volume_shw).transpose(2, 1, 0), transform)
