"""Scoring segmentations against reference labels: per case and organ DSC and HD95 (MONAI metrics).

An organ absent from a case's reference is skipped for that case (the paper's protocol). An organ
present in the reference but not predicted scores DSC 0 and HD95 None (infinite distance).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance


def score_case(prediction: np.ndarray, reference: np.ndarray, organs: Sequence[tuple[int, str]], spacing: Sequence[float]) -> dict[str, dict[str, float | None]]:
    """``{organ: {"dsc": …, "hd95_mm": …}}`` for organs present in ``reference``; both arrays share a grid."""
    scores: dict[str, dict[str, float | None]] = {}
    for label, name in organs:
        truth = reference == label
        if not truth.any():
            continue
        predicted = torch.as_tensor(prediction == label)[None, None]
        target = torch.as_tensor(truth)[None, None]
        dsc = float(compute_dice(predicted, target, include_background=True, ignore_empty=False)[0, 0])
        hd95: float | None = None
        if predicted.any():
            value = float(compute_hausdorff_distance(predicted, target, include_background=True, percentile=95, spacing=[float(s) for s in spacing])[0, 0])
            hd95 = value if math.isfinite(value) else None
        scores[name] = {"dsc": dsc, "hd95_mm": hd95}
    return scores


def summarise(cases: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, Any]:
    """Mean DSC/HD95 per organ over the cases where it is present, and the mean DSC over organs."""
    per_organ: dict[str, dict[str, float | None]] = {}
    names = list(dict.fromkeys(name for scores in cases.values() for name in scores))
    for name in names:
        dscs = [s[name]["dsc"] for s in cases.values() if name in s]
        hds = [s[name]["hd95_mm"] for s in cases.values() if name in s and s[name]["hd95_mm"] is not None]
        per_organ[name] = {"dsc": float(np.mean(dscs)), "hd95_mm": float(np.mean(hds)) if hds else None, "cases": len(dscs)}
    mean = float(np.mean([v["dsc"] for v in per_organ.values()])) if per_organ else None
    return {"per_organ": per_organ, "mean_dsc": mean}


def markdown_table(cases: dict[str, dict[str, dict[str, float | None]]], summary: dict[str, Any]) -> str:
    organs = list(summary["per_organ"])
    lines = ["| case | " + " | ".join(organs) + " |", "|---|" + "---:|" * len(organs)]

    def cell(scores: dict[str, float | None] | None) -> str:
        if scores is None:
            return "–"
        hd = scores["hd95_mm"]
        return f"{scores['dsc']:.3f} / {hd:.1f}" if hd is not None else f"{scores['dsc']:.3f} / –"

    for case, scores in cases.items():
        lines.append(f"| {case} | " + " | ".join(cell(scores.get(o)) for o in organs) + " |")
    lines.append("| **mean** | " + " | ".join(cell(summary["per_organ"][o]) for o in organs) + " |")
    lines += ["", f"Cells: DSC / HD95 (mm). Mean DSC over organs: {summary['mean_dsc']:.3f}." if summary["mean_dsc"] is not None else ""]
    return "\n".join(lines) + "\n"
