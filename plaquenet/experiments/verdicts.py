"""The paper's checkable findings, each as a rule from measured numbers to a
verdict: "holds", "does not hold", or "not measurable here" with the reason.

Pure functions of plain dicts (a `score` results.json, `evaluate.observe`
observations, a loss curve): the experiments that produce the numbers live in
`experiments/claims.py`, so every verdict here can be checked on numbers
made up in a test.

Where a finding is a comparison between two trainings (C3), one seed cannot
tell a small difference from noise: the rule asks for a reduction of at least
MARGIN (10 %), stated beside the verdict.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

HOLDS, FAILS, UNMEASURABLE = "holds", "does not hold", "not measurable here"

MARGIN = 0.10  # C3: a reduction of at least 10 % counts as a reduction
F_DROP = 0.01  # C4: test F must fall by more than this from its best to the end
DOMINANT = 0.5  # C5: the paper's regions hold at least half of the false alarms outside the brain
MOST = 0.5  # C8: "most" false alarms: at least half of the false-positive pixels
ALL_ZERO_SHARE = 0.9  # C7: "all-zero network outputs": no pixel at 0.5 on at least 90 % of the test scans

# Regions of the phantom's maps (phantom/regions.py) that are "not brain and
# bright enough to be mistaken for a plaque": skull, eyes, sinuses, scalp fat.
OUTSIDE_BRAIN = ("scalp", "calvaria", "skull_base", "temporal_bone", "orbit", "sinus")
PAPER_FALSE_ALARM_REGIONS = ("orbit", "temporal_bone", "calvaria")  # §4.3 Fig. 8, §5, §6


@dataclasses.dataclass
class Claim:
    id: str
    section: str
    paper: str  # the paper's words
    experiment: str  # what was measured, on what
    verdict: str
    reason: str  # why this verdict follows from the numbers
    numbers: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _f(x: Optional[float]) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def c1_threshold_source(results: Dict[str, Any]) -> Claim:
    paper = ("\"the obtained threshold values were unsuitable for the use in the testing phase. Therefore we "
             "decided to use the original training images to compute the threshold.\"")
    experiment = ("test F-measure at the threshold with the best F on the full training scans, against the one "
                  "with the best F on the training tiles (one net, the same test scans)")
    f_scan = results["test"]["pixel"]["f1"]
    f_tiles = (results["test"].get("pixel_from_tiles_threshold") or {}).get("f1")
    numbers = {"threshold_scans": results.get("threshold"), "threshold_tiles": results.get("threshold_from_tiles"),
               "test_f1_scans": f_scan, "test_f1_tiles": f_tiles}
    claim = Claim("C1", "§4.3", paper, experiment, UNMEASURABLE, "", numbers)
    if f_tiles is None:
        claim.reason = "the cohort's training tiles were not found beside it, so no tile threshold was chosen"
    elif f_scan > f_tiles:
        claim.verdict, claim.reason = HOLDS, f"test F {_f(f_scan)} with the scan threshold > {_f(f_tiles)} with the tile one"
    else:
        claim.verdict, claim.reason = FAILS, f"test F {_f(f_scan)} with the scan threshold <= {_f(f_tiles)} with the tile one"
    return claim


def c2_raw_intensity(results: Dict[str, Any], observations: Dict[str, Any]) -> Claim:
    paper = ("\"irrespective on the threshold, the result is virtually useless. On the other hand, the CNN output "
             "... may be thresholded yielding the correct outcome ... for a wide range of threshold values\" (Fig. 9)")
    experiment = ("test F of the network and of the normalised intensity, each at its best training-scan threshold; "
                  "and the total width of the thresholds (both signals in [0, 1]) at which each keeps at least "
                  "90 % of its best test F")
    f_net = results["test"]["pixel"]["f1"]
    f_raw = results["baseline"]["raw_intensity"]["test"]["pixel"]["f1"]
    ranges = observations["ranges"]
    numbers = {"test_f1_network": f_net, "test_f1_raw": f_raw,
               "range_network": ranges["network"], "range_raw": ranges["raw"]}
    better = f_net > f_raw
    wider = ranges["network"]["measure"] > ranges["raw"]["measure"]
    parts = [f"F {_f(f_net)} vs {_f(f_raw)} ({'better' if better else 'not better'})",
             f"width {ranges['network']['measure']:.3f} vs {ranges['raw']['measure']:.3f} "
             f"({'wider' if wider else 'not wider'})"]
    verdict = HOLDS if better and wider else FAILS
    return Claim("C2", "§5, Fig. 9", paper, experiment, verdict, "network vs raw intensity: " + "; ".join(parts),
                 numbers)


def all_zero_share(observations: Dict[str, Any]) -> float:
    """The share of the test scans whose output is all-zero (`observe`'s
    outputs); NaN when no scan was forwarded."""
    scans = observations.get("scans") or 0
    return (observations.get("outputs") or {})["all_zero_scans"] / scans if scans else float("nan")


def region_total(regions: Dict[str, Dict[str, int]], names: Sequence[str], key: str = "fp_pixels") -> int:
    return int(sum(regions[n][key] for n in names if n in regions))


def c3_bright_negatives(variants: Dict[str, Optional[Dict[str, Any]]], test_f1: Dict[str, Optional[float]]) -> Claim:
    """variants: "bright" (the paper's: one third lesion-free, bright preferred),
    "none" (no lesion-free tiles), "uniform" (one third, drawn uniformly) ->
    observations (None when that training was not run)."""
    paper = ("\"some parts of the scans, such as the skull bones, areas around eye globes and sinuses, were never "
             "included in the training set ... they were usually mistakenly marked as demyelinations ... some of "
             "the tiles without lesions were also included ... with some additional constraints giving "
             "preference to bright areas and high contrast\"")
    experiment = ("three trainings on the same schedule: one third lesion-free tiles preferring bright, high-contrast "
                  "windows (the paper's), none, and one third drawn uniformly; false-positive pixels and false "
                  f"components on the test scans outside the brain ({', '.join(OUTSIDE_BRAIN)}), each net at its "
                  f"own training-scan threshold; a reduction counts from {MARGIN:.0%}")
    claim = Claim("C3", "§4.1", paper, experiment, UNMEASURABLE, "")
    missing = [k for k in ("bright", "none") if variants.get(k) is None]
    if missing:
        claim.reason = f"the {' and '.join(missing)} training was not run"
        return claim
    if any(v is not None and v.get("regions") is None for v in variants.values()):
        claim.reason = "the cohort has no anatomical region maps (real scans have none; the phantom's have)"
        return claim
    outside = {k: region_total(v["regions"], OUTSIDE_BRAIN) for k, v in variants.items() if v is not None}
    components = {k: region_total(v["regions"], OUTSIDE_BRAIN, "false_components")
                  for k, v in variants.items() if v is not None}
    claim.numbers = {"fp_pixels_outside_brain": outside, "false_components_outside_brain": components,
                     "test_f1": test_f1, "margin": MARGIN}
    reduced = outside["bright"] <= (1 - MARGIN) * outside["none"]
    claim.verdict = HOLDS if reduced else FAILS
    claim.reason = (f"false-positive pixels outside the brain: {outside['bright']} with bright lesion-free tiles vs "
                    f"{outside['none']} with none ({_change(outside['bright'], outside['none'])}; "
                    f"a cut of {MARGIN:.0%} counts)")
    if "uniform" in outside:
        by_brightness = outside["bright"] <= (1 - MARGIN) * outside["uniform"]
        claim.numbers["bright_beats_uniform"] = by_brightness
        claim.reason += (f"; {outside['uniform']} with uniformly drawn ones: the preference for bright windows "
                         f"{'adds' if by_brightness else 'does not add'} a cut of {MARGIN:.0%} "
                         f"({_change(outside['bright'], outside['uniform'])})")
    return claim


def _change(new: int, old: int) -> str:
    if old == 0:
        return "none before"
    return f"{(old - new) / old:.0%} fewer" if new <= old else f"{(new - old) / old:.0%} more"


def c4_overtraining(curve: Sequence[Dict[str, Any]], loss_iteration: Optional[Sequence[int]],
                    loss: Optional[Sequence[float]], max_iter: int, paper_max_iter: int) -> Claim:
    """curve: results.json's training_curve (iteration, test_f1 per snapshot)."""
    paper = ("\"the enhancement of the resulting F-measure value was observed only during the initial phase of the "
             "training ... a typical problem of generalization error, increasing when the network is getting "
             "overtrained\" (Fig. 5; best net after ca. 15 of 80 hours)")
    experiment = ("test F of every snapshot (Fig. 5, bottom) and the smoothed training loss (top): the iteration of "
                  f"the best test F, whether F then falls by more than {F_DROP} while the loss keeps falling")
    claim = Claim("C4", "§4.3, Fig. 5", paper, experiment, UNMEASURABLE, "")
    points = [(int(p["iteration"]), p["test_f1"]) for p in curve if p.get("test_f1") is not None]
    if len(points) < 3:
        claim.reason = f"{len(points)} scored snapshots; a rise and a fall need at least 3"
        return claim
    iterations = [i for i, _ in points]
    f1 = [f for _, f in points]
    best = max(range(len(f1)), key=lambda k: (f1[k], -k))  # the first of equals
    claim.numbers = {"iterations": iterations, "test_f1": f1, "best_iteration": iterations[best],
                     "best_f1": f1[best], "final_f1": f1[-1], "max_iter": max_iter, "paper_max_iter": paper_max_iter}
    loss_at_best = loss_at_end = None
    if loss_iteration is not None and loss is not None and len(loss):
        loss_at_best = _loss_at(loss_iteration, loss, iterations[best])
        loss_at_end = _loss_at(loss_iteration, loss, iterations[-1])
        claim.numbers.update(loss_at_best=loss_at_best, loss_at_end=loss_at_end)
    fell = best < len(f1) - 1 and f1[-1] < f1[best] - F_DROP
    loss_fell = loss_at_best is not None and loss_at_end is not None and loss_at_end < loss_at_best
    if fell and loss_fell:
        claim.verdict = HOLDS
        claim.reason = (f"test F peaked at {_f(f1[best])} at iteration {iterations[best]} and ended at {_f(f1[-1])} "
                        f"while the loss fell from {loss_at_best:.4g} to {loss_at_end:.4g}")
    elif not fell and max_iter < paper_max_iter:
        claim.reason = (f"the schedule was shortened to {max_iter} of the paper's {paper_max_iter} iterations and "
                        f"test F had not yet fallen (best {_f(f1[best])} at iteration {iterations[best]}, "
                        f"{_f(f1[-1])} at the end)")
    else:
        claim.verdict = FAILS
        claim.reason = (f"best test F {_f(f1[best])} at iteration {iterations[best]}, {_f(f1[-1])} at the end"
                        + ("" if fell else f": no fall of more than {F_DROP}")
                        + ("" if loss_fell or not fell else "; the loss did not keep falling"))
    return claim


def _loss_at(iterations: Sequence[int], loss: Sequence[float], at: int) -> float:
    """The logged (smoothed) loss at the last logged iteration <= `at`
    (the first one when `at` precedes them all)."""
    k = max([j for j, i in enumerate(iterations) if i <= at] or [0])
    return float(loss[k])


def c5_false_alarm_regions(observations: Dict[str, Any]) -> Claim:
    paper = ("\"false alarms for the tissue surrounding the optic nerves and the temporal bones\" (Fig. 8); \"the "
             "topmost MR scans where the bones of the calvaria are not perpendicular to the projection plane\" (§5)")
    experiment = ("share of the test scans' false-positive pixels outside the brain that lie in the orbits (eyes "
                  "and optic nerves), the temporal bones and the calvaria, at the training-scan threshold; "
                  f"the finding holds when it is at least {DOMINANT:.0%}; beside it, those regions' share of the "
                  "area outside the brain (what chance would give)")
    claim = Claim("C5", "§4.3 Figs. 6-8, §5", paper, experiment, UNMEASURABLE, "")
    regions = observations.get("regions")
    if regions is None:
        claim.reason = "the cohort has no anatomical region maps (real scans have none; the phantom's have)"
        return claim
    outside = region_total(regions, OUTSIDE_BRAIN)
    named = region_total(regions, PAPER_FALSE_ALARM_REGIONS)
    area_outside = region_total(regions, OUTSIDE_BRAIN, "area_pixels")
    area_named = region_total(regions, PAPER_FALSE_ALARM_REGIONS, "area_pixels")
    total = sum(r["fp_pixels"] for r in regions.values())
    claim.numbers = {"fp_pixels": {k: r["fp_pixels"] for k, r in regions.items()},
                     "false_components": {k: r["false_components"] for k, r in regions.items()},
                     "fp_pixels_total": total, "fp_pixels_outside_brain": outside,
                     "share_in_paper_regions": named / outside if outside else None,
                     "area_share_of_paper_regions": area_named / area_outside if area_outside else None,
                     "share_outside_brain": outside / total if total else None}
    if outside == 0:
        claim.reason = f"no false-positive pixel outside the brain at this threshold ({total} in all)"
        return claim
    share = named / outside
    claim.verdict = HOLDS if share >= DOMINANT else FAILS
    claim.reason = (f"{share:.0%} of the {outside} false-positive pixels outside the brain lie in the orbits, temporal "
                    f"bones and calvaria (those regions are {area_named / max(area_outside, 1):.0%} of the area "
                    "outside the brain)")
    return claim


def c6_lesion_vs_pixel(observations: Dict[str, Any], rule: str = "msseg2016") -> Claim:
    paper = ("\"even if all the lesions were properly detected ... they typically differ in size and shape from the "
             "ground-truth masks ... we might only consider whether a lesion has been detected or not\" (§5); "
             "\"The gold standard consisted of approximate polygons\" (§6)")
    experiment = (f"lesion-wise F ({rule} rule, 3D components) against pixel-wise F on the test scans at the same "
                  "threshold, against the radiologist's polygons and against the exact plaque masks")
    pixel = observations["pixel"]
    lesion = observations["lesion"]
    numbers: Dict[str, Any] = {}
    for truth in ("polygons", "exact"):
        if truth in pixel and truth in lesion and rule in lesion[truth]:
            numbers[truth] = {"pixel_f1": pixel[truth]["f1"], "lesion_f1": lesion[truth][rule]["f1"],
                              "gap": lesion[truth][rule]["f1"] - pixel[truth]["f1"]}
    claim = Claim("C6", "§5-6", paper, experiment, UNMEASURABLE, "", numbers)
    if "polygons" not in numbers or any(isinstance(v, float) and math.isnan(v) for v in numbers["polygons"].values()):
        claim.reason = "no lesion-wise score on the test scans (no plaque marked or no reference lesion)"
        return claim
    p = numbers["polygons"]
    claim.verdict = HOLDS if p["lesion_f1"] > p["pixel_f1"] else FAILS
    claim.reason = f"with the polygons: lesion-wise F {_f(p['lesion_f1'])} vs pixel-wise {_f(p['pixel_f1'])}"
    if "exact" in numbers:
        e = numbers["exact"]
        larger = p["gap"] > e["gap"]
        numbers["gap_larger_with_polygons"] = larger
        claim.reason += (f"; with the exact masks {_f(e['lesion_f1'])} vs {_f(e['pixel_f1'])}: the gap is "
                         f"{'larger' if larger else 'not larger'} with the approximate outlines")
    else:
        claim.reason += "; the exact masks are not known for this cohort"
    return claim


def c7_larger_tiles(runs: Dict[str, Tuple[Optional[Dict[str, Any]], Optional[Dict[str, Any]]]],
                    deviations: Sequence[str] = ()) -> Claim:
    """runs: "large_euclidean" (100x100 tiles, the paper's Euclidean loss) and
    "large_dice" (the same with a soft Dice loss) -> (score results,
    observations), (None, None) when that training was not run. The finding
    holds when the Euclidean net's output is all-zero on at least ALL_ZERO_SHARE
    of the test scans; the remedy when the Dice net's is all-zero on fewer and
    its test F is higher. `deviations`: of the large-tile schedule, said beside."""
    paper = ("\"the initial tests on larger tiles resulted in all-zero network outputs, because great majority of "
             "target outputs was black\" ... \"cost function modification\"")
    experiment = ("two trainings on 100x100 tiles, the paper's net and SGD, differing in the loss alone: the "
                  "paper's Euclidean loss (solver_100.prototxt) and a soft Dice loss (solver_100_dice.prototxt, "
                  "lr 5e-4); per net, the test scans whose output has no pixel at 0.5 or above (all-zero) and the "
                  "test F at its training-scan threshold" + (f" ({'; '.join(deviations)})" if deviations else ""))
    claim = Claim("C7", "§6", paper, experiment, UNMEASURABLE, "")
    missing = [k for k in ("large_euclidean", "large_dice") if any(x is None for x in runs.get(k, (None, None)))]
    if missing:
        claim.reason = f"the {' and '.join(missing)} training was not run"
        return claim
    numbers: Dict[str, Any] = {}
    for name, (results, observations) in runs.items():
        assert results is not None and observations is not None
        numbers[name] = {"all_zero_share": all_zero_share(observations),
                         "max_output": (observations.get("outputs") or {}).get("max_output"),
                         "test_f1": results["test"]["pixel"]["f1"], "threshold": results.get("threshold")}
    numbers["all_zero_share_needed"] = ALL_ZERO_SHARE
    claim.numbers = numbers
    euclid, dice = numbers["large_euclidean"], numbers["large_dice"]
    if not euclid["all_zero_share"] == euclid["all_zero_share"]:   # NaN: no test scans
        claim.reason = "no test scans with plaques were forwarded"
        return claim
    finding = euclid["all_zero_share"] >= ALL_ZERO_SHARE
    remedy = dice["all_zero_share"] < euclid["all_zero_share"] and dice["test_f1"] > euclid["test_f1"]
    claim.verdict = HOLDS if finding and remedy else FAILS
    claim.reason = (f"Euclidean loss: all-zero output on {euclid['all_zero_share']:.0%} of the test scans (largest "
                    f"output {_f(euclid['max_output'])}), test F {_f(euclid['test_f1'])}; soft Dice: "
                    f"{dice['all_zero_share']:.0%} all-zero, test F {_f(dice['test_f1'])}: ")
    if finding and remedy:
        claim.reason += "the Euclidean net's output is all-zero, the Dice net's is not and scores higher"
    elif finding:
        claim.reason += "the Euclidean net's output is all-zero, but the Dice loss does not give more output and a higher F"
    else:
        claim.reason += (f"the Euclidean net's output is all-zero on fewer than {ALL_ZERO_SHARE:.0%} of the test scans, "
                         "so the finding does not hold here" + ("" if remedy else
                                                                 "; nor does the Dice loss give more output and a higher F"))
    return claim


def c8_brain_extraction(observations: Dict[str, Any], unavailable: Optional[str] = None) -> Claim:
    """observations: the paper-protocol net's, with `observe(brain=True)`'s
    "brain" record; `unavailable`: why there are no brain masks (then not
    measurable). Holds when dropping the detections outside the grown brain
    mask removes at least MOST of the false-positive pixels, at the same threshold."""
    paper = ("\"The ultimate solution is therefore to use some automatic or semi-automatic tools to remove the "
             "irrelevant parts of the input MR scans\"")
    experiment = ("the paper-protocol net on the test scans at its training-scan threshold, every detection further "
                  "than 3 mm outside the patient's brain mask (HD-BET, `plaquenet brainmask`) dropped: the share of "
                  f"false-positive pixels removed (holds from {MOST:.0%}), test F before and after; the phantom's "
                  "true brain beside it (a perfect extractor)")
    claim = Claim("C8", "§5-6", paper, experiment, UNMEASURABLE, "")
    brain = observations.get("brain")
    if unavailable or not brain or "extractor" not in brain:
        claim.reason = unavailable or "the test patients have no brain masks (`plaquenet brainmask --cohort`)"
        return claim
    before = observations["pixel"]["polygons"]
    numbers: Dict[str, Any] = {"fp_pixels": before["fp"], "test_f1": before["f1"], "without_mask": brain["without_mask"]}
    for name in ("extractor", "true_brain"):
        if name in brain:
            after = brain[name]
            numbers[name] = {"fp_pixels": after["fp"], "test_f1": after["f1"], "tp_lost": before["tp"] - after["tp"],
                             "fp_removed_share": (before["fp"] - after["fp"]) / before["fp"] if before["fp"] else
                             float("nan")}
    claim.numbers = numbers
    if brain["without_mask"]:
        claim.reason = f"test patients without a brain mask: {', '.join(brain['without_mask'])}"
        return claim
    if not before["fp"]:
        claim.reason = "the net made no false-positive pixel on the test scans: nothing to remove"
        return claim
    removed = numbers["extractor"]["fp_removed_share"]
    claim.verdict = HOLDS if removed >= MOST else FAILS
    claim.reason = (f"the brain mask removes {removed:.0%} of the {before['fp']:,} false-positive pixels "
                    f"({before['fp'] - brain['extractor']['fp']:,}; {MOST:.0%} counts as most), test F "
                    f"{_f(before['f1'])} -> {_f(brain['extractor']['f1'])}")
    if "true_brain" in numbers:
        claim.reason += (f"; the phantom's true brain would remove {numbers['true_brain']['fp_removed_share']:.0%} "
                         f"(test F {_f(brain['true_brain']['f1'])})")
    return claim


def c9_skull_stripped_training(paper_protocol: Optional[Dict[str, Any]], stripped: Optional[Dict[str, Any]],
                               unavailable: Optional[str] = None, length: Optional[str] = None) -> Claim:
    """The §6 remedy taken literally, on the input: a second net trained on
    tiles cut from the skull-stripped scans (`tiles --skull-strip`) and fed the
    stripped test scans, against the paper-protocol net, each at its own
    training-scan threshold. Observations of both (None: not run);
    `unavailable`: why the stripped training was not run; `length`: how
    its schedule's length differs from the other claims' (said in the
    experiment, None when it does not). Holds when its
    false-positive pixels are at most half the paper-protocol net's (MOST);
    not measurable while either net's output is still all-zero on
    ALL_ZERO_SHARE of the test scans (C7's test: it has not learned yet)."""
    paper = ("\"The ultimate solution is therefore to use some automatic or semi-automatic tools to remove the "
             "irrelevant parts of the input MR scans\"")
    experiment = ("a second training on the same schedule, its tiles cut from the scans with everything further than "
                  "3 mm outside the brain mask (HD-BET, `plaquenet brainmask`) blanked, scored on the blanked test "
                  "scans: false-positive pixels (all, and outside the brain) and test F against the paper-protocol "
                  f"net's, each at its own training-scan threshold (holds from {MOST:.0%} fewer)"
                  + (f"; {length}" if length else ""))
    claim = Claim("C9", "§6", paper, experiment, UNMEASURABLE, "")
    if paper_protocol is None or stripped is None:
        claim.reason = unavailable or ("not run: it is opt-in (`plaquenet claims --skull-strip-training`, or "
                                       "`make claims SKULL_STRIP=1`): a brain mask of every patient and one more "
                                       "training")
        return claim
    before, after = paper_protocol["pixel"]["polygons"], stripped["pixel"]["polygons"]
    numbers: Dict[str, Any] = {"fp_pixels": {"paper_protocol": before["fp"], "skull_stripped": after["fp"]},
                               "test_f1": {"paper_protocol": before["f1"], "skull_stripped": after["f1"]},
                               "tp_pixels": {"paper_protocol": before["tp"], "skull_stripped": after["tp"]}}
    if paper_protocol.get("regions") is not None and stripped.get("regions") is not None:
        numbers["fp_pixels_outside_brain"] = {"paper_protocol": region_total(paper_protocol["regions"], OUTSIDE_BRAIN),
                                              "skull_stripped": region_total(stripped["regions"], OUTSIDE_BRAIN)}
    claim.numbers = numbers
    for name, obs in (("paper-protocol", paper_protocol), ("skull-stripped", stripped)):
        share = all_zero_share(obs)
        if share >= ALL_ZERO_SHARE:   # False for NaN (no scans)
            # a net that outputs nothing gets a threshold near 0, which marks everything: no comparison
            outputs = obs["outputs"]
            numbers["not_learned"] = {"net": name, "all_zero_share": share, "max_output": outputs.get("max_output")}
            claim.reason = (f"the {name} net has not learned yet: its output is all-zero (no pixel at "
                            f"{outputs.get('all_zero_level', 0.5)}) on {outputs['all_zero_scans']} of {obs['scans']} test "
                            f"scans, largest {outputs.get('max_output', float('nan')):.3f}, and its training-scan "
                            f"threshold ({obs.get('threshold', float('nan')):.3g}) counts noise as detections; "
                            "train both longer to compare (SKULL_STRIP_ITER, `--skull-strip-max-iter`)")
            return claim
    if not before["fp"]:
        claim.reason = "the paper-protocol net made no false-positive pixel on the test scans: nothing to remove"
        return claim
    removed = (before["fp"] - after["fp"]) / before["fp"]
    numbers["fp_removed_share"] = removed
    claim.verdict = HOLDS if removed >= MOST else FAILS
    claim.reason = (f"trained and tested on skull-stripped scans the net makes {after['fp']:,} false-positive pixels "
                    f"against {before['fp']:,} ({_change(after['fp'], before['fp'])}; {MOST:.0%} fewer counts), "
                    f"test F {_f(before['f1'])} -> {_f(after['f1'])}")
    if "fp_pixels_outside_brain" in numbers:
        outside = numbers["fp_pixels_outside_brain"]
        claim.reason += f"; outside the brain {outside['paper_protocol']:,} -> {outside['skull_stripped']:,}"
    return claim
