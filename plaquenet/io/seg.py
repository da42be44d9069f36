"""A plaque mask -> DICOM SEG on its source MR series (highdicom): one home for
every SEG plaquenet writes (the phantom's radiologist outlines, `segment`'s
result). Reading a SEG, from any source, is `io.masks.read_seg`'s job.

The SEG is BINARY with one segment: category "Morphologically abnormal
structure", type "Lesion", anatomic region Brain. A manual segmentation (the
phantom's radiologist) names its creator; an automatic one names plaquenet as
its algorithm (and as its ContentCreatorName, which dcmqi warns without).
Frames are the source's slices that hold plaque; a mask without any plaque
keeps every frame, all empty (a SEG without frames is invalid).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import pydicom

from .. import __version__

ALGORITHM_NAME = "plaquenet"
AUTOMATIC_CREATOR = "plaquenet^"  # DICOM PN: family name only


def write_seg(path: Union[str, Path], mask_kji: np.ndarray, source_headers: Sequence[pydicom.Dataset],
              segment_label: str, *, series_number: int, series_description: str, content_label: str,
              algorithm_version: Optional[str] = None, content_creator_name: Optional[str] = None,
              manufacturer: str = "plaquenet", manufacturer_model_name: str = "plaquenet",
              software_versions: Optional[str] = None, series_instance_uid: Optional[str] = None,
              sop_instance_uid: Optional[str] = None, dimension_organization_uid: Optional[str] = None,
              created: Optional[datetime.datetime] = None) -> Path:
    """Write `mask_kji` as a DICOM SEG file at `path` and return the path.

    mask_kji: bool (K, rows, columns), slice k on `source_headers[k]`'s pixel
        grid (the source's own row/column order, any slice order as long as
        the two agree).
    source_headers: the MR series' datasets (pixel data not needed); the SEG
        copies their patient, study and frame of reference.
    algorithm_version: None for a MANUAL segmentation, which then needs
        `content_creator_name` (e.g. "Phantom^Radiologist"); otherwise an
        AUTOMATIC one by the algorithm "plaquenet" of that version, created by
        `content_creator_name` or "plaquenet^".
    software_versions: default `algorithm_version`, else plaquenet's version.
    series_instance_uid, sop_instance_uid, dimension_organization_uid: None
        draws fresh ones; created: None stamps the current time. Give all four
        for a file that is the same byte for byte on every run.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    mask_kji = np.asarray(mask_kji, dtype=bool)
    if mask_kji.ndim != 3 or mask_kji.shape[0] != len(source_headers):
        raise ValueError(f"a mask (K, rows, columns) with one slice per source image is needed, got "
                         f"{mask_kji.shape} for {len(source_headers)} images")
    if algorithm_version is None and content_creator_name is None:
        raise ValueError("a manual segmentation needs its content_creator_name")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, anatomic_regions=[codes.SCT.Brain],
        **_algorithm(algorithm_version))
    seg = hd.seg.Segmentation(
        source_images=list(source_headers), pixel_array=mask_kji,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[description],
        series_instance_uid=series_instance_uid or generate_uid(), series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(), instance_number=1, manufacturer=manufacturer,
        manufacturer_model_name=manufacturer_model_name,
        software_versions=software_versions or algorithm_version or __version__, device_serial_number="0",
        series_description=series_description, content_label=content_label,
        content_creator_name=content_creator_name or AUTOMATIC_CREATOR,
        omit_empty_frames=bool(mask_kji.any()))  # an all-empty SEG keeps every frame (none is invalid)
    if created is not None:
        _pin_time(seg, created)
    if dimension_organization_uid is not None:
        for item in list(seg.DimensionOrganizationSequence) + list(seg.DimensionIndexSequence):
            item.DimensionOrganizationUID = dimension_organization_uid
    _save(seg, Path(path))
    return Path(path)


def _algorithm(version: Optional[str]) -> dict:
    """SegmentDescription's algorithm arguments: MANUAL, or AUTOMATIC by plaquenet `version`."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    if version is None:
        return {"algorithm_type": hd.seg.SegmentAlgorithmTypeValues.MANUAL}
    return {"algorithm_type": hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            "algorithm_identification": hd.AlgorithmIdentificationSequence(
                name=ALGORITHM_NAME, family=codes.cid7162.ArtificialIntelligence, version=version)}


def _pin_time(seg: pydicom.Dataset, created: datetime.datetime) -> None:
    """highdicom stamps the clock: replace every stamp by `created`."""
    date, time = created.strftime("%Y%m%d"), created.strftime("%H%M%S")
    seg.InstanceCreationDate = seg.ContentDate = date
    seg.InstanceCreationTime = seg.ContentTime = time
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = date + time


def _save(ds: pydicom.Dataset, path: Path) -> None:
    """As a DICOM file (preamble, file meta), whichever pydicom."""
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)
