#!/usr/bin/env bash
# Slim GPU bundle for runs that do not need llama.cpp: .gpul/ = .gpu/ (from ../shared/gpu/bundle.sh)
# with node-llama-cpp (and the typescript it pulls in) removed and tfjs's browser bundles trimmed,
# so that more of the 64 MiB a device call carries is left for models and data.
#   bash ../shared/gpu/bundle.sh && bash scripts/gpu-pack.sh
# Optional: GPU_LLAMA=1 keeps node-llama-cpp and its prebuilt Vulkan build (Track 5's llama.cpp engine).
# Optional: GPU_DATA="reference datasets/wikitext-2-raw ..." packs those parts of ../shared into
# .gpudata/shared.tar.xz (unpack on the host and point LLMCB_SHARED / LLMCB_DATA at it).
# Optional: GPU_PIN=1 carries Mesa's device-select Vulkan layer into .gpul/device-select/ (scripts/gpu-pin-layer.sh),
# for run.ts --gpus on a host without it: there, LLMCB_DEVICE_SELECT_LAYER=.gpul/device-select.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
[ -f .gpu/node_modules.tar.xz ] || { echo "gpu-pack: run ../shared/gpu/bundle.sh first" >&2; exit 1; }
for d in /.gpul/ /.gpudata/; do grep -qxF "$d" .git/info/exclude || echo "$d" >> .git/info/exclude; done
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p .gpul
cp .gpu/node.xz .gpu/*.deb .gpu/enter.sh .gpul/
tar -xJf .gpu/node_modules.tar.xz -C "$work"
# Not used at run time: llama.cpp unless GPU_LLAMA is set (and the typescript it pulls in), core-js (only tfjs's browser
# polyfill entry imports it), type declarations, source maps, docs.
rm -rf "$work"/node_modules/{typescript,core-js,@types}
[ -n "${GPU_LLAMA:-}" ] || rm -rf "$work"/node_modules/{node-llama-cpp,@node-llama-cpp}
find "$work/node_modules" \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' -o -name '*.md' \) -delete
find "$work/node_modules/@tensorflow" \( -name '*.min.js' -o -name '*.es2017*' -o -name '*.fesm*' \
  -o -name '*.html' -o -name '*_test.js' -o -name 'miniprogram' \) -prune -exec rm -rf {} +
tar -C "$work" -cf - node_modules | xz -T0 -6 > .gpul/node_modules.tar.xz.tmp
mv .gpul/node_modules.tar.xz.tmp .gpul/node_modules.tar.xz
[ -z "${GPU_PIN:-}" ] || bash scripts/gpu-pin-layer.sh .gpul/device-select
if [ -n "${GPU_DATA:-}" ]; then
  mkdir -p .gpudata
  tar -C "$root/../shared" -cf - $GPU_DATA | xz -T0 -6 > .gpudata/shared.tar.xz.tmp
  mv .gpudata/shared.tar.xz.tmp .gpudata/shared.tar.xz
fi
du -sh .gpul .gpudata 2>/dev/null
