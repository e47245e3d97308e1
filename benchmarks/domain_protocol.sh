#!/usr/bin/env bash
# Issue 17's domain-incremental benchmark: a base model on phantom site 1, adapted to sites 2 and 3 (other
# scanners: calibration, noise, slice thickness, contrast phase; ciss_engine/scanner_sites.py) in sequence by
# finetune, mib and dual_alignment, every site's held-out cases scored after each step.
# Network for 2 CPU cores as the PCDD benchmarks: 8 filters, 48³ patches, 4 mm grid; base 400 iterations, steps 200.
# Usage: [SEEDS=0] bash benchmarks/domain_protocol.sh [OUTPUT] [-- extra protocol flags]
#   test split: training cohort seed 0, held-out cohort seed 1 (the protocol's own phantom data).
# Usage: [SEEDS=0] [ROWS="dual_alignment mib"] [JOBS=2] bash benchmarks/domain_protocol.sh validation [OUTPUT] [-- extra protocol flags]
#   validation split (chooses dual_alignment's settings, never the test cases): training cohort seed 0, held-out
#   cohort seed 3; one base per seed shared by every row, each row in its own single-threaded process, JOBS at once.
set -euo pipefail
cd "$(dirname "$0")/.."
ciss() { .venv/bin/python -m ciss_engine "$@" --quiet; }
network=(--spacing 4 --patch-size 48 --init-filters 8 --base-iterations 400 --step-iterations 200)
if [ "${1:-}" != validation ]; then
  out="${1:-benchmarks/output/domain_protocol}"; shift $(( $# < 1 ? $# : 1 )); [ "${1:-}" = "--" ] && shift
  ciss protocol --protocol domain --data phantom --train-cases 4 --test-cases 2 --seeds "${SEEDS:-0}" "${network[@]}" -o "$out" "$@"
  cat "$out/protocol.md"
  exit 0
fi
out="${2:-benchmarks/output/domain_validation}"; shift $(( $# < 2 ? $# : 2 )); [ "${1:-}" = "--" ] && shift
seeds="${SEEDS:-0}"
[ -d "$out/data/train" ] || ciss phantom -o "$out/data/train" --cases 4 --seed 0
[ -d "$out/data/held_out_3" ] || ciss phantom -o "$out/data/held_out_3" --cases 2 --seed 3
data=(--data "$out/data/train" --test-data "$out/data/held_out_3")
ciss protocol --protocol domain --strategies "" "${data[@]}" --seeds "$seeds" "${network[@]}" -o "$out/base" "$@"
run() {  # NAME STRATEGY [--setting STRATEGY.NAME=VALUE ...]: one process, the shared bases copied in
  local name=$1 strategy=$2; shift 2
  [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $name "* ]] || return 0
  for seed in ${seeds//,/ }; do
    mkdir -p "$out/$name/seed_$seed"
    [ -d "$out/$name/seed_$seed/base" ] || cp -r "$out/base/seed_$seed/base" "$out/$name/seed_$seed/base"
  done
  OMP_NUM_THREADS=1 ciss protocol --protocol domain --strategies "$strategy" "${data[@]}" --seeds "$seeds" "${network[@]}" -o "$out/$name" "$@" \
    > "$out/$name.log" 2>&1 && echo "$name done" || echo "$name FAILED (see $out/$name.log)"
}
rows=(
  "finetune finetune"
  "mib mib"
  "dual_alignment dual_alignment"
  "dual_cna10 dual_alignment --setting dual_alignment.lambda_cna=10"
  "dual_cra10 dual_alignment --setting dual_alignment.lambda_cra=10"
  "dual_both10 dual_alignment --setting dual_alignment.lambda_cna=10 --setting dual_alignment.lambda_cra=10"
  "dual_gaussian dual_alignment --setting dual_alignment.kernel=gaussian"
)
for row in "${rows[@]}"; do
  # shellcheck disable=SC2086
  run $row "$@" &
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
done
wait
for row in "${rows[@]}"; do name=${row%% *}; [ -f "$out/$name/protocol.md" ] && { echo "## $name"; cat "$out/$name/protocol.md"; }; done
