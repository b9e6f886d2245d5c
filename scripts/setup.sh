#!/usr/bin/env bash
# Create ./.venv and install aidetect into it. Usage: scripts/setup.sh [EXTRAS]   (e.g. "test,train")
# With no extras it installs everything the main job needs (score, enqueue, crawl, results, workers, metrics);
# the extras add training, data preparation, hub models and the test tools.
# torch and torchvision are pinned to the versions this project is tested with (CPU or CUDA both work).
# One line per step; pip's own output goes to .venv/setup.log and is shown only when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
log=".venv/setup.log"

step() {  # step "what" command...: one progress line, the command's output in the log
  local what="$1"; shift
  printf 'setup: %s ... ' "$what"
  local start=$SECONDS
  if "$@" >>"$log" 2>&1; then
    echo "ok ($((SECONDS - start)) s)"
  else
    echo "FAILED"
    echo "setup: the last lines of $log:" >&2
    grep -v "^WARNING: Location .* is ignored" "$log" | tail -n 30 >&2
    exit 1
  fi
}

printf 'setup: creating .venv ... '
python3 -m venv .venv
: >"$log"
echo ok
# shellcheck source=/dev/null  # made by python3 -m venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
step "upgrading pip" python -m pip install -q --upgrade pip
step "installing torch 2.14.1 and torchvision 0.29.1" python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
if [ -n "$extras" ]; then
  step "installing aidetect with extras [${extras}]" python -m pip install -q -e ".[${extras}]"
else
  step "installing aidetect" python -m pip install -q -e .
fi
echo "setup: done; run .venv/bin/aidetect --help (pip's log: $log)"
