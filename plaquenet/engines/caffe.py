"""Real Caffe as an engine: `caffe train` for training, pycaffe for the deploy
forward pass. Same files in and out as the torch engine, no torch needed
(this module runs inside the Caffe root or the Docker image).

    train("prototxt/solver.prototxt")          # runs `caffe train --solver=...`
    forward = load_deploy("prototxt/plaquenet_deploy.prototxt", "x.caffemodel")
    prob_hw = forward(flair_hw)                # any H x W

`train` needs the `caffe` binary on PATH; `load_deploy` needs `import caffe`.
Caffe's glog output (stderr) is shown and written to RUN_DIR/train.log, so
the run folder reads like one of the torch engine (no train.csv: the
training curve comes from train.log)."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..caffe.prototxt import read_net, read_solver
from ..caffe.snapshot import blob_shape, read_caffemodel
from ..errors import InputError
from ..caffe.log import caffe_log_losses
from ..typing import PathLike
from . import Forward, device_index, parse_device
from .run import TrainResult, estimate_line, prepare_run_dir
from .signals import SIGHUP_EFFECT, SIGINT_EFFECT, check_effect, forwarded_to
from .snapshots import SNAPSHOT_NAME

if TYPE_CHECKING:
    from ..caffe import caffe_pb2

# Caffe 1.0 solver.cpp: "Snapshotting to binary proto file X" (and "... HDF5 file X").
SNAPSHOT_LINE = re.compile(r"Snapshotting to (?:binary proto|HDF5) file (\S+)")
FATAL_LINE = re.compile(r"^F\d{4} |Check failed|Error parsing|Aborted")
RATE_LINE = re.compile(r"Iteration (\d+) \(([0-9.eE+-]+) iter/s")
STOPPED_LINE = re.compile(r"\] Optimization stopped early\.$")   # solver.cpp:311: a signal stopped it
NVIDIA_DEVICE = Path("/dev/nvidiactl")   # present where an NVIDIA driver (or the container toolkit) gives a GPU


class CaffeEngine:
    """The engine interface (plaquenet.engines.Engine) over real Caffe."""

    name = "caffe"

    def check_device(self, device: str) -> str:
        """A GPU must be visible before Caffe is asked for one: Caffe aborts the
        whole process (LOG(FATAL)) where a CPU-only build or a machine without
        a GPU is asked for GPU mode."""
        canonical = parse_device(device)
        if canonical != "cpu" and not NVIDIA_DEVICE.exists():
            raise InputError("--device", f"'{device}': no NVIDIA GPU is visible here ({NVIDIA_DEVICE} is missing); "
                                         f"use --device cpu")
        return canonical

    def train(self, solver: PathLike, weights: Optional[PathLike] = None, snapshot: Optional[PathLike] = None,
              device: str = "cpu", on_estimate: Optional[Callable[[str], None]] = None,
              **options: Any) -> TrainResult:
        """`options`: caffe_bin, level, stages, sigint_effect, sighup_effect; precision fp32 only."""
        check_fp32(options.pop("precision", "fp32"))
        return train(solver, weights=weights, snapshot=snapshot, device=self.check_device(device),
                     on_estimate=on_estimate, **options)

    def load_deploy(self, deploy: PathLike, snapshot: PathLike, device: str = "cpu",
                    precision: str = "fp32") -> Forward:
        check_fp32(precision)
        return load_deploy(deploy, snapshot, device=self.check_device(device))


def check_fp32(precision: str) -> None:
    if precision != "fp32":
        raise InputError("--precision", f"{precision}: real Caffe computes in float32 only (bf16 and tf32 are "
                                        "modes of the torch engine, --engine torch)")


def train(solver_path: PathLike, weights: Optional[PathLike] = None, snapshot: Optional[PathLike] = None,
          device: str = "cpu", caffe_bin: str = "caffe",
          on_estimate: Optional[Callable[[str], None]] = None, level: int = 0,
          stages: Sequence[str] = (), sigint_effect: str = SIGINT_EFFECT,
          sighup_effect: str = SIGHUP_EFFECT) -> TrainResult:
    """Run `caffe train --solver=S [--weights=W | --snapshot=S] [--gpu=N]
    [--level=L] [--stage=a,b] [--sigint_effect=E] [--sighup_effect=E]` in the
    working directory (paths in the solver are relative to it, as always);
    the solver and net are copied into the run folder first, Caffe's log is
    teed to RUN_DIR/train.log (appended when resuming). Caffe runs in its own
    session and gets the SIGINT and SIGHUP sent to this process (engines.signals).
    InputError when the binary is missing or Caffe fails (its fatal line quoted)."""
    started = time.perf_counter()
    solver_path = Path(solver_path)
    check_effect("--sigint-effect", sigint_effect)   # Caffe would abort on a bad one
    check_effect("--sighup-effect", sighup_effect)
    param = read_solver(solver_path)
    if weights and snapshot:
        raise InputError(snapshot, "give a snapshot to resume or weights to fine-tune, not both")
    binary = shutil.which(caffe_bin)
    if binary is None:
        raise InputError(caffe_bin, "not found on PATH (the caffe engine runs the real `caffe` binary)")
    run_dir, _ = prepare_run_dir(param, solver_path)
    command = [binary, "train", f"--solver={solver_path}"]
    if weights:
        command.append(f"--weights={weights}")
    if snapshot:
        command.append(f"--snapshot={snapshot}")
    command += _device_flags(device) + _state_flags(level, stages) + _signal_flags(sigint_effect, sighup_effect)
    estimate = _rate_watcher(param.max_iter, parse_device(device), on_estimate)
    lines = _run_teed(command, run_dir / "train.log", append=snapshot is not None, watch=estimate)
    if lines.returncode != 0:
        fatal = [line for line in lines if FATAL_LINE.search(line)]
        raise InputError(solver_path, f"caffe train failed (exit {lines.returncode}): "
                                      f"{(fatal or lines or ['no output'])[-1].strip()}")
    return _result(run_dir, lines, time.perf_counter() - started)


def load_deploy(deploy_prototxt: PathLike, caffemodel: PathLike, device: str = "cpu") -> Forward:
    """forward(image_hw float32 (H, W)) -> float32 (H, W) through pycaffe: the
    deploy net's single output for one slice of any size (the Input is
    reshaped to each slice). The weights are checked against the net first
    (every layer with blobs present, same shapes), since Caffe aborts the
    process, or silently keeps zeros, where they do not match."""
    caffe = _import_pycaffe()
    if device == "cpu":
        caffe.set_mode_cpu()
    else:
        caffe.set_mode_gpu()
        caffe.set_device(device_index(parse_device(device)))
    net_param = read_net(deploy_prototxt)   # our parser: a syntax error is an InputError, not an abort
    inputs = [top for layer in net_param.layer if layer.type == "Input" for top in layer.top]
    net = caffe.Net(str(deploy_prototxt), caffe.TEST)
    _check_weights(net, read_caffemodel(caffemodel), caffemodel)
    net.copy_from(str(caffemodel))
    if len(inputs) != 1 or len(net.outputs) != 1:
        raise InputError(deploy_prototxt, f"a deploy net needs one Input top and one output, has inputs "
                                          f"{inputs} and outputs {list(net.outputs)}")
    (name,), (output,) = inputs, net.outputs
    if net.blobs[name].data.ndim != 4 or net.blobs[name].data.shape[1] != 1:
        raise InputError(deploy_prototxt, f"Input '{name}' has shape {net.blobs[name].data.shape}: "
                                          f"expected (N, 1, H, W)")

    def forward(image_hw: np.ndarray) -> np.ndarray:
        if image_hw.ndim != 2:
            raise ValueError(f"expected one (H, W) slice, got shape {image_hw.shape}")
        blob = net.blobs[name]
        if blob.data.shape != (1, 1) + image_hw.shape:
            blob.reshape(1, 1, *image_hw.shape)
            net.reshape()
        blob.data[0, 0] = image_hw
        return np.array(net.forward()[output][0, 0], dtype=np.float32, copy=True)

    forward.net = net  # type: ignore[attr-defined]
    return forward


# --- helpers -------------------------------------------------------------------

class _Lines(list):
    returncode = 0


def _rate_watcher(max_iter: int, device: str, report: Optional[Callable[[str], None]]) -> Callable[[str], None]:
    """Reports `estimate_line` once, at the first `Iteration N (X iter/s, ...)` line
    after iteration 0 (Caffe's own timing of its display interval)."""
    state: Dict[str, Optional[Callable[[str], None]]] = {"report": report}

    def watch(line: str) -> None:
        report = state["report"]
        m = RATE_LINE.search(line) if report else None
        if report and m and int(m.group(1)) > 0 and float(m.group(2)) > 0:
            report(estimate_line(1 / float(m.group(2)), max_iter - int(m.group(1)), device))
            state["report"] = None
    return watch


def _run_teed(command: List[str], log_path: Path, append: bool,
              watch: Optional[Callable[[str], None]] = None) -> _Lines:
    """Run `command`, its stderr shown and written to `log_path` line by line
    (a crash leaves the log up to the crash); return the lines and exit code."""
    env = dict(os.environ)
    env.setdefault("GLOG_logtostderr", "1")   # glog's files in /tmp would hold a second copy
    pythonpath = python_layer_path(env.get("PYTHONPATH", ""))
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    lines = _Lines()
    with open(log_path, "a" if append else "w", buffering=1) as log:
        # Its own session: a Ctrl-C in the terminal reaches it once, forwarded by us, and we go on
        # reading its log until it ends (Caffe snapshots, then logs "Optimization stopped early.").
        process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env, text=True, errors="replace",
                                   start_new_session=True)
        assert process.stderr is not None  # stderr=PIPE
        try:
            with forwarded_to(process.pid):
                for line in process.stderr:
                    log.write(line)
                    sys.stderr.write(line)
                    lines.append(line)
                    if watch:
                        watch(line)
        finally:
            process.stderr.close()
            lines.returncode = process.wait()
    return lines


def python_layer_path(pythonpath: str) -> str:
    """PYTHONPATH for `caffe train`, whose own Python imports the Python layers
    of a prototxt (`python_param { module: "plaquenet.caffe_layers" }`): run
    from a source checkout, its root goes first; an installed plaquenet (the
    Docker image) is on Caffe's Python's path already."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "pyproject.toml").is_file():
        return pythonpath
    return os.pathsep.join([str(checkout)] + ([pythonpath] if pythonpath else []))


def _result(run_dir: Path, lines: List[str], seconds: float) -> TrainResult:
    snapshots = [m.group(1) for m in map(SNAPSHOT_LINE.search, lines) if m]
    models = [s for s in snapshots if SNAPSHOT_NAME.search(s)]
    last = Path(models[-1]) if models else None
    losses = caffe_log_losses(lines)
    last_model = SNAPSHOT_NAME.search(models[-1]) if models else None
    iterations = int(last_model.group(1)) if last_model else 0
    if losses:
        iterations = max(iterations, losses[-1][0])
    stopped = any(STOPPED_LINE.search(line.rstrip("\n")) for line in lines)
    return TrainResult(run_dir, last, iterations, losses[-1][1] if losses else None, seconds, stopped_early=stopped)


def _state_flags(level: int, stages: Sequence[str]) -> List[str]:
    """--level and --stage, only where they differ from Caffe's defaults (0, "")."""
    flags = [f"--level={level}"] if level else []
    stage = ",".join(stages)
    return flags + ([f"--stage={stage}"] if stage else [])


def _signal_flags(sigint_effect: str, sighup_effect: str) -> List[str]:
    """--sigint_effect and --sighup_effect, only where they differ from Caffe's defaults."""
    flags = [f"--sigint_effect={sigint_effect}"] if sigint_effect != SIGINT_EFFECT else []
    return flags + ([f"--sighup_effect={sighup_effect}"] if sighup_effect != SIGHUP_EFFECT else [])


def _device_flags(device: str) -> List[str]:
    device = parse_device(device)
    return [] if device == "cpu" else [f"--gpu={device_index(device)}"]


def _import_pycaffe() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")   # before glog starts: no per-layer INFO lines
    try:
        import caffe
    except ImportError as e:
        raise InputError("caffe", f"pycaffe cannot be imported ({e}); the caffe engine needs Caffe's "
                                  f"Python module (see tools/make_caffe_root.sh)") from None
    return caffe


def _check_weights(net: Any, model: "caffe_pb2.NetParameter", caffemodel: PathLike) -> None:
    saved = {layer.name: layer.blobs for layer in model.layer if layer.blobs}
    for name, blobs in net.params.items():
        if name not in saved:
            raise InputError(caffemodel, f"no weights for layer '{name}'")
        if len(saved[name]) != len(blobs):
            raise InputError(caffemodel, f"layer '{name}': {len(saved[name])} blobs, the net needs {len(blobs)}")
        for i, (blob, param) in enumerate(zip(saved[name], blobs)):
            shape = blob_shape(blob)
            legacy = not blob.HasField("shape")   # Caffe compares old N,C,H,W blobs by size only
            if int(np.prod(shape)) != param.data.size or (not legacy and shape != param.data.shape):
                raise InputError(caffemodel, f"layer '{name}' blob {i}: shape {blob_shape(blob)}, "
                                             f"the net needs {param.data.shape}")
