"""`plaquenet`: one console script, one subcommand per stage (see README).

The CLI only parses arguments, prints and maps errors to exit codes (an
InputError is one line on stderr and exit 2); the work is done by the stage
modules (phantom, ingest, tiles, train, score, segment), which tests call
directly. Every option says what it does and its default in `--help`."""

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

from . import paths
from .atomic import refuse_existing
from .engines import ENGINES, EXPORT_FORMATS, PRECISIONS
from .engines.signals import EFFECTS, SIGHUP_EFFECT, SIGINT_EFFECT
from .errors import InputError

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]   # what add_subparsers returns


class _HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to every option whose default is a value."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        is_value = default is not None and default is not False and default is not argparse.SUPPRESS  # 0 is one
        if is_value and action.option_strings and "default" not in text:
            text += f" (default: {default:.4g})" if isinstance(default, float) else f" (default: {default})"
        return text


def _parser(sub: "SubParsers", name: str, help: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help, description=help, formatter_class=_HelpFormatter)


def _force(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"replace {what} if it exists (otherwise: refuse)")


def _engine_and_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="torch",
                   help="torch: plaquenet's Caffe-faithful engine; caffe: real Caffe (pycaffe, `caffe train`)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (gpu is taken for cuda)")


def _batch_slices(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch-slices", type=int, default=None, metavar="N",
                   help="448x512 slices per forward call (smaller inputs packed to as many pixels; default: the "
                        "engine's choice, 1 on the CPU where more whole slices gain nothing, more on a GPU as its free "
                        "memory allows; the caffe engine goes one at a time)")


def _skull_strip(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skull-strip", action="store_true", default=None,
                   help="the net was trained on skull-stripped tiles (`tiles --skull-strip`); without it the "
                        "input follows what the run's tiles.json / score results record, and a mismatch is refused")


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="the arithmetic (default: fp32, Caffe's); bf16 (CPUs with AVX512_BF16 or AMX, GPUs) and "
                        "tf32 (GPUs): the torch engine's faster modes, not Caffe's numerics (README: Measured, "
                        "Precision)")


# --- phantom ---------------------------------------------------------------

def _add_phantom(sub: "SubParsers") -> None:
    from .presets import PRESETS

    p = _parser(sub, "phantom", "write the synthetic FLAIR cohort (DICOM + RTSTRUCT/SEG, and NIfTI)")
    p.add_argument("out", type=Path,
                   help="folder to create; gets dicom/<patient>/, nifti/<patient>/ and truth/<patient>/")
    p.add_argument("--preset", choices=PRESETS, default="demo",
                   help="cohort size: " + ", ".join(f"{name} = {n.patients} patients x {n.slices} slices"
                                                    for name, n in PRESETS.items()))
    p.add_argument("--patients", type=int, default=None, help="number of patients (default: the preset's)")
    p.add_argument("--slices", type=int, default=None, help="axial slices per patient (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same cohort")
    _force(p, "OUT")


def _run_phantom(args: argparse.Namespace) -> None:
    from .phantom import write_phantom
    from .presets import PRESETS

    preset = PRESETS[args.preset]
    patients = preset.patients if args.patients is None else args.patients
    slices = preset.slices if args.slices is None else args.slices
    refuse_existing(args.out, args.force)
    write_phantom(args.out, n_patients=patients, n_slices=slices, seed=args.seed)
    print(f"phantom cohort of {patients} patients x {slices} slices in {args.out}")


# --- import ----------------------------------------------------------------

def _add_import(sub: "SubParsers") -> None:
    p = _parser(sub, "import", "DICOM/NIfTI studies + outlines -> cohort store (pseudonymous ids only)")
    p.add_argument("studies", type=Path, help="folder with one sub-folder per patient (with --bids: a BIDS dataset)")
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder to write (cohort.h5 inside)")
    p.add_argument("--resample", metavar="HxW", default=None,
                   help="resample every slice to this size, e.g. 448x512 (default: keep each scan's own size)")
    p.add_argument("--truth", type=Path, default=None, metavar="TRUTH_DIR",
                   help="also import TRUTH_DIR/<patient folder>/regions.nii.gz and plaques_exact.nii.gz (with "
                        "TRUTH_DIR/regions.json), as `plaquenet phantom` writes them to OUT/truth")
    p.add_argument("--bids", action="store_true",
                   help="STUDIES is a BIDS dataset: sub-*/[ses-*/]anat/*_FLAIR.nii.gz, lesion masks from "
                        "derivatives/<pipeline> (*_desc-lesion_mask or a dseg with a lesion label); one volume "
                        "per session, a subject's sessions on one side of the split")
    p.add_argument("--bids-pipeline", default=None, metavar="NAME",
                   help="with --bids: the derivatives pipeline holding the lesion masks (default: the only one)")
    _force(p, "the cohort store")


def _run_import(args: argparse.Namespace) -> None:
    from .cohort import cohort_file
    from .ingest import import_bids, import_studies

    if args.bids_pipeline is not None and not args.bids:
        raise InputError("--bids-pipeline", "only with --bids")
    if args.bids and args.truth is not None:
        raise InputError("--truth", "not with --bids")
    refuse_existing(cohort_file(args.cohort), args.force)
    if args.bids:
        print(import_bids(args.studies, args.cohort, pipeline=args.bids_pipeline, resample=args.resample))
    else:
        print(import_studies(args.studies, args.cohort, resample=args.resample, truth_dir=args.truth))


# --- tiles -----------------------------------------------------------------

def _add_tiles(sub: "SubParsers") -> None:
    from .cohort import TEST_FRACTION
    from .tiles import NEGATIVE_SHARE, SEED, TILE

    p = _parser(sub, "tiles", "paper §4.1: split by patient, cut the training scans into tiles -> Caffe HDF5Data; "
                              f"points {paths.CURRENT} at the cohort")
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder (from `plaquenet import`)")
    p.add_argument("--out", type=Path, default=None,
                   help=f"tile folder (default: COHORT/tiles; only then is {paths.CURRENT} pointed at COHORT)")
    p.add_argument("--tile", type=int, default=TILE, help="tile side in pixels")
    p.add_argument("--negative-share", type=float, default=NEGATIVE_SHARE,
                   help="share of lesion-free tiles in the final set (paper: about one third)")
    p.add_argument("--test-fraction", type=float, default=None,
                   help=f"share of patients in the test split, for a new split (default: {TEST_FRACTION}, "
                        f"the paper's 19 of 96); refused when COHORT/split.json exists with another value")
    p.add_argument("--seed", type=int, default=SEED, help="random seed of the split and of the lesion-free tiles")
    p.add_argument("--lmdb", action="store_true", help="also write image/mask LMDBs of Caffe Datums")
    p.add_argument("--skull-strip", action="store_true",
                   help="not the paper's (its §6 remedy): cut the tiles with every voxel further than 3 mm from "
                        "the patient's brain mask (`plaquenet brainmask --cohort`) set to 0, after normalisation; "
                        "recorded in tiles.json, and score and segment then feed the net the same")
    _force(p, "the tile folder")


def _run_tiles(args: argparse.Namespace) -> None:
    from .tiles import make_tiles

    out = args.out or args.cohort / "tiles"
    refuse_existing(out, args.force)
    print(make_tiles(args.cohort, out, tile=args.tile, negative_share=args.negative_share,
                     test_fraction=args.test_fraction, seed=args.seed, lmdb=args.lmdb, skull_strip=args.skull_strip))
    if args.out is None and Path(args.cohort).resolve() != paths.CURRENT.resolve():
        paths.point_current_at(args.cohort)
        print(f"{paths.CURRENT} -> {args.cohort} (the train prototxt reads {paths.CURRENT}/tiles/train.txt)")
    elif args.out is not None:
        print(f"{paths.CURRENT} unchanged (--out given): point your train prototxt's source at {out}")


# --- train -----------------------------------------------------------------

def _add_train(sub: "SubParsers") -> None:
    p = _parser(sub, "train", "like `caffe train`: SOLVER prototxt -> snapshots, Caffe-format log")
    p.add_argument("--solver", type=Path, required=True,
                   help=f"solver prototxt, e.g. {paths.PAPER_SOLVER} (the paper's SGD)")
    p.add_argument("--weights", type=Path, default=None, help="initial .caffemodel to fine-tune from")
    p.add_argument("--snapshot", type=Path, default=None, help=".solverstate to resume from")
    p.add_argument("--level", type=int, default=0,
                   help="the train net's NetState level, as `caffe train --level`")
    p.add_argument("--stage", action="append", default=None, metavar="NAME",
                   help="a NetState stage of the train net, as `caffe train --stage` (repeatable)")
    effects = "|".join(EFFECTS)
    p.add_argument("--sigint-effect", default=SIGINT_EFFECT, metavar=effects,
                   help="what SIGINT (Ctrl-C) does, as `caffe train --sigint_effect`: stop = end the run (after "
                        "snapshot_after_train's snapshot), snapshot = snapshot and go on, none = ignore it")
    p.add_argument("--sighup-effect", default=SIGHUP_EFFECT, metavar=effects,
                   help="what SIGHUP does, as `caffe train --sighup_effect`")
    _engine_and_device(p)
    _precision(p)
    p.add_argument("--devices", type=int, default=1, metavar="N",
                   help="train on N workers of this machine (torch engine; CPU: the cores shared out, cuda: GPUs "
                        "0..N-1) with Caffe's multi-GPU semantics: each reads its own batch_size tiles, gradients "
                        "averaged; or start `torchrun --nproc-per-node N -m plaquenet train ...` (README: Several "
                        "devices)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier run's snapshots, train.log and train.csv in the run folder "
                        "(otherwise: refuse, unless resuming with --snapshot)")


def _run_train(args: argparse.Namespace) -> None:
    from .train import train

    result = train(args.solver, engine=args.engine, weights=args.weights, snapshot=args.snapshot,
                   device=args.device, force=args.force, level=args.level, stages=args.stage or (),
                   sigint_effect=args.sigint_effect, sighup_effect=args.sighup_effect, precision=args.precision,
                   devices=args.devices)
    if os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0's result alone
        print(result)


# --- score -----------------------------------------------------------------

def _add_score(sub: "SubParsers") -> None:
    p = _parser(sub, "score", "full-scan inference, threshold on the training scans, F-measure, report")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--snapshot", type=Path, help="a .caffemodel, or a run folder (its latest snapshot)")
    which.add_argument("--all-snapshots", type=Path, metavar="RUN_DIR",
                       help="score every *_iter_<N>.caffemodel of RUN_DIR for the training curves "
                            "(paper Fig. 5: curves.csv, curves.png); the latest one in full")
    p.add_argument("--cohort", type=Path, default=paths.CURRENT, help="cohort folder with its split")
    p.add_argument("--deploy", type=Path, default=None,
                   help=f"deploy prototxt (default: the run folder's copy, else {paths.DEPLOY})")
    _engine_and_device(p)
    _precision(p)
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: RUN_DIR/score)")
    p.add_argument("--save-probabilities", type=Path, default=None, metavar="DIR",
                   help="also write every patient's probability volume to DIR/<patient>.nii.gz "
                        "(every slice forwarded, not only those with plaques: slower)")
    p.add_argument("--tiles", type=Path, default=None, metavar="TILES",
                   help="the tile folder (or its train.txt) the net was trained on, for the threshold the paper "
                        "first chose on the tiles (§4.3; default: COHORT/tiles)")
    p.add_argument("--no-whole-volume", action="store_true",
                   help="skip scoring every slice of each test patient beside the paper's slices with plaques "
                        "(results.json 'whole_volume'; costs a forward of every test slice)")
    p.add_argument("--brain", action="store_true",
                   help="count no output further than 3 mm from each patient's brain mask (from `plaquenet "
                        "brainmask --cohort`), threshold choice included (results.json 'brain')")
    _skull_strip(p)
    _batch_slices(p)
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="spread the patients over N processes, each loading the net with cores/N threads "
                        "(every number in results.json as with one; worth it when one forward leaves cores idle)")
    _force(p, "OUT (and DIR)")


def _run_score(args: argparse.Namespace) -> None:
    from .score import score

    results = score(args.all_snapshots or args.snapshot, cohort_dir=args.cohort, deploy=args.deploy,
                    engine=args.engine, device=args.device, out=args.out, force=args.force,
                    all_snapshots=args.all_snapshots is not None, probabilities_dir=args.save_probabilities,
                    tiles=args.tiles, whole_volume=not args.no_whole_volume, precision=args.precision,
                    brain=args.brain, workers=args.workers, batch_slices=args.batch_slices,
                    skull_strip=args.skull_strip)
    f1, paper = results["test"]["pixel"]["f1"], results["paper"]["test"]["pixel"]["f1"]
    volume = f", whole volumes {results['whole_volume']['pixel']['f1']:.4f}" if "whole_volume" in results else ""
    print(f"test F-measure {f1:.4f}{volume} at threshold {results['threshold']:.4g} (paper: {paper}); "
          f"report: {results['out']}/report.html")
    timing = results["timing"]
    print(f"{timing['scans']} scans scored in {timing['seconds']:.1f} s: {timing['scans_per_second']:.2f} scans/s "
          f"({timing['slices_forwarded']} slices and {timing['tiles_forwarded']} tiles forwarded; "
          f"workers {timing['workers']}, {timing['batch_slices']} slice(s) per call)")


# --- segment ---------------------------------------------------------------

def _add_segment(sub: "SubParsers") -> None:
    p = _parser(sub, "segment", "a trained net on one new study -> NIfTI masks, DICOM SEG, lesion table")
    p.add_argument("study", type=Path, help="one patient folder: DICOM FLAIR series or NIfTI (no outlines needed)")
    p.add_argument("--snapshot", type=Path, required=True,
                   help="a .caffemodel, or a run folder (its latest snapshot)")
    p.add_argument("--threshold", type=float, default=None,
                   help="plaque where output >= this, in [0, 1] (default: the threshold `plaquenet score` "
                        "stored in RUN_DIR/score/results.json)")
    p.add_argument("--out", type=Path, default=paths.SEGMENT_OUT, help="folder to write")
    p.add_argument("--deploy", type=Path, default=None,
                   help=f"deploy prototxt (default: the run folder's copy, else {paths.DEPLOY})")
    p.add_argument("--min-lesion-mm3", type=float, default=0.0,
                   help="drop lesions of this volume or less (0: keep all)")
    p.add_argument("--brain", action="store_true",
                   help="drop plaque voxels more than 3 mm outside the brain (HD-BET, offline: pip install "
                        "'plaquenet[brain]'); writes brain.nii.gz beside mask.nii.gz; a single slice is "
                        "segmented without it")
    _skull_strip(p)
    _engine_and_device(p)
    _precision(p)
    _batch_slices(p)
    _force(p, "OUT")


def _run_segment(args: argparse.Namespace) -> None:
    from .segment import segment

    print(segment(args.study, args.snapshot, out=args.out, threshold=args.threshold, deploy=args.deploy,
                  min_lesion_mm3=args.min_lesion_mm3, engine=args.engine, device=args.device, force=args.force,
                  brain=args.brain, batch_slices=args.batch_slices,
                  precision=args.precision, skull_strip=args.skull_strip))


# --- brainmask -------------------------------------------------------------

def _add_brainmask(sub: "SubParsers") -> None:
    p = _parser(sub, "brainmask", "brain masks, offline (HD-BET, the `brain` extra): a cohort store's patients "
                                  "into the store, or one study -> NIfTI")
    p.add_argument("study", type=Path, nargs="?", default=None,
                   help="one patient folder (DICOM FLAIR series or NIfTI); with --out")
    p.add_argument("--cohort", type=Path, default=None, help="cohort folder: a mask for each patient, into cohort.h5")
    p.add_argument("--out", type=Path, default=None, help="with STUDY: the mask to write (.nii.gz)")
    p.add_argument("--mode", choices=("fast", "accurate"), default="fast",
                   help="HD-BET's: fast (one network) or accurate (five averaged, about 5x slower)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    _force(p, "earlier brain masks (or OUT)")


def _run_brainmask(args: argparse.Namespace) -> None:
    from .brain import hd_bet, version
    from .brainmask import brainmask_cohort, brainmask_study

    if (args.cohort is None) == (args.study is None):
        raise InputError(None, "give either --cohort DIR or STUDY --out FILE.nii.gz")
    if args.study is not None and args.out is None:
        raise InputError("--out", "STUDY needs --out FILE.nii.gz")
    if args.cohort is not None and args.out is not None:
        raise InputError("--out", "not with --cohort (the masks go into the cohort store)")
    extractor = hd_bet(mode=args.mode, device=args.device)
    if args.cohort is not None:
        print(brainmask_cohort(args.cohort, extractor, f"{version()} ({args.mode})", force=args.force))
    else:
        print(f"brain mask -> {brainmask_study(args.study, args.out, extractor, force=args.force)}")


# --- export ----------------------------------------------------------------

def _add_export(sub: "SubParsers") -> None:
    p = _parser(sub, "export", "a trained net as one ONNX or TorchScript file that runs without plaquenet "
                               "(any slice size; the normalisation and threshold in its metadata)")
    p.add_argument("--snapshot", type=Path, required=True,
                   help="a .caffemodel, or a run folder (its latest snapshot)")
    p.add_argument("--format", choices=EXPORT_FORMATS, required=True,
                   help="onnx: opset 17, for onnxruntime and the like; torchscript: for torch.jit.load")
    p.add_argument("--out", type=Path, required=True, help="the file to write")
    p.add_argument("--deploy", type=Path, default=None,
                   help=f"deploy prototxt (default: the run folder's copy, else {paths.DEPLOY})")
    _force(p, "OUT")


def _run_export(args: argparse.Namespace) -> None:
    from .export import export

    done = export(args.snapshot, args.format, args.out, deploy=args.deploy, force=args.force)
    threshold = f"threshold {done['threshold']:.6g}" if "threshold" in done else "no threshold"
    print(f"{done['out']}: {args.format} of {done['deploy']} with {done['snapshot']} ({threshold})")


# --- export-nnunet ---------------------------------------------------------

def _add_export_nnunet(sub: "SubParsers") -> None:
    p = _parser(sub, "export-nnunet", "cohort store + its train/test split -> an nnU-Net v2 raw dataset "
                                      "(imagesTr, labelsTr, imagesTs, labelsTs, dataset.json)")
    p.add_argument("--cohort", type=Path, required=True, help="cohort folder with its split (`plaquenet tiles`)")
    p.add_argument("--dataset-id", type=int, required=True, help="nnU-Net dataset id, 1-999")
    p.add_argument("--out", type=Path, required=True, help="folder to write DatasetNNN_Name/ into (e.g. nnUNet_raw)")
    p.add_argument("--name", default=None, help="the Name of DatasetNNN_Name (default: the cohort's name)")
    _force(p, "a dataset with this id in OUT")


def _run_export_nnunet(args: argparse.Namespace) -> None:
    from .nnunet import export_nnunet

    done = export_nnunet(args.cohort, args.dataset_id, args.out, name=args.name, force=args.force)
    print(f"{done['out']}: nnU-Net v2 raw dataset, {done['train']} training and {done['test']} test cases "
          "(the cohort's split, each scan's own geometry)")


# --- reproduce -------------------------------------------------------------

def _add_reproduce(sub: "SubParsers") -> None:
    p = _parser(sub, "reproduce", "the paper's experiment end to end: cohort, tiles, the paper's solver (resumable), "
                                  "score --all-snapshots (Fig. 5), the deviations beside the paper's figures")
    _experiment_options(p, "paper", "paper: the paper's solver unchanged on the 96-patient phantom (days on 2 CPU "
                                    "cores); quick: the same path shortened, on a smaller phantom (about 20 min)",
                        "an imported cohort folder to use instead of the preset's phantom",
                        "train to this iteration instead of the preset's (the report says it was shortened)")
    p.add_argument("--run", type=Path, default=None,
                   help="run folder (default: runs/reproduce, runs/reproduce-quick; -bf16 or -tf32 appended for "
                        "those precisions); a rerun resumes it")
    _precision(p)
    _force(p, "a run folder of another preset or schedule")


def _experiment_options(p: argparse.ArgumentParser, preset: str, preset_help: str, cohort_help: str,
                        max_iter_help: str) -> None:
    """What `reproduce` and `claims` share: the preset, its cohort or another, the schedule, engine and device."""
    p.add_argument("--preset", choices=("quick", "paper"), default=preset, help=preset_help)
    p.add_argument("--cohort", type=Path, default=None, help=cohort_help)
    p.add_argument("--max-iter", type=int, default=None, help=max_iter_help)
    p.add_argument("--data", type=Path, default=paths.DATA, help="folder for the phantom and its cohort")
    _engine_and_device(p)


def _run_reproduce(args: argparse.Namespace) -> None:
    from .experiments.reproduce import reproduce

    record = reproduce(args.preset, run_dir=args.run, max_iter=args.max_iter, engine=args.engine,
                       device=args.device, data_dir=args.data, cohort_dir=args.cohort, force=args.force,
                       precision=args.precision)
    ours = record["ours"]["test_f1"]
    print(f"test F-measure {'n/a' if ours is None else f'{ours:.4f}'} at iteration {record['ours']['iteration']:,} "
          f"(paper: {record['paper']['test']['pixel']['f1']}); {len(record['deviations'])} deviations and the "
          f"figures beside the paper's: {record['run']}/reproduction.md; Fig. 5: {record['figures']['fig5']}")


def _add_claims(sub: "SubParsers") -> None:
    p = _parser(sub, "claims", "each checkable finding of the paper as an experiment with a verdict: five "
                               "trainings (lesion-free tiles bright / none / uniform; 100x100 tiles with the "
                               "Euclidean and a soft Dice loss; a sixth on skull-stripped tiles with "
                               "--skull-strip-training), scores, a claims table")
    _experiment_options(p, "quick", "the schedule, and without --cohort the phantom cohort and the reproduction "
                                    "run reused as the paper-protocol training (quick: about 61 min on 2 CPU "
                                    "cores, the reproduction included)",
                        "an imported cohort folder instead of the preset's phantom (claims that need the phantom's "
                        "anatomy or exact masks are then 'not measurable here')",
                        "train each run to this iteration instead")
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: runs/claims-PRESET)")
    p.add_argument("--jobs", type=int, default=None,
                   help="trainings side by side, each in its own process with cores/JOBS threads (default: one "
                        "per 8 CPU cores, at least one; one on a GPU)")
    p.add_argument("--skull-strip-training", action="store_true",
                   help="also C9: brain masks of every patient (HD-BET, the brain extra) and one more training, "
                        "on tiles cut from the skull-stripped scans (17 min more on 2 CPU cores, quick)")
    p.add_argument("--skull-strip-max-iter", type=int, default=None, metavar="N",
                   help="with --skull-strip-training: C9's own length, the skull-stripped net and a second "
                        "paper-protocol net (continuing the first from its latest snapshot within N) trained to "
                        "iteration N, the other claims kept on theirs (default: the schedule's)")
    _force(p, "OUT/claims.json (the trainings under OUT/runs are kept and resumed)")


def _run_claims(args: argparse.Namespace) -> None:
    import dataclasses

    from .atomic import refuse_existing
    from .experiments.claims import default_jobs, plan_claims, prepare_runs, run_claims
    from .experiments.reproduce import PRESETS, reproduce
    from .experiments.runner import ensure_cohort, train_side_by_side

    preset = PRESETS[args.preset]
    schedule = (preset.schedule if args.max_iter is None
                else dataclasses.replace(preset.schedule, max_iter=args.max_iter))
    out = args.out or Path("runs") / f"claims-{args.preset}"
    jobs = args.jobs if args.jobs is not None else default_jobs(args.device)
    if jobs < 1:
        raise InputError("--jobs", f"must be at least 1, got {jobs}")
    refuse_existing(out / "claims.json", args.force)   # before hours of training, not after
    if args.skull_strip_max_iter is not None and (not args.skull_strip_training or args.skull_strip_max_iter < 1):
        raise InputError("--skull-strip-max-iter", "needs --skull-strip-training and at least 1 iteration")
    cohort = args.cohort or ensure_cohort(preset.phantom, args.data)
    main_run = None
    if args.cohort is None:
        if jobs > 1:   # the reproduction's training beside the others (the stripped one follows: it needs masks)
            plan = plan_claims(cohort, out, schedule, main_run=preset.run_dir, large_tile_batch=preset.large_tile_batch)
            prepare_runs(plan, args.force)
            train_side_by_side(list(plan.runs.values()), jobs, engine=args.engine, device=args.device)
        # the paper-protocol training is the reproduction itself: made (or resumed, or reused) first
        record = reproduce(args.preset, max_iter=args.max_iter, engine=args.engine, device=args.device,
                           data_dir=args.data)
        main_run = Path(record["run"])
    done = run_claims(cohort, out, schedule, main_run=main_run, engine=args.engine, device=args.device,
                      force=args.force, jobs=jobs, large_tile_batch=preset.large_tile_batch,
                      skull_strip_training=args.skull_strip_training, skull_strip_max_iter=args.skull_strip_max_iter)
    for claim in done["claims"]:
        print(f"{claim['id']} ({claim['section']}): {claim['verdict']}: {claim['reason']}")
    print(f"claims table: {done['out']}/claims.md, {done['out']}/claims.html")


# ---------------------------------------------------------------------------

COMMANDS: Dict[str, Tuple[Callable[["SubParsers"], None], Callable[[argparse.Namespace], None]]] = {
    "phantom": (_add_phantom, _run_phantom),
    "import": (_add_import, _run_import),
    "tiles": (_add_tiles, _run_tiles),
    "train": (_add_train, _run_train),
    "score": (_add_score, _run_score),
    "segment": (_add_segment, _run_segment),
    "brainmask": (_add_brainmask, _run_brainmask),
    "export": (_add_export, _run_export),
    "export-nnunet": (_add_export_nnunet, _run_export_nnunet),
    "reproduce": (_add_reproduce, _run_reproduce),
    "claims": (_add_claims, _run_claims),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="plaquenet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
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
