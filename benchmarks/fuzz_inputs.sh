#!/usr/bin/env bash
# Issue 16 item 4, the longer fuzz run: the in-suite fuzz properties (generated NIfTI/NRRD CTs and label
# maps through load, learn's validation, segment and export; damaged bundles through info, verify, load
# and segment) with FACTOR times their in-suite example counts. Derandomized as in the suite, so the first
# cases are the suite's and a run is reproducible. Writes the outcome counts of every property (cases,
# successes, exit codes, the kinds of refusal) to OUTPUT/report.json and the pytest log to OUTPUT/log.txt.
# Usage: bash benchmarks/fuzz_inputs.sh [FACTOR] [OUTPUT]     (FACTOR 10: about 15 minutes on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
factor="${1:-10}"; out="${2:-benchmarks/output/fuzz_inputs}"
mkdir -p "$out"; rm -f "$out/report.json"
start=$(date +%s)
status=0
CISS_FUZZ_FACTOR="$factor" CISS_FUZZ_REPORT="$PWD/$out/report.json" OMP_NUM_THREADS=1 .venv/bin/python -m pytest -q -p no:cacheprovider \
  -p no:logging --hypothesis-show-statistics -k "not cli" \
  Testing/engine/test_fuzz_inputs.py Testing/engine/test_fuzz_bundles.py Testing/engine/dicom/test_fuzz_export.py >"$out/log.txt" 2>&1 || status=$?
seconds=$(( $(date +%s) - start ))
.venv/bin/python - "$out/report.json" "$factor" "$seconds" "$status" <<'EOF'
import json, sys
path, factor, seconds, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
report = json.load(open(path))
print(f"fuzz run: factor {factor}, {seconds} s, pytest exit {status}")
for prop, entry in sorted(report.items()):
    print(f"  {prop:18s} {entry['cases']:6d} cases  {entry['outcomes']}")
files = sum(e["cases"] for prop, e in report.items() if not prop.startswith("bundle"))
bundles = report.get("bundle info", {}).get("cases", 0)  # each damaged bundle goes through info, verify, load and segment
print(f"  total: {files + bundles} cases ({files} generated files, {bundles} damaged bundles)")
EOF
exit "$status"
