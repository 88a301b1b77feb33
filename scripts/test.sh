#!/usr/bin/env bash
# Set-up, build and every test (unit, golden against ../shared/reference, e2e).
# Extra arguments go to ctest (e.g. -L golden, -R Tokenizer).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
# ctest runs two tests at once on two cores: OpenMP threads that spin while waiting for a
# descheduled peer slow each multi-threaded test several times over, so waiting threads sleep.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
ctest --test-dir build --output-on-failure -j2 "$@"
