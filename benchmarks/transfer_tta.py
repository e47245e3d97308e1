"""Benchmark (ax): intensity test-time augmentation for a model on another patient's CT (issue 14's transfer goal).

Takes the single-CT bases of ``real_ct_base.py --runs ts_abdpelvis,chest_4x`` and segments each on the other
patient's CT and on its own with its softmax averaged over the input as it is and intensity-transformed copies
(gamma, contrast about the mean, a shift, within the ranges its training augmentation draws); each organ is then kept
as ``ciss segment`` keeps it (large pieces). DSC of spleen / kidney_right / kidney_left on the network grid, for each
single transform and for each family averaged with the input. Spatial transforms are left out: the network never saw
a mirrored patient, and left and right are organs here.

Usage: python benchmarks/transfer_tta.py OUTPUT_OF_REAL_CT_BASE
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from phase_swap import MOVED, OTHER, GridScorer, load_ct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ciss_engine.postprocessing import keep_largest_pieces  # noqa: E402
from ciss_engine.preprocessing import image_to_network  # noqa: E402

TRANSFORMS = {
    "gamma 0.8": lambda t: t.clamp(0, 1) ** 0.8, "gamma 1.25": lambda t: t.clamp(0, 1) ** 1.25,
    "contrast 0.85": lambda t: (t - t.mean()) * 0.85 + t.mean(), "contrast 1.15": lambda t: (t - t.mean()) * 1.15 + t.mean(),
    "shift -0.05": lambda t: t - 0.05, "shift +0.05": lambda t: t + 0.05,
}
FAMILIES = {"gamma": ["gamma 0.8", "gamma 1.25"], "contrast": ["contrast 0.85", "contrast 1.15"], "shift": ["shift -0.05", "shift +0.05"],
            "all six": list(TRANSFORMS)}


def averaged_dice(scorer: GridScorer, ct: str) -> dict[str, list[float]]:
    """Per row (the input alone, each transform alone, the input with each family), the DSC of each organ of MOVED."""
    tensor = image_to_network(load_ct(ct)[0], scorer.config)
    as_is = scorer.probabilities_on_grid(tensor)
    transformed = {name: scorer.probabilities_on_grid(transform(tensor.clone())) for name, transform in TRANSFORMS.items()}
    rows = {"as it is": [as_is]} | {name: [p] for name, p in transformed.items()}
    rows |= {f"as it is + {family}": [as_is, *(transformed[n] for n in names)] for family, names in FAMILIES.items()}
    labels = [scorer.version.registry.by_name(name).label for name in MOVED]
    kept = {row: keep_largest_pieces(torch.stack(members).mean(0).argmax(0).numpy(), labels) for row, members in rows.items()}
    return {row: list(scorer.dice(torch.from_numpy(predicted)).values()) for row, predicted in kept.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="real_ct_base.py's output folder with base_ts_abdpelvis and base_chest_4x")
    args = parser.parse_args()
    print("| trained on | scored on | inputs averaged | " + " | ".join(MOVED) + " |\n|---|---|---|" + "---:|" * len(MOVED))
    for trained_on, other in OTHER.items():
        for scored_on in (other, trained_on):
            for row, dice in averaged_dice(GridScorer(args.output / f"base_{trained_on}", scored_on), scored_on).items():
                print(f"| {trained_on} | {scored_on} | {row} | " + " | ".join(f"{d:.2f}" for d in dice) + " |", flush=True)


if __name__ == "__main__":
    main()
