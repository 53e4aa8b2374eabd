#!/usr/bin/env bash
# Trains the kit's model zoo (LLaMA-style and OPT-style, ~1M / ~5M / ~16M parameters) on the GPU,
# checks that training resumes from a checkpoint with the same losses, and checks the saved HF
# directories against transformers (when python3 has torch + transformers).
#
# GPU host, from the repository root (one family per command keeps each under 10 minutes):
#   OUT=$OUT bash .gpu/enter.sh bash scripts/train-zoo.sh llama
#   OUT=$OUT bash .gpu/enter.sh bash scripts/train-zoo.sh opt
# Then copy $OUT/models/zoo/* to models/zoo/ and $OUT/data/zoo/* to data/zoo/ and commit.
#
# Here, a tiny try on the CPU (wasm):  TINY=1 bash scripts/train-zoo.sh llama
#
# Environment: OUT (output root, default ./zoo-out), LLMCB_BACKEND (default webgpu),
# ZOO_BUDGET_SCALE (multiplies every training-time budget, default 1), TINY=1 (tiny models, wasm).
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:-all}
case "$family" in llama|opt|all) ;; *) echo "usage: $0 [llama|opt|all]" >&2; exit 2 ;; esac
OUT=${OUT:-zoo-out}
scale=${ZOO_BUDGET_SCALE:-1}
mkdir -p "$OUT/models/zoo" "$OUT/data/zoo"
# Provenance when the tree has no .git (the GPU host gets a copy of the working tree).
if [ -z "${LLMCB_GIT_SHA:-}" ] && ! git rev-parse HEAD >/dev/null 2>&1; then export LLMCB_GIT_SHA=unknown; fi

budget() { awk -v b="$1" -v s="$scale" 'BEGIN { printf "%d", b * s }'; }
train() { # model budget_s
  npx tsx scripts/train.ts --backend "$backend" --out-root "$OUT" --model "$1" --budget-s "$(budget "$2")" "${extra[@]}"
}

families=(llama opt)
[ "$family" != all ] && families=("$family")
start=$(date +%s)
if [ "${TINY:-0}" = 1 ]; then
  backend=${LLMCB_BACKEND:-wasm}
  extra=(--seq-len 64 --eval-windows 4 --final-eval-windows 64)
  for f in "${families[@]}"; do train "$f-tiny" 20; done
  npx tsx scripts/train.ts --backend "$backend" --out-root "$OUT" --model "${families[0]}-tiny" --seq-len 64 --steps 20 --eval-windows 4 --resume-check
  exit 0
fi
backend=${LLMCB_BACKEND:-webgpu}
extra=()
# Training-time budgets (seconds); larger models get more, so that held-out perplexity falls with size.
for f in "${families[@]}"; do
  train "$f-1m" 30
  train "$f-5m" 50
  train "$f-16m" 120
  # Resume proof on the smallest model of the family: interrupted at half-way, resumed from disk.
  npx tsx scripts/train.ts --backend "$backend" --out-root "$OUT" --model "$f-1m" --steps 200 --resume-check
done
echo "zoo training: $(( $(date +%s) - start )) s"

# HF-format proof: transformers' logits vs the kit's on one model of each trained family.
if python3 -c 'import torch, transformers' 2>/dev/null; then
  models=()
  for f in "${families[@]}"; do models+=("$f-1m"); done
  python3 scripts/py/zoo_hf_check.py --zoo "$OUT/models/zoo" --models "${models[@]}" --out "$OUT/data/zoo/hf_logits_${family}.json"
  npx tsx scripts/zoo-hf-check.ts --backend "$backend" --logits "$OUT/data/zoo/hf_logits_${family}.json" --zoo "$OUT/models/zoo" --out-root "$OUT" \
    || echo "HF parity check FAILED (see $OUT/data/zoo/hf_parity.csv)" >&2
  rm -f "$OUT/data/zoo/hf_logits_${family}.json" # large; the parity table keeps the result
else
  echo "python3 without torch/transformers: HF parity check skipped" >&2
fi
