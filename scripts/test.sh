#!/usr/bin/env bash
# Set up ./.venv with everything the tests need, then lint and run the whole test suite.
# Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL; defaults: the local servers).
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium for the crawler's browser comparison (tests/crawl/test_browser_recall.py never skips).
if [ ! -x /usr/bin/chromium ]; then
    SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
fi
bash scripts/setup.sh "test,hub,train,onnx,crawl,metrics,provenance,flower,generate"
# shellcheck source=/dev/null  # made by python3 -m venv
. .venv/bin/activate
ruff check .
python -m pytest "$@"
