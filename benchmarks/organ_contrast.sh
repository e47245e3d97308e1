#!/usr/bin/env bash
# Chooses `ciss train`'s --organ-contrast on validation data, never on the test cases: one base model per share
# on phantom site 1 (the non-contrast phantom, training cohort seed 0, 4 cases), each scored on every site's
# held-out cases (ciss_engine/scanner_sites.py: sites 2 and 3 are other contrast phases, which reorder the
# organs' intensities). What the share should buy: a model trained on one phase that finds the organs in another.
# The domain protocol's network (8 filters, 48³ patches, 4 mm grid), 800 iterations; each share in its own
# single-threaded process, JOBS at once.
# Usage: [SHARES="0 0.5"] [SEED=0] [JOBS=2] bash benchmarks/organ_contrast.sh validation|test [OUTPUT] [ITERATIONS]
#   validation: held-out cohort seed 3; test: cohort seed 1 (the domain protocol's test cases).
set -euo pipefail
cd "$(dirname "$0")/.."
split=${1:?validation or test}; [ "$split" = validation ] && held_out=3 || held_out=1
out="${2:-benchmarks/output/organ_contrast_$split}"; iterations="${3:-800}"
ciss() { .venv/bin/python -m ciss_engine "$@" --quiet; }
[ -d "$out/data/train" ] || ciss phantom -o "$out/data/train" --cases 4 --seed 0
[ -d "$out/data/held_out_$held_out" ] || ciss phantom -o "$out/data/held_out_$held_out" --cases 2 --seed "$held_out"
run() {  # SHARE
  OMP_NUM_THREADS=1 ciss protocol --protocol domain --strategies "" --data "$out/data/train" --test-data "$out/data/held_out_$held_out" \
    --seeds "${SEED:-0}" --spacing 4 --patch-size 48 --init-filters 8 --base-iterations "$iterations" --base-organ-contrast "$1" -o "$out/base_$1" \
    > "$out/base_$1.log" 2>&1 && echo "share $1 done" || echo "share $1 FAILED (see $out/base_$1.log)"
}
for share in ${SHARES:-0 0.5}; do
  run "$share" &
  while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
done
wait
for share in ${SHARES:-0 0.5}; do echo "## organ contrast $share"; cat "$out/base_$share/protocol.md"; done
