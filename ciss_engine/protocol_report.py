"""Tables and a chart of a protocol run: Old / New / All per strategy, mean ± spread over seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .atomic import write_atomic, write_text_atomic

COLUMNS = ("old", "new", "all")


def aggregate(results: dict[str, Any]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{strategy: {column: (mean, std, n_seeds)}}`` over the seeds that have the strategy."""
    table: dict[str, dict[str, list[float]]] = {}
    for seed_results in results["seeds"].values():
        for strategy, entry in seed_results.items():
            for column in COLUMNS:
                if entry.get(column) is not None:
                    table.setdefault(strategy, {}).setdefault(column, []).append(entry[column])
    return {s: {c: (float(np.mean(v)), float(np.std(v)), len(v)) for c, v in cols.items()} for s, cols in table.items()}


def markdown(results: dict[str, Any]) -> str:
    summary = aggregate(results)
    steps = " → ".join("+".join(step) for step in results["steps"])
    lines = [f"Protocol {results['protocol']} ({steps}); DSC on held-out cases, mean ± std over {len(results['seeds'])} seed(s).", "",
             "| model | Old | New | All |", "|---|---:|---:|---:|"]
    for strategy, columns in summary.items():
        cells = [f"{columns[c][0]:.3f} ± {columns[c][1]:.3f}" if c in columns else "–" for c in COLUMNS]
        lines.append(f"| {strategy} | " + " | ".join(cells) + " |")
    lines += ["", "`base` is the step-1 model before any incremental step (its Old is the reference for forgetting); `offline` learns all organs at once (upper bound)."]
    lines += ["", *where_old_organs_lie(results)]
    return "\n".join(lines) + "\n"


def where_old_organs_lie(results: dict[str, Any]) -> list[str]:
    """Per model and first-step organ, the share of its predicted voxels on that organ, on background and
    on other organs (summed over cases and seeds): tells forgetting (few voxels) from spreading."""
    totals: dict[tuple[str, str], dict[str, int]] = {}
    for seed_results in results["seeds"].values():
        for model, entry in seed_results.items():
            for organ, found in entry.get("confusion", {}).items():
                if organ in results["steps"][0]:
                    counts = totals.setdefault((model, organ), {})
                    for reference, count in found.items():
                        counts[reference] = counts.get(reference, 0) + count
    if not totals:
        return []
    lines = ["Where the first step's organs are predicted (share of predicted voxels by reference label):", "",
             "| model | organ | predicted voxels | on the organ | on background | on other organs |", "|---|---|---:|---:|---:|---:|"]
    for (model, organ), counts in totals.items():
        total = sum(counts.values())
        on_organ, on_background = counts.get(organ, 0), counts.get("background", 0)
        shares = [f"{100 * v / total:.0f} %" if total else "–" for v in (on_organ, on_background, total - on_organ - on_background)]
        lines.append(f"| {model} | {organ} | {total} | " + " | ".join(shares) + " |")
    return lines


def write_chart(results: dict[str, Any], path: Path) -> Path:
    """Grouped bars of Old/New/All per model with the seed spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = aggregate(results)
    models = list(summary)
    figure, axis = plt.subplots(figsize=(1.6 * len(models) + 2, 3.6))
    width = 0.26
    for offset, column in enumerate(COLUMNS):
        means = [summary[m].get(column, (np.nan, 0, 0))[0] for m in models]
        spreads = [summary[m].get(column, (0, 0, 0))[1] for m in models]
        axis.bar(np.arange(len(models)) + (offset - 1) * width, means, width, yerr=spreads, capsize=3, label=column.capitalize())
    axis.set_xticks(np.arange(len(models)), models)
    axis.set_ylim(0, 1)
    axis.set_ylabel("DSC (held-out cases)")
    axis.set_title(f"Protocol {results['protocol']}: {len(results['seeds'])} seed(s)")
    axis.legend(ncol=3, loc="upper left", fontsize=8)
    figure.tight_layout()
    write_atomic(path, lambda tmp: figure.savefig(tmp, dpi=100, format="png"))
    plt.close(figure)
    return path


def write_reports(results: dict[str, Any], output: Path) -> list[Path]:
    return [write_text_atomic(output / "protocol.md", markdown(results)), write_chart(results, output / "protocol.png")]
