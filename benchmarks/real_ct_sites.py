"""Benchmark: the two real CTs as two sites (issue 17, domain-incremental on real anatomy).

Site 1 is ``ts_abdpelvis`` (the base model's training CT, organs 1-4); site 2 is ``chest_4x``, another patient
and scanner (neck to L3, 2.8 mm in-plane, LAS), labelled for spleen and kidneys (it has no gallbladder). Each
strategy adapts its own copy of the site-1 base with ``ciss adapt`` (defaults: ``standard`` budget) on site 2;
the table gives DSC on both sites before and after, and site 1's DSC over the base's (what the step forgot).
Scored on the training CTs of each site: two patients show the mechanism, not how it generalises.

Usage: python benchmarks/real_ct_sites.py --base DIR/base_ts_abdpelvis [-o DIR] [--strategies finetune,mib,dual_alignment] [--organ-contrast S]
    [--setting NAME=VALUE ...]
(``real_ct_base.py --runs ts_abdpelvis`` trains that base.)
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_ct_base import DATA, ORGANS, score, timed_once  # noqa: E402

from ciss_engine.bundle import Bundle  # noqa: E402

SITE_1, SITE_2 = "ts_abdpelvis", "chest_4x"
SITE_2_ORGANS = {name: value for name, value in ORGANS.items() if name != "gallbladder"}


def site_2_labels(out: Path) -> Path:
    """chest_4x's labels of spleen and kidneys only, at their label ids (the other organs are not the bundle's)."""
    full = nib.load(str(DATA / SITE_2 / "label_seg8.nii.gz"))
    data = np.asarray(full.dataobj)
    path = out / "site_2_labels.nii.gz"
    nib.save(nib.Nifti1Image(np.where(np.isin(data, list(SITE_2_ORGANS.values())), data, 0).astype(np.uint8), full.affine), str(path))
    return path


def adapt(base: Path, out: Path, strategy: str, labels: Path, extra: list[str]) -> tuple[Path, float]:
    copy = out / f"site_2_{strategy}"
    if not copy.exists():
        shutil.copytree(base, copy)
    seconds = timed_once(out / f"{copy.name}.seconds", [
        "adapt", "-b", copy, "-i", DATA / SITE_2 / "image.nii.gz", "-l", labels,
        "--organs", ",".join(f"{name}={value}" for name, value in SITE_2_ORGANS.items()), "--strategy", strategy, "--accept-forgetting", *extra,
    ])
    return copy, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="a bundle trained on ts_abdpelvis alone (real_ct_base.py --runs ts_abdpelvis)")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).resolve().parent / "output" / "real_ct_sites")
    parser.add_argument("--strategies", default="finetune,mib,dual_alignment")
    parser.add_argument("--stray-mm", type=float, default=30.0)
    parser.add_argument("--organ-contrast", default=None, help="ciss adapt's --organ-contrast (default: its own default)")
    parser.add_argument("--setting", action="append", default=[], metavar="NAME=VALUE", help="a setting of every strategy run, repeatable (ciss adapt --setting)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    labels = site_2_labels(args.output)
    base_version = Bundle.open_or_raise(args.base).current_version
    results = {"base (site 1)": {ct: score(args.base, base_version, ct, args.output, args.stray_mm) for ct in (SITE_1, SITE_2)}}
    for strategy in args.strategies.split(","):
        extra = [] if args.organ_contrast is None else ["--organ-contrast", args.organ_contrast]
        extra += [flag for setting in args.setting for flag in ("--setting", setting)]
        bundle, seconds = adapt(args.base, args.output, strategy, labels, extra)
        version = Bundle.open_or_raise(bundle).current_version
        results[strategy] = {"seconds": seconds, **{ct: score(bundle, version, ct, args.output, args.stray_mm) for ct in (SITE_1, SITE_2)}}
    (args.output / "real_ct_sites.json").write_text(json.dumps(results, indent=2))
    before = results["base (site 1)"][SITE_1]
    lines = ["| model | " + " | ".join(f"site 1 {n}" for n in ORGANS) + " | site 1 kept | " + " | ".join(f"site 2 {n}" for n in SITE_2_ORGANS) + " | site 2 mean |",
             "|---|" + "---:|" * (len(ORGANS) + len(SITE_2_ORGANS) + 2)]
    for name, result in results.items():
        site_1, site_2 = result[SITE_1], result[SITE_2]
        kept = np.mean([site_1[n] / before[n] for n in ORGANS if before.get(n)])
        lines.append(f"| {name} | " + " | ".join(f"{site_1[n]:.2f}" for n in ORGANS) + f" | {kept:.2f} × | "
                     + " | ".join(f"{site_2[n]:.2f}" for n in SITE_2_ORGANS) + f" | {np.mean([site_2[n] for n in SITE_2_ORGANS]):.3f} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
