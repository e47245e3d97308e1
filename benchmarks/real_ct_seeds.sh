#!/usr/bin/env bash
# Benchmark (b) over three seeds: one base model per seed; from it pcdd (defaults), mib, pcdd with CRCD at
# Eq. 9's literal scale (crcd_mib_scale=false, the default before it was measured), and that with T_a = 0.1
# and per-voxel CRCD weighting. Prints Old/New/All and the spleen's DSC per seed and model.
# Usage: bash benchmarks/real_ct_seeds.sh [OUTPUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/real_ct_seeds}"
variant() {  # SEED NAME [pcdd settings...]: a pcdd step from the seed's base model
  local seed=$1 name=$2; shift 2
  local dir="$out/seed${seed}_$name"
  mkdir -p "$dir/seed_$seed"
  [ -d "$dir/seed_$seed/base" ] || cp -r "$out/seed$seed/seed_$seed/base" "$dir/seed_$seed/base"
  bash benchmarks/real_ct_step.sh "$dir" --strategies pcdd --seeds "$seed" --no-offline "$@"
}
for seed in 0 1 2; do
  bash benchmarks/real_ct_step.sh "$out/seed$seed" --strategies pcdd,mib --seeds "$seed" --no-offline
  variant "$seed" eq9_scale --setting pcdd.crcd_mib_scale=false
  variant "$seed" eq9_scale_per_voxel_T0.1 --setting pcdd.crcd_mib_scale=false --setting pcdd.temperature=0.1 --setting pcdd.crcd_weighting=per_voxel
done
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
print("| seed | model | Old | New | All | spleen |\n|---:|---|---:|---:|---:|---:|")
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/protocol.json")):
    for seed, models in json.loads(path.read_text())["seeds"].items():
        for name, result in models.items():
            label = f"{name} ({path.parent.name.split('_', 1)[1]})" if "_" in path.parent.name else name
            print(f"| {seed} | {label} | {result['old']:.3f} | {result['new'] or 0:.3f} | {result['all']:.3f} | {result['per_organ'].get('spleen') or 0:.2f} |")
PY
