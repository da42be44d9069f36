"""report.html: one self-contained page (figures embedded as data URIs) with
our numbers beside the paper's, the figures, and what was run."""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple

from ..typing import PathLike


def png_data_uri(path: PathLike) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}g}"  # g, not f: a threshold of 3e-5 is not 0.0000
    return html.escape(str(value))


def _get(d: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _mean_std(summary: Optional[Dict[str, Any]]) -> str:
    if not summary or summary.get("mean") is None:
        return "&ndash;"
    return f"{summary['mean']:.3f} &plusmn; {summary['std']:.3f}"


# (row label, our key in results.json, the paper's key in results["paper"])
COMPARISON = [
    ("test F-measure, pixels pooled", "test.pixel.f1", "test.pixel.f1"),
    ("test precision", "test.pixel.precision", None),
    ("test recall", "test.pixel.recall", None),
    ("threshold (best F on full training scans)", "threshold", None),
    ("train F-measure", "train.pixel.f1", None),
    ("train precision", "train.pixel.precision", None),
    ("train recall", "train.pixel.recall", None),
    ("threshold chosen on training tiles (rejected, §4.3)", "threshold_from_tiles", None),
    ("test F-measure at the tiles' threshold", "test.pixel_from_tiles_threshold.f1", None),
    ("raw-intensity baseline (§5): threshold", "baseline.raw_intensity.threshold", None),
    ("raw-intensity baseline: test F-measure", "baseline.raw_intensity.test.pixel.f1", None),
    ("train patients", "counts.train.patients", "counts.train.patients"),
    ("test patients", "counts.test.patients", "counts.test.patients"),
    ("train scans (slices with plaques)", "counts.train.scans", "counts.train.scans"),
    ("test scans (slices with plaques)", "counts.test.scans", "counts.test.scans"),
    ("training tiles", "counts.tiles", "counts.tiles"),
]


def comparison_table(results: Dict[str, Any]) -> str:
    paper = results.get("paper", {})
    rows = ["<tr><th></th><th>this run</th><th>paper</th></tr>"]
    for label, ours, theirs in COMPARISON:
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{_fmt(_get(results, ours), 4)}</td>"
                    f"<td>{_fmt(_get(paper, theirs)) if theirs else '&ndash;'}</td></tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def per_patient_table(results: Dict[str, Any]) -> str:
    rows = ["<tr><th></th><th>precision</th><th>recall</th><th>F-measure</th><th>patients</th></tr>"]
    for label, key in (("test, network", "test.per_patient"), ("train, network", "train.per_patient"),
                       ("test, raw-intensity baseline", "baseline.raw_intensity.test.per_patient")):
        summary = _get(results, key) or {}
        n = _get(summary, "f1.n")
        rows.append(f"<tr><td>{label}</td>" + "".join(f"<td>{_mean_std(summary.get(m))}</td>"
                                                        for m in ("precision", "recall", "f1"))
                    + f"<td>{_fmt(n)}</td></tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


LESION_RULES = (("MSSEG-2016 (Commowick et al. 2018)", "msseg2016"), ("WMH-2017 (any overlap)", "wmh2017"))
# (label, key under results["test"]): components in 3D per patient, and in 2D per slice
LESION_COMPONENTS = (("3D per patient", "lesion"), ("2D per slice (8-connected)", "lesion_2d"))


def lesion_table(results: Dict[str, Any]) -> str:
    """Lesion-wise detection on the test patients (§5), one row per rule and
    kind of component (3D, 2D per slice)."""
    rows = ["<tr><th>rule</th><th>components</th><th>sensitivity</th><th>precision</th><th>F1</th>"
            "<th>F1 per patient</th><th>reference lesions</th><th>detected</th><th>automatic components</th><th>false positives</th>"
            "<th>median volume detected / missed (mm&sup3;)</th></tr>"]
    for components, where in LESION_COMPONENTS:
        for label, key in LESION_RULES:
            rows.append(_lesion_row(label, components, _get(results, f"test.{where}.{key}") or {}))
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _lesion_row(label: str, components: str, r: Dict[str, Any]) -> str:
    volumes = f"{_fmt(_get(r, 'volume_mm3.detected.median'))} / {_fmt(_get(r, 'volume_mm3.missed.median'))}"
    return (f"<tr><td>{html.escape(label)}</td><td>{html.escape(components)}</td>"
            + "".join(f"<td>{_fmt(r.get(m))}</td>" for m in ("sensitivity", "precision", "f1"))
            + f"<td>{_mean_std(_get(r, 'per_patient.f1'))}</td>"
            + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in
                      ("reference_lesions", "detected", "automatic_components", "false_positives"))
            + f"<td>{volumes}</td></tr>")


_RULE_LABELS = (("MSSEG-2016", "msseg2016"), ("WMH-2017", "wmh2017"))
_WORDS = {"precision": "precision", "recall": "recall", "sensitivity": "sensitivity", "f1": "F1",
          "automatic_components": "automatic components", "false_positives": "false positives"}
# (row label, key under results["test"] (the paper's protocol), key under results["whole_volume"])
WHOLE_VOLUME_ROWS = (
    *((f"pixel {_WORDS[m]}, pooled", f"pixel.{m}", f"pixel.{m}") for m in ("precision", "recall", "f1")),
    *((f"{label}: lesion {_WORDS[m]}", f"lesion.{rule}.{m}", f"lesion.{rule}.{m}") for label, rule in _RULE_LABELS
      for m in ("sensitivity", "precision", "f1", "automatic_components", "false_positives")),
)
# (row label, key of {mean, std, n} under results["whole_volume"], key of the count left out)
WHOLE_VOLUME_PER_PATIENT = (
    *((f"pixel {_WORDS[m]}", f"per_patient.{m}", f"left_out.{m}") for m in ("precision", "recall", "f1")),
    *((f"{label}: lesion {_WORDS[m]}", f"lesion.{rule}.per_patient.{m}", f"lesion.{rule}.left_out.{m}")
      for label, rule in _RULE_LABELS for m in ("sensitivity", "precision", "f1")),
)


def whole_volume_section(results: Dict[str, Any]) -> str:
    """Every slice of each test patient beside the paper's protocol; "" when
    results.json has no "whole_volume" (score --no-whole-volume)."""
    volume = results.get("whole_volume")
    if not volume:
        return ""
    rows = ["<tr><th></th><th>slices with plaques (&sect;4.1)</th><th>whole volume</th></tr>"]
    for label, paper_key, volume_key in WHOLE_VOLUME_ROWS:
        rows.append(f"<tr><td>{html.escape(label)}</td><td>{_fmt(_get(results.get('test'), paper_key), 4)}</td>"
                    f"<td>{_fmt(_get(volume, volume_key), 4)}</td></tr>")
    spread = ["<tr><th>whole volume, per patient</th><th>mean &plusmn; std</th><th>patients counted</th>"
              "<th>left out (undefined)</th></tr>"]
    for label, key, dropped in WHOLE_VOLUME_PER_PATIENT:
        summary = _get(volume, key) or {}
        spread.append(f"<tr><td>{html.escape(label)}</td><td>{_mean_std(summary)}</td><td>{_fmt(summary.get('n'))}</td>"
                      f"<td>{_fmt(_get(volume, dropped))}</td></tr>")
    for label, rule in _RULE_LABELS:
        convention = _get(volume, f"lesion.{rule}.reference_convention") or {}
        spread.append(f"<tr><td>{html.escape(label)}: lesion precision, nothing marked = "
                      f"{_fmt(convention.get('empty_precision'))} ({html.escape(str(convention.get('source', '')))})"
                      f"</td><td>{_mean_std(convention.get('precision'))}</td>"
                      f"<td>{_fmt(_get(convention, 'precision.n'))}</td><td>0</td></tr>")
    counts = volume.get("counts", {})
    return f"""<h2>Whole volumes (every slice of each test patient)</h2>
<p>The paper scores only the slices that contain plaques (&sect;4.1), so a false alarm on any other
slice is never counted; here every slice of each of the {_fmt(counts.get('patients'))} test patients
({_fmt(counts.get('slices'))} slices, {_fmt(counts.get('plaque_slices'))} with plaques) is scored, as
MSSEG-2016 and WMH-2017 evaluate and as <code>plaquenet segment</code> runs, at the same threshold.
Components in 3D per patient; a patient whose metric is undefined (nothing marked, or no plaque)
is left out of that per-patient mean.</p>
<table>
{chr(10).join(rows)}
</table>
<table>
{chr(10).join(spread)}
</table>"""


def training_note(results: Dict[str, Any]) -> str:
    """What the caller said about how the net was trained (`score(training=...)`:
    `plaquenet reproduce` says what was shortened), above the results; else nothing."""
    if not results.get("training"):
        return ""
    return f"<p><strong>Training: {html.escape(str(results['training']))}</strong></p>"


def run_table(results: Dict[str, Any]) -> str:
    keys = ("snapshot", "training", "engine", "device", "precision", "deploy", "cohort", "cohort_dir", "date",
            "plaquenet")
    return "<table>\n" + "\n".join(f"<tr><td>{k}</td><td><code>{_fmt(results.get(k))}</code></td></tr>"
                                   for k in keys if k in results) + "\n</table>"


STYLE = """body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
td:first-child{text-align:left}figure{margin:1.5em 0}img{max-width:100%}figcaption{font-size:.9em;color:#555}"""


def write_report(path: PathLike, results: Dict[str, Any], figures: Sequence[Tuple[str, PathLike]]) -> Path:
    """Write the HTML page. figures: (caption, PNG path) pairs, embedded inline,
    so the page can be mailed or moved without its folder."""
    title = f"plaquenet score: {results.get('cohort', '')}"
    figure_html = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(png)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, png in figures)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Stasiak et al. 2017 (BIOIMAGING), reproduced: full-scan pixel precision, recall and F-measure
over the axial slices that contain plaques (§4.1), at the threshold that maximises the pooled
F-measure on the full training scans (§3.3, §4.3).</p>
{training_note(results)}
<h2>Results beside the paper</h2>
{comparison_table(results)}
<h2>Per patient (mean &plusmn; std over patients)</h2>
{per_patient_table(results)}
<h2>Lesion-wise detection</h2>
<p>The paper (§5) proposes counting detected lesions rather than pixels. Connected components
in 3D per test patient, and in 2D within each slice (8-connected: a plaque seen on k slices counts
k times), at the network threshold, over the slices that contain plaques (the only
ones scored; other slices count as unmarked). Counts pooled over patients; definitions in
results.json and <code>plaquenet/evaluate/lesions.py</code>.</p>
{lesion_table(results)}
{whole_volume_section(results)}
<h2>Figures</h2>
{figure_html}
<h2>What was run</h2>
{run_table(results)}
</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
