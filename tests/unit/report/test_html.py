"""report.html's whole-volume section (#14), from a results.json dict by hand."""

import re

from plaquenet.report.html import whole_volume_section


def cells(page, label):
    row = re.search(r"<tr><td>" + re.escape(label) + r"</td>(.*?)</tr>", page)
    assert row, label
    return re.findall(r"<td>(.*?)</td>", row.group(1))


def test_no_whole_volume_no_section():
    assert whole_volume_section({"test": {"pixel": {"f1": 0.5}}}) == ""


def test_the_paper_protocol_beside_the_whole_volume_with_patients_left_out():
    results = {
        "test": {"pixel": {"precision": 0.98}, "lesion": {"wmh2017": {"automatic_components": 12}}},
        "whole_volume": {
            "counts": {"patients": 3, "slices": 60, "plaque_slices": 11},
            "pixel": {"precision": 0.55},
            "per_patient": {"precision": {"mean": 0.5, "std": 0.25, "n": 2}},
            "left_out": {"precision": 1},
            "lesion": {"wmh2017": {"automatic_components": 56,
                                   "reference_convention": {"precision": {"mean": 0.75, "std": 0.1, "n": 3},
                                                            "empty_precision": 1.0, "source": "WMH-2017"}}},
        },
    }
    page = whole_volume_section(results)
    assert "3 test patients" in page and "60 slices, 11 with plaques" in page
    assert cells(page, "pixel precision, pooled") == ["0.98", "0.55"]
    assert cells(page, "WMH-2017: lesion automatic components") == ["12", "56"]
    assert cells(page, "MSSEG-2016: lesion precision") == ["&ndash;", "&ndash;"]  # not in results: a dash
    assert cells(page, "pixel precision") == ["0.500 &plusmn; 0.250", "2", "1"]
    assert cells(page, "WMH-2017: lesion precision, nothing marked = 1 (WMH-2017)") == [
        "0.750 &plusmn; 0.100", "3", "0"]
