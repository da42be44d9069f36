"""The main job end to end on a tiny phantom cohort, through the CLI, as
`make demo` runs it: phantom -> import (DICOM + RTSTRUCT/SEG) -> tiles ->
train -> score; then no fake patient data anywhere in what was written."""

import json
import os
from pathlib import Path

from plaquenet.cli import main
from plaquenet.phantom import fake_patients

REPO = Path(__file__).resolve().parents[2]

# A test solver: the paper's net for 4 iterations. Only the schedule is
# test-sized; the net is the paper's train prototxt, unchanged.
SOLVER = f"""
net: "{REPO / 'prototxt' / 'plaquenet_train.prototxt'}"
type: "SGD"
base_lr: 0.00001
momentum: 0.9
lr_policy: "fixed"
display: 1
max_iter: 4
snapshot: 2
snapshot_prefix: "runs/it/plaquenet"
random_seed: 0
"""


def test_phantom_to_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # prototxt paths resolve against the working directory, as in Caffe
    assert main(["phantom", "phantom", "--patients", "2", "--slices", "6", "--seed", "1"]) == 0
    assert main(["import", "phantom/dicom", "--cohort", "data/it"]) == 0
    assert main(["tiles", "--cohort", "data/it"]) == 0
    os.symlink("it", "data/current")
    Path("solver.prototxt").write_text(SOLVER)
    assert main(["train", "--solver", "solver.prototxt"]) == 0
    assert sorted(p.name for p in Path("runs/it").glob("*_iter_*")) == [
        "plaquenet_iter_2.caffemodel", "plaquenet_iter_2.solverstate",
        "plaquenet_iter_4.caffemodel", "plaquenet_iter_4.solverstate"]
    assert main(["score", "--snapshot", "runs/it", "--cohort", "data/current",
                 "--deploy", str(REPO / "prototxt" / "plaquenet_deploy.prototxt")]) == 0

    results = json.loads(Path("runs/it/score/results.json").read_text())
    assert results["snapshot"].endswith("plaquenet_iter_4.caffemodel")
    assert results["counts"]["train"]["patients"] == 1 and results["counts"]["test"]["patients"] == 1
    for side in ("train", "test"):
        assert 0 <= results[side]["pixel"]["f1"] <= 1
    assert 0 <= results["threshold"] <= 1
    assert "data:image/png;base64," in Path("runs/it/score/report.html").read_text()

    # The phantom's DICOM headers and folder names carry fake PHI: none of it
    # may reach anything the toolkit wrote after the import.
    secrets = set()
    for p in fake_patients(1, 2):
        secrets |= {p.folder, p.name, p.name.split("^")[0], p.patient_id, p.birth_date, p.institution,
                    p.referring_physician, p.accession}
    written = [f for top in ("data", "runs") for f in Path(top).rglob("*") if f.is_file()]
    assert len(written) > 10
    for f in written:
        blob = f.read_bytes()
        for s in secrets:
            assert s.encode() not in blob, f"{s!r} leaked into {f}"
