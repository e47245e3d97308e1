# Sourced by the validation sweeps (pcdd_calibration.sh, domain_protocol.sh): every row starts from copies of
# the same base models, so rows differ by their strategy and settings alone.
# row_selected NAME: whether ROWS (space-separated names; empty: every row) names this row.
row_selected() { [ -z "${ROWS:-}" ] || [[ " $ROWS " == *" $1 "* ]]; }
# copy_bases OUT NAME SEEDS: OUT/base/seed_S/base into OUT/NAME/seed_S/base for each of SEEDS (0,1,2), once.
copy_bases() {
  local out=$1 name=$2 seed
  for seed in ${3//,/ }; do
    mkdir -p "$out/$name/seed_$seed"
    [ -d "$out/$name/seed_$seed/base" ] || cp -r "$out/base/seed_$seed/base" "$out/$name/seed_$seed/base"
  done
}
