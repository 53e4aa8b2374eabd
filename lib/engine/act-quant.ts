// Activation fake quantization before a linear (lib/quant/act.ts on the executor): per token,
// s = max(max|x|, 1e-5) / qmax and x ← round(x / s) · s (round half to even, as tf.round); per
// tensor with a calibrated absmax, s is a constant and the codes are clamped to the int range.
import type { Kernel } from './gpu';
import { wgslFloat } from './kernels';

/** y [n, K] ← fake-quantized x [n, K]; staticAbsmax null: per-token dynamic scales. Bindings: y, x. One workgroup per row. */
export function actQuantKernel(K: number, bits: number, staticAbsmax: number | null): Kernel {
  const qmax = 2 ** (bits - 1) - 1;
  const WG = 128;
  const scale =
    staticAbsmax === null
      ? `var m = 0.0;
  for (var c = lid; c < ${K}u; c += ${WG}u) { m = max(m, abs(x[base + c])); }
  red[lid] = m;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) { red[lid] = max(red[lid], red[lid + k]); }
    workgroupBarrier();
  }
  let s = max(red[0], 1e-5) / ${wgslFloat(qmax)};`
      : `let s = ${wgslFloat(Math.fround(Math.max(staticAbsmax, 1e-5) / qmax))};`;
  const code = staticAbsmax === null ? 'round(x[base + c] / s)' : `clamp(round(x[base + c] / s), ${wgslFloat(-qmax - 1)}, ${wgslFloat(qmax)})`;
  return {
    name: `act-quant-${K}-${bits}${staticAbsmax === null ? '' : '-static'}`,
    params: { n: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) g: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) lid: u32) {
  let row = g.y * ng.x + g.x;
  if (row >= params.n) { return; }
  let base = row * ${K}u;
  ${scale}
  for (var c = lid; c < ${K}u; c += ${WG}u) { y[base + c] = ${code} * s; }
}`,
  };
}
