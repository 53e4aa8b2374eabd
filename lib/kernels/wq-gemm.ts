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
//     (extract, or, subtract, fma) with no int-to-float conversion (quarter rate on NVIDIA); the
//     default 'pipelined' code masks each code in place instead of shifting it (see its generator);
//   - a chunk lies in one quantization group when the group size is a multiple of its codes:
//     scale and zero are then read once per chunk and row (the lanes of one group read the same
//     address: one transaction), and once per row for per-channel weights;
//   - lanes reduce with subgroupAdd (one subgroup per row group, where the subgroup size is fixed),
//     else through workgroup memory; workgroups hold as many row groups as keep at least
//     MIN_WORKGROUPS of them (two per SM on a 132-SM H100/H200) when N allows;
//   - the WGSL is written in one of several ways (WeightOnlyOptions.codegen, GemvCodegen): with
//     loops over private arrays and the shape as uniforms ('loop', 'words'), or with the weight's
//     shape as constants and every statement written out by the generator, named values in place
//     of arrays, and each chunk's scale and zero loaded along with its codes ('unrolled',
//     'unrolled-contiguous'; 'pipelined' also loads the next pass before this one's arithmetic).
// Larger batches (prefill) dequantize W to fp32 once per call and use tfjs's matMul: compute-bound
// there, and the dequantized weight is transient.
import * as tf from '@tensorflow/tfjs';
import { grid1d, hasSubgroups, paramsStruct, runKernel, subgroupSizes, u32, type Param } from './gpu';
import type { PackedWeightOnly } from './packed-linear';

export type GemvReduction = 'auto' | 'subgroup' | 'workgroup';

/**
 * How the GEMV's WGSL is written: 'loop' (uniform shape parameters, loops over private arrays),
 * 'unrolled' (the weight's shape baked in as constants, every statement written out by the
 * generator: no private array indexed at run time, no division by a run-time value, and each
 * chunk's scale and zero loaded with its codes, before any is used), 'unrolled-contiguous' (the
 * same, each lane taking U consecutive chunks of a row instead of every LANES-th: with g128 W4 and
 * U = 4 one scale and zero per row and pass), 'words' (as 'loop', each lane loading single 32-bit
 * words, the lanes on consecutive words: x read in short runs, few cache lines per load),
 * 'pipelined' (as 'unrolled-contiguous', the next pass's loads issued before this pass's
 * arithmetic, and codes masked in place instead of shifted: fewer integer operations a code).
 */
export const GEMV_CODEGENS = ['loop', 'unrolled', 'unrolled-contiguous', 'words', 'pipelined'] as const;
export type GemvCodegen = (typeof GEMV_CODEGENS)[number];

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
  /** How the GEMV's WGSL is written (GemvCodegen). */
  codegen?: GemvCodegen;
}

export const WEIGHT_ONLY_DEFAULTS: Required<WeightOnlyOptions> = {
  maxGemvBatch: 8, // decode and short speculative/beam batches; past that the GEMM is compute-bound
  rowsPerGroup: 4, // x loads per weight load 2:1 (W4), still ≥ 2 workgroups per SM at N = 4096; sweep with bench-kernels --kernels weightOnly
  unroll: 2, // 8 loads of 16 bytes in flight per lane with 4 rows
  reduction: 'auto', // subgroupAdd where the device has fixed-size subgroups
  codegen: 'pipelined', // fastest at every W4 g128 decode shape on the H100 (81–131% of copy bandwidth, 82f11ab); the others are swept by bench-kernels --kernels weightOnly
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

/** The weight's shape, baked into the unrolled GEMV as constants. */
interface GemvConsts {
  N: number;
  K: number;
  vecs: number; // 16-byte chunks per packed row (rowWords / 4)
  G: number; // groups per row
  groupSize: number; // columns per group (K per channel)
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Σ over one packed word `w` (its 32 / bits codes, minus the zero: bz = 2^23 + zero) times x, as
 * WGSL: W4 dots the even codes (low nibbles, SHIFT_LO) with x's even columns and the odd ones
 * (high nibbles, SHIFT_HI) with its odd columns, W8 its four bytes with x as is. `xv(i)` is the
 * i-th vec4 of x of the word's chunk (the word is the t-th of the chunk).
 */
function dotWord(bits: 4 | 8, t: number, w: string, bz: string, xv: (i: number) => string): string {
  if (bits === 8) return `dot(codes(${w}, SHIFT_LO, ${bz}), ${xv(t)})`;
  const [a, b] = [xv(2 * t), xv(2 * t + 1)];
  return `dot(codes(${w}, SHIFT_LO, ${bz}), vec4<f32>(${a}.xz, ${b}.xz)) + dot(codes(${w}, SHIFT_HI, ${bz}), vec4<f32>(${a}.yw, ${b}.yw))`;
}

/** The GEMV's bindings and shared declarations; the 'loop' kernel also binds its Params. */
function gemvHeader(g: GemvShape, params: Record<string, Param> | null, words = false): string {
  const { bits, B, R, U, lanes, groups } = g;
  return `${g.subgroup ? 'enable subgroups;' : ''}
${params ? paramsStruct(params) : ''}
@group(0) @binding(0) var<storage, read_write> y: array<f32>; // [B, N]
@group(0) @binding(1) var<storage, read> ${g.xVec ? 'x4: array<vec4<f32>>; // [B, K / 4]' : 'x: array<f32>; // [B, K]'}
${words ? '@group(0) @binding(2) var<storage, read> qweight: array<u32>; // [N, rowWords]' : '@group(0) @binding(2) var<storage, read> qweight: array<vec4<u32>>; // [N, rowWords / 4]'}
@group(0) @binding(3) var<storage, read> scales: array<f32>; // [N, G]
@group(0) @binding(4) var<storage, read> zeros: array<f32>; // [N, G] (integers)
${g.bias ? '@group(0) @binding(5) var<storage, read> bias: array<f32>; // [N]' : ''}
${params ? `@group(0) @binding(${g.bias ? 6 : 5}) var<uniform> params: Params;` : ''}
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
${g.subgroup ? '' : `var<workgroup> red: array<f32, ${groups * lanes * R * B}>; // [row groups, R·B, lanes]`}`;
}

/**
 * The row sums of acc [R·B] (one per lane) stored to y, with the bias; `rowS` [R] scales them
 * where given (per-channel weights). `n` is the WGSL of the output count N.
 */
function gemvReduce(g: GemvShape, n: string, rowS: boolean): string {
  const { R, B } = g;
  const plusBias = g.bias ? ' + bias[row]' : '';
  const scale = rowS ? ' * rowS[i / B]' : '';
  return g.subgroup
    ? `  for (var i = 0u; i < ${R * B}u; i++) {
    let sum = subgroupAdd(acc[i])${scale};
    let row = row0 + i / B;
    if (lane == 0u && row < ${n}) { y[(i % B) * ${n} + row] = sum${plusBias}; }
  }`
    : `  for (var i = 0u; i < ${R * B}u; i++) { red[(lid.y * ${R * B}u + i) * LANES + lane] = acc[i]; }
  workgroupBarrier();
  for (var i = lane; i < ${R * B}u; i += LANES) {
    let row = row0 + i / B;
    if (row < ${n}) {
      var sum = 0.0;
      for (var l = 0u; l < LANES; l++) { sum += red[(lid.y * ${R * B}u + i) * LANES + l]; }
      y[(i % B) * ${n} + row] = sum${scale}${plusBias};
    }
  }`;
}

const MAIN_SIGNATURE = `fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>)`;

/**
 * The 'loop' and 'words' kernels' start of main: the row group's first row (row0, rowOf clamping
 * rows past N), the accumulators acc [R·B] and, per channel, each row's scale and 2^23 + zero.
 * Their pass loop follows, with the same trip count on every lane (subgroupAdd after it needs all lanes).
 */
function loopPrologue(g: GemvShape): string {
  const { B, R, lanes, groups } = g;
  return `var<private> row0: u32;
fn rowOf(r: u32) -> u32 { return min(row0 + r, params.N - 1u); } // rows past N read row N − 1 and are not stored
@compute @workgroup_size(${lanes}, ${groups})
${MAIN_SIGNATURE} {
  let lane = lid.x;
  row0 = ((wg.y * nwg.x + wg.x) * ${groups}u + lid.y) * R; // first of this group's R rows
  var acc: array<f32, ${R * B}>; // [r·B + b]
${g.step === 'row' ? `  var rowS: array<f32, ${R}>; // per-channel scale of each row, applied after the sum
  var rowBz: array<vec4<f32>, ${R}>; // 2^23 + zero of each row
  for (var r = 0u; r < R; r++) {
    rowS[r] = scales[rowOf(r)];
    rowBz[r] = vec4<f32>(MAGIC_F + zeros[rowOf(r)]);
  }` : ''}`;
}

function gemvCode(g: GemvShape, params: Record<string, Param>): string {
  const { bits, B, R } = g;
  const per = 32 / bits; // codes per word
  const codes = 4 * per; // codes per vec4 chunk
  const dot = (t: number, w: string, bz: string) => dotWord(bits, t, w, bz, (i) => `xv[${i}]`);
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
              acc[r * B + b] += s * (${dot(t, `w[${t}]`, 'bz')});
            }`).join('\n')
      : `            ${g.step === 'chunk' ? sz('col0') : 'let bz = rowBz[r];'}
            acc[r * B + b] += ${g.step === 'chunk' ? 's * ' : ''}(${words.map((t) => dot(t, `w[${t}]`, 'bz')).join('\n              + ')});`;
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
  return /* wgsl */ `${gemvHeader(g, params)}
${loopPrologue(g)}
  let vecs = params.rowWords / 4u; // 16-byte chunks per row
  for (var c0 = 0u; c0 < vecs; c0 += LANES * U) {
    var q: array<vec4<u32>, ${g.U * R}>; // [u·R + r]: all loads first, U·R in flight
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
${gemvReduce(g, 'params.N', g.step === 'row')}
}`;
}

/**
 * The 'words' GEMV (GemvCodegen): each lane loads single 32-bit words (8 W4 or 4 W8 codes), the
 * lanes of a row group on consecutive words, so that x is read in runs of 32 (W4) or 16 (W8) bytes
 * per lane across the subgroup instead of one 128- or 64-byte run per lane: far fewer cache lines
 * per x load. A word lies in one quantization group (weightOnlyUnsupported), so its scale and zero
 * are one lookup. Per pass a lane holds 4·U words of each of its R rows (U·R·16 bytes in flight, as
 * the chunk layouts).
 */
function gemvWordsCode(g: GemvShape, params: Record<string, Param>): string {
  const { bits, B, R, U } = g;
  const per = 32 / bits; // codes per word
  const W = 4 * U; // words per lane and row in a pass
  const nx = per / 4; // vec4s of x per word
  const xLoad = g.xVec
    ? range(nx).map((i) => `let c${i} = col0 + ${4 * i}u;
          var x${i} = vec4<f32>(0.0);
          if (c${i} < params.K) { x${i} = x4[(b * params.K + c${i}) / 4u]; }`).join('\n          ')
    : range(nx).map((i) => `var x${i} = vec4<f32>(0.0);
          for (var e = 0u; e < 4u; e++) { let col = col0 + ${4 * i}u + e; if (col < params.K) { x${i}[e] = x[b * params.K + col]; } }`).join('\n          ');
  const dot = bits === 8 ? 'dot(codes(w, SHIFT_LO, bz), x0)' : 'dot(codes(w, SHIFT_LO, bz), vec4<f32>(x0.xz, x1.xz)) + dot(codes(w, SHIFT_HI, bz), vec4<f32>(x0.yw, x1.yw))';
  return /* wgsl */ `${gemvHeader(g, params, true)}
${loopPrologue(g)}
  for (var w0 = 0u; w0 < params.rowWords; w0 += LANES * ${W}u) {
    var q: array<u32, ${W * R}>; // [u·R + r]: all loads first, ${W}·R in flight
    for (var u = 0u; u < ${W}u; u++) {
      let wi = min(w0 + u * LANES + lane, params.rowWords - 1u); // past the row: a valid load, not used
      for (var r = 0u; r < R; r++) { q[u * R + r] = qweight[rowOf(r) * params.rowWords + wi]; }
    }
    for (var u = 0u; u < ${W}u; u++) {
      let wi = w0 + u * LANES + lane;
      if (wi < params.rowWords) {
        let col0 = wi * ${per}u; // first column of the word
        for (var b = 0u; b < B; b++) {
          ${xLoad}
          for (var r = 0u; r < R; r++) {
            let w = q[u * R + r];
${g.step === 'row' ? `            let bz = rowBz[r];
            acc[r * B + b] += ${dot};` : `            let gi = rowOf(r) * params.G + min(col0 / params.groupSize, params.G - 1u);
            let bz = vec4<f32>(MAGIC_F + zeros[gi]);
            acc[r * B + b] += scales[gi] * (${dot});`}
          }
        }
      }
    }
  }
${gemvReduce(g, 'params.N', g.step === 'row')}
}`;
}

/**
 * The 'unrolled' GEMV (GemvCodegen): the weight's shape as constants and every statement written
 * out here, with named values instead of private arrays. Per pass of a lane (U chunks of R rows):
 * all code chunks and the scales and zeros they need are loaded first (each scale and zero once per
 * row and group the lane's chunks share: with `contiguous` the lane's U chunks are consecutive),
 * then each x row's vec4s are read and the chunks dotted. Chunks past the row are clamped to its
 * last (a valid load) and meet x zeroed past K, so no statement is conditional.
 *
 * 'pipelined' (contiguous chunks) loads the next pass's codes, scales and zeros before this pass's
 * arithmetic, so they are in flight while it runs, and decodes codes in place (maskedCodes): a
 * code at bit p of its 16-bit half is masked, not shifted, giving (code − zero) · 2^p exactly; the
 * lane keeps one vec4 accumulator per output, its lanes the sums of one bit position, weighed by
 * 2^−p (PLACE) once at the end.
 */
function gemvUnrolledCode(g: GemvShape, k: GemvConsts, mode: 'unrolled' | 'unrolled-contiguous' | 'pipelined'): string {
  const { bits, B, R, U, lanes, groups } = g;
  const contiguous = mode !== 'unrolled';
  const pipelined = mode === 'pipelined';
  const per = 32 / bits; // codes per word
  const codes = 4 * per; // codes per vec4 chunk
  const rs = range(R);
  const bs = range(B);
  const us = range(U);
  // Lanes' chunks past the row (last pass) or columns past K (partial last chunk) exist.
  const ragged = k.vecs % (lanes * U) !== 0 || k.K % codes !== 0;
  const chunk = (u: number, c0 = 'c0') => (contiguous ? `${c0} + lane * U + ${u}u` : `${c0} + ${u}u * LANES + lane`);
  // Which scale/zero value chunk u of a row uses: one per chunk, or one per run of chunks that
  // start aligned and lie in one group (contiguous chunks, a group a multiple or divisor of U chunks).
  const perGroup = k.groupSize / codes; // chunks per group ('chunk' step)
  const szKey = (u: number) => (contiguous && g.step === 'chunk' && (perGroup % U === 0 || U % perGroup === 0) ? Math.floor(u / perGroup) : u);
  const keys = [...new Set(us.map(szKey))];
  // A pass's loads (chunk indices, codes, scales and 2^23 + zero) at pass start `c0`, as
  // declarations `decl` ('let' or 'var') of names with suffix `sfx`: ch, q, s, z (and g, the index).
  const zeroOf = (zero: string) => (pipelined ? `MAGIC_F + ${zero} * PLACE_INV` : `MAGIC_F + ${zero}`);
  const passLoads = (c0: string, decl: string, sfx: string): string[] => {
    const out: string[] = [];
    for (const u of us) out.push(`    let ch${u}${sfx} = min(${chunk(u, c0)}, VECS - 1u); // chunk u = ${u} (clamped: past the row its x is zero)`);
    for (const u of us) for (const r of rs) out.push(`    ${decl} q${u}_${r}${sfx} = qweight[rowBase${r} + ch${u}${sfx}];`);
    const load = (name: string, r: number, group: string) =>
      out.push(`    let g${name}${sfx} = rowG${r} + min(${group}, G - 1u);`, `    ${decl} s${name}${sfx} = scales[g${name}${sfx}];`, `    ${decl} z${name}${sfx} = ${zeroOf(`zeros[g${name}${sfx}]`)};`);
    if (g.step === 'chunk') for (const key of keys) for (const r of rs) load(`${key}_${r}`, r, `ch${us.find((u) => szKey(u) === key)}${sfx} / ${perGroup}u`);
    if (g.step === 'word') for (const u of us) for (const t of range(4)) for (const r of rs) load(`${u}_${t}_${r}`, r, `(ch${u}${sfx} * ${codes}u + ${t * per}u) / GS`);
    return out;
  };
  // The names passLoads declares that carry from one pass to the next (pipelined).
  const carried = (sfx: string) => [
    ...us.flatMap((u) => rs.map((r) => `q${u}_${r}${sfx}`)),
    ...(g.step === 'chunk' ? keys.flatMap((key) => rs.map((r) => `${key}_${r}`)) : g.step === 'word' ? us.flatMap((u) => range(4).flatMap((t) => rs.map((r) => `${u}_${t}_${r}`))) : []).flatMap((n) => [`s${n}${sfx}`, `z${n}${sfx}`]),
  ];
  // Σ over word t of chunk u, row r (codes minus zero `bz`) times x: shifted codes against x's even
  // and odd columns, or (pipelined) the word's halves masked in place against x's vec4s as they are.
  const wordDot = (u: number, r: number, t: number, bz: string, xv: (i: number) => string) => {
    const w = `q${u}_${r}[${t}]`;
    if (!pipelined) return dotWord(bits, t, w, bz, xv);
    if (bits === 8) return `maskedCodes(vec4<u32>(${w}, ${w}, ${w} >> 16u, ${w} >> 16u), ${bz}) * ${xv(t)}`;
    return `maskedCodes(vec4<u32>(${w}), ${bz}) * ${xv(2 * t)} + maskedCodes(vec4<u32>(${w} >> 16u), ${bz}) * ${xv(2 * t + 1)}`;
  };
  const splat = (z: string) => (pipelined ? z : `vec4<f32>(${z})`);
  const lines: string[] = pipelined ? [`    let c0n = c0 + LANES * U; // the next pass: its loads are issued before this pass's arithmetic`, ...passLoads('c0n', 'let', 'n')] : passLoads('c0', 'let', '');
  for (const u of us) {
    for (const b of bs) {
      const xv = (i: number) => `x${u}_${b}_${i}`;
      for (const i of range(codes / 4)) lines.push(`    let ${xv(i)} = xAt(${b}u, (${chunk(u)}) * ${codes}u + ${4 * i}u);`);
      for (const r of rs) {
        if (g.step === 'word') {
          for (const t of range(4)) lines.push(`    acc${r}_${b} += s${u}_${t}_${r} * (${wordDot(u, r, t, splat(`z${u}_${t}_${r}`), xv)});`);
          continue;
        }
        const bz = g.step === 'row' ? `bz${r}` : splat(`z${szKey(u)}_${r}`);
        const sum = range(4).map((t) => wordDot(u, r, t, bz, xv)).join('\n      + ');
        lines.push(`    acc${r}_${b} += ${g.step === 'chunk' ? `s${szKey(u)}_${r} * ` : ''}(${sum});`);
      }
    }
  }
  if (pipelined) lines.push(...carried('').map((n) => `    ${n} = ${n}n;`));
  // x[b, col .. col + 3] (col a multiple of 4), zeros at and past K; the index clamped into x.
  const xAt = g.xVec
    ? `fn xAt(b: u32, col: u32) -> vec4<f32> { return ${ragged ? 'select(vec4<f32>(0.0), x4[min(b * K / 4u + col / 4u, B * K / 4u - 1u)], col < K)' : 'x4[b * K / 4u + col / 4u]'}; }`
    : `fn x1(b: u32, col: u32) -> f32 { return select(0.0, x[min(b * K + col, B * K - 1u)], col < K); }
fn xAt(b: u32, col: u32) -> vec4<f32> { return vec4<f32>(x1(b, col), x1(b, col + 1u), x1(b, col + 2u), x1(b, col + 3u)); }`;
  // The accumulator's sum (pipelined: its bit positions weighed), times the per-channel scale.
  const total = (r: number, b: number) => `${g.step === 'row' ? `s${r} * ` : ''}${pipelined ? `dot(acc${r}_${b}, PLACE)` : `acc${r}_${b}`}`;
  // Per bit position p of a code in its 16-bit half (W4: 0, 4, 8, 12; W8: 0, 8, 0, 8): the masks, 2^−p and 2^p.
  const place = bits === 4 ? [0, 4, 8, 12] : [0, 8, 0, 8];
  const masked = pipelined
    ? `const MASKS = vec4<u32>(${place.map((p) => `${(2 ** bits - 1) * 2 ** p}u`).join(', ')});
const PLACE = vec4<f32>(${place.map((p) => `${2 ** -p}`).join(', ')});
const PLACE_INV = vec4<f32>(${place.map((p) => `${2 ** p}.0`).join(', ')});
// Codes masked in place in h (one 16-bit half per component, MASKS), minus their zeros bz = 2^23 + zero · 2^p: (code − zero) · 2^p, exact.
fn maskedCodes(h: vec4<u32>, bz: vec4<f32>) -> vec4<f32> { return bitcast<vec4<f32>>((h & MASKS) | vec4<u32>(MAGIC)) - bz; }`
    : '';
  const accInit = pipelined ? 'vec4<f32>(0.0)' : '0.0';
  return /* wgsl */ `${gemvHeader(g, null)}
const N = ${k.N}u;
const K = ${k.K}u;
const VECS = ${k.vecs}u; // 16-byte chunks per packed row
const G = ${k.G}u; // groups per row
const GS = ${k.groupSize}u; // columns per group
${masked}
${xAt}
@compute @workgroup_size(${lanes}, ${groups})
${MAIN_SIGNATURE} {
  let lane = lid.x;
  let row0 = ((wg.y * nwg.x + wg.x) * ${groups}u + lid.y) * R; // first of this group's R rows
${rs.map((r) => `  let rowAt${r} = min(row0 + ${r}u, N - 1u); // rows past N read row N − 1 and are not stored
  let rowBase${r} = rowAt${r} * VECS;
  let rowG${r} = rowAt${r} * G;`).join('\n')}
${g.step === 'row' ? rs.map((r) => `  let s${r} = scales[rowAt${r}]; // per-channel scale, applied after the sum
  let bz${r} = vec4<f32>(${zeroOf(`zeros[rowAt${r}]`)});`).join('\n') : ''}
${rs.flatMap((r) => bs.map((b) => `  var acc${r}_${b} = ${accInit};`)).join('\n')}
${pipelined ? `  // The first pass's loads.
${passLoads('0u', 'var', '').map((l) => l.replace(/^ {4}/, '  ')).join('\n')}` : ''}
  // The same trip count on every lane (subgroupAdd after the loop needs all lanes together).
  for (var c0 = 0u; c0 < VECS; c0 += LANES * U) {
${lines.join('\n')}
  }
  let acc = array<f32, ${R * B}>(${rs.flatMap((r) => bs.map((b) => total(r, b))).join(', ')}); // [r·B + b]
${gemvReduce(g, 'N', false)}
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
  if (!GEMV_CODEGENS.includes(o.codegen)) throw new Error(`weightOnlyLinear: unknown codegen '${o.codegen}' (${GEMV_CODEGENS.join(', ')})`);
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
  // The unrolled kernels bake the shape in (the pipeline cache is keyed by the code) and bind no Params.
  const unrolled = o.codegen === 'unrolled' || o.codegen === 'unrolled-contiguous' || o.codegen === 'pipelined';
  const consts: GemvConsts = { N: p.outFeatures, K, vecs: p.rowWords / 4, G, groupSize: p.groupSize === -1 ? K : p.groupSize };
  const [y] = runKernel({
    name: `wq-gemv-${p.bits}-b${B}-r${R}-u${o.unroll}-${step}${unrolled ? `-${o.codegen}-${p.outFeatures}x${K}` : o.codegen === 'words' ? '-words' : ''}`,
    code: unrolled ? gemvUnrolledCode(shape, consts, o.codegen as 'unrolled' | 'unrolled-contiguous' | 'pipelined') : o.codegen === 'words' ? gemvWordsCode(shape, params) : gemvCode(shape, params),
    inputs: [x, p.qweight, p.scales, p.zeros, ...(bias ? [bias] : [])],
    outputs: [{ shape: [B, p.outFeatures], dtype: 'float32' }],
    params: unrolled ? {} : params,
    workgroups: grid1d(Math.ceil(p.outFeatures / (groups * R))),
  });
  return y as tf.Tensor2D;
}
