"""Benchmark (i): base models on the real CTs, as a site trains them (issue 14's goals).

Three trainings with the same settings: on both real CTs (``ts_abdpelvis`` organs 1-4, ``chest_4x`` organs
1-3; it has no gallbladder), and on each CT alone, scored on the other (transfer to another patient).
Each model segments both CTs with ``ciss segment``; the table gives DSC per organ and the predicted organ
voxels that lie more than ``--stray-mm`` from every labelled organ (1-8) of that CT: organs painted where
there is no abdomen (the chest_4x CT reaches the neck and shoulders). Beside each prediction a picture shows the
reference and the prediction on the same slices (``<bundle>_<version>_<ct>.png``).

With ``--step``, the model trained on both CTs then learns organs 5-8 from labels 5-8 only on both CTs with
``ciss learn``'s defaults (the issue's real-CT step goal); with ``--step-strategies pcdd,mib``, a copy of that
base learns the same step with each strategy (same base, same data: retention compared in one run), once per
``--step-seeds`` seed. The table
adds every organ, each old organ's DSC after the step over its DSC before, and the forgetting guard's verdict.

Usage: python benchmarks/real_ct_base.py [-o DIR] [--runs both,ts_abdpelvis,chest_4x] [--step] [--step-strategies S,…] [--step-seeds 0,1,2]
       [--step-preset quick|standard|thorough] [--step-learning-rate LR] [-- ciss train flags]
A bundle already in DIR is reused (its training time is read from the .seconds file beside it), and the table keeps
the runs of earlier invocations on DIR (``real_ct_base.json``); invocations may run side by side on one DIR (another
strategy or seed each).
"""
from __future__ import annotations

import argparse
import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.atomic import write_atomic, write_json_atomic  # noqa: E402
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.preview import write_comparison_png  # noqa: E402

DATA = Path(os.environ.get("CISS_DATA", ROOT.parent / "shared" / "data")) / "ct"
ORGANS = {"spleen": 1, "kidney_right": 2, "kidney_left": 3, "gallbladder": 4}
NEW_ORGANS = {"esophagus": 5, "pancreas": 6, "liver": 7, "stomach": 8}
CTS = ("ts_abdpelvis", "chest_4x")


def ciss(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "ciss_engine", *map(str, args), "--quiet"], check=True, cwd=ROOT)


def timed_once(marker: Path, command: list[object]) -> float:
    """Run a ciss command unless ``marker`` (its wall-clock seconds) says it already ran; the seconds."""
    if not marker.exists():
        began = time.perf_counter()
        ciss(*command)
        marker.write_text(f"{time.perf_counter() - began:.1f}")
    return float(marker.read_text())


def labelled_organs(cts: list[str]) -> dict[str, int]:
    """The base organs labelled in at least one of ``cts`` (chest_4x has no gallbladder)."""
    present = set().union(*(np.unique(np.asarray(nib.load(str(DATA / ct / "label_seg8.nii.gz")).dataobj)).tolist() for ct in cts))
    return {name: value for name, value in ORGANS.items() if value in present}


def train(bundle: Path, cts: list[str], flags: list[str]) -> float:
    return timed_once(bundle.parent / f"{bundle.name}.seconds", [
        "train", "-i", *(DATA / ct / "image.nii.gz" for ct in cts), "-l", *(DATA / ct / "label_seg8.nii.gz" for ct in cts),
        "--organs", ",".join(f"{name}={value}" for name, value in labelled_organs(cts).items()), "--other-labels", "background", "-o", bundle, *flags,
    ])


def learn_new_organs(bundle: Path, out: Path, strategy: str | None = None, seed: int = 0, preset: str | None = None,
                     learning_rate: float | None = None) -> float:
    """Organs 5-8 from label maps that hold only them, on both CTs, with ciss learn's defaults (its default strategy
    unless ``strategy``, written NAME or NAME:SETTING=VALUE+SETTING=VALUE; seed 0 unless ``seed``; its default preset
    unless ``preset``; its default learning rate unless ``learning_rate``)."""
    labels = []
    for ct in CTS:
        labels.append(out / f"new_organs_{ct}.nii.gz")
        if not labels[-1].exists():  # written once, atomically: a step running beside this one may be reading it
            full = nib.load(str(DATA / ct / "label_seg8.nii.gz"))
            data = np.asarray(full.dataobj)
            new_only = nib.Nifti1Image(np.where(np.isin(data, list(NEW_ORGANS.values())), data, 0).astype(np.uint8), full.affine)
            write_atomic(labels[-1], lambda tmp, image=new_only: nib.save(image, str(tmp)))
    return timed_once(out / f"{bundle.name}.step.seconds", [
        "learn", "-b", bundle, "--organ", ",".join(f"{name}={value}" for name, value in NEW_ORGANS.items()),
        "-i", *(DATA / ct / "image.nii.gz" for ct in CTS), "-l", *labels, "--accept-forgetting", *(strategy_flags(strategy) if strategy else []), "--seed", seed, *(["--preset", preset] if preset else []),
        *(["--learning-rate", learning_rate] if learning_rate else []),
    ])


def guard_verdict(bundle: Path) -> str:
    """The forgetting guard's verdict on the step's version (1.1.0) and its lowest agreement, from the history."""
    guard = Bundle(bundle).load("1.1.0").history[-1]["forgetting_guard"]
    lowest = min((value, name) for name, value in guard["agreement"].items() if value is not None)
    return f"{'passed' if guard['passed'] else 'rejected'} ({lowest[0]:.2f}, {lowest[1]})"


def strategy_flags(spec: str) -> list[str]:
    """``ciss learn`` flags of a strategy spec: ``mib`` or ``mib:new_class_ce=1+lambda_kd=5``."""
    name, _, settings = spec.partition(":")
    return ["--strategy", name, *(flag for setting in filter(None, settings.split("+")) for flag in ("--setting", setting))]


def score(bundle: Path, version: str, ct: str, out: Path, stray_mm: float) -> dict[str, float]:
    """DSC per organ of the version present in the CT's labels, and predicted organ voxels far from every labelled organ."""
    prediction_path = out / f"{bundle.name}_{version}_{ct}.nii.gz"
    ciss("segment", "-b", bundle, "--bundle-version", version, "-i", DATA / ct / "image.nii.gz", "-o", prediction_path, "--no-preview")
    reference_image = nib.load(str(DATA / ct / "label_seg8.nii.gz"))
    reference = np.asarray(reference_image.dataobj).astype(np.int64)
    predicted = np.asarray(nib.load(str(prediction_path)).dataobj).astype(np.int64)
    registry = Bundle(bundle).load(version).registry
    scores: dict[str, float] = {}
    reference_as_bundle = np.zeros_like(predicted)  # the reference in the bundle's class ids, for the picture
    for name, value in {**ORGANS, **NEW_ORGANS}.items():
        if name not in registry.names:
            continue
        truth, guess = reference == value, predicted == registry.by_name(name).label
        reference_as_bundle[truth] = registry.by_name(name).label
        if truth.any():
            scores[name] = float(2 * (truth & guess).sum() / (truth.sum() + guess.sum()))
    write_comparison_png(prediction_path.with_name(prediction_path.name.removesuffix(".nii.gz") + ".png"), nib.load(str(DATA / ct / "image.nii.gz")),
                         reference_as_bundle, predicted, registry, labels=("reference", f"{bundle.name} {version}"), title=f"{bundle.name} {version} on {ct}")
    spacing = reference_image.header.get_zooms()[:3]
    distance = ndimage.distance_transform_edt(reference == 0, sampling=spacing)
    scores["stray_voxels"] = float(((predicted > 0) & (distance > stray_mm)).sum())
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "benchmarks" / "output" / "real_ct_base")
    parser.add_argument("--runs", default="both," + ",".join(CTS), help="which trainings: both and/or single CT names")
    parser.add_argument("--stray-mm", type=float, default=30.0)
    parser.add_argument("--step", action="store_true", help="then learn organs 5-8 on the model trained on both CTs")
    parser.add_argument("--step-strategies", default="", help="comma-separated strategies (NAME or NAME:SETTING=VALUE+…), each learning the step on its own copy of the base")
    parser.add_argument("--step-seeds", default="0", help="comma-separated seeds of each --step-strategies step (ciss learn --seed)")
    parser.add_argument("--step-preset", choices=("quick", "standard", "thorough"), help="ciss learn --preset of each --step-strategies step (default: learn's)")
    parser.add_argument("--step-learning-rate", type=float, help="ciss learn --learning-rate of each --step-strategies step (default: learn's)")
    parser.add_argument("train_flags", nargs="*", help="after --: flags for ciss train (e.g. --iterations 1000)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    saved = args.output / "real_ct_base.json"

    def record(run: str, result: dict) -> None:
        """Add a run's scores and save them at once: a run stopped by a time limit keeps what it measured.

        Re-read under a lock and replace atomically: earlier invocations' runs stay in the table, and invocations side by
        side on one folder (another seed or strategy each) do not overwrite each other's.
        """
        with open(saved.with_name(f"{saved.name}.lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            results = json.loads(saved.read_text()) if saved.exists() else {}
            results[run] = result
            write_json_atomic(saved, results)

    for run in args.runs.split(","):
        cts = list(CTS) if run == "both" else [run]
        bundle = args.output / f"base_{run}"
        seconds = train(bundle, cts, args.train_flags)
        record(run, {"seconds": seconds, **{ct: score(bundle, "1.0.0", ct, args.output, args.stray_mm) for ct in CTS}})
    if args.step:
        bundle = args.output / "base_both"
        seconds = learn_new_organs(bundle, args.output)
        record("both, then step 5-8", {"seconds": seconds, "guard": guard_verdict(bundle), **{ct: score(bundle, "1.1.0", ct, args.output, args.stray_mm) for ct in CTS}})
    for strategy, seed in itertools.product(filter(None, args.step_strategies.split(",")), map(int, args.step_seeds.split(","))):
        label = strategy + (f", {args.step_preset}" if args.step_preset else "") + (f", lr {args.step_learning_rate:g}" if args.step_learning_rate else "")
        copy = args.output / (f"step_{strategy.replace(':', '_')}" + (f"_{args.step_preset}" if args.step_preset else "")
                              + (f"_lr{args.step_learning_rate:g}" if args.step_learning_rate else "") + (f"_seed{seed}" if seed else ""))
        if not copy.exists():
            versions = args.output / "base_both" / "versions"  # the base alone: the default step's version stays behind
            shutil.copytree(args.output / "base_both", copy, ignore=lambda folder, names: [n for n in names if Path(folder) == versions and n != "1.0.0"])
            Bundle.open_or_raise(copy).set_current("1.0.0")
        seconds = learn_new_organs(copy, args.output, strategy, seed, args.step_preset, args.step_learning_rate)
        record(f"both, then {label} step 5-8" + (f", seed {seed}" if seed else ""),
               {"seconds": seconds, "guard": guard_verdict(copy), **{ct: score(copy, "1.1.0", ct, args.output, args.stray_mm) for ct in CTS}})
    results: dict[str, dict] = json.loads(saved.read_text())
    organs = {**ORGANS, **NEW_ORGANS} if any(run.startswith("both, then") for run in results) else ORGANS
    lines = [f"ciss train {' '.join(args.train_flags)}", "",
             "| trained on | minutes | scored on | " + " | ".join(organs) + f" | organ voxels > {args.stray_mm:g} mm from any organ | guard (lowest agreement) |",
             "|---|---:|---|" + "---:|" * (len(organs) + 1) + "---|"]
    for run, result in results.items():
        for ct in CTS:
            before = results["both"][ct] if run.startswith("both, then") else {}
            cells = [(f"{result[ct][name]:.2f}" + (f" ({result[ct][name] / before[name]:.2f} ×)" if before.get(name) else "")) if name in result[ct] else "–"
                     for name in organs]
            guard = result.get("guard", "") if ct == CTS[0] else ""
            lines.append(f"| {run} | {result['seconds'] / 60:.1f} | {ct}{' (training CT)' if run.startswith('both') or run == ct else ''} | {' | '.join(cells)} | "
                         f"{result[ct]['stray_voxels']:.0f} | {guard} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
