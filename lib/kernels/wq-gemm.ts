// Weight-only quantized linear (RTN/GPTQ/AWQ W4/W8): y = x · dequant(W)ᵀ (+ bias), reading the
// packed codes of lib/quant/pack.ts (u4: two codes per byte, low nibble first; u8: one per byte)
// and per-group fp32 scales and integer zero points directly, dequantizing each weight as
// scale · (code − zero) in fp32, exactly as dequantizeMatrix.
//
// Decode and small batches (B ≤ maxGemvBatch rows of x) take a GEMV kernel, memory-bound, so it
// is built to stream the weight at the device's bandwidth:
//   - each weight byte is read once for all B rows of x, in 16-byte vec4<u32> chunks (32 four-bit
//     or 16 eight-bit codes); a group of `lanes` lanes shares an output row's chunks, R rows at a
//     time (each x value loaded once for R rows), `unroll` chunks per lane and row loaded before
//     any is used (U·R 16-byte loads in flight per lane);
//   - a code becomes a float with one mask-and-or into the exponent of 2^23 and one subtraction
//     of 2^23 + zero (exact: zero points are integers), so the inner loop is four operations a code
//     (extract, or, subtract, fma) with no int-to-float conversion (quarter rate on NVIDIA);
//   - a chunk lies in one quantization group when the group size is a multiple of its codes:
//     scale and zero are then read once per chunk and row (the lanes of one group read the same
//     address: one transaction), and once per row for per-channel weights;
//   - lanes reduce with subgroupAdd (one subgroup per row group, where the subgroup size is fixed),
//     else through workgroup memory; workgroups hold as many row groups as keep at least
//     MIN_WORKGROUPS of them (two per SM on a 132-SM H100/H200) when N allows.
// Larger batches (prefill) dequantize W to fp32 once per call and use tfjs's matMul: compute-bound
// there, and the dequantized weight is transient.
import * as tf from '@tensorflow/tfjs';
import { grid1d, hasSubgroups, paramsStruct, runKernel, subgroupSizes, u32, type Param } from './gpu';
import type { PackedWeightOnly } from './packed-linear';

export type GemvReduction = 'auto' | 'subgroup' | 'workgroup';

export interface WeightOnlyOptions {
  /** Largest number of x rows the GEMV kernel takes (≤ 8); more rows dequantize W and use matMul. */
  maxGemvBatch?: number;
  /** Output rows each group of lanes computes in the GEMV (1, 2, 4 or 8): more rows reuse each x value, fewer give more workgroups. */
  rowsPerGroup?: number;
  /** 16-byte chunks of each row a lane loads before using them (1, 2 or 4): more loads in flight. */
  unroll?: number;
  /** Row sums of the GEMV: 'subgroup' (one subgroup per row group, subgroupAdd; needs a fixed
   * subgroup size), 'workgroup' (32 lanes per row group, workgroup memory), 'auto' subgroup where possible. */
  reduction?: GemvReduction;
}

export const WEIGHT_ONLY_DEFAULTS: Required<WeightOnlyOptions> = {
  maxGemvBatch: 8, // decode and short speculative/beam batches; past that the GEMM is compute-bound
  rowsPerGroup: 4, // x loads per weight load 2:1 (W4), still ≥ 2 workgroups per SM at N = 4096; sweep with bench-kernels --kernels weightOnly
  unroll: 2, // 8 loads of 16 bytes in flight per lane with 4 rows
  reduction: 'auto', // subgroupAdd where the device has fixed-size subgroups
};

const MAX_THREADS = 256; // invocations per GEMV workgroup, at most
const MIN_WORKGROUPS = 264; // fewer rows per workgroup until there are this many (2 per SM on 132 SMs), down to one row group
const MAGIC = 0x4b000000; // bits of 2^23: OR-ing a small integer into its mantissa gives 2^23 + that integer, exactly

/**
 * How the GEMV reduces each row's partial sums: with subgroups of one fixed size S, each row group
 * gets one subgroup of S lanes and subgroupAdd; otherwise 32 lanes per row group through workgroup memory.
 */
function gemvLayout(reduction: GemvReduction): { lanes: number; subgroup: boolean } {
  const s = subgroupSizes();
  const fixed = hasSubgroups() && s && s.min === s.max && MAX_THREADS % s.min === 0 ? s.min : null;
  if (reduction === 'subgroup' && !fixed) throw new Error(`weightOnlyLinear: reduction 'subgroup' needs subgroups of one fixed size (this device: ${s ? `${s.min}..${s.max}` : 'none'})`);
  if (reduction !== 'workgroup' && fixed) return { lanes: fixed, subgroup: true };
  return { lanes: 32, subgroup: false };
}

/**
 * Row groups per workgroup: a power of two, as many as keep ≥ MIN_WORKGROUPS workgroups, at least
 * one, at most maxThreads / lanes invocations.
 */
export function gemvRowGroups(N: number, rows: number, lanes: number, maxThreads = MAX_THREADS): number {
  let g = 1;
  while (2 * g * lanes <= maxThreads && Math.ceil(N / (2 * g * rows)) >= MIN_WORKGROUPS) g *= 2;
  return g;
}

/** When each code's scale and zero are looked up: once per row (per channel), per 16-byte chunk (the group size a multiple of its codes) or per 32-bit word. */
type GroupStep = 'row' | 'chunk' | 'word';

interface GemvShape {
  bits: 4 | 8;
  B: number; // rows of x
  R: number; // output rows per row group
  U: number; // chunks per lane loaded before use
  bias: boolean;
  lanes: number;
  groups: number; // row groups per workgroup
  subgroup: boolean; // subgroupAdd, else workgroup memory
  step: GroupStep;
  xVec: boolean; // K % 4 == 0: x read as vec4<f32>
}

function gemvCode(g: GemvShape, params: Record<string, Param>): string {
  const { bits, B, R, U, lanes, groups } = g;
  const per = 32 / bits; // codes per word
  const codes = 4 * per; // codes per vec4 chunk
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const plusBias = g.bias ? ' + bias[row]' : '';
  // The codes of word `w` as floats minus the zero (bz = 2^23 + zero): W4 gives the even codes
  // (low nibbles) and the odd ones (high nibbles) as two vec4s, W8 the four bytes as one.
  // The codes of word w minus the zero (bz = 2^23 + zero), as floats: W4 gives the even codes
  // (low nibbles, SHIFT_LO) and the odd ones (high nibbles, SHIFT_HI) as two vec4s, W8 the four bytes as one.
  const unpack = (w: string, bz: string) => (bits === 4 ? [`codes(${w}, SHIFT_LO, ${bz})`, `codes(${w}, SHIFT_HI, ${bz})`] : [`codes(${w}, SHIFT_LO, ${bz})`]);
  // x of word t (its `per` columns) as vec4s matching unpack's order: W4 even / odd columns, W8 as is.
  const xOfWord = (t: number) => (bits === 4 ? [`vec4<f32>(xv[${2 * t}].xz, xv[${2 * t + 1}].xz)`, `vec4<f32>(xv[${2 * t}].yw, xv[${2 * t + 1}].yw)`] : [`xv[${t}]`]);
  const dotWord = (t: number, w: string, bz: string) => unpack(w, bz).map((u, i) => `dot(${u}, ${xOfWord(t)[i]})`).join(' + ');
  // Scale and zero (as 2^23 + zero) of row r at column `col`.
  const sz = (col: string) => `let gi = rowOf(r) * params.G + min(${col} / params.groupSize, params.G - 1u);
            let s = scales[gi];
            let bz = vec4<f32>(MAGIC_F + zeros[gi]);`;
  const words = range(4);
  // One chunk of row r (its 4 words in w) against x[b, col0 ..]: a loop over rows, the words unrolled.
  const rowBody =
    g.step === 'word'
      ? words.map((t) => `            {
            ${sz(`(col0 + ${t * per}u)`)}
              acc[r * B + b] += s * (${dotWord(t, `w[${t}]`, 'bz')});
            }`).join('\n')
      : `            ${g.step === 'chunk' ? sz('col0') : 'let bz = rowBz[r];'}
            acc[r * B + b] += ${g.step === 'chunk' ? 's * ' : ''}(${words.map((t) => dotWord(t, `w[${t}]`, 'bz')).join('\n              + ')});`;
  const chunkBody = `          for (var r = 0u; r < R; r++) {
            let w = q[u * R + r];
${rowBody}
          }`;
  const xLoad = g.xVec
    ? `for (var i = 0u; i < ${codes / 4}u; i++) {
            let col = col0 + 4u * i;
            var v = vec4<f32>(0.0);
            if (col < params.K) { v = x4[(b * params.K + col) / 4u]; }
            xv[i] = v;
          }`
    : `for (var i = 0u; i < ${codes}u; i++) {
            let col = col0 + i;
            var v = 0.0;
            if (col < params.K) { v = x[b * params.K + col]; }
            xv[i / 4u][i % 4u] = v;
          }`;
  const reduce = g.subgroup
    ? `  for (var i = 0u; i < ${R * B}u; i++) {
    var sum = subgroupAdd(acc[i]);
    let row = row0 + i / B;${g.step === 'row' ? '\n    sum *= rowS[i / B];' : ''}
    if (lane == 0u && row < params.N) { y[(i % B) * params.N + row] = sum${plusBias}; }
  }`
    : `  for (var i = 0u; i < ${R * B}u; i++) { red[(lid.y * ${R * B}u + i) * LANES + lane] = acc[i]; }
  workgroupBarrier();
  for (var i = lane; i < ${R * B}u; i += LANES) {
    let row = row0 + i / B;
    if (row < params.N) {
      var sum = 0.0;
      for (var l = 0u; l < LANES; l++) { sum += red[(lid.y * ${R * B}u + i) * LANES + l]; }${g.step === 'row' ? '\n      sum *= rowS[i / B];' : ''}
      y[(i % B) * params.N + row] = sum${plusBias};
    }
  }`;
  return /* wgsl */ `${g.subgroup ? 'enable subgroups;' : ''}
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>; // [B, N]
@group(0) @binding(1) var<storage, read> ${g.xVec ? 'x4: array<vec4<f32>>; // [B, K / 4]' : 'x: array<f32>; // [B, K]'}
@group(0) @binding(2) var<storage, read> qweight: array<vec4<u32>>; // [N, rowWords / 4]
@group(0) @binding(3) var<storage, read> scales: array<f32>; // [N, G]
@group(0) @binding(4) var<storage, read> zeros: array<f32>; // [N, G] (integers)
${g.bias ? '@group(0) @binding(5) var<storage, read> bias: array<f32>; // [N]' : ''}
@group(0) @binding(${g.bias ? 6 : 5}) var<uniform> params: Params;
const B = ${B}u; // rows of x
const R = ${R}u; // output rows per row group
const U = ${U}u; // chunks per lane loaded before use
const LANES = ${lanes}u;
const MAGIC = ${MAGIC}u; // 2^23 as f32 bits
const MAGIC_F = 8388608.0;
const MASK = ${bits === 4 ? '0xfu' : '0xffu'};
const SHIFT_LO = vec4<u32>(0u, 8u, 16u, 24u);
const SHIFT_HI = vec4<u32>(4u, 12u, 20u, 28u);
// Four codes of w (at bit offsets shifts) as floats minus their zero: (2^23 + code) − (2^23 + zero), exact.
fn codes(w: u32, shifts: vec4<u32>, bz: vec4<f32>) -> vec4<f32> { return bitcast<vec4<f32>>(((vec4<u32>(w) >> shifts) & vec4<u32>(MASK)) | vec4<u32>(MAGIC)) - bz; }
${g.subgroup ? '' : `var<workgroup> red: array<f32, ${groups * lanes * R * B}>; // [row groups, R·B, lanes]`}
var<private> row0: u32;
fn rowOf(r: u32) -> u32 { return min(row0 + r, params.N - 1u); } // rows past N read row N − 1 and are not stored
@compute @workgroup_size(${lanes}, ${groups})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let lane = lid.x;
  row0 = ((wg.y * nwg.x + wg.x) * ${groups}u + lid.y) * R; // first of this group's R rows
  let vecs = params.rowWords / 4u; // 16-byte chunks per row
  var acc: array<f32, ${R * B}>; // [r·B + b]
${g.step === 'row' ? `  var rowS: array<f32, ${R}>; // per-channel scale of each row, applied after the sum
  var rowBz: array<vec4<f32>, ${R}>; // 2^23 + zero of each row
  for (var r = 0u; r < R; r++) {
    rowS[r] = scales[rowOf(r)];
    rowBz[r] = vec4<f32>(MAGIC_F + zeros[rowOf(r)]);
  }` : ''}
  // The same trip count on every lane (subgroupAdd after the loop needs all lanes together).
  for (var c0 = 0u; c0 < vecs; c0 += LANES * U) {
    var q: array<vec4<u32>, ${U * R}>; // [u·R + r]: all loads first, U·R in flight
    for (var u = 0u; u < U; u++) {
      let c = c0 + u * LANES + lane;
      for (var r = 0u; r < R; r++) {
        var v = vec4<u32>(0u);
        if (c < vecs) { v = qweight[rowOf(r) * vecs + c]; }
        q[u * R + r] = v;
      }
    }
    for (var u = 0u; u < U; u++) {
      let c = c0 + u * LANES + lane;
      if (c < vecs) {
        let col0 = c * ${codes}u; // first column of the chunk
        for (var b = 0u; b < B; b++) {
          // x[b, col0 ..], zeros past K (padded codes add nothing). Every element is assigned: a
          // declaration without initializer inside a loop was not re-zeroed on lavapipe.
          var xv: array<vec4<f32>, ${codes / 4}>;
          ${xLoad}
${chunkBody}
        }
      }
    }
  }
${reduce}
}`;
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
  if (![1, 2, 4, 8].includes(o.rowsPerGroup)) throw new Error(`weightOnlyLinear: rowsPerGroup must be 1, 2, 4 or 8, got ${o.rowsPerGroup}`);
  if (![1, 2, 4].includes(o.unroll)) throw new Error(`weightOnlyLinear: unroll must be 1, 2 or 4, got ${o.unroll}`);
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
  const R = o.rowsPerGroup;
  // The workgroup reduction's partial sums (lanes · R · B floats per row group) stay within 16 KiB.
  const groups = gemvRowGroups(p.outFeatures, R, lanes, subgroup ? MAX_THREADS : Math.max(lanes, Math.floor(4096 / (R * B))));
  const codesPerChunk = 128 / p.bits;
  const G = p.scales.shape[1];
  const step: GroupStep = G === 1 ? 'row' : p.groupSize % codesPerChunk === 0 ? 'chunk' : 'word';
  const shape: GemvShape = { bits: p.bits, B, R, U: o.unroll, bias: !!bias, lanes, groups, subgroup, step, xVec: K % 4 === 0 };
  const [y] = runKernel({
    name: `wq-gemv-${p.bits}-b${B}-r${R}-u${o.unroll}-${step}`,
    code: gemvCode(shape, params),
    inputs: [x, p.qweight, p.scales, p.zeros, ...(bias ? [bias] : [])],
    outputs: [{ shape: [B, p.outFeatures], dtype: 'float32' }],
    params,
    workgroups: grid1d(Math.ceil(p.outFeatures / (groups * R))),
  });
  return y as tf.Tensor2D;
}
