#!/usr/bin/env bash
# Copies Mesa's device-select Vulkan layer (VK_LAYER_MESA_device_select, from this machine's
# mesa-vulkan-drivers) and the libraries it needs (all but the C library's own) into DIR, as an
# explicit layer beside its library, for run.ts --gpus on a GPU host that lacks the layer: there,
# LLMCB_DEVICE_SELECT_LAYER=DIR makes each worker load it (lib/gpus.ts pinEnv). About 0.7 MiB.
#   bash scripts/gpu-pin-layer.sh DIR        (scripts/gpu-pack.sh does it with GPU_PIN=1)
set -euo pipefail
if [ "${1:-}" = --help ] || [ "${1:-}" = -h ] || [ $# -ne 1 ]; then
  sed -n '2,6s/^# \{0,1\}//p' "$0"; [ $# -eq 1 ] && exit 0 || exit 2
fi
out=$1
layer=$(find /usr/lib /usr/lib64 -name libVkLayer_MESA_device_select.so 2>/dev/null | head -1)
manifest=$(find /usr/share/vulkan /etc/vulkan -name 'VkLayer_MESA_device_select.json' 2>/dev/null | head -1)
[ -n "$layer" ] && [ -n "$manifest" ] || { echo "gpu-pin-layer: Mesa's device-select layer is not installed here (apt-get install mesa-vulkan-drivers)" >&2; exit 1; }
rm -rf "$out"; mkdir -p "$out/lib"
cp "$layer" "$out/"
ldd "$layer" | awk '$3 ~ /^\// { print $3 }' | grep -vE '/(libc|libpthread|libdl|libm|librt|ld-linux[^/]*)\.so' | xargs -r -I{} cp -L {} "$out/lib/"
# an explicit layer (enabled by name) beside its library: no implicit-layer switch
node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); j.layer.library_path = "./libVkLayer_MESA_device_select.so"; delete j.layer.disable_environment; console.log(JSON.stringify(j, null, 1));' "$manifest" > "$out/VkLayer_MESA_device_select.json"
cp /usr/share/doc/mesa-vulkan-drivers/copyright "$out/COPYRIGHT" 2>/dev/null || true
echo "gpu-pin-layer: $out ($(du -sh "$out" | cut -f1))"
