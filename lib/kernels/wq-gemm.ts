// Weight-only quantized linear (RTN/GPTQ/AWQ W4/W8): y = x · dequant(W)ᵀ (+ bias), reading the
// packed codes of lib/quant/pack.ts (u4: two codes per byte, low nibble first; u8: one per byte)
// and per-group fp32 scales and integer zero points directly, dequantizing each weight as
// scale · (code − zero) in fp32, exactly as dequantizeMatrix.
//
// Decode and small batches (B ≤ maxGemvBatch rows of x) take a GEMV kernel: memory-bound, so each
// weight byte is read once for all B rows: 256 invocations per workgroup, a group of lanes per
// output row (one subgroup with subgroupAdd where the subgroup size is fixed, else 32 lanes and a
// workgroup-memory reduction), each lane reading 16-byte vec4<u32> chunks of the packed row (32
// four-bit codes). Larger batches (prefill) dequantize W to fp32 once per call and use
// tfjs's matMul: compute-bound there, and the dequantized weight is transient.
import * as tf from '@tensorflow/tfjs';
import { hasSubgroups, paramsStruct, runKernel, subgroupSizes, u32, type Param } from './gpu';
import type { PackedWeightOnly } from './packed-linear';

export type GemvReduction = 'auto' | 'subgroup' | 'workgroup';

export interface WeightOnlyOptions {
  /** Largest number of x rows the GEMV kernel takes (≤ 8); more rows dequantize W and use matMul. */
  maxGemvBatch?: number;
  /** Output rows each group of lanes computes in the GEMV (1, 2 or 4): more rows reuse each x value, fewer give more workgroups. */
  rowsPerGroup?: number;
  /** Row sums of the GEMV: 'subgroup' (one subgroup per row, subgroupAdd; needs a fixed subgroup
   * size), 'workgroup' (32 lanes per row, workgroup memory), 'auto' subgroup where possible. */
  reduction?: GemvReduction;
}

export const WEIGHT_ONLY_DEFAULTS: Required<WeightOnlyOptions> = {
  maxGemvBatch: 8, // decode and short speculative/beam batches; past that the GEMM is compute-bound
  rowsPerGroup: 2, // a guess between x reuse and parallelism; sweep with bench-kernels --kernels weightOnly
  reduction: 'auto', // subgroupAdd where the device has fixed-size subgroups
};

const THREADS = 256; // invocations per GEMV workgroup

/**
 * How the GEMV reduces each row's partial sums: with subgroups of one fixed size S, each row gets
 * one subgroup of S lanes and subgroupAdd; otherwise 32 lanes per row through workgroup memory.
 */
function gemvLayout(reduction: GemvReduction): { lanes: number; subgroup: boolean } {
  const s = subgroupSizes();
  const fixed = hasSubgroups() && s && s.min === s.max && THREADS % s.min === 0 ? s.min : null;
  if (reduction === 'subgroup' && !fixed) throw new Error(`weightOnlyLinear: reduction 'subgroup' needs subgroups of one fixed size (this device: ${s ? `${s.min}..${s.max}` : 'none'})`);
  if (reduction !== 'workgroup' && fixed) return { lanes: fixed, subgroup: true };
  return { lanes: 32, subgroup: false };
}

/** WGSL of the dequantization of one packed word `word` starting at column `col0` of row `row`, calling use(col, w). */
function unpackWord(bits: 4 | 8, use: string): string {
  const per = 32 / bits;
  const mask = bits === 4 ? '0xfu' : '0xffu';
  return `
      let g = row * params.G + col0 / params.groupSize;
      let s = scales[g];
      let z = zeros[g];
      for (var j = 0u; j < ${per}u; j++) {
        let col = col0 + j;
        if (col < params.K) {
          let w = s * (f32((word >> (${bits}u * j)) & ${mask}) - z);
          ${use}
        }
      }`;
}

function gemvCode(bits: 4 | 8, B: number, R: number, bias: boolean, params: Record<string, Param>, lanes: number, subgroup: boolean): string {
  const per = 32 / bits; // codes per word
  const mask = bits === 4 ? '0xfu' : '0xffu';
  const groups = THREADS / lanes; // row groups per workgroup, `lanes` invocations and R rows each
  const plusBias = bias ? ' + bias[row]' : '';
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  // Each x value is loaded once per code and used for the R rows of the group.
  const fma = range(B)
    .map((b) => `          let x${b} = x[${b}u * params.K + col];\n` + range(R).map((r) => `          acc[${r * B + b}] += x${b} * w${r};`).join('\n'))
    .join('\n');
  const weights = range(R).map((r) => `          let w${r} = s[${r}] * (f32((chunk[${r}][t] >> (${bits}u * j)) & ${mask}) - z[${r}]);`).join('\n');
  const reduce = subgroup
    ? `  for (var i = 0u; i < ${R * B}u; i++) {
    let sum = subgroupAdd(acc[i]);
    let row = row0 + i / B;
    if (lane == 0u && row < params.N) { y[(i % B) * params.N + row] = sum${plusBias}; }
  }`
    : `  for (var i = 0u; i < ${R * B}u; i++) { red[(lid.y * ${R * B}u + i) * ${lanes}u + lane] = acc[i]; }
  workgroupBarrier();
  let row = row0 + lane / B;
  if (lane < ${R * B}u && row < params.N) {
    var sum = 0.0;
    for (var l = 0u; l < ${lanes}u; l++) { sum += red[(lid.y * ${R * B}u + lane) * ${lanes}u + l]; }
    y[(lane % B) * params.N + row] = sum${plusBias};
  }`;
  return /* wgsl */ `${subgroup ? 'enable subgroups;' : ''}
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>; // [B, N]
@group(0) @binding(1) var<storage, read> x: array<f32>; // [B, K]
@group(0) @binding(2) var<storage, read> qweight: array<vec4<u32>>; // [N, rowWords / 4]
@group(0) @binding(3) var<storage, read> scales: array<f32>; // [N, G]
@group(0) @binding(4) var<storage, read> zeros: array<f32>; // [N, G]
${bias ? '@group(0) @binding(5) var<storage, read> bias: array<f32>; // [N]' : ''}
@group(0) @binding(${bias ? 6 : 5}) var<uniform> params: Params;
const B = ${B}u;
const R = ${R}u;
${subgroup ? '' : `var<workgroup> red: array<f32, ${THREADS * R * B}>; // [groups, R·B, lanes]`}
@compute @workgroup_size(${lanes}, ${groups})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  let row0 = (wg.x * ${groups}u + lid.y) * R; // first of this group's R rows
  var acc: array<f32, ${R * B}>; // [r·B + b]
  if (row0 < params.N) {
    let vecs = params.rowWords / 4u;
    for (var v = lane; v < vecs; v += ${lanes}u) {
      var chunk: array<vec4<u32>, ${R}>;
      for (var r = 0u; r < R; r++) { chunk[r] = qweight[min(row0 + r, params.N - 1u) * vecs + v]; }
      for (var t = 0u; t < 4u; t++) {
        let col0 = (v * 4u + t) * ${per}u;
        var s: array<f32, ${R}>;
        var z: array<f32, ${R}>;
        for (var r = 0u; r < R; r++) {
          let g = min(row0 + r, params.N - 1u) * params.G + col0 / params.groupSize;
          s[r] = scales[g];
          z[r] = zeros[g];
        }
        for (var j = 0u; j < ${per}u; j++) {
          let col = col0 + j;
          if (col < params.K) {
${weights}
${fma}
          }
        }
      }
    }
  }
${reduce}
}`;
}

function dequantCode(bits: 4 | 8, params: Record<string, Param>): string {
  const per = 32 / bits;
  return /* wgsl */ `
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> wOut: array<f32>; // [N, K]
@group(0) @binding(1) var<storage, read> qweight: array<u32>; // [N, rowWords]
@group(0) @binding(2) var<storage, read> scales: array<f32>; // [N, G]
@group(0) @binding(3) var<storage, read> zeros: array<f32>; // [N, G]
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 64u + gid.x; // word index over [N, rowWords]
  if (i >= params.N * params.rowWords) { return; }
  let row = i / params.rowWords;
  let word = qweight[i];
  let col0 = (i % params.rowWords) * ${per}u;${unpackWord(bits, 'wOut[row * params.K + col] = w;')}
}`;
}

function gemvParams(p: PackedWeightOnly): Record<string, Param> {
  return {
    N: u32(p.outFeatures),
    K: u32(p.inFeatures),
    rowWords: u32(p.rowWords),
    G: u32(p.scales.shape[1]),
    groupSize: u32(p.groupSize === -1 ? p.inFeatures : p.groupSize),
  };
}

/** Dequantized weight W [N, K] fp32 (scale · (code − zero)), bit-identical to dequantizeMatrix. */
export function dequantizeWeightOnly(p: PackedWeightOnly): tf.Tensor2D {
  const params = gemvParams(p);
  const words = p.outFeatures * p.rowWords;
  const groups = Math.ceil(words / 64);
  const nx = Math.min(groups, 65535);
  const [w] = runKernel({
    name: `wq-dequant-${p.bits}`,
    code: dequantCode(p.bits, params),
    inputs: [p.qweight, p.scales, p.zeros],
    outputs: [{ shape: [p.outFeatures, p.inFeatures], dtype: 'float32' }],
    params,
    workgroups: [nx, Math.ceil(groups / nx), 1],
  });
  return w as tf.Tensor2D;
}

/** Weight-only linear: x [B, K] fp32 → y [B, N] fp32 (+ bias [N]). */
export function weightOnlyLinear(x: tf.Tensor2D, p: PackedWeightOnly, bias?: tf.Tensor, opts: WeightOnlyOptions = {}): tf.Tensor2D {
  const o = { ...WEIGHT_ONLY_DEFAULTS, ...opts };
  if (!['auto', 'subgroup', 'workgroup'].includes(o.reduction)) throw new Error(`weightOnlyLinear: unknown reduction '${o.reduction}' (auto, subgroup, workgroup)`);
  if (!(Number.isInteger(o.maxGemvBatch) && o.maxGemvBatch >= 0 && o.maxGemvBatch <= 8)) throw new Error(`weightOnlyLinear: maxGemvBatch must be an integer in 0..8, got ${o.maxGemvBatch}`);
  if (![1, 2, 4].includes(o.rowsPerGroup)) throw new Error(`weightOnlyLinear: rowsPerGroup must be 1, 2 or 4, got ${o.rowsPerGroup}`);
  const [B, K] = x.shape;
  if (K !== p.inFeatures) throw new Error(`weightOnlyLinear: x has ${K} features, the weight takes ${p.inFeatures}`);
  if (bias && bias.size !== p.outFeatures) throw new Error(`weightOnlyLinear: bias has ${bias.size} values, the weight has ${p.outFeatures} outputs`);
  if (B > o.maxGemvBatch) {
    return tf.tidy(() => {
      const y = tf.matMul(x, dequantizeWeightOnly(p), false, true); // [B, N]
      return (bias ? tf.add(y, bias) : y) as tf.Tensor2D;
    });
  }
  const params = gemvParams(p);
  const { lanes, subgroup } = gemvLayout(o.reduction);
  const [y] = runKernel({
    name: `wq-gemv-${p.bits}-b${B}`,
    code: gemvCode(p.bits, B, o.rowsPerGroup, !!bias, params, lanes, subgroup),
    inputs: [x, p.qweight, p.scales, p.zeros, ...(bias ? [bias] : [])],
    outputs: [{ shape: [B, p.outFeatures], dtype: 'float32' }],
    params,
    workgroups: [Math.ceil(p.outFeatures / ((THREADS / lanes) * o.rowsPerGroup)), 1, 1],
  });
  return y as tf.Tensor2D;
}
