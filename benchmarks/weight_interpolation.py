"""Benchmark: a domain step's weights interpolated towards its parent's (WiSE-FT), scored on every site.

θ(β) = θ_parent + β·(θ_step − θ_parent): β 1 is the step as trained, 0 its parent. Interpolating fine-tuned weights
towards the model they started from is known to keep more of what that model knew at little cost where it was
fine-tuned; here "what it knew" is the earlier sites. Post hoc, on the last step of a domain-protocol run
(``benchmarks/domain_protocol.sh``): no retraining, so a sequence of interpolated steps is not measured, only the
last step's trade-off. ``--anchor base`` interpolates towards the first version (the site-1 base) instead.

Usage: python benchmarks/weight_interpolation.py ROW_OUTPUT [--strategy dual_alignment] [--seed 0] [--betas 1,0.9,0.75,0.5] [--anchor parent|base]
  ROW_OUTPUT: a domain protocol's output folder (its data/SITE/test cases and seed_N/STRATEGY bundle).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.inference import Segmenter  # noqa: E402
from ciss_engine.protocol import PAPER_ORGANS, cases_in, old_new_all, score_segmenter  # noqa: E402


def interpolated(anchor: dict[str, torch.Tensor], step: dict[str, torch.Tensor], beta: float) -> dict[str, torch.Tensor]:
    """θ_anchor + β·(θ_step − θ_anchor) for every float tensor; integer buffers as the step has them."""
    return {name: anchor[name] + beta * (value - anchor[name]) if value.is_floating_point() else value for name, value in step.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--strategy", default="dual_alignment")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--betas", default="1,0.9,0.85,0.75,0.5")
    parser.add_argument("--anchor", choices=("parent", "base"), default="parent")
    args = parser.parse_args()
    bundle = Bundle.open_or_raise(args.output / f"seed_{args.seed}" / args.strategy)
    names = bundle.versions()
    step = bundle.load(names[-1])
    anchor = bundle.load(names[0] if args.anchor == "base" else step.history[-1]["parent_version"])
    segmenter = Segmenter(step, torch.device("cpu"))
    sites = {site.name: cases_in(site / "test") for site in sorted((args.output / "data").iterdir())}
    organs = [PAPER_ORGANS.index(o.name) + 1 for o in step.registry.organs]  # old_new_all counts in the paper's ids
    print(f"{names[-1]} interpolated towards {anchor.version} ({args.anchor}); mean DSC over {', '.join(o.name for o in step.registry.organs)}")
    print("| β | " + " | ".join(sites) + " | mean of the sites |\n|---:|" + "---:|" * (len(sites) + 1))
    anchor_weights, step_weights = anchor.load_state_dict(), step.load_state_dict()
    for beta in (float(b) for b in args.betas.split(",")):
        segmenter.network.load_state_dict(interpolated(anchor_weights, step_weights, beta))
        dsc = [old_new_all(score_segmenter(segmenter, cases)["scores"], [organs])["all"] for cases in sites.values()]
        print(f"| {beta:g} | " + " | ".join(f"{d:.4f}" for d in dsc) + f" | {np.mean(dsc):.4f} |", flush=True)


if __name__ == "__main__":
    main()
