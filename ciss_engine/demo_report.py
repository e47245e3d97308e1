"""The demo's scores and its one table: old organs before → after (retention), new organs, per CT and role.

Both versions are scored against the same reference labels (the paper's ids), each in its own label
space, so a step that renumbers nothing and one that does are compared the same way.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .api.events import ForgettingGuard
from .demo_data import BASE_ORGANS
from .evaluation import score_case
from .registry import ClassRegistry

# Below this mean DSC before the step the base model did not know the old organs on that CT: a ratio
# after/before would measure noise, not retention.
MIN_DSC_FOR_RETENTION = 0.1


def _reference_ids(new_organs: Sequence[tuple[str, int]]) -> dict[str, int]:
    base = {name: int(value) for name, value in (item.split("=") for item in BASE_ORGANS.split(","))}
    return {**base, **dict(new_organs)}


def _score_version(prediction: np.ndarray, reference: np.ndarray, registry: ClassRegistry, spacing: Sequence[float], ids: dict[str, int]) -> dict[str, Any]:
    """DSC/HD95 of every organ the version knows, the reference translated into the version's label ids."""
    organs = [(o.label, o.name) for o in registry.organs if o.name in ids]
    translated = np.zeros(reference.shape, dtype=np.uint8)
    for label, name in organs:
        translated[reference == ids[name]] = label
    return score_case(prediction, translated, organs, spacing)


def case_scores(
    labels: dict[str, np.ndarray], reference: np.ndarray, registries: dict[str, ClassRegistry], spacing: Sequence[float], new_organs: Sequence[tuple[str, int]],
) -> dict[str, Any]:
    """Scores of the ``before`` and ``after`` versions on one CT (each with its registry), the retention
    of each old organ and of the old organs together; ``reference`` uses the paper's ids."""
    ids = _reference_ids(new_organs)
    scores = {tag: _score_version(labels[tag], reference, registries[tag], spacing, ids) for tag in registries}
    before, after = scores["before"], scores["after"]
    retention = {name: (after[name]["dsc"] / value["dsc"] if value["dsc"] else None) for name, value in before.items()}
    mean_before = float(np.mean([v["dsc"] for v in before.values()])) if before else 0.0
    mean_after = float(np.mean([after[name]["dsc"] for name in before])) if before else 0.0
    kept = mean_after / mean_before if mean_before >= MIN_DSC_FOR_RETENTION else None
    return {**scores, "retention": retention, "old_organs_kept": kept}


def _table(report: dict[str, Any]) -> str:
    old = [name for name in _reference_ids([]) if any(name in case["before"] for case in report["cases"].values())]
    new = report["new_organs"]
    lines = [
        "| CT | role | " + " | ".join(old) + " | " + " | ".join(f"{n} (new)" for n in new) + " | old organs kept |",
        "|---|---|" + "---:|" * (len(old) + len(new) + 1),
    ]
    for name, case in report["cases"].items():
        olds = [f"{case['before'][o]['dsc']:.2f} → {case['after'][o]['dsc']:.2f}" if o in case["before"] else "–" for o in old]
        news = [f"{case['after'][n]['dsc']:.2f}" if n in case["after"] else "–" for n in new]
        kept = case["old_organs_kept"]
        lines.append(f"| {name} | {case['role']} | " + " | ".join(olds + news) + f" | {f'{kept:.2f} ×' if kept is not None else 'n/a (base found none)'} |")
    return "\n".join(lines)


def print_report(report: dict[str, Any], output: Path) -> None:
    """The demo's summary on stdout: data, guard verdict, the table, timings, where the pictures are."""
    guard = report["forgetting_guard"]
    agreement = ", ".join(f"{name} {value:.2f}" if value is not None else f"{name} –" for name, value in guard["agreement"].items())
    verdict = "passed" if guard["passed"] else f"REJECTED (below {guard['threshold']}: {', '.join(guard['failing_organs'])})"
    versions = report["versions"]
    print(f"\nCISSegmentation demo — {report['data']}\n")
    print(f"Base model {versions['before']} ({report['iterations']} iterations) → version {versions['after']} "
          f"adds {', '.join(report['new_organs'])} ({report['step_iterations']} iterations, labels of the new organs only).")
    left_out = ForgettingGuard(version=versions["after"], **guard).not_compared(report.get("step_cts"))
    print(f"Forgetting guard: {verdict}; agreement with the parent on the step's CTs: {agreement}." + (f" {left_out}" if left_out else "") + "\n")
    print(_table(report))
    print("\nCells: DSC against the reference labels; old organs before → after the step; "
          f"'old organs kept' = mean DSC after ÷ before over the old organs (n/a where the base found them below {MIN_DSC_FOR_RETENTION}).")
    seconds = report["seconds"]
    print(f"Time: base {seconds['base']:.0f} s, step {seconds['step']:.0f} s, segmenting and scoring {seconds['segment']:.0f} s.")
    print(f"Before/after pictures: {', '.join(str(output / f'{name}_before_after.png') for name in report['cases'])}")
    print(f"Report: {output / 'demo_report.json'}")
