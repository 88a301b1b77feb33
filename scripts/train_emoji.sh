#!/usr/bin/env bash
# The recipe of the default emoji model (docs/emoji_model.md): a VAE, a CLIP and a UNet trained
# from scratch with `diffuse train` on the emoji of scripts/emoji_dataset.mjs: the UNet is trained
# on the VAE and the CLIP's text tower; its last checkpoint, in f16, with the CLIP's vision tower
# beside it in clip/ (for `diffuse eval`) is the model.
#
#   scripts/train_emoji.sh [WORK_DIR] [OUT_MODEL_DIR]
#
# WORK_DIR (default emoji-work/) receives the data set, the checkpoints and the logs;
# OUT_MODEL_DIR (default WORK_DIR/model) the finished model. Environment:
#   DIFFUSE   the diffuse binary (default build/diffuse)
#   THREADS   CPU threads per run (default 1: on a 2-core machine shared with other work one
#             thread is several times faster than two; on an idle machine try 2)
#   QUICK=1   a smoke test: a few steps of each stage instead of the full recipe
# Each stage prints its wall time; a stage whose output exists is skipped (delete it to redo).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-emoji-work}"
OUT="${2:-$WORK/model}"
DIFFUSE="${DIFFUSE:-$ROOT/build/diffuse}"
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

# 0. Data: the npm packages, then train/ and heldout/ folders with metadata.jsonl.
"$ROOT/scripts/fetch_data.sh" >/dev/null
[ -f "$WORK/data/heldout/metadata.jsonl" ] || stage data node "$ROOT/scripts/emoji_dataset.mjs" "$WORK/data"

# 1. VAE: 64x64 images <-> 16x16x4 latents. Each checkpoint's vae/config.json carries the
#    scaling factor measured on the training images (1 / std of the latents).
[ -f "$WORK/vae/last" ] || stage vae "$DIFFUSE" train vae --config "$CFG/vae/config.json" \
  --data "$WORK/data/train" -o "$WORK/vae" --resolution 64 --batch-size 16 --lr 1e-3 \
  --lr-scheduler cosine --warmup-steps 100 --kl-weight 1e-6 "${VAE_LEN[@]}" "${COMMON[@]}"

# 2. CLIP: text and vision towers, contrastive. The checkpoints' model files are f16 (the
#    training state stays f32): text_encoder/ conditions the UNet as the finished model will,
#    vision/ is the finished model's clip/.
[ -f "$WORK/clip/last" ] || stage clip "$DIFFUSE" train clip --config "$CFG/clip/config.json" \
  --data "$WORK/data/train" -o "$WORK/clip" --batch-size 64 --lr 1e-3 \
  --lr-scheduler cosine --warmup-steps 100 --save-dtype f16 "${CLIP_LEN[@]}" "${COMMON[@]}"
VAE_CKPT="$WORK/vae/$(cat "$WORK/vae/last")"
CLIP_CKPT="$WORK/clip/$(cat "$WORK/clip/last")"

# 3. UNet from scratch on cached latents and text embeddings, in the pipeline of the trained
#    VAE, the CLIP's text tower, the published CLIP tokenizer (fetched at set-up) and the
#    recipe's scheduler; 10% of the captions are dropped for classifier-free guidance. Every
#    checkpoint is a complete diffusers pipeline folder.
[ -f "$WORK/unet/last" ] || stage unet "$DIFFUSE" train unet --config "$CFG/unet/config.json" \
  --vae "$VAE_CKPT/vae" --text-encoder "$CLIP_CKPT/text_encoder" --tokenizer "$CFG/tokenizer" \
  --scheduler-config "$CFG/scheduler/scheduler_config.json" --caption-dropout 0.1 \
  --data "$WORK/data/train" -o "$WORK/unet" --resolution 64 --batch-size 32 --lr 1e-3 \
  --lr-scheduler cosine --warmup-steps 200 --cache-latents --cache-text-embeddings \
  "${UNET_LEN[@]}" "${COMMON[@]}"

# 4. The model: the last UNet checkpoint in f16, with the CLIP's vision tower beside it (its
#    text tower is the model's text_encoder/).
if [ ! -f "$OUT/model_index.json" ]; then
  UNET_CKPT="$WORK/unet/$(cat "$WORK/unet/last")"
  stage convert "$DIFFUSE" convert "$UNET_CKPT" "$OUT" --to diffusers --dtype f16
  # the published CLIP vocabulary is fetched at set-up, never committed: diffuse reads it there
  rm -f "$OUT/tokenizer/vocab.json" "$OUT/tokenizer/merges.txt"
  rm -rf "$OUT/clip" && cp -r "$CLIP_CKPT/vision" "$OUT/clip"
fi
du -sh "$OUT" >&2

# 5. CLIP R-precision on 100 held-out captions, with classifier-free guidance.
stage eval "$DIFFUSE" eval -m "$OUT" --data "$WORK/data/heldout" --count 100 --steps 20 \
  --cfg-scale 3 -t "$THREADS" -q --json
