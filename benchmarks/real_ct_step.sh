#!/usr/bin/env bash
# Benchmark (b): the real-CT step as a site would do it. Base model on both real abdominal CTs
# (ts_abdpelvis organs 1-4, chest_4x organs 1-3: it has no gallbladder), then each strategy learns
# organs 5-8 on the same two CTs from labels 5-8 only; scored on the same two CTs against their full
# labels (mechanism on real anatomy, not generalisation: two patients).
# Usage: bash benchmarks/real_ct_step.sh [OUTPUT] [extra ciss protocol flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/real_ct_step}"; shift || true
data="${CISS_DATA:-../shared/data}"
mkdir -p "$out/cases"
for case in ts_abdpelvis chest_4x; do
  ln -sfn "$(cd "$data/ct/$case" && pwd)" "$out/cases/$case"
done
.venv/bin/python -m ciss_engine protocol --protocol 4-4 --strategies pcdd,mib,finetune --data "$out/cases" --test-data "$out/cases" \
  --base-iterations 300 --step-iterations 300 --offline-iterations 300 -o "$out" "$@"
