#!/usr/bin/env bash
# Configures and builds diffuse into ./build (Release, warnings as errors).
# Arguments go to the build step: `scripts/build.sh --target diffuse` builds only the command
# (what `generate` needs), without the tests. CMAKE_ARGS (environment) go to the configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDIFFUSE_WERROR=ON ${CMAKE_ARGS:-} >/dev/null
cmake --build build "$@"
