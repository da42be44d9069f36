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

.PHONY: demo test tiles train score clean venv proto caffe-root bench

venv: $(VENV)/.installed

# torch 2.13.0 (the engine) needs Python >= 3.10; on 3.9 only the data and
# evaluation code install (pycaffe's Python in Debian bullseye).
$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "plaquenet needs Python >= 3.10 (torch 2.13.0); $(PYTHON) is $$($(PYTHON) -V 2>&1): give PYTHON=python3.11 or newer"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
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

# The suite, conformance tests against real Caffe included: as root the
# Caffe root is built first (once, ~1 min); otherwise those tests skip.
test: $(VENV)/.test-installed
	$(BIN)/python -m mypy plaquenet
	@if [ "$$(id -u)" = 0 ]; then tools/make_caffe_root.sh $(CAFFE_ROOT); \
	else echo "not root: the conformance tests against real Caffe will skip"; fi
	PLAQUENET_CAFFE_ROOT=$(abspath $(CAFFE_ROOT)) $(BIN)/python -m pytest -q tests

# Speed, side by side with real Caffe when its root exists (see bench/).
bench: venv
	$(BIN)/python bench/bench_engine.py --caffe-root $(CAFFE_ROOT)
	$(BIN)/python bench/bench_tiles.py

# Real Caffe (Debian bullseye's 1.0.0+git20180821.99bd997, CPU) in a folder, for the conformance tests
# and side-by-side benchmarks; needs root.
caffe-root:
	tools/make_caffe_root.sh $(CAFFE_ROOT)

# Regenerates plaquenet/caffe/caffe_pb2.py (+ its .sha256 stamp) from caffe.proto
# with protobuf's own protoc (apt-get install protobuf-compiler).
proto:
	$(BIN)/python -m plaquenet.caffe.regenerate

clean:
	rm -rf data runs
