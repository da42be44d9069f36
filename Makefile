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
CAFFE_ROOT ?= build/caffe-root

.PHONY: demo test tiles train score clean venv proto caffe-root bench

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
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
	$(MAKE) --no-print-directory tiles COHORT=demo
	rm -rf runs/demo
	$(PN) train --engine torch --solver prototxt/solver_demo.prototxt
	$(PN) score --snapshot runs/demo --cohort data/current --force
	@echo
	@echo "demo done: cohort data/demo, tiles data/demo/tiles, run runs/demo,"
	@echo "           results runs/demo/score/results.json, report runs/demo/score/report.html"

# Paper §4.1 tiles for data/$(COHORT); data/current points at the tile set that
# the train prototxt's HDF5Data reads (data/current/tiles/train.txt).
tiles: venv
	$(PN) tiles --cohort data/$(COHORT) --force
	ln -sfn $(COHORT) data/current

# The paper's solver by default (SGD, lr 1e-5, momentum 0.9).
train: venv
	$(PN) train --engine torch --solver $(SOLVER)

# Scores the latest snapshot of the current run.
score: venv
	$(PN) score --snapshot $(RUN) --cohort data/current --force

# The suite, conformance tests against real Caffe 1.0 included: as root the
# Caffe root is built first (once, ~1 min); otherwise those tests skip.
test: $(VENV)/.test-installed
	@if [ "$$(id -u)" = 0 ]; then tools/make_caffe_root.sh $(CAFFE_ROOT); \
	else echo "not root: the conformance tests against real Caffe will skip"; fi
	PLAQUENET_CAFFE_ROOT=$(abspath $(CAFFE_ROOT)) $(BIN)/python -m pytest -q tests

# Speed, side by side with real Caffe 1.0 when its root exists (see bench/).
bench: venv
	$(BIN)/python bench/bench_engine.py --caffe-root $(CAFFE_ROOT)
	$(BIN)/python bench/bench_tiles.py

# Real Caffe 1.0 (CPU, Debian bullseye) in a folder, for the conformance tests
# and side-by-side benchmarks; needs root.
caffe-root:
	tools/make_caffe_root.sh $(CAFFE_ROOT)

# Regenerates plaquenet/caffe/caffe_pb2.py (+ its .sha256 stamp) from caffe.proto
# with protobuf's own protoc (apt-get install protobuf-compiler).
proto:
	$(BIN)/python -m plaquenet.caffe.regenerate

clean:
	rm -rf data runs
