#!/usr/bin/env bash
# Runs stable-diffusion.cpp's sd-cli and `diffuse bench` on the same checkpoint, prompt, sizes,
# steps and threads, one fresh process per size and tool, and prints each stage's time and the
# peak memory of both with the ratio diffuse / sd.cpp (below 1: diffuse is faster or smaller).
#
#   bench/compare_sdcpp.sh SD_CLI MODEL [--size 256,512] [--steps 4] [--threads N]
#                          [--precision auto|fp32|bf16] [--runs 3] [--prompt TEXT] [--keep DIR]
#
# SD_CLI is an sd-cli that the user built (https://github.com/leejet/stable-diffusion.cpp; not
# part of this project). The diffuse binary is $DIFFUSE, else `diffuse` on the PATH, else the
# build folders of this checkout. sd.cpp's times come from its log lines
# ("get_learned_condition completed, taking", "sampling completed, taking" divided by the
# steps, "decode_first_stage completed, taking"); a sampling step is one CFG step (conditional
# and unconditional UNet passes), as `diffuse bench`'s unet_step_s. Peak memory is each
# process's maximum resident set. sd.cpp runs the euler sampler so no step costs more than one
# CFG pass. VAE encoding has no sd.cpp counterpart in txt2img and is reported for diffuse only.
set -euo pipefail

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
}

[[ $# -ge 2 ]] || usage
SD_CLI=$1
MODEL=$2
shift 2
SIZES=256,512
STEPS=4
THREADS=$(nproc)
PRECISION=auto
RUNS=3
PROMPT="a photograph of an astronaut riding a horse"
KEEP=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --size) SIZES=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --precision) PRECISION=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --prompt) PROMPT=$2; shift 2 ;;
    --keep) KEEP=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "compare_sdcpp.sh: unknown option $1" >&2; usage ;;
  esac
done

[[ -x $SD_CLI ]] || { echo "compare_sdcpp.sh: $SD_CLI is not an executable sd-cli" >&2; exit 2; }
[[ -e $MODEL ]] || { echo "compare_sdcpp.sh: no model at $MODEL" >&2; exit 2; }
[[ $STEPS =~ ^[1-9][0-9]*$ ]] || { echo "compare_sdcpp.sh: --steps must be a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare_sdcpp.sh: python3 is needed to read the logs" >&2; exit 2; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIFFUSE=${DIFFUSE:-}
if [[ -z $DIFFUSE ]]; then
  if command -v diffuse >/dev/null; then
    DIFFUSE=$(command -v diffuse)
  else
    for d in "$ROOT"/build*/diffuse; do
      [[ -x $d ]] && { DIFFUSE=$d; break; }
    done
  fi
fi
[[ -n $DIFFUSE && -x $DIFFUSE ]] || { echo "compare_sdcpp.sh: no diffuse binary (set DIFFUSE)" >&2; exit 2; }

WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
[[ -n $KEEP ]] || trap 'rm -rf "$WORK"' EXIT

# Runs a command, recording its peak resident set (KiB) in $1.rss and its output in $1.log.
run_measured() {
  local tag=$1
  shift
  if [[ -x /usr/bin/time ]]; then
    /usr/bin/time -v -o "$WORK/$tag.time" "$@" >"$WORK/$tag.log" 2>&1
    awk -F': ' '/Maximum resident set size/ {print $2}' "$WORK/$tag.time" >"$WORK/$tag.rss"
  else  # poll the process's own high-water mark while it runs
    "$@" >"$WORK/$tag.log" 2>&1 &
    local pid=$! hwm=0 v
    while kill -0 "$pid" 2>/dev/null; do
      v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
      [[ -n $v ]] && hwm=$v
      sleep 0.2
    done
    wait "$pid"
    echo "$hwm" >"$WORK/$tag.rss"
  fi
}

echo "sd.cpp:  $SD_CLI"
echo "diffuse: $DIFFUSE (precision $PRECISION)"
echo "model:   $MODEL; $STEPS steps, $THREADS threads; prompt: $PROMPT"
IFS=, read -ra SIZE_LIST <<<"$SIZES"
for S in "${SIZE_LIST[@]}"; do
  echo "== ${S}x${S}: running sd.cpp ($STEPS steps)..." >&2
  run_measured "sdcpp_$S" "$SD_CLI" -m "$MODEL" -p "$PROMPT" -W "$S" -H "$S" --steps "$STEPS" \
    --cfg-scale 7 --sampling-method euler -t "$THREADS" -s 42 -o "$WORK/sdcpp_$S.png" ||
    { echo "compare_sdcpp.sh: sd-cli failed, see $WORK/sdcpp_$S.log" >&2; trap - EXIT; exit 1; }
  echo "== ${S}x${S}: running diffuse bench..." >&2
  run_measured "diffuse_$S" "$DIFFUSE" bench -m "$MODEL" --size "$S" --threads "$THREADS" \
    --precision "$PRECISION" --runs "$RUNS" -p "$PROMPT" --json ||
    { echo "compare_sdcpp.sh: diffuse bench failed, see $WORK/diffuse_$S.log" >&2; trap - EXIT; exit 1; }
done

python3 - "$WORK" "$STEPS" "${SIZE_LIST[@]}" <<'EOF'
import json, re, sys
work, steps, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

def sdcpp(size):
    log = open(f"{work}/sdcpp_{size}.log", errors="replace").read()
    def last(pattern):
        m = re.findall(pattern, log)
        return float(m[-1]) if m else None
    sampling = last(r"sampling completed, taking ([\d.]+)s")
    return {
        "text_encode_s": last(r"get_learned_condition completed, taking ([\d.]+)s"),
        "unet_step_s": sampling / steps if sampling is not None else None,
        "vae_decode_s": last(r"decode_first_stage completed, taking ([\d.]+)s"),
        "vae_encode_s": None,
        "peak_rss_mb": float(open(f"{work}/sdcpp_{size}.rss").read().strip() or 0) / 1024,
    }

def diffuse(size):
    lines = [l for l in open(f"{work}/diffuse_{size}.log").read().splitlines() if l.startswith("{")]
    r = json.loads(lines[-1])[str(size)]
    r["peak_rss_mb"] = float(open(f"{work}/diffuse_{size}.rss").read().strip() or 0) / 1024
    return r

def fmt(v, unit):
    return "-" if v is None else (f"{v:.3f} s" if unit == "s" else f"{v:.0f} MB")

print(f"\n{'size':>5} {'stage':<14} {'sd.cpp':>11} {'diffuse':>11} {'ratio':>7}")
summary = {}
for size in sizes:
    a, b = sdcpp(size), diffuse(size)
    summary[size] = {}
    for key, label, unit in [("unet_step_s", "UNet step", "s"), ("vae_decode_s", "VAE decode", "s"),
                             ("vae_encode_s", "VAE encode", "s"), ("text_encode_s", "text encode", "s"),
                             ("peak_rss_mb", "peak memory", "MB")]:
        x, y = a.get(key), b.get(key)
        ratio = y / x if x and y is not None else None
        summary[size][key] = {"sdcpp": x, "diffuse": y, "ratio": ratio}
        print(f"{size:>5} {label:<14} {fmt(x, unit):>11} {fmt(y, unit):>11} "
              f"{'-' if ratio is None else f'{ratio:.2f}x':>7}")
print(json.dumps(summary))
EOF
