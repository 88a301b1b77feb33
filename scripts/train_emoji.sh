#!/usr/bin/env bash
# The recipe of the default emoji model (docs/emoji_model.md): a VAE, a CLIP and a UNet trained
# from scratch with `diffuse train` on the emoji of scripts/emoji_dataset.mjs, assembled into
# one diffusers folder (f16) with the CLIP beside it for `diffuse eval`.
#
#   scripts/train_emoji.sh [WORK_DIR] [OUT_MODEL_DIR]
#
# WORK_DIR (default emoji-work/) receives the data set, the checkpoints and the logs;
# OUT_MODEL_DIR (default WORK_DIR/model) the finished model. Environment:
#   DIFFUSE   the diffuse binary (default build/apps/cli/diffuse)
#   THREADS   CPU threads per run (default 1: on a 2-core machine shared with other work one
#             thread is several times faster than two; on an idle machine try 2)
#   QUICK=1   a smoke test: a few steps of each stage instead of the full recipe
# Each stage prints its wall time; a stage whose output exists is skipped (delete it to redo).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-emoji-work}"
OUT="${2:-$WORK/model}"
DIFFUSE="${DIFFUSE:-$ROOT/build/apps/cli/diffuse}"
THREADS="${THREADS:-1}"
CFG="$ROOT/configs/emoji"
mkdir -p "$WORK"

if [ "${QUICK:-0}" = 1 ]; then
  VAE_LEN=(--steps 2) CLIP_LEN=(--steps 2) UNET_LEN=(--steps 2)
else
  VAE_LEN=(--epochs 4) CLIP_LEN=(--epochs 20) UNET_LEN=(--epochs 30)
fi
COMMON=(-t "$THREADS" --save-every 200 --keep 1 -q)

stage() {  # stage NAME COMMAND...: runs and times one stage
  local name="$1"
  shift
  echo "== $name: $*" >&2
  local t0=$SECONDS
  "$@"
  echo "== $name: $((SECONDS - t0)) s" >&2
}

# safetensors_subset IN OUT PREFIX KEEP: writes the tensors of IN whose names start (KEEP=1) or
# do not start (KEEP=0) with PREFIX to OUT, f32 converted to f16.
safetensors_subset() {
  node - "$@" <<'EOF'
const fs = require('fs');
const [input, output, prefix, keep] = process.argv.slice(2);
const buf = fs.readFileSync(input);
const n = Number(buf.readBigUInt64LE(0));
const header = JSON.parse(buf.toString('utf8', 8, 8 + n));
const base = 8 + n;
const f32 = new Float32Array(1), u32 = new Uint32Array(f32.buffer);
const toHalf = (v) => {  // round to nearest even
  f32[0] = v;
  const x = u32[0], sign = (x >>> 16) & 0x8000, e = (x >>> 23) & 0xff, m = x & 0x7fffff;
  if (e === 0xff) return sign | 0x7c00 | (m ? 0x200 : 0);
  let exp = e - 127 + 15;
  if (exp >= 0x1f) return sign | 0x7c00;
  if (exp <= 0) {
    if (exp < -10) return sign;
    const mm = m | 0x800000, shift = 14 - exp;
    let h = mm >>> shift;
    const rem = mm & ((1 << shift) - 1), half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (exp << 10) | (m >>> 13);
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
};
const out = {}, parts = [];
let offset = 0;
for (const [name, t] of Object.entries(header)) {
  if (name === '__metadata__' || name.startsWith(prefix) !== (keep === '1')) continue;
  let data = buf.subarray(base + t.data_offsets[0], base + t.data_offsets[1]);
  let dtype = t.dtype;
  if (dtype === 'F32') {
    const src = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
    const dst = Buffer.alloc(src.length * 2);
    src.forEach((v, i) => dst.writeUInt16LE(toHalf(v), i * 2));
    [data, dtype] = [dst, 'F16'];
  }
  out[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
  parts.push(data);
  offset += data.length;
}
let json = JSON.stringify(out);
json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
const len = Buffer.alloc(8);
len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
fs.writeFileSync(output + '.tmp', Buffer.concat([len, Buffer.from(json), ...parts]));
fs.renameSync(output + '.tmp', output);
EOF
}

# 0. Data: the npm packages, then train/ and heldout/ folders with metadata.jsonl.
"$ROOT/scripts/fetch_data.sh" >/dev/null
[ -f "$WORK/data/heldout/metadata.jsonl" ] || stage data node "$ROOT/scripts/emoji_dataset.mjs" "$WORK/data"

# 1. VAE: 64x64 images <-> 16x16x4 latents.
[ -f "$WORK/vae/last" ] || stage vae "$DIFFUSE" train vae --config "$CFG/vae/config.json" \
  --data "$WORK/data/train" -o "$WORK/vae" --resolution 64 --batch-size 16 --lr 1e-3 \
  --lr-scheduler cosine --warmup-steps 100 --kl-weight 1e-6 "${VAE_LEN[@]}" "${COMMON[@]}"

# 2. CLIP: text and vision towers, contrastive.
[ -f "$WORK/clip/last" ] || stage clip "$DIFFUSE" train clip --config "$CFG/clip/config.json" \
  --data "$WORK/data/train" -o "$WORK/clip" --batch-size 64 --lr 1e-3 \
  --lr-scheduler cosine --warmup-steps 100 "${CLIP_LEN[@]}" "${COMMON[@]}"

# 3. The base pipeline the UNet trains in: the trained VAE, the CLIP's text tower as the text
#    encoder, the published CLIP tokenizer (fetched at set-up) and the scheduler.
BASE="$WORK/base"
if [ ! -f "$BASE/model_index.json" ]; then
  VAE_CKPT="$WORK/vae/$(cat "$WORK/vae/last")"
  CLIP_CKPT="$WORK/clip/$(cat "$WORK/clip/last")"
  rm -rf "$BASE.tmp" && mkdir -p "$BASE.tmp/text_encoder" "$BASE.tmp/clip"
  cp -r "$CFG/scheduler" "$CFG/tokenizer" "$CFG/model_index.json" "$BASE.tmp/"
  cp -r "$VAE_CKPT/vae" "$BASE.tmp/vae"
  node -e 'const c = require(process.argv[1]); const t = {...c.text_config, architectures: ["CLIPTextModel"]};
    require("fs").writeFileSync(process.argv[2], JSON.stringify(t, null, 2) + "\n")' \
    "$(realpath "$CLIP_CKPT/config.json")" "$BASE.tmp/text_encoder/config.json"
  safetensors_subset "$CLIP_CKPT/model.safetensors" "$BASE.tmp/text_encoder/model.safetensors" text_model. 1
  cp "$CLIP_CKPT/config.json" "$BASE.tmp/clip/config.json"
  safetensors_subset "$CLIP_CKPT/model.safetensors" "$BASE.tmp/clip/model.safetensors" text_model. 0
  mv "$BASE.tmp" "$BASE"
fi

# 4. UNet from scratch on cached latents and text embeddings.
[ -f "$WORK/unet/last" ] || stage unet "$DIFFUSE" train unet -m "$BASE" \
  --config "$CFG/unet/config.json" --data "$WORK/data/train" -o "$WORK/unet" --resolution 64 \
  --batch-size 32 --lr 1e-3 --lr-scheduler cosine --warmup-steps 200 --cache-latents \
  --cache-text-embeddings "${UNET_LEN[@]}" "${COMMON[@]}"

# 5. The model: the last UNet checkpoint in f16, with the CLIP's vision tower beside it.
if [ ! -f "$OUT/model_index.json" ]; then
  UNET_CKPT="$WORK/unet/$(cat "$WORK/unet/last")"
  stage convert "$DIFFUSE" convert "$UNET_CKPT" "$OUT" --to diffusers --dtype f16
  cp -r "$BASE/clip" "$OUT/clip"
fi
du -sh "$OUT" >&2

# 6. CLIP R-precision on 100 held-out captions.
stage eval "$DIFFUSE" eval -m "$OUT" --data "$WORK/data/heldout" --count 100 --steps 20 \
  --cfg-scale 1 -t "$THREADS" -q --json
