"""Benchmark (aq): are one patient's model's misses on the other patient a lack of confidence?

Takes the single-CT bases of ``real_ct_base.py --runs ts_abdpelvis,chest_4x`` (one or more output folders) and
segments each on the other patient's CT and on its own, with the background's probability scaled by each factor
before the argmax (1: as `ciss segment` does), each one-piece organ then kept in its large pieces as `ciss segment`
keeps it (postprocessing.keep_largest_pieces). A factor that raises the other patient's organs and keeps the
model's own says the model sees the organs but not surely enough; one that costs the own CT is no default.
DSC of spleen / kidney_right / kidney_left on the network grid.

Usage: python benchmarks/transfer_calibration.py OUTPUT_OF_REAL_CT_BASE [...] [--factors 1,0.5,0.25,0.1]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from phase_swap import MOVED, OTHER, GridScorer, load_ct

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ciss_engine.postprocessing import keep_largest_pieces  # noqa: E402


def scaled_dice(scorer: GridScorer, ct: str, factors: list[float]) -> dict[float, list[float]]:
    """Per factor, the DSC of each organ of MOVED on ``ct`` with background's probability times that factor."""
    probabilities = scorer.probabilities(load_ct(ct)[0]).numpy()
    labels = [scorer.version.registry.by_name(name).label for name in MOVED]
    truth = scorer.truth.numpy()
    result = {}
    for factor in factors:
        scaled = probabilities.copy()
        scaled[0] *= factor
        predicted = keep_largest_pieces(scaled.argmax(0), labels)
        result[factor] = [2 * float(((predicted == label) & (truth == value)).sum()) / float((predicted == label).sum() + (truth == value).sum())
                          for label, value in zip(labels, MOVED.values())]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, nargs="+", help="real_ct_base.py's output folders with base_ts_abdpelvis and base_chest_4x")
    parser.add_argument("--factors", default="1,0.5,0.25,0.1", help="factors for the background's probability")
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    print("| run | trained on | scored on | " + " | ".join(f"× {f:g}" for f in factors) + " |")
    print("|---|---|---|" + "---|" * len(factors))
    means: dict[tuple[bool, float], list[float]] = {}
    for output in args.outputs:
        for trained_on, other in OTHER.items():
            for scored_on in (other, trained_on):
                dice = scaled_dice(GridScorer(output / f"base_{trained_on}", scored_on), scored_on, factors)
                for factor, values in dice.items():
                    means.setdefault((scored_on == trained_on, factor), []).extend(values)
                print(f"| {output.name} | {trained_on} | {scored_on} | " + " | ".join(" / ".join(f"{d:.2f}" for d in dice[f]) for f in factors) + " |", flush=True)
    for own in (False, True):
        print(f"mean over {'own' if own else 'other patient'}'s cells: " + ", ".join(f"× {f:g} {np.mean(means[(own, f)]):.3f}" for f in factors))


if __name__ == "__main__":
    main()
