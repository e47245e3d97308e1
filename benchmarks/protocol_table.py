"""One table from several ``ciss protocol`` output folders run from the same base models (one per strategy
or setting): Old/New/All per seed, their mean ± std, and Old as a ratio of the base model's Old.

Usage (repository root): .venv/bin/python benchmarks/protocol_table.py FOLDER  (FOLDER/*/protocol.json)
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def _cells(values: list[float]) -> str:
    spread = f" ± {statistics.pstdev(values):.3f}" if len(values) > 1 else ""
    return " / ".join(f"{v:.3f}" for v in values) + f" | {statistics.mean(values):.3f}{spread}"


def main() -> None:
    root = Path(sys.argv[1])
    runs = {p.parent.name: json.loads(p.read_text())["seeds"] for p in sorted(root.glob("*/protocol.json"))}
    base = runs.pop("base")
    seeds = sorted(base, key=int)
    print(f"| run | Old (seed {' / '.join(seeds)}) | Old mean | Old ÷ base Old | New (per seed) | New mean | All (per seed) | All mean |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_old = [base[s]["base"]["old"] for s in seeds]
    print(f"| base (before the step) | {_cells(base_old)} | 1 | – | – | {_cells([base[s]['base']['all'] for s in seeds])} |")
    for name, results in runs.items():
        for strategy in results.get(seeds[0], {}):  # a folder without every seed of the base is left out
            if strategy == "base" or any(strategy not in results.get(s, {}) for s in seeds):
                continue
            entries = [results[s][strategy] for s in seeds]
            old = [e["old"] for e in entries]
            retention = " / ".join(f"{o / b:.2f}" if b > 0 else "–" for o, b in zip(old, base_old))
            print(f"| {name} ({strategy}) | {_cells(old)} | {retention} | {_cells([e['new'] for e in entries])} | {_cells([e['all'] for e in entries])} |")


if __name__ == "__main__":
    main()
