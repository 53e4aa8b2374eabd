#!/usr/bin/env bash
# On the offline GPU host: runs a command under the slim bundle's enter.sh (.gpul/ from scripts/gpu-pack.sh),
# keeping node, node_modules and the packed data (.gpudata/) in a cache folder, so that a follow-up call on the
# same machine while it is warm (where /tmp survives but the repository folder is laid anew) carries the
# tree only, or data in the bundle's place.
#   bash scripts/gpu-host.sh node --import tsx scripts/check-kernels.ts
# The cache: $LLMCB_HOST_CACHE, default /tmp/llmcb-host (node_modules from the first bundle seen: remove the
# cache after changing dependencies). With packed data, LLMCB_SHARED points at its copy.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache=${LLMCB_HOST_CACHE:-/tmp/llmcb-host}
mkdir -p "$cache/bundle" "$cache/nm"
exec 9>"$cache/lock"; flock 9 # commands started side by side set up once
if [ -d "$root/.gpul" ]; then
  cp "$root"/.gpul/enter.sh "$root"/.gpul/*.deb "$cache/bundle/"
  # Node resolves a package's own imports from its real path: the cached folder must be named node_modules.
  [ -d "$cache/nm/node_modules" ] || tar -xJf "$root/.gpul/node_modules.tar.xz" -C "$cache/nm"
fi
node=${TMPDIR:-/tmp}/gpu-node/bin/node # where enter.sh unpacks node
[ -f "$cache/bundle/enter.sh" ] && [ -d "$cache/nm/node_modules" ] && { [ -x "$node" ] || [ -d "$root/.gpul" ]; } || { echo "gpu-host: no .gpul/ here and nothing cached in $cache: carry .gpul/ (bash scripts/gpu-pack.sh)" >&2; exit 1; }
if [ -f "$root/.gpudata/shared.tar.xz" ] && [ ! -d "$cache/shared" ]; then
  mkdir -p "$cache/shared.tmp" && tar -xJf "$root/.gpudata/shared.tar.xz" -C "$cache/shared.tmp" && mv "$cache/shared.tmp" "$cache/shared"
fi
[ -d "$cache/shared" ] && export LLMCB_SHARED=${LLMCB_SHARED:-$cache/shared}
[ -e "$root/node_modules" ] || ln -s "$cache/nm/node_modules" "$root/node_modules"
[ -x "$node" ] || bash "$root/.gpul/enter.sh" true >/dev/null # unpacks node once, from the bundle
# enter.sh works from the folder beside the tree: a copy in .gpuh/ (without node.xz: node is unpacked).
mkdir -p "$root/.gpuh" && cp "$cache"/bundle/* "$root/.gpuh/"
flock -u 9
exec bash "$root/.gpuh/enter.sh" "$@"
