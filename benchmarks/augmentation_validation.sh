#!/usr/bin/env bash
# Chooses the default of patch augmentation on validation data, never on the test cases: base models on
# phantom training cases (cohort seed 0) with and without augmentation, scored on 4 validation cases from
# cohort seed 3 (other patients: the transfer augmentation is meant to buy). Same seed, same budget, the
# demo's network (8 filters, 48³ patches) on a 4 mm grid.
# Usage: bash benchmarks/augmentation_validation.sh [OUTPUT] [ITERATIONS] [TRAINING_CASES]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/output/augmentation_validation}"
iterations="${2:-300}"; training_cases="${3:-3}"
ciss() { .venv/bin/python -m ciss_engine "$@" --quiet; }
organs=spleen=1,kidney_right=2,kidney_left=3,gallbladder=4
[ -d "$out/train" ] || ciss phantom -o "$out/train" --cases "$training_cases" --seed 0
[ -d "$out/val" ] || ciss phantom -o "$out/val" --cases 4 --seed 3
train=("$out"/train/case_*); val=("$out"/val/case_*)
for variant in augmentation no_augmentation; do
  flag=(); [ "$variant" = no_augmentation ] && flag=(--no-augmentation)
  if [ ! -f "$out/$variant/bundle/bundle.json" ]; then
    start=$(date +%s)
    ciss train -i "${train[@]/%//image.nii.gz}" -l "${train[@]/%//label_seg8.nii.gz}" --organs "$organs" --other-labels background \
      --iterations "$iterations" --spacing 4 --patch-size 48 --init-filters 8 -o "$out/$variant/bundle" "${flag[@]}"
    echo "$variant: $(( $(date +%s) - start )) s" | tee "$out/$variant/seconds.txt"
  fi
  ciss evaluate -b "$out/$variant/bundle" -i "${val[@]/%//image.nii.gz}" -l "${val[@]/%//label_seg8.nii.gz}" --organs "$organs" -o "$out/$variant/validation"
  echo "## $variant"; cat "$out/$variant/validation/scores.md"
done
