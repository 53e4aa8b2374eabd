#!/usr/bin/env bash
# Trains the kit's model zoo (LLaMA-style and OPT-style, ~0.7M / ~1.1M / ~2.2M parameters) on the GPU,
# checks that training resumes from a checkpoint with the same losses, and checks the saved HF
# directories against transformers (when python3 has torch + transformers).
#
# GPU host, from the repository root (one family per command keeps each well under 10 minutes):
#   LLMCB_GIT_SHA=<sha> bash .gpu/enter.sh bash scripts/train-zoo.sh llama
#   LLMCB_GIT_SHA=<sha> bash .gpu/enter.sh bash scripts/train-zoo.sh opt
# Everything is written under a work directory (ZOO_WORK, default $TMPDIR/llmcb-zoo) in the
# repository layout (models/zoo/<name>/, data/zoo/...), then packed for the trip back as
# $OUT/zoo-<family>.tar.part00, part01, ... (15 MiB pieces; $OUT returns few, small files).
# Unpack in the repository root:   cat zoo-llama.tar.part* | tar -xf -
#
# Here, a tiny try on the CPU (wasm):  OUT=/tmp/zoo-out TINY=1 bash scripts/train-zoo.sh llama
#
# Environment: OUT (where the packed result goes; default $TMPDIR/zoo-out), ZOO_WORK, LLMCB_BACKEND
# (default webgpu; wasm with TINY=1), ZOO_BUDGET_SCALE (multiplies every training-time budget),
# ZOO_SIZES (a subset of "700k 1m 2m"; the resume check runs on the first of them),
# ZOO_CORPUS (the built corpus; default data/zoo/corpus, the KJV; data/zoo/corpus-en is general
# English), ZOO_TOKENIZER (default models/zoo/tokenizer, the committed one; with ZOO_TOKENIZER=fresh a
# new one is trained on ZOO_CORPUS' train split into $ZOO_WORK/models/zoo/tokenizer by the first
# model and packed with the models). The English zoo (data/zoo/README.md has the exact commands):
#   ZOO_CORPUS=data/zoo/corpus-en ZOO_TOKENIZER=fresh bash scripts/train-zoo.sh llama
set -euo pipefail
cd "$(dirname "$0")/.."
family=${1:-all}
case "$family" in llama|opt|all) ;; *) echo "usage: $0 [llama|opt|all]" >&2; exit 2 ;; esac
OUT=${OUT:-${TMPDIR:-/tmp}/zoo-out}
WORK=${ZOO_WORK:-${TMPDIR:-/tmp}/llmcb-zoo}
scale=${ZOO_BUDGET_SCALE:-1}
corpus=${ZOO_CORPUS:-data/zoo/corpus}
tokenizer=${ZOO_TOKENIZER:-models/zoo/tokenizer}
[ "$tokenizer" = fresh ] && tokenizer="$WORK/models/zoo/tokenizer"
[ -f "$corpus/corpus.json" ] || { echo "ZOO_CORPUS=$corpus: no corpus.json (build it with scripts/build-corpus.ts)" >&2; exit 2; }
mkdir -p "$OUT" "$WORK/models/zoo" "$WORK/data/zoo"
# Provenance when the tree has no .git (the GPU host gets a copy of the working tree).
if [ -z "${LLMCB_GIT_SHA:-}" ] && ! git rev-parse HEAD >/dev/null 2>&1; then export LLMCB_GIT_SHA=unknown; fi

families=(llama opt)
[ "$family" != all ] && families=("$family")
if [ "${TINY:-0}" = 1 ]; then
  backend=${LLMCB_BACKEND:-wasm}
  sizes=(tiny); budgets=(20); resume_steps=20
  extra=(--seq-len 64 --eval-windows 4 --final-eval-windows 64)
else
  backend=${LLMCB_BACKEND:-webgpu}
  # Training-time budgets (seconds); larger models get more, so that held-out perplexity falls with size.
  sizes=(700k 1m 2m); budgets=(25 40 210); resume_steps=40  # the committed 2m models: 150 / 140 steps
  extra=()
  # ZOO_SIZES="2m" (a subset of 700k 1m 2m) trains only those, with their budgets: one size per
  # command leaves room for a larger ZOO_BUDGET_SCALE within a device call's 10 minutes.
  if [ -n "${ZOO_SIZES:-}" ]; then
    keep_sizes=(); keep_budgets=()
    for want in $ZOO_SIZES; do
      found=0
      for i in "${!sizes[@]}"; do [ "${sizes[$i]}" = "$want" ] && { keep_sizes+=("$want"); keep_budgets+=("${budgets[$i]}"); found=1; }; done
      [ "$found" = 1 ] || { echo "ZOO_SIZES: unknown size '$want' (sizes: ${sizes[*]})" >&2; exit 2; }
    done
    sizes=("${keep_sizes[@]}"); budgets=("${keep_budgets[@]}")
  fi
fi
budget() { awk -v b="$1" -v s="$scale" 'BEGIN { printf "%d", b * s }'; }
train() { node --import tsx scripts/train.ts --backend "$backend" --out-root "$WORK" --corpus "$corpus" --tokenizer "$tokenizer" "${extra[@]}" "$@"; }

start=$(date +%s)
for f in "${families[@]}"; do
  for i in "${!sizes[@]}"; do
    train --model "$f-${sizes[$i]}" --budget-s "$(budget "${budgets[$i]}")"
  done
  # Resume proof on the smallest model: interrupted at half-way, resumed from disk, same losses?
  train --model "$f-${sizes[0]}" --steps "$resume_steps" --resume-check
done
echo "zoo training ($family): $(( $(date +%s) - start )) s"

# HF-format proof: transformers' logits vs the kit's on the smallest model of each family.
if python3 -c 'import torch, transformers' 2>/dev/null; then
  models=()
  for f in "${families[@]}"; do models+=("$f-${sizes[0]}"); done
  python3 scripts/py/zoo_hf_check.py --zoo "$WORK/models/zoo" --models "${models[@]}" --out "$WORK/hf_logits_$family.json"
  node --import tsx scripts/zoo-hf-check.ts --backend "$backend" --logits "$WORK/hf_logits_$family.json" --zoo "$WORK/models/zoo" \
    --out "$WORK/data/zoo/hf_parity_$family.csv" || echo "HF parity check FAILED" >&2
else
  echo "python3 without torch/transformers: HF parity check skipped" >&2
fi

# Pack this command's models and tables (the paths they have in the repository).
paths=()
for f in "${families[@]}"; do
  for s in "${sizes[@]}"; do
    [ -d "$WORK/models/zoo/$f-$s" ] && paths+=("models/zoo/$f-$s" "data/zoo/curves/$f-$s.csv" "data/zoo/summary/$f-$s.csv")
  done
  [ -f "$WORK/data/zoo/resume_check_$f-${sizes[0]}.csv" ] && paths+=("data/zoo/resume_check_$f-${sizes[0]}.csv")
done
[ -f "$WORK/data/zoo/hf_parity_$family.csv" ] && paths+=("data/zoo/hf_parity_$family.csv")
[ "$tokenizer" = "$WORK/models/zoo/tokenizer" ] && [ -d "$tokenizer" ] && paths+=("models/zoo/tokenizer")
rm -f "$OUT/zoo-$family.tar.part"*
tar -C "$WORK" -cf - "${paths[@]}" | split -b 15M -d -a 2 - "$OUT/zoo-$family.tar.part"
ls -l "$OUT"
for p in "${paths[@]}"; do
  case "$p" in data/zoo/summary/*|data/zoo/resume_check_*|data/zoo/hf_parity_*) echo "== $p"; cat "$WORK/$p" ;; esac
done
