"""The main job end to end on a tiny phantom cohort, through the CLI, as
`make demo` runs it: phantom -> import (DICOM + RTSTRUCT/SEG) -> tiles ->
train -> score -> segment; then no fake patient data anywhere in what was
written but the SEG meant for the hospital."""

import json
from pathlib import Path

from plaquenet.caffe.prototxt import prototxt_text, read_solver
from plaquenet.cli import main
from plaquenet.phantom import fake_patients

REPO = Path(__file__).resolve().parents[2]


def paper_solver_for_4_iterations() -> str:
    """The paper's solver (prototxt/solver.prototxt) with only the schedule
    test-sized; the net is the paper's train prototxt, unchanged."""
    param = read_solver(REPO / "prototxt" / "solver.prototxt")
    param.net = str(REPO / "prototxt" / "plaquenet_train.prototxt")
    param.max_iter, param.snapshot, param.display, param.average_loss = 4, 2, 1, 1
    param.snapshot_prefix = "runs/it/plaquenet"
    return prototxt_text(param)


def test_phantom_to_report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # prototxt paths resolve against the working directory, as in Caffe
    assert main(["phantom", "phantom", "--patients", "2", "--slices", "6", "--seed", "1"]) == 0
    assert main(["import", "phantom/dicom", "--cohort", "data/it"]) == 0
    assert main(["tiles", "--cohort", "data/it"]) == 0
    assert Path("data/current").resolve() == Path("data/it").resolve()  # what the train prototxt reads
    Path("solver.prototxt").write_text(paper_solver_for_4_iterations())
    assert main(["train", "--solver", "solver.prototxt"]) == 0
    assert sorted(p.name for p in Path("runs/it").glob("*_iter_*")) == [
        "plaquenet_iter_2.caffemodel", "plaquenet_iter_2.data_position.json", "plaquenet_iter_2.solverstate",
        "plaquenet_iter_4.caffemodel", "plaquenet_iter_4.data_position.json", "plaquenet_iter_4.solverstate"]
    assert (Path("runs/it") / "plaquenet_deploy.prototxt").is_file()  # train keeps the deploy net with the run
    assert main(["train", "--solver", "solver.prototxt"]) == 2  # an earlier run is not overwritten silently
    assert main(["score", "--snapshot", "runs/it"]) == 0  # data/current, the run's deploy net: no paths needed
    study = next(Path("phantom/dicom").iterdir())
    assert main(["segment", str(study), "--snapshot", "runs/it", "--out", "segment-out"]) == 0

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
    written = [f for top in ("data", "runs", "segment-out") for f in Path(top).rglob("*")
               if f.is_file() and f.name != "segmentation.dcm"]  # the SEG carries the study's patient module
    assert len(written) > 10
    for f in written:
        blob = f.read_bytes()
        for s in secrets:
            assert s.encode() not in blob, f"{s!r} leaked into {f}"
