#!/usr/bin/env bash
# README command 2: set up (first time only) and run the whole test suite. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/install_system_packages.sh
set +e
# One worker per core, a test file per worker (module fixtures stay shared): the tests run one math thread
# per process (Testing/conftest.py), so two workers keep 2 cores busy where one left them half idle.
.venv/bin/python -m pytest Testing -n auto --dist loadfile "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "no test was collected: failing on purpose" >&2
  exit 1
fi
exit "$code"
