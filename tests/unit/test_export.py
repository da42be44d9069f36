"""plaquenet/export.py and engines/torch/export.py on tiny nets: the exported
file runs any batch and slice size as the engine does, carries the threshold
and the normalisation, loads without plaquenet; bad input is one line, exit 2,
and no file (issue #16, "Trained nets out")."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tiny_nets
from onnx_runtime import onnxruntime
from plaquenet import cli
from plaquenet.caffe.snapshot import write_caffemodel
from plaquenet.cohort import normalise_intensity
from plaquenet.engines import get_engine
from plaquenet.engines.torch.export import ONNX_IR_VERSION, ONNX_OPSET, TORCHSCRIPT_METADATA
from plaquenet.export import NORMALISATION, export, export_metadata

SIZES = [(50, 50), (7, 13), (1, 1)]


@pytest.fixture
def run(tmp_path):
    """tmp_path/runs/tiny: the 4-channel 5x5 `two_conv` deploy net and its snapshot at iteration 30."""
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    (run_dir / "tiny_deploy.prototxt").write_text(tiny_nets.two_conv_deploy(8, 8, channels=4, kernel_size=5))
    write_caffemodel(run_dir / "tiny_iter_30.caffemodel", tiny_nets.tiny_weights(tiny_nets.random_two_conv_weights(3)))
    return run_dir


def _engine(run_dir):
    return get_engine("torch").load_deploy(run_dir / "tiny_deploy.prototxt", run_dir / "tiny_iter_30.caffemodel")


def _scores(results: Path, snapshot: str, threshold: float = 0.25):
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps({"snapshot": snapshot, "threshold": threshold}))


def test_the_torchscript_file_gives_the_engines_output_for_any_slice_size_and_batch(run, tmp_path):
    out = tmp_path / "net.pt"
    export(run, "torchscript", out)
    forward, loaded = _engine(run), torch.jit.load(str(out))
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        images = rng.random((3, h, w), dtype=np.float32)
        with torch.no_grad():
            probs = loaded(torch.from_numpy(images)[:, None]).numpy()
        assert probs.shape == (3, 1, h, w)
        for image, prob in zip(images, probs):
            np.testing.assert_allclose(prob[0], forward(image), rtol=0, atol=1e-6)


def test_the_onnx_file_gives_the_engines_output_for_any_slice_size_and_batch(run, tmp_path):
    ort = onnxruntime()
    import onnx
    out = tmp_path / "net.onnx"
    export(run, "onnx", out)
    model = onnx.load(str(out))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [ONNX_OPSET]
    assert model.ir_version == ONNX_IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["data"] and [o.name for o in session.get_outputs()] == ["prob"]
    forward = _engine(run)
    rng = np.random.default_rng(1)
    for h, w in SIZES:
        images = rng.random((3, h, w), dtype=np.float32)
        (probs,) = session.run(None, {"data": images[:, None]})
        assert probs.shape == (3, 1, h, w)
        for image, prob in zip(images, probs):
            np.testing.assert_allclose(prob[0], forward(image), rtol=0, atol=1e-6)


def test_the_onnx_metadata_holds_the_threshold_and_the_normalisation(run, tmp_path):
    ort = onnxruntime()
    _scores(run / "score" / "results.json", "runs/tiny/tiny_iter_30.caffemodel", 0.375)
    export(run, "onnx", tmp_path / "net.onnx")
    props = ort.InferenceSession(str(tmp_path / "net.onnx")).get_modelmeta().custom_metadata_map
    assert float(props["threshold"]) == 0.375 and props["threshold_scored_snapshot"] == "tiny_iter_30.caffemodel"
    assert props["snapshot"] == "tiny_iter_30.caffemodel" and props["deploy"] == "tiny_deploy.prototxt"
    assert float(props["normalisation_percentile"]) == 99.9 and json.loads(props["normalisation_clip"]) == [0, 1]
    assert props["normalisation"] == NORMALISATION["normalisation"]


def test_the_torchscript_file_loads_and_runs_without_plaquenet(run, tmp_path):
    _scores(run / "score" / "results.json", "tiny_iter_30.caffemodel", 0.5)
    out = tmp_path / "net.pt"
    export(run, "torchscript", out)
    # plaquenet blocked in the child: any import of it would raise ImportError.
    code = (f"import sys, json, torch; sys.modules['plaquenet'] = None; extra = {{{TORCHSCRIPT_METADATA!r}: ''}}; "
            f"m = torch.jit.load(sys.argv[1], _extra_files=extra); "
            f"p = m(torch.zeros(2, 1, 9, 11)); meta = json.loads(extra[{TORCHSCRIPT_METADATA!r}]); "
            f"print(tuple(p.shape), meta['threshold'], meta['normalisation_percentile'])")
    done = subprocess.run([sys.executable, "-I", "-c", code, str(out)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(2,", "1,", "9,", "11)", "0.5", "99.9"]


def test_the_threshold_is_recorded_only_when_results_json_scored_this_snapshot(run):
    snapshot, deploy = run / "tiny_iter_30.caffemodel", run / "tiny_deploy.prototxt"
    unscored = export_metadata(snapshot, deploy)
    assert "threshold" not in unscored and unscored["threshold_source"].startswith("none: no score/results.json")
    _scores(run / "score" / "results.json", str(run / "tiny_iter_20.caffemodel"))
    other = export_metadata(snapshot, deploy)
    assert "threshold" not in other and other["threshold_scored_snapshot"] == "tiny_iter_20.caffemodel"
    assert "tiny_iter_20.caffemodel, not tiny_iter_30.caffemodel" in other["threshold_source"]
    _scores(run / "score" / "results.json", str(snapshot), 0.625)
    assert export_metadata(snapshot, deploy)["threshold"] == 0.625


def test_the_recorded_normalisation_is_what_normalise_intensity_does():
    rng = np.random.default_rng(2)
    flair_shw = rng.gamma(2.0, 100.0, (3, 20, 30)).astype(np.float32) * (rng.random((3, 20, 30)) > 0.3)
    scale = np.percentile(flair_shw[flair_shw > 0], NORMALISATION["normalisation_percentile"], method="linear")
    low, high = NORMALISATION["normalisation_clip"]
    np.testing.assert_allclose(np.clip(flair_shw / np.float32(scale), low, high), normalise_intensity(flair_shw),
                               rtol=1e-6, atol=0)
    assert NORMALISATION["normalisation_percentile_of"] == "voxels > 0"


def test_force_replaces_an_earlier_export(run, tmp_path):
    out = tmp_path / "net.pt"
    out.write_text("an earlier file")
    assert cli.main(["export", "--snapshot", str(run), "--format", "torchscript", "--out", str(out), "--force"]) == 0
    assert torch.jit.load(str(out)) is not None and not list(tmp_path.glob(".*.partial"))


def _mismatched(run):
    # 3-channel deploy net for the 4-channel snapshot
    deploy = run.parent / "three.prototxt"
    deploy.write_text(tiny_nets.two_conv_deploy(8, 8, channels=3, kernel_size=5))
    return ["--deploy", str(deploy)], "layer 'conv1' blob 0: shape (4, 1, 5, 5) in the file, (3, 1, 5, 5) in the net"


def _existing(run):
    (run.parent / "net.out").write_text("an earlier file")
    return [], "already exists (use --force to replace it)"


def _corrupt_scores(run):
    (run / "score").mkdir()
    (run / "score" / "results.json").write_text("{not json")
    return [], "results.json: no readable 'threshold'"


def _no_snapshot(run):
    return ["--snapshot", str(run / "tiny_iter_99.caffemodel")], "no such snapshot file or run folder"


def _no_deploy(run):
    return ["--deploy", str(run / "missing.prototxt")], "no such deploy prototxt"


def _out_is_a_folder(run):
    (run.parent / "net.out").mkdir()
    return ["--force"], "is a folder: give the file to write"


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("bad", [_mismatched, _existing, _corrupt_scores, _no_snapshot, _no_deploy, _out_is_a_folder],
                         ids=lambda f: f.__name__.strip("_"))
def test_bad_input_is_one_line_exit_2_and_no_file(run, capsys, bad, fmt):
    out = run.parent / "net.out"
    extra, message = bad(run)
    before = sorted(p.name for p in run.parent.iterdir())
    argv = ["export", "--snapshot", str(run), "--format", fmt, "--out", str(out)] + extra
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plaquenet export: error: ") and message in err, err
    assert sorted(p.name for p in run.parent.iterdir()) == before   # nothing written, nothing half-written
    assert not out.is_file() or out.read_text() == "an earlier file"


def test_an_export_that_fails_midway_leaves_no_file(run, tmp_path, monkeypatch):
    def half_written(deploy, snapshot, fmt, out, metadata):
        Path(out).write_bytes(b"half a model")
        raise RuntimeError("the exporter stopped")

    monkeypatch.setattr("plaquenet.export.export_deploy", half_written)
    with pytest.raises(RuntimeError):
        export(run, "onnx", tmp_path / "net.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]
