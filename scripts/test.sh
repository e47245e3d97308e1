#!/usr/bin/env bash
# README command 2: set up (first time only) and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/install_system_packages.sh
set +e
.venv/bin/python -m pytest Testing "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "no test was collected: failing on purpose" >&2
  exit 1
fi
exit "$code"
