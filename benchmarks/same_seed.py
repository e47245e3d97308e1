"""Benchmark (s): is a run repeatable by seed on this device? Two base trainings and two PCDD steps with the same seed.

The tests pin determinism on the CPU; CUDA picks convolution algorithms at run time and some of them add in
a varying order, so this measures how far two same-seed runs land apart there (the largest weight
difference, 0 when bitwise identical).

Usage: python benchmarks/same_seed.py [--output DIR] [--iterations 20] [--device auto]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402


def ciss(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "ciss_engine", *map(str, args), "--quiet"], check=True, cwd=ROOT)


def largest_difference(first: Path, second: Path) -> float:
    """The largest absolute difference between two bundles' current weights."""
    a, b = (Bundle.open_or_raise(path).load().load_state_dict() for path in (first, second))
    return max(float((a[name].float() - b[name].float()).abs().max()) for name in a if torch.is_tensor(a[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "output" / "same_seed")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    out = args.output
    shutil.rmtree(out, ignore_errors=True)
    ciss("phantom", "-o", out / "data", "--cases", "2", "--seed", "3")
    cases = [out / "data" / f"case_00{i}" for i in range(2)]
    label = nib.load(str(cases[1] / "label_seg8.nii.gz"))
    data = np.asarray(label.dataobj)
    nib.save(nib.Nifti1Image(np.where(data == 7, 1, 0).astype(np.uint8), label.affine), str(out / "liver.nii.gz"))
    for run in ("a", "b"):
        ciss("train", "-i", cases[0] / "image.nii.gz", "-l", cases[0] / "label_seg8.nii.gz", "--organs", "spleen=1,kidney_right=2,kidney_left=3,gallbladder=4",
             "--other-labels", "background", "-o", out / run, "--iterations", args.iterations, "--seed", 0, "--device", args.device)
    base = largest_difference(out / "a", out / "b")
    step = out / "step_b"
    shutil.copytree(out / "a", out / "step_a")
    shutil.copytree(out / "a", step)
    for bundle in (out / "step_a", step):
        ciss("learn", "-b", bundle, "--organ", "liver", "-i", cases[1] / "image.nii.gz", "-l", out / "liver.nii.gz", "--strategy", "pcdd",
             "--iterations", args.iterations, "--seed", 0, "--accept-forgetting", "--device", args.device)
    print(f"device {args.device}, {args.iterations} iterations: largest weight difference between same-seed runs: "
          f"base training {base:.3g}, PCDD step from the same base {largest_difference(out / 'step_a', step):.3g}")


if __name__ == "__main__":
    main()
