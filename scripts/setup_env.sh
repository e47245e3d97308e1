#!/usr/bin/env bash
# Creates ./.venv with everything the engine, the studio and the tests need. Idempotent: a second
# run with an unchanged pyproject.toml returns at once.
#
# CPU machines get the CPU build of PyTorch pinned below (an unpinned torch pulls a multi-GB CUDA
# build). GPU sites: install the CUDA build of torch into .venv first (README, "GPU sites"), then
# run this script; the pin is skipped when a torch is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH_CPU_PIN="torch==2.13.0"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

stamp=.venv/.ciss-installed
want="$(cat pyproject.toml scripts/setup_env.sh | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

python -m pip install --quiet --upgrade pip
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "$TORCH_CPU_PIN"
fi
# The torch now installed is a constraint for everything else: a dependency that wants another torch (timm's
# torchvision, through dynamic-network-architectures, follows the newest torch) must take the version that
# fits this one, instead of replacing the CPU build with a multi-GB CUDA build of a newer torch.
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > "$constraints"
python -m pip install --quiet -e ".[studio,test]" -c "$constraints"
echo "$want" > "$stamp"
