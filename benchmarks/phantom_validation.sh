#!/usr/bin/env bash
# Historical: the tuning before the revised summand (benchmarks/pcdd_calibration.sh supersedes it).
# Tuning PCDD's named settings on a validation split of the phantom 4-4 protocol, never on the test cases:
# the 8 training cases of benchmark (a) (cohort seed 0) and 4 validation cases from cohort seed 3 (no case
# shared with training or with (a)'s test cohort, seed 1). One base model (seed 0) is shared by every
# variant; each variant is one pcdd step scored on the validation cases.
# Usage: bash benchmarks/phantom_validation.sh [OUTPUT] [BASE_ITERATIONS] [STEP_ITERATIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/phantom_validation}"
base_iterations="${2:-200}"; step_iterations="${3:-200}"
ciss() { .venv/bin/python -m ciss_engine "$@" --quiet; }
[ -d "$out/train" ] || ciss phantom -o "$out/train" --cases 8 --seed 0
[ -d "$out/val" ] || ciss phantom -o "$out/val" --cases 4 --seed 3
run() {  # NAME [pcdd settings and protocol flags...]
  local name=$1; shift
  mkdir -p "$out/$name/seed_0"
  [ -d "$out/base/seed_0/base" ] && [ ! -d "$out/$name/seed_0/base" ] && cp -r "$out/base/seed_0/base" "$out/$name/seed_0/base"
  ciss protocol --protocol 4-4 --strategies pcdd --data "$out/train" --test-data "$out/val" --seeds 0 --spacing 4 --patch-size 48 \
    --base-iterations "$base_iterations" --step-iterations "$step_iterations" --no-offline -o "$out/$name" "$@"
}
# Every variant before crcd_mib_scale (default true since it was measured) ran CRCD at Eq. 9's literal scale.
eq9=(--setting pcdd.crcd_mib_scale=false)
mkdir -p "$out/base/seed_0"
ciss protocol --protocol 4-4 --strategies "" --data "$out/train" --test-data "$out/val" --seeds 0 --spacing 4 --patch-size 48 \
  --base-iterations "$base_iterations" --no-offline -o "$out/base"
run lr0.05_lambda1 --step-learning-rate 0.05 --setting pcdd.lambda_crcd=1 "${eq9[@]}"
run lr0.05_supervise_pseudo_labels --step-learning-rate 0.05 --setting pcdd.lambda_crcd=1 --setting pcdd.supervise_pseudo_labels=true "${eq9[@]}"
run lr0.1_lambda1 --step-learning-rate 0.1 --setting pcdd.lambda_crcd=1 "${eq9[@]}"
run lr0.05_lambda0.5 --step-learning-rate 0.05 --setting pcdd.lambda_orcd=0.5 --setting pcdd.lambda_crcd=0.5 "${eq9[@]}"
run lr0.05_lambda_crcd10 --step-learning-rate 0.05 --setting pcdd.lambda_crcd=10 "${eq9[@]}"
run lr0.05_lambda_crcd3 --step-learning-rate 0.05 --setting pcdd.lambda_crcd=3 "${eq9[@]}"
run lr0.02_lambda1 --step-learning-rate 0.02 --setting pcdd.lambda_crcd=1 "${eq9[@]}"
run lr0.02_lambda_crcd3 --step-learning-rate 0.02 --setting pcdd.lambda_crcd=3 "${eq9[@]}"
run lr0.02_lambda_crcd10 --step-learning-rate 0.02 --setting pcdd.lambda_crcd=10 "${eq9[@]}"
run lr0.02_lambda10 --step-learning-rate 0.02 --setting pcdd.lambda_orcd=10 --setting pcdd.lambda_crcd=10 "${eq9[@]}"
run lr0.02_lambda_crcd10_T5 --step-learning-rate 0.02 --setting pcdd.lambda_crcd=10 --setting pcdd.orcd_temperature=5 --setting pcdd.crcd_temperature=5 "${eq9[@]}"
run lr0.02_lambda_crcd10_T0.1 --step-learning-rate 0.02 --setting pcdd.lambda_crcd=10 --setting pcdd.orcd_temperature=0.1 --setting pcdd.crcd_temperature=0.1 "${eq9[@]}"
# (A row with crcd_weighting=per_voxel ran here; that setting was replaced by `summand`, see pcdd_calibration.sh.)
run lr0.02_lambda_crcd10_mib_scale --step-learning-rate 0.02 --setting pcdd.lambda_crcd=10 --setting pcdd.crcd_mib_scale=true
run lr0.02_mib --step-learning-rate 0.02 --strategies mib
# Every pcdd row above predates the revised defaults (summand, affinity space, CRCD background): add
# --setting pcdd.summand=mib --setting pcdd.affinity_features=post_activation --setting pcdd.crcd_background=stored and
# --setting pcdd.orcd_normalisation=region (with --setting pcdd.lambda_orcd=1 where a row sets no λ_orcd) to repeat them.
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
root = pathlib.Path(sys.argv[1])
print("| variant | Old | New | All |\n|---|---:|---:|---:|")
base = json.loads((root / "base" / "protocol.json").read_text())["seeds"]["0"]["base"]
print(f"| base (before the step) | {base['old']:.3f} | – | {base['all']:.3f} |")
for path in sorted(root.glob("*/protocol.json")):
    if path.parent.name != "base":
        for strategy, result in json.loads(path.read_text())["seeds"]["0"].items():
            if strategy != "base":
                print(f"| {path.parent.name} ({strategy}) | {result['old']:.3f} | {result['new']:.3f} | {result['all']:.3f} |")
PY
