"""The phantom's files, as a hospital would hand them over: a DICOM MR series
with FAKE patient data in every header, the radiologist's outlines as an
RTSTRUCT or a DICOM SEG, and the same volume and mask as NIfTI; beside them
the truth the files above cannot carry (region map, exact plaques).

Every UID comes from the seed (`_uid`), and every clock stamp is the study's
date, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import List, Sequence, Tuple, Union

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from ..io.nifti import write_nifti
from ..io.seg import write_seg
from .patients import FakePatient
from .regions import REGIONS
from .scan import PhantomScan

UidSeed = Tuple[int, int]  # (seed, patient)

# --- the MR series: a 1.5 T axial FLAIR (§2) ----------------------------------------------
MR_SERIES_NUMBER = 3
MR_SERIES = "AX FLAIR"
MAGNETIC_FIELD_T = "1.5"  # §2: "obtained using 1,5 Tesla scanner"
TR_MS, TE_MS, TI_MS = "9000", "120", "2500"
ECHO_TRAIN = 16
WINDOW_CENTRE, WINDOW_WIDTH = "400", "900"
STUDY_TIME = "101500"

# --- the outlines ----------------------------------------------------------------------------
OUTLINES_LABEL = "MS plaques"  # the RT ROI name and the SEG segment label
OUTLINES_SERIES = "plaque outlines"
RTSTRUCT_SERIES_NUMBER, SEG_SERIES_NUMBER = 200, 100
OUTLINED_AT = "120000"  # on the study's date
RADIOLOGIST = "Radiologist^Phantom"  # the RTSTRUCT's OperatorsName
SEG_CREATOR = "Phantom^Radiologist"  # the SEG's ContentCreatorName
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"  # the RTSTRUCT's (retired) referenced study class


def write_dicom_study(folder: Union[str, Path], scan: PhantomScan, who: FakePatient, uid_seed: UidSeed = (0, 0),
                      seg: bool = False) -> None:
    """`folder`/flair/<hex>.dcm, one MR image per slice (names in no slice
    order), and `folder`/outlines.dcm: the polygons as an RTSTRUCT, or the mask
    as a DICOM SEG when `seg`."""
    rng = np.random.default_rng([*uid_seed, 2])
    slices = [_mr_slice(scan, who, uid_seed, k) for k in range(len(scan.flair_shw))]
    names = [f"{rng.integers(2 ** 63):016x}.dcm" for _ in slices]
    if len(names) > 1 and sorted(names) == names:  # never in slice order
        names[0], names[1] = names[1], names[0]
    (Path(folder) / "flair").mkdir(parents=True)
    for ds, name in zip(slices, names):
        _save(ds, Path(folder) / "flair" / name)
    if seg:
        _write_segmentation(Path(folder) / "outlines.dcm", scan, slices, uid_seed)
    else:
        _save(_rtstruct(scan, slices, uid_seed), Path(folder) / "outlines.dcm")


def _uid(uid_seed: UidSeed, *what: object) -> str:
    return str(generate_uid(entropy_srcs=["plaquenet-phantom", *map(str, uid_seed), *map(str, what)]))


def _ds(value: float) -> str:
    """A decimal string (DICOM DS) that parses back to the same float."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _save(ds: Dataset, path: Path) -> None:
    try:
        ds.save_as(path, enforce_file_format=True)
    except TypeError:  # pydicom < 3
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(path, write_like_original=False)


def _new_dataset() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _patient_and_study(ds: Dataset, who: FakePatient, uid_seed: UidSeed) -> None:
    ds.PatientName = who.name
    ds.PatientID = who.patient_id
    ds.PatientBirthDate = who.birth_date
    ds.PatientSex = who.sex
    ds.InstitutionName = who.institution
    ds.ReferringPhysicianName = who.referring_physician
    ds.AccessionNumber = who.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = who.study_date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = STUDY_TIME
    ds.StudyID = "1"
    ds.StudyInstanceUID = _uid(uid_seed, "study")
    ds.FrameOfReferenceUID = _uid(uid_seed, "frame")
    ds.PositionReferenceIndicator = ""  # Type 2: no anatomical landmark was set at the scanner
    ds.Manufacturer = "plaquenet phantom"


def _mr_slice(scan: PhantomScan, who: FakePatient, uid_seed: UidSeed, k: int) -> Dataset:
    slope, intercept = scan.rescale
    stored = np.round((scan.flair_shw[k].astype(np.float64) - intercept) / slope).astype(np.uint16)
    ds = _new_dataset()
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = _uid(uid_seed, "mr", k)
    _patient_and_study(ds, who, uid_seed)
    ds.Modality = "MR"
    ds.SeriesInstanceUID = _uid(uid_seed, "series")
    ds.SeriesNumber, ds.InstanceNumber = MR_SERIES_NUMBER, k + 1
    ds.SeriesDescription = MR_SERIES
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.BodyPartExamined = "BRAIN"
    ds.PatientPosition = "HFS"
    ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions = ["SE", "IR"], ["SK", "SP"], ""
    ds.MRAcquisitionType = "2D"
    ds.MagneticFieldStrength = MAGNETIC_FIELD_T
    ds.RepetitionTime, ds.EchoTime, ds.InversionTime = TR_MS, TE_MS, TI_MS
    ds.EchoTrainLength = ECHO_TRAIN
    x0, y0, _ = scan.origin_lps
    ds.ImagePositionPatient = [_ds(x0), _ds(y0), _ds(scan.slice_z_mm(k))]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(scan.voxel_mm[1]), _ds(scan.voxel_mm[2])]
    ds.SliceThickness = _ds(scan.slice_thickness_mm)
    ds.SpacingBetweenSlices = _ds(scan.voxel_mm[0])
    ds.SliceLocation = _ds(scan.slice_z_mm(k))
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = scan.flair_shw.shape[1:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slope), _ds(intercept), "US"
    ds.WindowCenter, ds.WindowWidth = WINDOW_CENTRE, WINDOW_WIDTH
    ds.PixelData = stored.tobytes()
    return ds


# --- the outlines --------------------------------------------------------------------------


def _rtstruct(scan: PhantomScan, slices: List[Dataset], uid_seed: UidSeed) -> Dataset:
    """RT Structure Set: one ROI "MS plaques", one CLOSED_PLANAR contour per
    plaque per slice, in patient (LPS) mm, each referencing its image."""
    first = slices[0]
    ds = _new_dataset()
    ds.SOPClassUID = RT_STRUCTURE_SET_STORAGE
    ds.SOPInstanceUID = _uid(uid_seed, "rtstruct")
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "InstitutionName",
                    "ReferringPhysicianName", "AccessionNumber", "StudyDate", "StudyTime", "StudyID",
                    "StudyInstanceUID", "FrameOfReferenceUID", "PositionReferenceIndicator", "Manufacturer"):
        setattr(ds, keyword, getattr(first, keyword))  # the Frame of Reference module: the images'
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = _uid(uid_seed, "rtstruct-series")
    ds.SeriesNumber, ds.InstanceNumber = RTSTRUCT_SERIES_NUMBER, 1
    ds.SeriesDescription = OUTLINES_SERIES
    ds.StructureSetLabel = OUTLINES_LABEL
    ds.StructureSetDate, ds.StructureSetTime = first.StudyDate, OUTLINED_AT
    ds.OperatorsName = RADIOLOGIST
    ds.ReferencedFrameOfReferenceSequence = [_referenced_frame(slices)]
    roi = Dataset()
    roi.ROINumber, roi.ReferencedFrameOfReferenceUID = 1, first.FrameOfReferenceUID
    roi.ROIName, roi.ROIGenerationAlgorithm = OUTLINES_LABEL, "MANUAL"
    ds.StructureSetROISequence = [roi]
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ROIDisplayColor = [255, 0, 0]
    contours = _contours(scan, slices)
    if contours:
        roi_contour.ContourSequence = contours
    ds.ROIContourSequence = [roi_contour]
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = 1, 1
    observation.RTROIInterpretedType, observation.ROIInterpreter = "ORGAN", ""
    ds.RTROIObservationsSequence = [observation]
    return ds


def _image_ref(mr: Dataset) -> Dataset:
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = mr.SOPClassUID, mr.SOPInstanceUID
    return ref


def _referenced_frame(slices: List[Dataset]) -> Dataset:
    """The frame of reference -> study -> series -> every image the contours lie on."""
    first = slices[0]
    series = Dataset()
    series.SeriesInstanceUID = first.SeriesInstanceUID
    series.ContourImageSequence = [_image_ref(mr) for mr in slices]
    study = Dataset()
    study.ReferencedSOPClassUID = DETACHED_STUDY_MANAGEMENT
    study.ReferencedSOPInstanceUID = first.StudyInstanceUID
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = first.FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    return frame


def _contours(scan: PhantomScan, slices: List[Dataset]) -> List[Dataset]:
    """One CLOSED_PLANAR contour per polygon, patient (LPS) mm, on its slice."""
    contours = []
    x0, y0, _ = scan.origin_lps
    ps_row, ps_col = scan.voxel_mm[1], scan.voxel_mm[2]
    for k, polygons in enumerate(scan.polygons_cr):
        for poly in polygons:
            c = Dataset()
            c.ContourImageSequence = [_image_ref(slices[k])]
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            # ImageOrientationPatient [1,0,0,0,1,0]: x follows columns, y follows rows
            c.ContourData = [_ds(v) for col, row in poly
                             for v in (x0 + col * ps_col, y0 + row * ps_row, scan.slice_z_mm(k))]
            contours.append(c)
    return contours


def _write_segmentation(path: Path, scan: PhantomScan, slices: Sequence[Dataset], uid_seed: UidSeed) -> None:
    """DICOM SEG, BINARY, one segment "MS plaques", MANUAL (the radiologist);
    frames only for the slices with plaque pixels (a patient without any
    plaque gets all frames, empty)."""
    created = datetime.datetime.strptime(slices[0].StudyDate + OUTLINED_AT, "%Y%m%d%H%M%S")
    write_seg(path, scan.mask_shw.astype(bool), slices, OUTLINES_LABEL, series_number=SEG_SERIES_NUMBER,
              series_description=OUTLINES_SERIES, content_label="PLAQUES", content_creator_name=SEG_CREATOR,
              manufacturer="plaquenet phantom", manufacturer_model_name="radiologist outlines",
              software_versions="plaquenet", series_instance_uid=_uid(uid_seed, "seg-series"),
              sop_instance_uid=_uid(uid_seed, "seg"), dimension_organization_uid=_uid(uid_seed, "seg-dimensions"),
              created=created)


# --- NIfTI ----------------------------------------------------------------------------------


def nifti_affine(scan: PhantomScan) -> np.ndarray:
    """Affine of the NIfTI files: their voxels are RAS-ordered (i towards the
    patient's right, j anterior, k superior), unlike the cohort's (w, h, s)."""
    s, h, w = scan.flair_shw.shape
    flip = np.array([[-1, 0, 0, w - 1], [0, -1, 0, h - 1], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float64)
    return scan.affine_whs @ flip


def to_nifti_order(volume_shw: np.ndarray) -> np.ndarray:
    """(S, H, W) cohort order -> (I, J, K) RAS voxel order of the NIfTI files."""
    return np.ascontiguousarray(volume_shw.transpose(2, 1, 0)[::-1, ::-1, :])


def write_nifti_study(folder: Union[str, Path], scan: PhantomScan) -> None:
    """`folder`/flair.nii.gz (float32) and `folder`/mask.nii.gz (uint8), same affine."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    affine = nifti_affine(scan)
    write_nifti(folder / "flair.nii.gz", to_nifti_order(scan.flair_shw), affine, np.float32)
    write_nifti(folder / "mask.nii.gz", to_nifti_order(scan.mask_shw), affine, np.uint8)


# --- the truth: what the radiologist's polygons only approximate ----------------------------


def write_truth_study(folder: Union[str, Path], scan: PhantomScan) -> None:
    """`folder`/regions.nii.gz (uint8, labels of `regions.REGIONS`) and
    `folder`/plaques_exact.nii.gz (uint8 0/1, `PhantomScan.mask_exact_shw`), on
    the grid and affine of the NIfTI FLAIR (`write_nifti_study`)."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    affine = nifti_affine(scan)
    write_nifti(folder / "regions.nii.gz", to_nifti_order(scan.regions_shw), affine, np.uint8)
    write_nifti(folder / "plaques_exact.nii.gz", to_nifti_order(scan.mask_exact_shw), affine, np.uint8)


def write_regions_legend(path: Union[str, Path]) -> None:
    """The legend of every regions.nii.gz: {"0": "air", "1": "brain", ...} as JSON."""
    legend = {str(label): name for label, name in REGIONS.items()}
    Path(path).write_text(json.dumps(legend, indent=2) + "\n")
