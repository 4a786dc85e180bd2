#!/usr/bin/env bash
# The offline demo: train a tiny CLIP on synthetic garments, train a tiny generator on its text tower, then turn
# a synthetic trending set into new designs drawn by that generator.
# Runs from the repository root with the package installed (`make demo` does both).
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=$(date +%Y-%m-%d_%H-%M-%S)
train_dir="runs/demo/train/${stamp}"
generator_dir="runs/demo/train_generator/${stamp}"
design_dir="runs/demo/design/${stamp}"

trendgen-train experiment=demo hydra.run.dir="${train_dir}" "$@"
trendgen-train-generator experiment=demo_generator hydra.run.dir="${generator_dir}" \
  diffusion.text_encoder="${train_dir}/model"
trendgen-design experiment=demo hydra.run.dir="${design_dir}" model.name_or_path="${train_dir}/model" \
  generator.name_or_path="${generator_dir}/generator" \
  ${OPENAI_API_KEY:+llm=openai}  # the template writer unless a key is set

echo
echo "Demo finished."
echo "  model:     ${train_dir}/model  (CLIPModel.from_pretrained / AutoProcessor.from_pretrained)"
echo "  generator: ${generator_dir}/generator  (TrendgenPipeline.from_pretrained)"
echo "  trend:     ${design_dir}/trend.json"
echo "  prompt:    ${design_dir}/prompt.txt"
echo "  designs:   ${design_dir}/designs/"
echo "  report:    ${design_dir}/report.html"
