"""write_seg: a plaque mask -> a DICOM SEG on its MR series that the import
reads back as the same mask, in any slice order; an empty mask keeps every
frame; manual (the phantom's radiologist) or automatic (plaquenet); the same
UIDs and time give the same bytes; valid DICOM (dciodvfy)."""

import datetime

import numpy as np
import pydicom
import pytest

import dciodvfy
import dicom_fixtures as F
from plaquenet import __version__
from plaquenet.io.dicom import read_dicom_series, read_header
from plaquenet.io.masks import read_seg
from plaquenet.io.seg import write_seg

AUTOMATIC = dict(algorithm_version=__version__, series_number=9901, series_description="plaquenet MS plaques",
                 content_label="PLAQUES")
MANUAL = dict(content_creator_name="Phantom^Radiologist", series_number=100, series_description="plaque outlines",
              content_label="PLAQUES")


@pytest.fixture
def series(tmp_path):
    """The reference series: paths and headers in slice order k, whose (k, row, column)
    is the cohort's (s, h, w), so `F.lesion_mask_shw()` is its mask_kji."""
    paths = F.write_dicom_series(tmp_path / "dicom")
    return paths, [read_header(p) for p in paths]


def _read_back(path, series):
    paths, headers = series
    return read_seg(path, read_dicom_series(paths, headers)).transpose(2, 1, 0)  # (i, j, k) -> (k, row, column)


def test_the_import_reads_the_mask_back(tmp_path, series):
    mask_kji = F.lesion_mask_shw().astype(bool)
    path = write_seg(tmp_path / "seg.dcm", mask_kji, series[1], "MS plaques", **AUTOMATIC)
    assert np.array_equal(_read_back(path, series), mask_kji)
    assert pydicom.dcmread(path).NumberOfFrames == int(mask_kji.any(axis=(1, 2)).sum())  # slices with plaque


def test_mask_and_headers_in_another_slice_order_give_the_same_seg(tmp_path, series):
    mask_kji = F.lesion_mask_shw().astype(bool)
    path = write_seg(tmp_path / "seg.dcm", mask_kji[::-1], series[1][::-1], "MS plaques", **AUTOMATIC)
    assert np.array_equal(_read_back(path, series), mask_kji)


def test_an_empty_mask_keeps_every_frame(tmp_path, series):
    empty = np.zeros((F.SLICES, F.ROWS, F.COLS), bool)
    path = write_seg(tmp_path / "seg.dcm", empty, series[1], "MS plaques", **AUTOMATIC)
    assert pydicom.dcmread(path).NumberOfFrames == F.SLICES
    assert not _read_back(path, series).any()


def test_automatic_seg_names_plaquenet(tmp_path, series):
    ds = pydicom.dcmread(write_seg(tmp_path / "seg.dcm", F.lesion_mask_shw(), series[1], "MS plaques", **AUTOMATIC))
    segment = ds.SegmentSequence[0]
    assert ds.SegmentationType == "BINARY" and len(ds.SegmentSequence) == 1 and ds.ContentLabel == "PLAQUES"
    assert segment.SegmentAlgorithmType == "AUTOMATIC" and segment.SegmentAlgorithmName == "plaquenet"
    assert ds.ContentCreatorName == "plaquenet^" and ds.SoftwareVersions == __version__
    assert segment.SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Morphologically Abnormal Structure"
    assert segment.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Lesion"
    assert segment.AnatomicRegionSequence[0].CodeMeaning == "Brain"


def test_manual_seg_names_its_creator_and_no_algorithm(tmp_path, series):
    ds = pydicom.dcmread(write_seg(tmp_path / "seg.dcm", F.lesion_mask_shw(), series[1], "MS plaques", **MANUAL))
    segment = ds.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "MANUAL" and "SegmentAlgorithmName" not in segment
    assert ds.ContentCreatorName == "Phantom^Radiologist"


@pytest.mark.parametrize("mask_shape, options, message", [
    ((F.SLICES - 1, F.ROWS, F.COLS), AUTOMATIC, "one slice per source image"),
    ((F.ROWS, F.COLS), AUTOMATIC, "one slice per source image"),
    ((F.SLICES, F.ROWS, F.COLS), {**MANUAL, "content_creator_name": None}, "needs its content_creator_name"),
])
def test_bad_arguments_are_value_errors(tmp_path, series, mask_shape, options, message):
    with pytest.raises(ValueError, match=message):
        write_seg(tmp_path / "seg.dcm", np.zeros(mask_shape, bool), series[1], "MS plaques", **options)
    assert not (tmp_path / "seg.dcm").exists()


def test_the_same_uids_and_time_give_the_same_bytes(tmp_path, series):
    pinned = dict(series_instance_uid="1.2.3.4", sop_instance_uid="1.2.3.5", dimension_organization_uid="1.2.3.6",
                  created=datetime.datetime(2016, 1, 2, 12, 0, 0))
    first, second = (write_seg(tmp_path / name, F.lesion_mask_shw(), series[1], "MS plaques", **MANUAL, **pinned)
                     for name in ("a.dcm", "b.dcm"))
    assert first.read_bytes() == second.read_bytes()
    ds = pydicom.dcmread(first)
    assert (ds.SOPInstanceUID, ds.InstanceCreationDate, ds.ContentTime) == ("1.2.3.5", "20160102", "120000")


@pytest.mark.parametrize("mask", ["plaques", "empty"])
def test_automatic_seg_passes_dciodvfy(tmp_path, series, mask):
    mask_kji = F.lesion_mask_shw() if mask == "plaques" else np.zeros((F.SLICES, F.ROWS, F.COLS), bool)
    report = dciodvfy.report(write_seg(tmp_path / "seg.dcm", mask_kji, series[1], "MS plaques", **AUTOMATIC))
    assert report[0] == "Segmentation" and not dciodvfy.errors(report), "\n".join(report)
