"""Benchmark (o): what keeping each one-piece organ's largest connected piece does to DSC (ciss_engine/postprocessing.py).

Every bundle given segments every case once; its argmax is scored as it is and with the postprocessing, so the
two columns differ by the postprocessing alone. Cases are folders with image.nii.gz and label_seg8.nii.gz (the
paper's organ ids, as the phantom and the protocol use them). Use validation cases to choose the default.

Usage: python benchmarks/postprocessing.py --cases DIR --bundles BUNDLE… [-o results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from ciss_engine.bundle import Bundle  # noqa: E402
from ciss_engine.evaluation import score_case  # noqa: E402
from ciss_engine.inference import Segmenter  # noqa: E402
from ciss_engine.postprocessing import keep_largest_pieces, one_piece_labels  # noqa: E402
from ciss_engine.protocol import case_in_bundle_labels, cases_in  # noqa: E402


def scored_both_ways(bundle: Path, cases_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Per organ, the DSC of every case as predicted ("raw") and after the postprocessing ("kept")."""
    version = Bundle.open_or_raise(bundle).load()
    segmenter = Segmenter(version, torch.device("cpu"), postprocess=False)
    organs = [(o.label, o.name) for o in version.registry.organs]
    scores: dict[str, dict[str, list[float]]] = {}
    for case in cases_in(cases_dir):
        image, _, remapped = case_in_bundle_labels(case, version.registry)
        raw = segmenter.segment(image).label
        spacing = image.header.get_zooms()[:3]
        for way, prediction in (("raw", raw), ("kept", keep_largest_pieces(raw, one_piece_labels(version.registry)))):
            for name, score in score_case(prediction, remapped, organs, spacing).items():
                scores.setdefault(name, {"raw": [], "kept": []})[way].append(float(score["dsc"]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=Path, required=True)
    parser.add_argument("--bundles", type=Path, nargs="+", required=True)
    parser.add_argument("-o", "--output", type=Path, default=None)
    args = parser.parse_args()
    pooled: dict[str, dict[str, list[float]]] = {}
    for bundle in args.bundles:
        for name, ways in scored_both_ways(bundle, args.cases).items():
            for way, values in ways.items():
                pooled.setdefault(name, {"raw": [], "kept": []})[way].extend(values)
    lines = ["| organ | DSC as predicted | largest piece kept | difference | case scores |", "|---|---:|---:|---:|---:|"]
    for name, ways in pooled.items():
        raw, kept = np.mean(ways["raw"]), np.mean(ways["kept"])
        lines.append(f"| {name} | {raw:.3f} | {kept:.3f} | {kept - raw:+.3f} | {len(ways['raw'])} |")
    raw_all = np.mean([np.mean(w["raw"]) for w in pooled.values()])
    kept_all = np.mean([np.mean(w["kept"]) for w in pooled.values()])
    lines.append(f"| **mean over organs** | {raw_all:.3f} | {kept_all:.3f} | {kept_all - raw_all:+.3f} | |")
    print("\n".join(lines))
    if args.output:
        args.output.write_text(json.dumps(pooled, indent=1))


if __name__ == "__main__":
    main()
