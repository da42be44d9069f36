#!/usr/bin/env bash
# The paper's pipeline in a container (the default command of both images):
# cohort -> tiles (§4.1) -> train (the paper's solver) -> score (§3.3, §4.3).
# Runs in the image's /plaquenet, where prototxt/ is, data/ is /data and
# runs/ is /runs: the paths inside the prototxt files resolve as in a checkout.
#
# The cohort, first found of:
#   /data/$COHORT/cohort.h5   a cohort imported before (`plaquenet import`),
#                             e.g. the checkout's data/ mounted at /data
#   $STUDIES (/studies)       patient folders (DICOM or NIfTI + outlines),
#                             imported into /data/$COHORT
#   the embedded phantom      PHANTOM_PATIENTS x PHANTOM_SLICES, said so
# Settings (environment, all optional):
#   ENGINE    caffe | torch (the image's own by default)   DEVICE  cpu | cuda[:N]
#   SOLVER    default prototxt/solver.prototxt: the paper's 75,000 iterations
#   MAX_ITER  stop after this many iterations instead (a copy of the solver
#             with max_iter changed, its run named <run>-<N>iter)
#   RUN       the run folder under /runs (default: the solver's snapshot_prefix)
#   FORCE=1   replace an earlier run of the same name (otherwise train refuses)
set -euo pipefail

ENGINE=${ENGINE:-torch}
DEVICE=${DEVICE:-cpu}
COHORT=${COHORT:-cohort}
STUDIES=${STUDIES:-/studies}
SOLVER=${SOLVER:-prototxt/solver.prototxt}
PHANTOM_PATIENTS=${PHANTOM_PATIENTS:-10}
PHANTOM_SLICES=${PHANTOM_SLICES:-20}
force=()
[ "${FORCE:-0}" = 1 ] && force=(--force)

say() { echo "reproduce: $*"; }

# --- the solver and its run folder -------------------------------------------
prefix=$(sed -n 's/^ *snapshot_prefix: *"\([^"]*\)".*/\1/p' "$SOLVER")
[ -n "$prefix" ] || { echo "reproduce: $SOLVER: no snapshot_prefix"; exit 2; }
run=${RUN:-$(basename "$(dirname "$prefix")")}
if [ -n "${MAX_ITER:-}" ] || [ -n "${RUN:-}" ]; then
    [ -z "${MAX_ITER:-}" ] || [ -n "${RUN:-}" ] || run="$run-${MAX_ITER}iter"
    mkdir -p runs
    solver="$(mktemp -d)/$(basename "$SOLVER")"
    sed -e "s|^ *snapshot_prefix:.*|snapshot_prefix: \"runs/$run/$(basename "$prefix")\"  # docker/reproduce.sh RUN|" \
        ${MAX_ITER:+-e "s|^ *max_iter:.*|max_iter: $MAX_ITER  # docker/reproduce.sh MAX_ITER (the paper: 75000)|"} \
        "$SOLVER" > "$solver"
    SOLVER=$solver
fi
if [ "${FORCE:-0}" != 1 ] && [ -e "runs/$run/train.log" ]; then
    echo "reproduce: /runs/$run holds an earlier run: FORCE=1 replaces it, RUN=NAME trains into /runs/NAME"
    exit 2
fi

# --- the cohort ---------------------------------------------------------------
if [ -f "data/$COHORT/cohort.h5" ]; then
    say "cohort /data/$COHORT (mounted)"
elif [ -d "$STUDIES" ] && [ -n "$(ls -A "$STUDIES")" ]; then
    say "importing the studies in $STUDIES into /data/$COHORT"
    plaquenet import "$STUDIES" --cohort "data/$COHORT"
else
    say "no cohort mounted at /data/$COHORT (no cohort.h5) and no studies at $STUDIES:" \
        "using the embedded phantom ($PHANTOM_PATIENTS patients x $PHANTOM_SLICES slices)"
    COHORT=phantom
    plaquenet phantom data/phantom-studies --patients "$PHANTOM_PATIENTS" --slices "$PHANTOM_SLICES" --force
    plaquenet import data/phantom-studies/dicom --cohort data/phantom --force
fi

# --- tiles: data/current -> the cohort, as the train prototxt expects --------
plaquenet tiles --cohort "data/$COHORT" --force

say "training runs/$run with $SOLVER (engine $ENGINE, device $DEVICE)"
plaquenet train --engine "$ENGINE" --device "$DEVICE" --solver "$SOLVER" "${force[@]}"

# --- score: threshold on the training scans, F-measure on the test scans ------
plaquenet score --snapshot "runs/$run" --cohort "data/$COHORT" --engine "$ENGINE" --device "$DEVICE" --force
say "done: /runs/$run (snapshots, train.log), /runs/$run/score/results.json, /runs/$run/score/report.html"
