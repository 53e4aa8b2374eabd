// Weight-only quantized linear (RTN/GPTQ/AWQ W4/W8): y = x · dequant(W)ᵀ (+ bias), reading the
// packed codes of lib/quant/pack.ts (u4: two codes per byte, low nibble first; u8: one per byte)
// and per-group fp32 scales and integer zero points directly, dequantizing each weight as
// scale · (code − zero) in fp32, exactly as dequantizeMatrix.
//
// Decode and small batches (B ≤ maxGemvBatch rows of x) take a GEMV kernel: memory-bound, so each
// weight byte is read once for all B rows: ROWS output rows per workgroup, 32 invocations per row,
// each reading 16-byte vec4<u32> chunks of the packed row (32 four-bit codes), then a
// workgroup-memory reduction. Larger batches (prefill) dequantize W to fp32 once per call and use
// tfjs's matMul: compute-bound there, and the dequantized weight is transient.
import * as tf from '@tensorflow/tfjs';
import { paramsStruct, runKernel, u32, type Param } from './gpu';
import type { PackedWeightOnly } from './packed-linear';

export interface WeightOnlyOptions {
  /** Largest number of x rows the GEMV kernel takes; more rows dequantize W and use matMul. */
  maxGemvBatch?: number;
}

export const WEIGHT_ONLY_DEFAULTS: Required<WeightOnlyOptions> = {
  maxGemvBatch: 8, // decode and short speculative/beam batches; past that the GEMM is compute-bound
};

const LANES = 32; // invocations per output row
const ROWS = 8; // output rows per workgroup

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

function gemvCode(bits: 4 | 8, B: number, bias: boolean, params: Record<string, Param>): string {
  const per = 32 / bits; // codes per word
  const fma = Array.from({ length: B }, (_, b) => `acc[${b}] += x[${b}u * params.K + col] * w;`).join(' ');
  return /* wgsl */ `
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>; // [B, N]
@group(0) @binding(1) var<storage, read> x: array<f32>; // [B, K]
@group(0) @binding(2) var<storage, read> qweight: array<vec4<u32>>; // [N, rowWords / 4]
@group(0) @binding(3) var<storage, read> scales: array<f32>; // [N, G]
@group(0) @binding(4) var<storage, read> zeros: array<f32>; // [N, G]
${bias ? '@group(0) @binding(5) var<storage, read> bias: array<f32>; // [N]' : ''}
@group(0) @binding(${bias ? 6 : 5}) var<uniform> params: Params;
const B = ${B}u;
var<workgroup> red: array<f32, ${LANES * ROWS * B}>; // [ROWS, B, LANES]
@compute @workgroup_size(${LANES}, ${ROWS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  let row = wg.x * ${ROWS}u + lid.y;
  var acc: array<f32, ${B}>;
  if (row < params.N) {
    let vecs = params.rowWords / 4u;
    for (var v = lane; v < vecs; v += ${LANES}u) {
      let chunk = qweight[row * vecs + v];
      for (var t = 0u; t < 4u; t++) {
        let word = chunk[t];
        let col0 = (v * 4u + t) * ${per}u;${unpackWord(bits, fma)}
      }
    }
  }
  for (var b = 0u; b < B; b++) { red[(lid.y * B + b) * ${LANES}u + lane] = acc[b]; }
  workgroupBarrier();
  if (lane < B && row < params.N) {
    var sum = 0.0;
    for (var l = 0u; l < ${LANES}u; l++) { sum += red[(lid.y * B + lane) * ${LANES}u + l]; }
    y[lane * params.N + row] = sum${bias ? ' + bias[row]' : ''};
  }
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
  const [y] = runKernel({
    name: `wq-gemv-${p.bits}-b${B}`,
    code: gemvCode(p.bits, B, !!bias, params),
    inputs: [x, p.qweight, p.scales, p.zeros, ...(bias ? [bias] : [])],
    outputs: [{ shape: [B, p.outFeatures], dtype: 'float32' }],
    params,
    workgroups: [Math.ceil(p.outFeatures / ROWS), 1, 1],
  });
  return y as tf.Tensor2D;
}
