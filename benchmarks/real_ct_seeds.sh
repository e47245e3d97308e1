#!/usr/bin/env bash
# Benchmark (b) over seeds: one base model per seed (both real CTs, organs 1-4), then pcdd, its `uniform`
# twin (calibration off) and mib, each in its own process from that same base, learning organs 5-8 from
# labels 5-8 only. Prints Old/New/All, each old organ's DSC and its retention (÷ the base's) per seed.
# Usage: bash benchmarks/real_ct_seeds.sh [OUTPUT] [SEEDS] [-- extra ciss protocol flags, e.g. the network]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/real_ct_seeds}"; seeds="${2:-0,1,2}"
shift $(( $# < 2 ? $# : 2 )); [ "${1:-}" = "--" ] && shift
for seed in ${seeds//,/ }; do
  bash benchmarks/real_ct_step.sh "$out/seed$seed/base" --strategies "" --seeds "$seed" --no-offline "$@"
  for strategy in pcdd uniform mib; do
    dir="$out/seed$seed/$strategy"
    mkdir -p "$dir/seed_$seed"
    [ -d "$dir/seed_$seed/base" ] || cp -r "$out/seed$seed/base/seed_$seed/base" "$dir/seed_$seed/base"
    bash benchmarks/real_ct_step.sh "$dir" --strategies "$strategy" --seeds "$seed" --no-offline "$@"
  done
done
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
print("| seed | model | Old | New | All | spleen | kidney_right | kidney_left | old organs ÷ base |\n|---:|---|---:|---:|---:|---:|---:|---:|---|")
for seed_dir in sorted(pathlib.Path(sys.argv[1]).glob("seed*")):
    runs = {p.parent.name: json.loads(p.read_text())["seeds"] for p in sorted(seed_dir.glob("*/protocol.json"))}
    for seeds in runs.values():
        for seed, models in seeds.items():
            base = models["base"]["per_organ"]
            for name, result in models.items():
                if name == "base" and seed_dir.joinpath("base") != seed_dir / next(k for k, v in runs.items() if v is seeds):
                    continue
                organs = [result["per_organ"].get(o) or 0 for o in ("spleen", "kidney_right", "kidney_left")]
                ratios = ", ".join(f"{(result['per_organ'].get(o) or 0) / base[o]:.2f}" for o in ("spleen", "kidney_right", "kidney_left") if base.get(o))
                print(f"| {seed} | {name} | {result['old']:.3f} | {result['new'] or 0:.3f} | {result['all']:.3f} | " + " | ".join(f"{v:.2f}" for v in organs) + f" | {ratios} |")
PY
