#!/usr/bin/env bash
# Issue 17's domain-incremental benchmark: a base model on phantom site 1, adapted to sites 2 and 3 (other
# scanners: calibration, noise, slice thickness, contrast phase; ciss_engine/scanner_sites.py) in sequence by
# finetune, mib and dual_alignment, every site's held-out cases scored after each step.
# Network for 2 CPU cores as the PCDD benchmarks: 8 filters, 48³ patches, 4 mm grid; base 400 iterations, steps 200.
# Usage: [SEEDS=0] bash benchmarks/domain_protocol.sh [OUTPUT] [-- extra protocol flags]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/domain_protocol}"; shift $(( $# < 1 ? $# : 1 )); [ "${1:-}" = "--" ] && shift
.venv/bin/python -m ciss_engine protocol --protocol domain --data phantom --train-cases 4 --test-cases 2 --seeds "${SEEDS:-0}" \
  --spacing 4 --patch-size 48 --init-filters 8 --base-iterations 400 --step-iterations 200 -o "$out" --quiet "$@"
cat "$out/protocol.md"
