"""Benchmark (o), (ax), (bc): what each postprocessing rule does to DSC (ciss_engine/postprocessing.py).

Every bundle given segments every case once; its argmax is scored as it is, with the large pieces of each one-piece
organ kept, with air first cleared from the organs that never hold any (today's postprocessing), and, for each
``--near-mm`` distance, with a candidate rule that also keeps every piece within that distance of a kept piece
(chained): an organ cut apart on the network's coarse grid, such as a pancreas whose thin body is lost, keeps its
parts. The columns differ by the rule alone. It also prints, per bundle and case, the voxels the air rule clears
from the argmax and their median HU, and gives each organ's darkest labelled voxel: what the rule's bound rests on. Cases are folders with image.nii.gz and label_seg8.nii.gz (the paper's
organ ids, as the phantom and the protocol use them; the real CTs' folder is one). Use validation cases to choose
the default. ``--latest``: each bundle's newest version, published or rejected by the forgetting guard (a real-CT
step's), instead of its current one.

Usage: python benchmarks/postprocessing.py --cases DIR --bundles BUNDLE… [--near-mm 10 20] [--latest] [-o results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.metrics import compute_dice
from scipy import ndimage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.inference import Segmenter  # noqa: E402
from ciss_engine.postprocessing import AIR_HU, EVERY_NEIGHBOUR, Postprocessing, keep_largest_pieces  # noqa: E402
from ciss_engine.protocol import case_in_bundle_labels, cases_in  # noqa: E402


def with_near_pieces(raw: np.ndarray, kept: np.ndarray, labels: Sequence[int], spacing: Sequence[float], near_mm: float) -> np.ndarray:
    """``kept`` plus every piece of ``raw`` within ``near_mm`` of a kept piece of its organ, repeated until none is added."""
    grown = kept.copy()
    margin = np.array([int(np.ceil(near_mm / s)) for s in spacing])
    for value in labels:
        pieces, count = ndimage.label(raw == value, structure=EVERY_NEIGHBOUR)
        kept_ids = set(np.unique(pieces[kept == value]).tolist()) - {0}
        dropped = set(range(1, count + 1)) - kept_ids
        while dropped and kept_ids:
            inside = np.isin(pieces, list(kept_ids))
            where = np.argwhere(inside)
            box = tuple(slice(low, high) for low, high in zip(np.maximum(where.min(0) - margin, 0), where.max(0) + margin + 1))
            close = pieces[box][ndimage.distance_transform_edt(~inside[box], sampling=spacing) <= near_mm]
            added = set(close.tolist()) & dropped
            if not added:
                break
            kept_ids |= added
            dropped -= added
        grown[np.isin(pieces, list(kept_ids))] = value
    return grown


def scored_ways(bundle: Path, cases_dir: Path, near_mm: Sequence[float], latest: bool) -> tuple[dict[str, dict[str, list[float]]], dict[str, float]]:
    """Per organ and rule, the DSC of every case where the organ is labelled; per organ, its darkest labelled voxel (HU).
    Prints, per case, the voxels the air rule cleared and their median HU."""
    opened = Bundle.open_or_raise(bundle)
    version = opened.load(opened.versions()[-1] if latest else None)
    segmenter = Segmenter(version, torch.device("cpu"), postprocess=False)
    today = Postprocessing.of(version)
    scores: dict[str, dict[str, list[float]]] = {}
    darkest: dict[str, float] = {}
    for case in cases_in(cases_dir):
        image, _, remapped = case_in_bundle_labels(case, version.registry)
        raw = segmenter.segment(image).label
        hounsfield = np.asarray(image.dataobj)
        spacing = [float(s) for s in image.header.get_zooms()[:3]]
        kept = keep_largest_pieces(raw, today.one_piece)
        cleared = np.isin(raw, today.never_air) & (hounsfield < AIR_HU)
        print(f"{bundle.name} on {case.image.parent.name}: air rule cleared {int(cleared.sum())} voxels"
              + (f" (median {np.median(hounsfield[cleared]):.0f} HU)" if cleared.any() else ""), file=sys.stderr)
        ways = {"as predicted": raw, "large pieces kept": kept, "air cleared, large pieces kept": today.applied(raw, hounsfield)}
        ways |= {f"and pieces within {d:g} mm": with_near_pieces(raw, kept, today.one_piece, spacing, d) for d in near_mm}
        for organ in version.registry.organs:
            truth = remapped == organ.label
            if truth.any():
                darkest[organ.name] = min(darkest.get(organ.name, np.inf), float(hounsfield[truth].min()))
                for way, prediction in ways.items():
                    dice = compute_dice(torch.as_tensor(prediction == organ.label)[None, None], torch.as_tensor(truth)[None, None], include_background=True)
                    scores.setdefault(organ.name, {}).setdefault(way, []).append(float(dice[0, 0]))
    return scores, darkest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--bundles", type=Path, nargs="+", required=True)
    parser.add_argument("--near-mm", type=float, nargs="*", default=[])
    parser.add_argument("--latest", action="store_true")
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    pooled: dict[str, dict[str, list[float]]] = {}
    darkest: dict[str, float] = {}
    for bundle in args.bundles:
        scores_by_organ, darkest_by_organ = scored_ways(bundle, args.cases, args.near_mm, args.latest)
        for name, ways in scores_by_organ.items():
            darkest[name] = min(darkest.get(name, np.inf), darkest_by_organ[name])
            for way, values in ways.items():
                pooled.setdefault(name, {}).setdefault(way, []).extend(values)
    ways = list(next(iter(pooled.values())))
    lines = [f"| organ | {' | '.join(ways)} | case scores | darkest labelled voxel (HU) |", "|---|" + "---:|" * (len(ways) + 2)]
    for name, scores in pooled.items():
        lines.append(f"| {name} | {' | '.join(f'{np.mean(scores[w]):.4f}' for w in ways)} | {len(scores[ways[0]])} | {darkest[name]:.0f} |")
    means = [np.mean([np.mean(scores[w]) for scores in pooled.values()]) for w in ways]
    lines.append(f"| **mean over organs** | {' | '.join(f'{m:.4f}' for m in means)} | | |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(pooled, indent=1))


if __name__ == "__main__":
    main()
