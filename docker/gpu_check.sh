#!/usr/bin/env bash
# GPU against CPU, on a machine with an NVIDIA GPU, its driver and the NVIDIA
# Container Toolkit, in the images built before (`make docker-cuda`, `make
# docker-torch TORCH=cuda`):
#
#   docker/gpu_check.sh [ITERATIONS]     (default 20; `make gpu-check`)
#
# In plaquenet/caffe-cuda: `caffe train --gpu=0` (plaquenet train --engine
# caffe --device cuda) and `caffe train` in CPU mode; in plaquenet/torch: the
# torch engine on cuda and on cpu. Each: ITERATIONS iterations of the paper's
# solver and net (prototxt/solver.prototxt, max_iter and display changed) on
# the same tiny phantom (2 patients x 4 slices, tiles as `reproduce` makes
# them). Prints one table: wall time of the `train` call (start-up and, for
# caffe-cuda on a GPU newer than its CUDA_ARCH_BIN, the driver's one-off JIT
# of the PTX included), seconds per iteration as the log times them (median
# over iterations 2..N), the smoothed loss at the last iteration and its
# difference to the same image's CPU run (float32: expect ~1e-6 relative, not
# 0: cuBLAS and the CUDA kernels sum in another order).
#
# CONTAINER_ENGINE=docker|podman (default: docker where installed, else
# podman; podman gets the GPU by CDI: `nvidia-ctk cdi generate --output=
# /etc/cdi/nvidia.yaml` once). IMAGES="plaquenet/caffe-cuda plaquenet/torch"
# picks the images; one missing is reported, its rows left out.
set -euo pipefail
iterations=${1:-20}
engine=${CONTAINER_ENGINE:-$(command -v docker >/dev/null && echo docker || echo podman)}
images=${IMAGES:-plaquenet/caffe-cuda plaquenet/torch}
gpus=(--gpus all)
[ "$engine" = podman ] && gpus=(--device nvidia.com/gpu=all)

# Runs inside each image, in /plaquenet: the phantom and its tiles once, then
# train on each device; one JSON line per run on stdout ("gpu_check: {...}").
inside=$(cat <<'EOF'
set -eu
plaquenet phantom data/phantom-studies --patients 2 --slices 4 --force >/dev/null
plaquenet import data/phantom-studies/dicom --cohort data/phantom --force >/dev/null
plaquenet tiles --cohort data/phantom --force >/dev/null
python3 - "$ITERATIONS" <<'PY'
import json, re, statistics, sys, time
from pathlib import Path
from plaquenet.train import train
iterations = int(sys.argv[1])
engine = __import__("os").environ["ENGINE"]
solver = Path("prototxt/solver.prototxt").read_text()
for device in ("cuda", "cpu"):
    path = Path(f"prototxt/gpu-check-{device}.prototxt")
    text = re.sub(r"(?m)^ *max_iter:.*$", f"max_iter: {iterations}", solver)
    text = re.sub(r"(?m)^ *display:.*$", "display: 1", text)
    text = re.sub(r"(?m)^ *snapshot_prefix:.*$", f'snapshot_prefix: "runs/gpu-check-{device}/plaquenet"', text)
    path.write_text(text)
    row = {"engine": engine, "device": device}
    started = time.perf_counter()
    try:
        result = train(path, engine=engine, device=device, force=True, on_estimate=lambda line: None)
        row.update(wall=time.perf_counter() - started, loss=result.final_loss, iterations=result.iterations)
        log = Path(f"runs/gpu-check-{device}/train.log").read_text(errors="replace")
        rates = [float(r) for it, r in re.findall(r"Iteration (\d+) \(([0-9.eE+-]+) iter/s", log) if int(it) > 1]
        row["s_per_iter"] = 1 / statistics.median(rates) if rates and statistics.median(rates) > 0 else None
    except Exception as error:   # one failed run is a row of the table, not the end of the check
        row["error"] = f"{type(error).__name__}: {error}"[:200]
    print("gpu_check: " + json.dumps(row), flush=True)
PY
EOF
)

rows=()
missing=()
for image in $images; do
    if ! "$engine" image inspect "$image" >/dev/null 2>&1; then missing+=("$image"); continue; fi
    echo "gpu_check: $image ($iterations iterations on cuda, then on cpu) ..." >&2
    image_engine=$("$engine" image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | sed -n 's/^ENGINE=//p')
    out=$("$engine" run --rm "${gpus[@]}" -e ITERATIONS="$iterations" -e ENGINE="${image_engine:-caffe}" \
          "$image" sh -c "$inside" 2>"${TMPDIR:-/tmp}/gpu_check.$$.log") || {
        tail -n 20 "${TMPDIR:-/tmp}/gpu_check.$$.log" >&2; echo "gpu_check: $image failed (above)" >&2; }
    while IFS= read -r line; do rows+=("$image ${line#gpu_check: }"); done < <(grep '^gpu_check: ' <<<"$out" || true)
    "$engine" run --rm "${gpus[@]}" "$image" sh -c 'nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || true' \
        | sed "s|^|gpu_check: $image sees |" >&2 || true
done
rm -f "${TMPDIR:-/tmp}/gpu_check.$$.log"

printf '%s\n' "${rows[@]}" | python3 -c '
import json, sys
rows = []
for line in sys.stdin:
    if line.strip():
        image, _, data = line.partition(" ")
        rows.append(dict(json.loads(data), image=image))
cpu = {r["image"]: r.get("loss") for r in rows if r["device"] == "cpu"}
form = "{:22} {:6} {:6} {:>8} {:>9} {:>12} {:>10}"
print(form.format("image", "engine", "device", "wall s", "s/iter", "loss", "vs cpu"))
for r in rows:
    if "error" in r:
        print("{:22} {:6} {:6} failed: {}".format(r["image"], r["engine"], r["device"], r["error"]))
        continue
    ref, loss, spi = cpu.get(r["image"]), r.get("loss"), r.get("s_per_iter")
    diff = "" if r["device"] == "cpu" or ref is None or loss is None else "{:+.2e}".format(loss - ref)
    print(form.format(r["image"], r["engine"], r["device"], "{:.1f}".format(r["wall"]),
                      "n/a" if spi is None else "{:.4f}".format(spi), "n/a" if loss is None else "{:.6g}".format(loss), diff))
'
for image in "${missing[@]}"; do echo "gpu_check: no image $image here (make docker-cuda / make docker-torch TORCH=cuda)"; done
