"""`plaquenet`: one console script, one subcommand per stage (see README).

The CLI only parses arguments, prints and maps errors to exit codes; the work
is done by library functions that tests call directly."""

import argparse
import sys
from pathlib import Path

from .atomic import refuse_existing
from .errors import InputError


# --- phantom ---------------------------------------------------------------

def _add_phantom(sub):
    p = sub.add_parser("phantom", help="write the synthetic FLAIR cohort (DICOM + RTSTRUCT/SEG, and NIfTI)")
    p.add_argument("out", type=Path, help="folder to create; gets dicom/<patient>/ and nifti/<patient>/")
    p.add_argument("--patients", type=int, default=10)
    p.add_argument("--slices", type=int, default=20, help="axial slices per patient")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def _run_phantom(args):
    from .phantom import write_phantom

    refuse_existing(args.out, args.force)
    write_phantom(args.out, n_patients=args.patients, n_slices=args.slices, seed=args.seed)
    print(f"phantom cohort of {args.patients} patients in {args.out}")


# --- import ----------------------------------------------------------------

def _add_import(sub):
    p = sub.add_parser("import", help="DICOM/NIfTI studies + outlines -> cohort store")
    p.add_argument("studies", type=Path, help="folder with one sub-folder per patient")
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder to write (cohort.h5 inside)")
    p.add_argument("--resample", metavar="HxW", default=None,
                   help="resample every slice to this size (default: keep each scan's own size)")
    p.add_argument("--force", action="store_true", help="replace an existing cohort store")


def _run_import(args):
    from .cohort import cohort_file
    from .io.study import import_studies

    refuse_existing(cohort_file(args.cohort), args.force)
    summary = import_studies(args.studies, args.cohort, resample=args.resample)
    print(summary)


# --- tiles -----------------------------------------------------------------

def _add_tiles(sub):
    p = sub.add_parser("tiles", help="paper §4.1: split by patient, cut 50x50 tiles -> Caffe HDF5Data")
    p.add_argument("--cohort", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="default: COHORT/tiles")
    p.add_argument("--tile", type=int, default=50)
    p.add_argument("--negative-share", type=float, default=1 / 3,
                   help="share of lesion-free tiles in the final set (paper: about one third)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lmdb", action="store_true", help="also write image/mask LMDBs of Caffe Datums")
    p.add_argument("--force", action="store_true")


def _run_tiles(args):
    from .tiles import make_tiles

    out = args.out or args.cohort / "tiles"
    refuse_existing(out, args.force)
    counts = make_tiles(args.cohort, out, tile=args.tile, negative_share=args.negative_share,
                        test_fraction=args.test_fraction, seed=args.seed, lmdb=args.lmdb)
    print(counts)


# --- train -----------------------------------------------------------------

def _add_train(sub):
    p = sub.add_parser("train", help="like `caffe train`: SOLVER prototxt -> snapshots, Caffe-format log")
    p.add_argument("--engine", choices=["torch", "caffe"], default="torch")
    p.add_argument("--solver", type=Path, required=True)
    p.add_argument("--weights", type=Path, default=None, help="initial .caffemodel")
    p.add_argument("--snapshot", type=Path, default=None, help=".solverstate to resume from")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")


def _run_train(args):
    if args.engine == "caffe":
        from .engines.caffe import train
    else:
        from .engines.torch.train import train

    result = train(args.solver, weights=args.weights, snapshot=args.snapshot, device=args.device)
    print(result)


# --- score -----------------------------------------------------------------

def _add_score(sub):
    p = sub.add_parser("score", help="full-scan inference, threshold on training scans, F-measure, report")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--snapshot", type=Path, help="a .caffemodel, or a run folder (its latest snapshot)")
    which.add_argument("--all-snapshots", type=Path, metavar="RUN_DIR",
                       help="score every *_iter_<N>.caffemodel of RUN_DIR for the training curves "
                            "(paper Fig. 5: curves.csv, curves.png); the latest one in full")
    p.add_argument("--cohort", type=Path, default=Path("data/current"))
    p.add_argument("--deploy", type=Path, default=Path("prototxt/plaquenet_deploy.prototxt"))
    p.add_argument("--engine", choices=["torch", "caffe"], default="torch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default: RUN_DIR/score")
    p.add_argument("--save-probabilities", type=Path, default=None, metavar="DIR",
                   help="also write every patient's probability volume to DIR/<patient>.nii.gz "
                        "(every slice forwarded, not only those with plaques: slower)")
    p.add_argument("--force", action="store_true")


def _run_score(args):
    from .evaluate.score import score

    results = score(args.all_snapshots or args.snapshot, cohort_dir=args.cohort, deploy=args.deploy,
                    engine=args.engine, device=args.device, out=args.out, force=args.force,
                    all_snapshots=args.all_snapshots is not None, probabilities_dir=args.save_probabilities)
    f1, paper = results["test"]["pixel"]["f1"], results["paper"]["test"]["pixel"]["f1"]
    print(f"test F-measure {f1:.4f} at threshold {results['threshold']:.4g} (paper: {paper}); "
          f"report: {results['out']}/report.html")


# --- segment ---------------------------------------------------------------

def _add_segment(sub):
    p = sub.add_parser("segment", help="a trained net on one new study -> NIfTI masks, DICOM SEG, lesion table")
    p.add_argument("study", type=Path, help="one patient folder: DICOM FLAIR series or NIfTI (no outlines needed)")
    p.add_argument("--snapshot", type=Path, required=True,
                   help="a .caffemodel, or a run folder (its latest snapshot)")
    p.add_argument("--threshold", type=float, default=None,
                   help="plaque where output >= this (default: RUN_DIR/score/results.json)")
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: ./segment-out)")
    p.add_argument("--deploy", type=Path, default=Path("prototxt/plaquenet_deploy.prototxt"))
    p.add_argument("--min-lesion-mm3", type=float, default=0.0, help="drop lesions smaller than this")
    p.add_argument("--device", default="cpu")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def _run_segment(args):
    from .segment import DEFAULT_OUT, segment

    result = segment(args.study, args.snapshot, out=args.out or DEFAULT_OUT, threshold=args.threshold,
                     deploy=args.deploy, min_lesion_mm3=args.min_lesion_mm3, device=args.device, force=args.force)
    print(result)


# ---------------------------------------------------------------------------

COMMANDS = {
    "phantom": (_add_phantom, _run_phantom),
    "import": (_add_import, _run_import),
    "tiles": (_add_tiles, _run_tiles),
    "train": (_add_train, _run_train),
    "score": (_add_score, _run_score),
    "segment": (_add_segment, _run_segment),
}


def build_parser():
    parser = argparse.ArgumentParser(prog="plaquenet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][1](args)
    except InputError as e:
        print(f"plaquenet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"plaquenet {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
