#!/usr/bin/env bash
# Set-up, build and every test (unit, golden against ../shared/reference, e2e).
# Extra arguments go to ctest (e.g. -L golden, -R Tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
ctest --test-dir build --output-on-failure -j2 "$@"
