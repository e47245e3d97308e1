"""Benchmark (c): cost of a PCDD (and MiB) step against a plain supervised step with the same network,
patch and batch (``finetune``: CE + Dice, no old model), on the same data, one process each. Each distilling
strategy (``uniform`` is PCDD's losses without the affinities; the default before RESULTS.md (v)) runs twice: with the old model
run on every patch (``teacher=online``), and with its whole-CT outputs cropped from the cache
(``teacher=cached``).

Usage: python benchmarks/step_cost.py [--iterations 40] [--init-filters 16] [--patch-size 64] [--output benchmarks/output/step_cost]
Prints a markdown table (seconds per iteration, ratio, peak memory) and writes step_cost.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def ciss(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "ciss_engine", *map(str, args), "--quiet"], check=True, cwd=ROOT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--init-filters", type=int, default=16)
    parser.add_argument("--patch-size", type=int, default=64)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "output" / "step_cost")
    args = parser.parse_args()
    out = args.output
    shutil.rmtree(out, ignore_errors=True)
    ciss("phantom", "-o", out / "data", "--cases", "2", "--seed", "7")
    cases = [out / "data" / f"case_00{i}" for i in range(2)]
    ciss("train", "-i", cases[0] / "image.nii.gz", "-l", cases[0] / "label_seg8.nii.gz", "--organs", "spleen=1,kidney_right=2,kidney_left=3,gallbladder=4",
         "--other-labels", "background", "-o", out / "base", "--iterations", "2",
         "--init-filters", args.init_filters, "--patch-size", args.patch_size)
    label = nib.load(str(cases[1] / "label_seg8.nii.gz"))
    data = np.asarray(label.dataobj)
    new = np.zeros_like(data)
    for index, value in enumerate((5, 6, 7, 8), start=1):
        new[data == value] = index
    nib.save(nib.Nifti1Image(new, label.affine), str(out / "new_organs.nii.gz"))
    rows = {}
    for strategy, teacher in (("finetune", "online"), ("mib", "online"), ("mib", "cached"), ("uniform", "online"), ("uniform", "cached"),
                              ("pcdd", "online"), ("pcdd", "cached")):
        name = strategy if strategy == "finetune" else f"{strategy}, teacher={teacher}"
        bundle = out / f"bundle_{strategy}_{teacher}"
        shutil.copytree(out / "base", bundle)
        ciss("learn", "-b", bundle, "--organ", "esophagus,pancreas,liver,stomach", "-i", cases[1] / "image.nii.gz", "-l", out / "new_organs.nii.gz",
             "--strategy", strategy, "--iterations", args.iterations, "--accept-forgetting", "--setting", f"teacher={teacher}")
        history = json.loads((bundle / "versions" / "1.1.0" / "docs" / "history.json").read_text())[-1]
        rows[name] = history["metrics"]
    base = rows["finetune"]
    lines = ["| strategy | s / iteration | × supervised | peak memory (MB) | × supervised |", "|---|---:|---:|---:|---:|"]
    for name, metrics in rows.items():
        lines.append(
            f"| {name} | {metrics['seconds_per_iteration']:.3f} | {metrics['seconds_per_iteration'] / base['seconds_per_iteration']:.2f} "
            f"| {metrics['peak_memory_mb']:.0f} | {metrics['peak_memory_mb'] / base['peak_memory_mb']:.2f} |"
        )
    print("\n".join(lines))
    (out / "step_cost.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
