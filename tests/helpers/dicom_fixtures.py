"""Tiny real DICOM/NIfTI/PNG studies for tests (`import dicom_fixtures as F`: tests/helpers is on pytest's path).

The reference study: an axial series of SLICES x ROWS x COLS (4 x 16 x 20)
pixels, standard orientation (ImageOrientationPatient [1,0,0,0,1,0]), stored
values `stored_kji()` with RescaleSlope 2 and RescaleIntercept -10, file names
in reverse slice order and InstanceNumbers scrambled, and fake PHI in every
header. `expected_flair_shw()`, `EXPECTED_AFFINE_WHS` and `lesion_mask_shw()`
are what an import must produce. All spacings and positions are exact in
binary floating point, so DICOM and NIfTI versions agree bit for bit.
"""

import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import nibabel as nib
import numpy as np
import pydicom
import pydicom.data
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SLICES, ROWS, COLS = 4, 16, 20
ROW_MM, COL_MM, SLICE_MM = 0.5, 0.75, 2.5  # between rows, between columns, between slices
ORIGIN_LPS = (-7.0, -4.0, 10.0)  # centre of the first pixel of the most inferior slice
SLOPE, INTERCEPT = 2, -10
EXPECTED_AFFINE_WHS = np.array([[-COL_MM, 0, 0, 7.0], [0, -ROW_MM, 0, 4.0], [0, 0, SLICE_MM, 10.0], [0, 0, 0, 1]])
PHI = {
    "PatientName": "Doe^Jane^Phiname",
    "PatientID": "PHI-ID-4711",
    "PatientBirthDate": "19450817",
    "InstitutionName": "Fake General Hospital Phi",
    "ReferringPhysicianName": "Referrer^Phidoc",
}
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"

# plaque rectangles per cohort slice: (row0, row1, col0, col1), inclusive; HOLES are inner contours
RECTANGLES = {1: [(3, 6, 4, 8)], 2: [(2, 4, 2, 5), (9, 12, 10, 15)], 3: [(5, 10, 6, 13)]}
HOLES = {3: [(7, 8, 8, 10)]}


def stored_kji() -> np.ndarray:
    """(SLICES, ROWS, COLS) uint16 stored pixel values, all distinct per slice."""
    return (np.arange(SLICES * ROWS * COLS, dtype=np.uint16) * 7 % 4001).reshape(SLICES, ROWS, COLS)


def expected_flair_shw() -> np.ndarray:
    return (stored_kji().astype(np.float32) * SLOPE + INTERCEPT).astype(np.float32)


def lesion_mask_shw() -> np.ndarray:
    """(SLICES, ROWS, COLS) uint8: the rectangles filled (holes united, i.e. filled too)."""
    mask = np.zeros((SLICES, ROWS, COLS), dtype=np.uint8)
    for k, rects in RECTANGLES.items():
        for r0, r1, c0, c1 in rects:
            mask[k, r0:r1 + 1, c0:c1 + 1] = 1
    return mask


def write_dicom_series(folder, stored: Optional[np.ndarray] = None, iop=(1, 0, 0, 0, 1, 0),
                       phi: Dict[str, str] = PHI, description="AX FLAIR") -> List[Path]:
    """Write the reference series (or `stored` (S, R, C), cohort slice order) to `folder`.

    `iop` other than the default stores the same physical voxels in another pixel/slice order:
    the pixel array and positions are permuted so that the patient sees the same image.
    Returns the file paths in cohort slice order (inferior -> superior)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = stored_kji() if stored is None else stored
    s, rows, cols = stored.shape
    series_uid, study_uid, for_uid = generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = np.array(iop[:3], float), np.array(iop[3:], float)
    paths = []
    for k in range(s):
        pixels = stored[k]
        if row_dir[0] < 0:  # columns run patient left -> right: mirror the columns
            pixels = pixels[:, ::-1]
        if col_dir[1] < 0:  # rows run posterior -> anterior
            pixels = pixels[::-1, :]
        first = _pixel_lps(k, 0 if row_dir[0] > 0 else cols - 1, 0 if col_dir[1] > 0 else rows - 1)
        ds = _mr_dataset(pixels, first, iop, series_uid, study_uid, for_uid, phi, description)
        ds.InstanceNumber = (k * 3) % s + 1  # scrambled: must not be used for ordering
        path = folder / f"IM{s - k:04d}.dcm"  # names in reverse slice order
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _pixel_lps(k, col, row) -> List[float]:
    """LPS mm of cohort voxel (slice k, row, col) in the reference geometry."""
    return [ORIGIN_LPS[0] + col * COL_MM, ORIGIN_LPS[1] + row * ROW_MM, ORIGIN_LPS[2] + k * SLICE_MM]


def _mr_dataset(pixels, position, iop, series_uid, study_uid, for_uid, phi, description) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, for_uid
    for key, value in phi.items():
        setattr(ds, key, value)
    ds.PatientSex = "F"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20160102", "101010", "1", "ACC-PHI-99"
    ds.Modality, ds.SeriesNumber, ds.SeriesDescription = "MR", 3, description
    ds.Manufacturer, ds.PositionReferenceIndicator = "Fake", ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.ImageOrientationPatient = [float(v) for v in iop]
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.PixelSpacing = [ROW_MM, COL_MM]
    ds.SliceThickness = SLICE_MM
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = SLOPE, INTERCEPT, "US"
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    return ds


def pixel_to_lps(ds: Dataset, col: float, row: float) -> np.ndarray:
    """Patient LPS mm of a (fractional) pixel position of one DICOM image."""
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
    return np.asarray(ds.ImagePositionPatient, float) + col * col_mm * iop[:3] + row * row_mm * iop[3:]


def write_rtstruct(path, series: Sequence[Path], rectangles=RECTANGLES, holes=HOLES, phi=PHI,
                   z_offset_mm: float = 0.0, reference_uid: Optional[str] = None) -> Path:
    """RTSTRUCT with one ROI: a closed contour per rectangle through the centres of its border pixels
    (what `rasterise_polygons` maps back to exactly the rectangle), holes as extra contours.

    `series` in cohort slice order (standard orientation); z_offset_mm moves every contour off its
    slice, reference_uid replaces the referenced image UIDs (both for error tests)."""
    images = [pydicom.dcmread(p) for p in series]
    ds = _derived_dataset(images[0], RTSTRUCT_STORAGE, "RTSTRUCT", phi)
    ds.StructureSetLabel = "plaques"
    ds.StructureSetROISequence, ds.ROIContourSequence, ds.RTROIObservationsSequence = [], [], []
    outlines = {**rectangles, **{k: rectangles.get(k, []) + h for k, h in holes.items()}}
    _add_roi(ds, images, "MS plaques", "ORGAN", outlines, z_offset_mm, reference_uid)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def add_rtstruct_roi(path, series: Sequence[Path], name: str, interpreted_type: str, rectangles) -> Path:
    """Add one more ROI (rectangle contours, as in write_rtstruct) to the RTSTRUCT at `path`."""
    ds = pydicom.dcmread(path)
    _add_roi(ds, [pydicom.dcmread(p) for p in series], name, interpreted_type, rectangles)
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def _add_roi(ds, images, name, interpreted_type, rectangles, z_offset_mm=0.0, reference_uid=None) -> None:
    number = len(ds.StructureSetROISequence) + 1
    roi = Dataset()
    roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, images[0].FrameOfReferenceUID
    ds.StructureSetROISequence.append(roi)
    contours = []
    for k, rects in rectangles.items():
        for r0, r1, c0, c1 in rects:
            corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]  # through the border pixels' centres
            points = np.array([pixel_to_lps(images[k], c, r) for c, r in corners]) + [0, 0, z_offset_mm]
            contour = Dataset()
            contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", len(points)
            contour.ContourData = [float(v) for v in points.ravel()]
            ref = Dataset()
            ref.ReferencedSOPClassUID = MRImageStorage
            ref.ReferencedSOPInstanceUID = reference_uid or images[k].SOPInstanceUID
            contour.ContourImageSequence = [ref]
            contours.append(contour)
    roi_contour = Dataset()
    roi_contour.ReferencedROINumber, roi_contour.ROIDisplayColor = number, [255, 0, 0]
    roi_contour.ContourSequence = contours
    ds.ROIContourSequence.append(roi_contour)
    observation = Dataset()
    observation.ObservationNumber, observation.ReferencedROINumber = number, number
    observation.RTROIInterpretedType, observation.ROIInterpreter = interpreted_type, ""
    ds.RTROIObservationsSequence.append(observation)


def _derived_dataset(image: Dataset, sop_class: str, modality: str, phi) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key, value in phi.items():
        setattr(ds, key, value)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = image.StudyInstanceUID, generate_uid()
    ds.Modality, ds.SeriesNumber = modality, 99
    return ds


def write_seg(path, series: Sequence[Path], mask_shw: Optional[np.ndarray] = None,
              segments: Optional[Dict[str, np.ndarray]] = None) -> Path:
    """DICOM SEG (highdicom, BINARY) on `series`: one segment "plaque" of `mask_shw` (default:
    lesion_mask_shw), or one segment per item of `segments` (label -> (S, H, W) mask)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    images = [pydicom.dcmread(p) for p in series]
    segments = segments or {"plaque": lesion_mask_shw() if mask_shw is None else mask_shw}
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n + 1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label in enumerate(segments)]
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=np.stack(list(segments.values()), axis=-1).astype(bool),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=98,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Fake", manufacturer_model_name="test",
        software_versions="0", device_serial_number="0")
    seg.save_as(path)
    return Path(path)


def write_png_masks(folder, mask_shw: Optional[np.ndarray] = None, stems: Optional[Sequence[str]] = None) -> List[Path]:
    """One PNG per cohort slice (0/255): named `<stem>.png` if stems given, else z4, z8, ... (natural order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mask = lesion_mask_shw() if mask_shw is None else mask_shw
    paths = []
    for k, slice_hw in enumerate(mask):
        path = folder / (f"{stems[k]}.png" if stems else f"z{4 * (k + 1)}.png")
        cv2.imwrite(str(path), slice_hw.astype(np.uint8) * 255)
        paths.append(path)
    return paths


def write_nifti(path, volume_shw: np.ndarray, affine_whs=EXPECTED_AFFINE_WHS, axcodes=("R", "A", "S"),
                dtype=np.float32) -> Path:
    """Save a cohort-convention volume as NIfTI with its axes reordered to `axcodes` (as converters do)."""
    ornt = nib.orientations
    data_whs = np.asarray(volume_shw).transpose(2, 1, 0)
    transform = ornt.ornt_transform(ornt.axcodes2ornt(("L", "P", "S")), ornt.axcodes2ornt(axcodes))
    data = ornt.apply_orientation(data_whs, transform).astype(dtype)
    affine = np.asarray(affine_whs, float) @ ornt.inv_ornt_aff(transform, data_whs.shape)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return Path(path)


def write_patient(folder, outline: str = "rtstruct", phi=PHI) -> Path:
    """A patient folder with the reference series in `flair/` and outlines of kind
    rtstruct | seg | png-stem | png-order | nifti (NIfTI mask beside the DICOM)."""
    folder = Path(folder)
    series = write_dicom_series(folder / "flair", phi=phi)
    if outline == "rtstruct":
        write_rtstruct(folder / "outlines.dcm", series, phi=phi)
    elif outline == "seg":
        write_seg(folder / "outlines.dcm", series)
    elif outline == "png-stem":
        write_png_masks(folder / "mask", stems=[p.stem for p in series])
    elif outline == "png-order":
        write_png_masks(folder / "mask")
    elif outline == "nifti":
        write_nifti(folder / "lesion_mask.nii.gz", lesion_mask_shw(), dtype=np.uint8)
    else:
        raise ValueError(outline)
    return folder


def write_nifti_patient(folder, axcodes=("R", "A", "S")) -> Path:
    """A patient folder with flair.nii.gz + mask.nii.gz of the reference study."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_nifti(folder / "flair.nii.gz", expected_flair_shw(), axcodes=axcodes)
    write_nifti(folder / "mask.nii.gz", lesion_mask_shw(), axcodes=axcodes, dtype=np.uint8)
    return folder


def mr_small_series(folder, variant: str = "", n: int = 3) -> List[Path]:
    """n copies of pydicom's MR_small[_variant].dcm as one series, 0.8 mm apart, names reversed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source = pydicom.data.get_testdata_file(f"MR_small{'_' + variant if variant else ''}.dcm")
    series_uid = generate_uid()
    paths = []
    for k in range(n):
        ds = pydicom.dcmread(source)
        ds.ImagePositionPatient = [-83.9063, -91.2, 6.6406 + 0.8 * k]
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.SeriesInstanceUID = series_uid
        path = folder / f"slice{n - k}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def truncated_mr_file(folder, z_mm: Optional[float] = None) -> Path:
    """pydicom's MR_truncated.dcm in `folder` (its pixel data too short), optionally moved to z_mm."""
    path = Path(folder) / "truncated.dcm"
    shutil.copy(pydicom.data.get_testdata_file("MR_truncated.dcm"), path)
    if z_mm is not None:
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [-83.9063, -91.2, z_mm]
        ds.save_as(path)
    return path


def write_three_lesion_study(study) -> Path:
    """A study (DICOM FLAIR series in STUDY/flair) whose three bright lesions
    lie in columns 4-8 (A, slice 1), 2-3 (C) and 15 (B, slice 3): the segment
    tests' brain cases, with `left_columns_brain` as their extractor."""
    stored = np.full((SLICES, ROWS, COLS), 100, np.uint16)
    stored[1, 3:7, 4:9] = stored[3, 12:14, 2:4] = stored[3, 10:11, 15:16] = 1000
    write_dicom_series(Path(study) / "flair", stored=stored)
    return Path(study)


def left_columns_brain(volume_zyx, spacing):
    """A fake brain extractor (brain.Extractor): the brain is columns 0-9."""
    mask = np.zeros(volume_zyx.shape, np.uint8)
    mask[:, :, :10] = 1
    return mask
