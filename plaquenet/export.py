"""Stage `export`: a trained net as one file that runs outside plaquenet.

    plaquenet export --snapshot runs/paper --format onnx --out plaquenet.onnx

The deploy net (the run folder's copy, else prototxt/plaquenet_deploy.prototxt)
with the snapshot's weights, as ONNX (opset 17, for onnxruntime and the
like) or TorchScript (`torch.jit.load`), for any batch, height and width:
input float32 (N, 1, H, W), one normalised axial FLAIR slice per item;
output the plaque probability (N, 1, H, W). The file carries what a user
outside plaquenet needs to feed it and read it (`export_metadata`): the
intensity normalisation the net was trained with, and the threshold
`plaquenet score` chose for this snapshot (RUN/score/results.json), if any.
ONNX: metadata_props (strings as is, numbers and lists as JSON text);
TorchScript: the same as the extra file `plaquenet.json`.

Written atomically; an existing OUT is refused without --force; a snapshot
that does not fit the deploy net is one line and no file."""

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, Optional

from . import __version__
from .atomic import atomic_path, refuse_existing
from .engines import EXPORT_FORMATS, export_deploy
from .engines.snapshots import find_deploy, latest_snapshot
from .errors import InputError
from .typing import PathLike

# What plaquenet.cohort.normalise_intensity does (its docstring says why), for
# software that has to repeat it; tests/unit/test_export.py checks the two agree.
NORMALISATION = {
    "normalisation": "per patient volume (all slices together, not per slice): divide the FLAIR intensities by "
                     "the 99.9th percentile (numpy's linear interpolation) of the volume's voxels > 0, then clip "
                     "to [0, 1]; a volume without positive voxels becomes all zeros. Then feed one axial slice "
                     "at a time (anterior at the top, the patient's right on the left of the image) as float32 "
                     "(1, 1, H, W), any H and W (the paper's scans: 448 x 512).",
    "normalisation_scope": "volume",
    "normalisation_percentile": 99.9,
    "normalisation_percentile_of": "voxels > 0",
    "normalisation_percentile_method": "linear",
    "normalisation_clip": [0.0, 1.0],
}


def export(snapshot: PathLike, fmt: str, out: PathLike, deploy: Optional[PathLike] = None,
           force: bool = False) -> Dict[str, Any]:
    """Write the deploy net with `snapshot`'s weights (a .caffemodel, or a run
    folder: its latest) as `fmt` ("onnx" or "torchscript") to `out`; returns
    the metadata written into it, plus "out"."""
    if fmt not in EXPORT_FORMATS:
        raise InputError("--format", f"unknown format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
    snapshot = latest_snapshot(snapshot)
    deploy = find_deploy(snapshot, deploy)
    refuse_existing(out, force)
    if Path(out).is_dir():
        raise InputError(out, "is a folder: give the file to write")
    metadata = export_metadata(snapshot, deploy)
    with atomic_path(out) as tmp:
        export_deploy(deploy, snapshot, fmt, tmp, metadata)
    return {**metadata, "out": str(out)}


def export_metadata(snapshot: Path, deploy: Path) -> Dict[str, Any]:
    """What the exported file records (JSON values): provenance, the input and
    output, NORMALISATION, and the threshold (`stored_threshold`)."""
    return {
        "producer": f"plaquenet {__version__} (Stasiak et al. 2017, doi:10.5220/0006298200550064)",
        "snapshot": snapshot.name,
        "snapshot_sha256": hashlib.sha256(snapshot.read_bytes()).hexdigest(),
        "deploy": deploy.name,
        "input": "float32 (N, 1, H, W): N axial FLAIR slices, normalised as 'normalisation' says; "
                 "any N, H and W",
        "output": "float32 (N, 1, H, W): the probability of a plaque at each pixel (the net's sigmoid)",
        **NORMALISATION,
        **stored_threshold(snapshot),
    }


def stored_threshold(snapshot: Path) -> Dict[str, Any]:
    """The threshold `plaquenet score` chose for this snapshot (§3.3: the best
    F-measure on the training scans), from RUN/score/results.json:
    {"threshold": t, "threshold_rule", "threshold_source", "threshold_scored_snapshot"}.
    Only when results.json scored this very snapshot; otherwise no "threshold"
    key, and "threshold_source" says why (none scored, or another snapshot:
    "threshold_scored_snapshot" names it). A results.json that cannot be read
    is an InputError."""
    results = snapshot.parent / "score" / "results.json"
    if not results.is_file():
        return {"threshold_source": f"none: no {results.parent.name}/{results.name} beside the snapshot "
                                    f"(run `plaquenet score` on it), so no threshold was chosen"}
    try:
        content = json.loads(results.read_text())
        threshold = float(content["threshold"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(results, f"no readable 'threshold' ({type(e).__name__}: {e})") from None
    scored = content.get("snapshot")
    scored_name = Path(scored).name if isinstance(scored, str) else None
    about = {"threshold_scored_snapshot": scored_name}
    if scored_name != snapshot.name:
        which = f"scored {scored_name}" if scored_name else "does not say which snapshot it scored"
        return {**about, "threshold_source": f"none: {results.parent.name}/{results.name} {which}, not "
                                             f"{snapshot.name} (score this snapshot to record its threshold)"}
    if not 0 <= threshold <= 1:
        raise InputError(results, f"threshold is {threshold}, outside [0, 1]")
    return {"threshold": threshold, "threshold_rule": "plaque where output >= threshold",
            "threshold_source": f"{results.parent.name}/{results.name} of this snapshot's run folder: the "
                                f"output value with the best pixel F-measure on the training scans",
            **about}
