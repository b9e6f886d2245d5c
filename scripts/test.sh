#!/usr/bin/env bash
# Set up ./.venv with everything the tests need, then lint and run the whole test suite.
# Needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL; defaults: the local servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,hub,train,onnx,crawl,metrics,provenance,flower,generate"
# shellcheck source=/dev/null  # made by python3 -m venv
. .venv/bin/activate
ruff check .
python -m pytest "$@"
