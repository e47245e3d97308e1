#!/usr/bin/env bash
# Benchmark (a): the 4-4 protocol on a phantom cohort: 8 training and 4 held-out test cases
# (different cohort seeds: no shared case), pcdd, mib, finetune and offline, three seeds.
# Settings for 2 CPU cores: 4 mm network grid, 48³ patches (the phantom covers 336×288×240 mm),
# 200 iterations for the base model and each step (step lr: the `ciss learn` default), and 800 for the
# offline upper bound (twice the incremental models' base + step budget: at 400 it was no bound).
# Usage: bash benchmarks/phantom_protocol.sh [OUTPUT] [extra ciss protocol flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/phantom_protocol}"; shift || true
.venv/bin/python -m ciss_engine protocol --protocol 4-4 --strategies pcdd,mib,finetune --data phantom --train-cases 8 --test-cases 4 \
  --seeds 0,1,2 --spacing 4 --patch-size 48 --base-iterations 200 --step-iterations 200 --offline-iterations 800 -o "$out" "$@"
