#!/usr/bin/env bash
# One-GPU check: a short bf16 training run through trendgen-train, then the training-step and embed-stage
# benchmarks on the GPU, then a short bf16 LoRA run of trendgen-train-generator on a Stable Diffusion (SD_BASE,
# default OFA-Sys/small-stable-diffusion-v0: a hub id or a local diffusers folder) and the generator benchmark,
# each printing images per second; with PEER_PYTHON set, the comparisons against open_clip, clip-retrieval
# and diffusers' example (bench_peers.py) in bf16 on the GPU. Needs a CUDA device: without one it exits 1 with one
# line. Models have random weights (no download): the ViT-B/32 geometry unless MODEL says otherwise.
#   scripts/gpu_check.sh [MODEL]          e.g. scripts/gpu_check.sh clip_b32
# Env: TRENDGEN_VENV (default .venv), GPU_CHECK_STEPS (default 50), GPU_CHECK_WORKERS (default min(8, nproc));
# the peers' environment (docs/BENCHMARKS.md): PEER_PYTHON, and optionally CLIP_RETRIEVAL (its console script)
# and DIFFUSERS_EXAMPLE (examples/text_to_image/train_text_to_image.py of a diffusers checkout).
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${TRENDGEN_VENV:-.venv}"
py="$venv/bin/python"
if [[ ! -x "$py" ]]; then
  echo "gpu_check.sh: no Python at $py (run \`make install\` or set TRENDGEN_VENV)" >&2
  exit 1
fi

# The GPU and its bf16 support; a missing CUDA device ends the check here, in one line.
precision=$("$py" - <<'PY'
import sys

import torch

if not torch.cuda.is_available():
    runtime = torch.version.cuda or "none: this torch is a CPU-only build"
    sys.exit(f"gpu_check.sh: no CUDA device visible to torch {torch.__version__} (CUDA runtime: {runtime})")
name = torch.cuda.get_device_name(0)
bf16 = torch.cuda.is_bf16_supported()
print(f"gpu_check.sh: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, bf16 {bf16}", file=sys.stderr)
print("bf16-mixed" if bf16 else "16-mixed")
PY
) || exit 1

model="${1:-clip_b32}"
steps="${GPU_CHECK_STEPS:-50}"
workers="${GPU_CHECK_WORKERS:-$(( $(nproc) < 8 ? $(nproc) : 8 ))}"
out="$(mktemp -d "${TMPDIR:-/tmp}/trendgen-gpu-check.XXXXXX")"
echo "gpu_check.sh: model=$model precision=$precision steps=$steps workers=$workers output=$out"

# run_logged LOG CMD...: run an entrypoint into LOG, timed into $start/$end; on failure show LOG's tail, exit 1.
run_logged() {
  local log=$1
  shift
  start=$(date +%s.%N)
  "$@" > "$log" 2>&1 || {
    echo "gpu_check.sh: $(basename "$1") failed; the last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  }
  end=$(date +%s.%N)
}

echo "== 1/6 trendgen-train: $steps steps of $model at $precision on synthetic garments"
run_logged "$out/train.log" "$venv/bin/trendgen-train" \
  trainer=gpu trainer.precision="$precision" trainer.max_steps="$steps" \
  model="$model" model.pretrained=false \
  data.size=4096 data.val_size=256 data.batch_size=128 data.num_workers="$workers" data.image_px=224 \
  logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false \
  hydra.run.dir="$out/train"
"$py" - "$out/train" "$start" "$end" <<'PY'
import json
import sys

run, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
metrics = json.load(open(f"{run}/metrics.json"))
steps = int(metrics["global_step"])
print(f"trendgen-train: {steps} steps of 128 images in {end - start:.0f} s wall (start-up, validation and "
      f"saving included): {steps * 128 / (end - start):.0f} images/s end to end; model saved in {run}/model")
PY

echo "== 2/6 training step rate (bench_train.py, after warm-up)"
"$py" scripts/bench_train.py --device cuda --precision "$precision" --model "$model" \
  --batch-size 128 --n 2048 --px 256 --steps 30 --warmup 5 --workers "$workers" --workdir "$out/bench"

echo "== 3/6 embed stage rate (bench_embed.py)"
"$py" scripts/bench_embed.py --device cuda --model "$model" \
  --n 2048 --naive-n 128 --batch-size 256 --px 256 --workers "$workers" --workdir "$out/bench"

base="${SD_BASE:-OFA-Sys/small-stable-diffusion-v0}"
echo "== 4/6 trendgen-train-generator: $steps steps of a LoRA on $base at $precision, 512 px"
run_logged "$out/generator.log" "$venv/bin/trendgen-train-generator" \
  diffusion=small_sd_lora diffusion.name_or_path="$base" diffusion.resolution=512 diffusion.cache_latents=true \
  trainer=gpu trainer.precision="$precision" trainer.max_steps="$steps" trainer.limit_val_batches=2 \
  data.size=1024 data.val_size=64 data.batch_size=16 data.num_workers="$workers" data.image_px=512 \
  sampling.samples_per_prompt=2 sampling.steps=20 \
  logger=csv '~callbacks.progress_bar' trainer.enable_progress_bar=false \
  hydra.run.dir="$out/generator"
"$py" - "$out/generator" "$start" "$end" <<'PY'
import json
import sys

run, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
steps = int(json.load(open(f"{run}/metrics.json"))["global_step"])
print(f"trendgen-train-generator: {steps} LoRA steps of 16 images in {end - start:.0f} s wall (start-up, "
      f"validation sampling and saving included); LoRA in {run}/generator (pipe.load_lora_weights)")
PY

echo "== 5/6 tiny generator step and sampling rate (bench_generator.py)"
"$py" scripts/bench_generator.py --device cuda --precision "$precision" --batch-size 256 --steps 30 \
  --workers "$workers" --workdir "$out/bench"

if [[ -n "${PEER_PYTHON:-}" ]]; then
  echo "== 6/6 against the peers on the GPU, bf16 mixed in each (bench_peers.py)"
  peers=(--device cuda --precision bf16 --peer-python "$PEER_PYTHON" --workers "$workers" --workdir "$out/bench")
  "$py" scripts/bench_peers.py train "${peers[@]}" --batch-size 128 --sizes 512 2048
  "$py" scripts/bench_peers.py embed "${peers[@]}" --batch-size 256 --sizes 512 2048 \
    ${CLIP_RETRIEVAL:+--clip-retrieval "$CLIP_RETRIEVAL"}
  if [[ -n "${DIFFUSERS_EXAMPLE:-}" ]]; then
    for batch in 8 128; do
      "$py" scripts/bench_peers.py generator "${peers[@]}" --diffusers-example "$DIFFUSERS_EXAMPLE" \
        --batch-size "$batch" --sizes 20 220
    done
  fi
else
  echo "== 6/6 skipped: PEER_PYTHON unset (the peers' environment, docs/BENCHMARKS.md)"
fi

echo "gpu_check.sh: done (outputs in $out)"
