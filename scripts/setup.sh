#!/usr/bin/env bash
# Create ./.venv and install aidetect into it. Usage: scripts/setup.sh [EXTRAS]   (e.g. "test,train")
# torch and torchvision are pinned to the versions this project is tested with (CPU or CUDA both work).
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ -n "$extras" ]; then
  python -m pip install -q -e ".[${extras}]"
else
  python -m pip install -q -e .
fi
