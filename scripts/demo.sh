#!/usr/bin/env bash
# README command 1: set up (first time only) and run the main job, the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/ciss demo "$@"
