"""The claims table (`plaquenet claims`) as figures, Markdown and one
self-contained HTML page: the paper's words, the experiment, the numbers and
the verdict of each claim."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from matplotlib.figure import Figure

from ..typing import PathLike
from .html import STYLE, png_data_uri

VERDICT_COLOUR = {"holds": "#1a7f37", "does not hold": "#b42318", "not measurable here": "#6e7781"}


def threshold_range_figure(observations: Dict[str, Any]) -> Figure:
    """§5, Fig. 9 pooled over the test scans: F-measure against threshold for the
    network output and the normalised intensity, the thresholds within 90 % of
    each one's best shaded, the training-scan thresholds dashed."""
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.subplots()
    chosen = {"network": observations["threshold"], "raw": observations["raw_threshold"]}
    for name, label, colour in (("network", "network output", "tab:red"), ("raw", "normalised intensity", "tab:blue")):
        c = observations["f_curves"][name]
        r = observations["ranges"][name]
        ax.plot(c["thresholds"], c["f1"], lw=1.3, color=colour,
                label=f"{label}: width {r['measure']:.3f} at F >= 90 % of {r['best_f1']:.3f}")
        t = np.asarray(c["thresholds"])
        f = np.asarray(c["f1"])
        ax.fill_between(t, 0, f, where=f >= 0.9 * r["best_f1"], color=colour, alpha=0.15, step=None)
        ax.axvline(chosen[name], color=colour, ls="--", lw=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("threshold (lesion where value >= threshold)")
    ax.set_ylabel("pixel F-measure, test scans")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


def regions_figure(by_run: Dict[str, Optional[Dict[str, Any]]], labels: Dict[str, str]) -> Optional[Figure]:
    """False-positive pixels on the test scans per anatomical region, one bar
    per training (C3, C5); None when no run has region maps."""
    runs = [(name, obs) for name, obs in by_run.items() if obs is not None and obs.get("regions")]
    if not runs:
        return None
    regions = [r for r in runs[0][1]["regions"] if r != "air"]
    fig = Figure(figsize=(8.0, 4.0))
    ax = fig.subplots()
    width = 0.8 / len(runs)
    x = np.arange(len(regions))
    for k, (name, obs) in enumerate(runs):
        values = [obs["regions"][r]["fp_pixels"] for r in regions]
        ax.bar(x + (k - (len(runs) - 1) / 2) * width, np.maximum(values, 0.5), width, label=labels.get(name, name))
    ax.set_yscale("log")
    ax.set_xticks(x)
    ax.set_xticklabels(regions, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("false-positive pixels, test scans")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _numbers_text(numbers: Dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k}: {fmt(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)
    return "; ".join(f"{k} = {fmt(v)}" for k, v in numbers.items())


def claims_markdown(claims: Sequence[Dict[str, Any]], about: Dict[str, Any]) -> str:
    """The table a reader scans: one row per claim."""
    lines = [f"Claims of Stasiak et al. 2017 checked on `{about.get('cohort', '')}` ({about.get('date', '')}; "
             f"{about.get('schedule', '')})", "",
             "| claim | paper | measured | verdict |", "|---|---|---|---|"]
    for c in claims:
        lines.append(f"| {c['id']} ({c['section']}) | {c['paper']} | {c['reason']} | **{c['verdict']}** |")
    lines += ["", about.get("caveat", "")]
    return "\n".join(lines) + "\n"


def write_claims_report(path: PathLike, claims: Sequence[Dict[str, Any]], about: Dict[str, Any],
                        figures: Sequence[Tuple[str, PathLike]]) -> Path:
    rows = "\n".join(
        f"<tr><td>{html.escape(c['id'])}<br><small>{html.escape(c['section'])}</small></td>"
        f"<td style='text-align:left'>{html.escape(c['paper'])}</td>"
        f"<td style='text-align:left'>{html.escape(c['experiment'])}</td>"
        f"<td style='text-align:left'>{html.escape(c['reason'])}<br><small>{html.escape(_numbers_text(c['numbers']))}"
        f"</small></td><td style='color:{VERDICT_COLOUR.get(c['verdict'], '#222')}'><b>{html.escape(c['verdict'])}"
        "</b></td></tr>" for c in claims)
    figure_html = "\n".join(
        f'<figure><img alt="{html.escape(caption)}" src="{png_data_uri(png)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, png in figures)
    runs = "\n".join(f"<tr><td>{html.escape(k)}</td><td style='text-align:left'><code>{html.escape(str(v))}</code>"
                     "</td></tr>" for k, v in about.items() if k != "caveat")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>plaquenet claims</title>
<style>{STYLE}</style></head><body>
<h1>The paper's findings, checked</h1>
<p>{html.escape(about.get('caveat', ''))}</p>
<table><tr><th>claim</th><th>the paper</th><th>experiment</th><th>measured</th><th>verdict</th></tr>
{rows}
</table>
<h2>Figures</h2>
{figure_html}
<h2>What was run</h2>
<table>{runs}</table>
</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)


__all__: List[str] = ["threshold_range_figure", "regions_figure", "claims_markdown", "write_claims_report"]
