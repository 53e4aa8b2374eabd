// W8A8 linear on the GPU: y = dequant(Q(x) · Q(W)ᵀ) (+ bias), as SmoothQuant's W8A8 models
// compute it, in three dispatches-worth of work in two kernels:
//   1. per-token dynamic symmetric INT8 quantization of x [M, K] (act.ts quantizeActPerToken:
//      s = max(max|x|, 1e-5) / 127, q = round(x / s), half to even), codes packed 4 per word;
//   2. the INT8 GEMM with the dequantizing epilogue fused: y = f32(Σ q·c) · s_x[m] · s_w[n] + b[n]
//      (per-group weight scales: Σ_g f32(Σ_{k∈g} q·c) · s_w[n, g], then · s_x[m] + b[n]).
// The GEMM runs on INT8 subgroup matrices (tensor cores: i8×i8→i32, 16×16×32) where the device has
// them, else on a portable kernel (dot4I8Packed, exact int32). Both accumulate exactly in int32,
// so they give identical accumulators; `int8Matmul` exposes them for the checks.
//
// Subgroup-matrix kernel (one generator, its options in INT8_TILES): a workgroup of WM×WN
// subgroups computes a BM×BN tile of y, each subgroup TM×TN 16×16 result tiles (BM = 16·WM·TM,
// BN = 16·WN·TN). Per K step of BK codes, every invocation loads its share of the A [BM, BK] and
// B [BN, BK] tiles from global memory as 16-byte vec4 words into registers and stores them into a
// staging buffer in workgroup memory (rows padded to RS = BK + pad bytes: with pad 16, eight
// consecutive rows start in eight different 16-byte bank groups, so the matrix loads do not
// conflict); each subgroup then loads TM left and TN right fragments per 32-deep slice and does
// TM·TN multiply-accumulates with them (more tiles per subgroup: more MMA per loaded fragment).
// Staging schemes (`stages`, `prefetch`):
//   stages 1, no prefetch: load, store, barrier, multiply, barrier (the first kernel's scheme);
//   stages 1, prefetch:    the next step's global loads are issued before this step's multiplies,
//                          stored after them between two barriers (global latency hidden);
//   stages 2 (prefetch):   two staging buffers: the next step is stored into the other buffer
//                          right after this step's multiplies, one barrier a step.
// Workgroups are launched in groups of `group` tiles along M per N tile (the weight panel they
// share stays in L2: 2048×4096×14336 has a 59 MB weight, more than the H200's 50 MB L2). Operands
// past M, N and K are zero-filled (sizes need not be tile multiples). The epilogue goes through a
// 16×16 int32 scratch per subgroup (workgroup memory reused after the K loop), read so that each
// store instruction writes two 64-byte row segments of y. Offsets and strides as matrixOps explains.
import * as tf from '@tensorflow/tfjs';
import { deviceLimits, grid1d, paramsStruct, runKernel, subgroupMatrixConfigs, subgroupSizes, u32, type Param } from './gpu';
import type { PackedW8A8 } from './packed-linear';

/** One workgroup tiling and staging scheme of the subgroup-matrix GEMM (see the header). */
export interface Int8Tile {
  wm: number; // subgroups along M
  wn: number; // subgroups along N
  tm: number; // 16-row result tiles per subgroup along M
  tn: number; // 16-column result tiles per subgroup along N
  bk: number; // K depth staged per step (multiple of 32)
  pad: number; // bytes added to each staged row in workgroup memory (0 or a multiple of 16), against bank conflicts of the matrix loads
  stages: 1 | 2; // staging buffers in workgroup memory: 2 = double-buffered, one barrier a step
  prefetch: boolean; // issue the next step's global loads before this step's multiplies (always with 2 stages)
  group: number; // tiles along M launched together per N tile (L2 reuse of the weight panel); 1 = row by row
}

/**
 * Tilings to sweep on the GPU (BM×BN, subgroups, K step; 32·wm·wn invocations per workgroup).
 * On the H200 (2026-12-04) the first kernel's scheme peaked with 128x128-sg8-k32-pad16 at 35.6 TOPS
 * (4096³) and 64x64-sg4-k32 at 54.3 TOPS (1024×4096×4096); its other tilings (128x64, unpadded,
 * k64, 128x256, 256x128 single-buffered) were slower everywhere and are gone. The two measured
 * best stay as they were, to measure the others against.
 */
export const INT8_TILES = {
  // The first kernel's best at 4096³: 8 subgroups × 2×4 tiles, single buffer, loads not overlapped.
  '128x128-sg8-k32-pad16': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32, pad: 16, stages: 1, prefetch: false, group: 1 },
  // Same tile, single buffer, the next step's global loads in flight during the multiplies.
  '128x128-sg8-k32-pf': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32, pad: 16, stages: 1, prefetch: true, group: 8 },
  // Same tile, double-buffered.
  '128x128-sg8-k32-db': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32, pad: 16, stages: 2, prefetch: true, group: 8 },
  // 4 subgroups × 4×4 tiles (64×64 each): 16 MMA per 8 fragment loads; 128 invocations.
  '128x128-sg4-k32-db': { wm: 2, wn: 2, tm: 4, tn: 4, bk: 32, pad: 16, stages: 2, prefetch: true, group: 8 },
  '128x128-sg4-k64-db': { wm: 2, wn: 2, tm: 4, tn: 4, bk: 64, pad: 16, stages: 2, prefetch: true, group: 8 },
  // 8 subgroups × 4×4 tiles: the most reuse of each staged byte (36 KiB of workgroup memory).
  '128x256-sg8-k32-db': { wm: 2, wn: 4, tm: 4, tn: 4, bk: 32, pad: 16, stages: 2, prefetch: true, group: 8 },
  '256x128-sg8-k32-db': { wm: 4, wn: 2, tm: 4, tn: 4, bk: 32, pad: 16, stages: 2, prefetch: true, group: 8 },
  // Small tiles for few rows (1024×4096×4096: 1024 workgroups over 132 SMs): the first kernel's
  // (its best there, 54.3 TOPS) and the same double-buffered and padded.
  '64x64-sg4-k32': { wm: 2, wn: 2, tm: 2, tn: 2, bk: 32, pad: 0, stages: 1, prefetch: false, group: 1 },
  '64x64-sg4-k32-db': { wm: 2, wn: 2, tm: 2, tn: 2, bk: 32, pad: 16, stages: 2, prefetch: true, group: 8 },
} as const satisfies Record<string, Int8Tile>;
export type Int8TileName = keyof typeof INT8_TILES;

/**
 * 'subgroup-matrix': INT8 tensor cores; 'dot4': portable dot4I8Packed kernel; 'sm-emulated': the
 * subgroup-matrix kernel's tiling, staging, offsets and epilogue with the matrix loads and
 * multiply-accumulates done in plain WGSL (each lane owning 8 of a 16×16 tile's elements): slow,
 * it tests the tiling on devices without subgroup matrices.
 */
export type Int8Path = 'subgroup-matrix' | 'dot4' | 'sm-emulated';

export interface Int8Options {
  /** GEMM kernel: 'auto' takes the subgroup-matrix kernel when the device has i8 16×16×32 subgroup matrices and 32-wide subgroups, else 'dot4'. */
  path?: Int8Path | 'auto';
  /** Subgroup-matrix tiling (default: INT8_DEFAULTS.tile): a name of INT8_TILES, 'auto' (chooseInt8Tile by the output's size), or a tiling of one's own (checks, experiments). */
  tile?: Int8TileName | 'auto' | Int8Tile;
  /** How the matrix loads/stores name their layout: 'template' (subgroupMatrixLoad<T, row_major>(p, offset, stride), Dawn's current form)
   * or 'bool' (subgroupMatrixLoad<T>(p, offset, col_major, stride), the first form, deprecated in Dawn). */
  syntax?: MatrixSyntax;
}

export type MatrixSyntax = 'template' | 'bool';

export const INT8_DEFAULTS: Required<Omit<Int8Options, 'tile'>> & { tile: Int8TileName | 'auto' } = {
  path: 'auto', // fastest kernel the device supports
  tile: 'auto', // by output size (INT8_AUTO); sweep with bench-kernels --kernels w8a8
  syntax: 'template', // Dawn warns that the bool form is deprecated
};

/**
 * tile 'auto': the `large` tiling when its 128×128 output tiles fill every SM at least once
 * (`minTiles`), else `small` with four times as many tiles. Measured inside the executor on the
 * H200 (bench-forward --executor-int8-tiles --profile at 89d2fee, the 1.2B model's 512-token
 * prefill, GPU ms per step over 16 blocks, each kernel checked first): with 256 large tiles (N =
 * 8192) 128x128-sg8-k32-pf 2.40 against 64x64-sg4-k32-db 3.70 and 256x128-sg8-k32-db 3.07; with 64
 * (N = 2048, K = 2048 or 8192) and 16 (N = 512) the 64x64 tiling led, 1.75 / 2.77 / 1.53 against
 * pf 2.27 / 3.34 / 1.78 (256x128: 3.31 / 4.62 / 2.30). At 4096³ (1,024 tiles) pf was the fastest
 * tiling of bench-kernels (327 TOPS, 10ebd3f).
 */
export const INT8_AUTO = {
  large: '128x128-sg8-k32-pf',
  small: '64x64-sg4-k32-db',
  minTiles: 132, // one large tile per SM of a 132-SM H100/H200
} as const satisfies { large: Int8TileName; small: Int8TileName; minTiles: number };

/** The tiling 'auto' picks for an M×N output (see INT8_AUTO). */
export function chooseInt8Tile(M: number, N: number): Int8TileName {
  const t = INT8_TILES[INT8_AUTO.large];
  const tiles = Math.ceil(M / (16 * t.wm * t.tm)) * Math.ceil(N / (16 * t.wn * t.tn));
  return tiles >= INT8_AUTO.minTiles ? INT8_AUTO.large : INT8_AUTO.small;
}

const SUBGROUP = 32; // the subgroup-matrix kernel assumes 32-wide subgroups (NVIDIA), checked before use
const QMAX = 127; // 8-bit symmetric activation codes

/** Whether the device has what the subgroup-matrix kernel needs, with the reason when not. */
export function subgroupMatrixInt8Support(): { ok: boolean; reason: string } {
  const cfg = subgroupMatrixConfigs().find((c) => c.componentType === 'i8' && c.resultComponentType === 'i32' && c.M === 16 && c.N === 16 && c.K === 32);
  if (!cfg) return { ok: false, reason: 'no i8×i8→i32 16×16×32 subgroup-matrix configuration on this device' };
  const s = subgroupSizes();
  if (!s || s.min !== SUBGROUP || s.max !== SUBGROUP) return { ok: false, reason: `subgroup size ${s ? `${s.min}..${s.max}` : 'unknown'}, the kernel needs exactly ${SUBGROUP}` };
  return { ok: true, reason: '' };
}

function resolvePath(path: Int8Path | 'auto'): Int8Path {
  const sm = subgroupMatrixInt8Support();
  if (path === 'auto') return sm.ok ? 'subgroup-matrix' : 'dot4';
  if (path === 'subgroup-matrix' && !sm.ok) throw new Error(`int8 GEMM path 'subgroup-matrix' unavailable: ${sm.reason}`);
  if (!['subgroup-matrix', 'dot4', 'sm-emulated'].includes(path)) throw new Error(`unknown int8 GEMM path '${path}' (auto, subgroup-matrix, dot4, sm-emulated)`);
  return path;
}

// ---- 1. per-token activation quantization ----

const ACT_WG = 64;
/** Threads a row of the vector form (K % 4 = 0): K / 4 / ACT_VEC_WG vec4s a thread, held in registers. */
const ACT_VEC_WG = 256;

/**
 * The per-token quantization kernel for rows of K values: when K % 4 = 0, the vector form (each
 * thread reads its vec4s of the row once and keeps them for the codes: one vec4 is one code word),
 * else the scalar form (64 threads a row, x read twice). Same maximum, quotient and rounding in both,
 * so the same codes and scales.
 */
function actQuantCode(params: Record<string, Param>, K: number): string {
  const vec = K % 4 === 0;
  const KV = K / 4; // vector form: vec4s (and code words) a row
  const n = Math.ceil(KV / ACT_VEC_WG); // vector form: vec4s a thread
  const gather = vec
    ? `var v: array<vec4<f32>, ${n}>; // this thread's vec4s: columns 4·(li + i·WG) ..
  for (var i = 0u; i < ${n}u; i++) {
    let c = li + i * WG;
    if (c < ${KV}u) { v[i] = x[row * ${KV}u + c]; }
    let a = abs(v[i]);
    m = max(m, max(max(a.x, a.y), max(a.z, a.w)));
  }`
    : `let base = row * params.K;
  for (var k = li; k < params.K; k += WG) { m = max(m, abs(x[base + k])); }`;
  const write = vec
    ? `for (var i = 0u; i < ${n}u; i++) {
    let c = li + i * WG;
    if (c < ${KV}u) {
      let q = vec4<i32>(clamp(round(v[i] / scale), vec4<f32>(-128.0), vec4<f32>(127.0)));
      codes[row * params.kWords + c] = (bitcast<u32>(q.x) & 0xffu) | ((bitcast<u32>(q.y) & 0xffu) << 8u) | ((bitcast<u32>(q.z) & 0xffu) << 16u) | ((bitcast<u32>(q.w) & 0xffu) << 24u);
    }
  }
  if (li < params.kWords - ${KV}u) { codes[row * params.kWords + ${KV}u + li] = 0u; } // zero codes past K`
    : `for (var w = li; w < params.kWords; w += WG) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let k = w * 4u + j;
      if (k < params.K) {
        let q = i32(clamp(round(x[base + k] / scale), -128.0, 127.0));
        word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
      }
    }
    codes[row * params.kWords + w] = word;
  }`;
  return /* wgsl */ `
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> codes: array<u32>; // [M, kWords] (kWords ≥ K / 4: the rest zero codes)
@group(0) @binding(1) var<storage, read_write> scales: array<f32>; // [M]
@group(0) @binding(2) var<storage, read> x: array<${vec ? 'vec4<f32>' : 'f32'}>; // [M, K]
@group(0) @binding(3) var<uniform> params: Params;
const WG = ${vec ? ACT_VEC_WG : ACT_WG}u;
var<workgroup> red: array<f32, WG>;
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= params.M) { return; }
  var m = 0.0;
  ${gather}
  red[li] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let scale = max(red[0], 1e-5) / ${QMAX}.0;
  if (li == 0u) { scales[row] = scale; }
  ${write}
}`;
}

/**
 * Per-token INT8 codes of x [M, K]: codes int32 [M, kWords] (4 signed codes per word, row padded
 * with zero codes to kWords) and scales float32 [M]; dequantized, codes·scale equal act.ts's
 * quantizeActPerToken(x, 8).
 */
export function quantizeActInt8(x: tf.Tensor2D, kWords: number): { codes: tf.Tensor2D; scales: tf.Tensor1D } {
  const [M, K] = x.shape;
  if (kWords * 4 < K || kWords % 4 !== 0) throw new Error(`quantizeActInt8: kWords ${kWords} must be a multiple of 4 holding K = ${K} codes`);
  const params = { M: u32(M), K: u32(K), kWords: u32(kWords) };
  const [codes, scales] = runKernel({
    name: 'w8a8-act-quant',
    code: actQuantCode(params, K),
    inputs: [x],
    outputs: [{ shape: [M, kWords], dtype: 'int32' }, { shape: [M], dtype: 'float32' }],
    params,
    workgroups: grid1d(M),
  });
  return { codes: codes as tf.Tensor2D, scales: scales as tf.Tensor1D };
}

// ---- 2. INT8 GEMM + epilogue ----

/**
 * WGSL statements writing the dequantized value v of output (m, n) (expressions); the default is
 * `y[m * params.N + n] = v`. The inference executor passes its own (residual add, SwiGLU, a row
 * stride and column offset: lib/engine).
 */
export type OutputWriter = (m: string, n: string, v: string) => string;

/** What the GEMM writes: fp32 y with the dequantizing epilogue, or the raw int32 accumulators (checks). */
type Epilogue = { kind: 'int32' } | { kind: 'dequant'; groups: boolean; bias: boolean; write?: OutputWriter };

/** Output/input binding declarations shared by both kernels (a, b = packed codes as vec4 words or words). */
function bindings(e: Epilogue, wordType: string, params: Record<string, Param>): string {
  const out = e.kind === 'int32' ? 'array<i32>' : 'array<f32>';
  const lines = [
    paramsStruct(params),
    `@group(0) @binding(0) var<storage, read_write> y: ${out}; // [M, N]`,
    `@group(0) @binding(1) var<storage, read> a: array<${wordType}>; // [M, kWords] activation codes`,
    `@group(0) @binding(2) var<storage, read> b: array<${wordType}>; // [N, kWords] weight codes`,
  ];
  let next = 3;
  if (e.kind === 'dequant') {
    lines.push(`@group(0) @binding(${next++}) var<storage, read> sx: array<f32>; // [M] activation scales`);
    lines.push(`@group(0) @binding(${next++}) var<storage, read> sw: array<f32>; // [N, G] weight scales`);
    if (e.bias) lines.push(`@group(0) @binding(${next++}) var<storage, read> bias: array<f32>; // [N]`);
  }
  lines.push(`@group(0) @binding(${next}) var<uniform> params: Params;`);
  return lines.join('\n');
}

/** WGSL storing one output element from its int32 accumulator (per-channel scales). */
function storeOne(e: Epilogue, m: string, n: string, acc: string): string {
  if (e.kind === 'int32') return `y[${m} * params.N + ${n}] = ${acc};`;
  return writeDequant(e, m, n, `f32(${acc}) * sx[${m}] * sw[${n}]`);
}

/** WGSL storing v (+ bias) at output (m, n) through the epilogue's writer. */
function writeDequant(e: Extract<Epilogue, { kind: 'dequant' }>, m: string, n: string, v: string): string {
  const value = e.bias ? `${v} + bias[${n}]` : v;
  return e.write ? e.write(m, n, value) : `y[${m} * params.N + ${n}] = ${value};`;
}

// Portable kernel: each invocation computes a 4×4 block of outputs from packed words with
// dot4I8Packed; per-group scales fold each group's exact int32 sum into an fp32 accumulator.
const DOT4_WG = 8; // 8×8 invocations → 32×32 outputs per workgroup

function dot4Code(e: Epilogue, params: Record<string, Param>): string {
  const grouped = e.kind === 'dequant' && e.groups;
  const stores: string[] = [];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      const body =
        e.kind === 'dequant' && e.groups ? writeDequant(e, `(m0 + ${i}u)`, `(n0 + ${j}u)`, `f[${i * 4 + j}] * sx[m0 + ${i}u]`) : storeOne(e, `(m0 + ${i}u)`, `(n0 + ${j}u)`, `acc[${i * 4 + j}]`);
      stores.push(`  if (m0 + ${i}u < params.M && n0 + ${j}u < params.N) { ${body} }`);
    }
  }
  return /* wgsl */ `
${bindings(e, 'u32', params)}
@compute @workgroup_size(${DOT4_WG}, ${DOT4_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m0 = gid.y * 4u;
  let n0 = gid.x * 4u;
  if (m0 >= params.M || n0 >= params.N) { return; }
  var acc: array<i32, 16>;
  ${grouped ? 'var f: array<f32, 16>;' : ''}
  for (var g = 0u; g < params.G; g++) {
    let w0 = g * params.groupWords;
    let w1 = min(w0 + params.groupWords, params.kWords);
    for (var w = w0; w < w1; w++) {
      var av: array<u32, 4>;
      var bv: array<u32, 4>;
      for (var i = 0u; i < 4u; i++) {
        av[i] = select(0u, a[min(m0 + i, params.M - 1u) * params.kWords + w], m0 + i < params.M);
        bv[i] = select(0u, b[min(n0 + i, params.N - 1u) * params.kWords + w], n0 + i < params.N);
      }
      for (var i = 0u; i < 4u; i++) {
        for (var j = 0u; j < 4u; j++) { acc[i * 4u + j] += dot4I8Packed(av[i], bv[j]); }
      }
    }${
      grouped
        ? `
    for (var i = 0u; i < 4u; i++) {
      for (var j = 0u; j < 4u; j++) {
        let n = min(n0 + j, params.N - 1u);
        f[i * 4u + j] += f32(acc[i * 4u + j]) * sw[n * params.G + g];
        acc[i * 4u + j] = 0;
      }
    }`
        : ''
    }
  }
${stores.join('\n')}
}`;
}

const tileLabel = (t: Int8TileName | Int8Tile) => (typeof t === 'string' ? t : JSON.stringify(t));

/** Why the generator cannot build a tiling (null when it can). */
export function int8TileInvalid(t: Int8Tile): string | null {
  const pos = (n: number) => Number.isInteger(n) && n >= 1;
  if (![t.wm, t.wn, t.tm, t.tn, t.group].every(pos)) return 'wm, wn, tm, tn and group must be positive integers';
  if (!(pos(t.bk / 32))) return `bk ${t.bk} is not a positive multiple of 32`;
  if (!(Number.isInteger(t.pad / 16) && t.pad >= 0)) return `pad ${t.pad} is not a multiple of 16 bytes (the matrix loads and the vec4 stores need 16-byte rows)`;
  if (t.stages !== 1 && t.stages !== 2) return `stages ${t.stages} (1 or 2)`;
  if (SUBGROUP * t.wm * t.wn > 1024) return `${t.wm * t.wn} subgroups are over 1024 invocations`;
  return null;
}

/** Workgroup memory (bytes) a tiling needs: its staging buffers, reused after the K loop for one 16×16 int32 scratch per subgroup. */
export function tileSharedBytes(t: Int8Tile): number {
  const bm = 16 * t.wm * t.tm;
  const bn = 16 * t.wn * t.tn;
  return Math.max(t.stages * (bm + bn) * (t.bk + t.pad), t.wm * t.wn * 16 * 16 * 4);
}

/**
 * WGSL of a subgroup-matrix load (layout row- or column-major) and store, in either syntax. Callers
 * give offsets and strides of i8 operands in 8-bit elements; how Dawn counts them depends on the
 * form (Dawn 9361310a, 2026-06): the 'template' form counts in elements of the *array* (i32 words
 * for i8 matrices, so both are divided by 4 here: staged rows are multiples of 16 bytes), the
 * deprecated 'bool' form in elements of the matrix component (8-bit). Passing 8-bit counts to the
 * template form made every access 4× too far, which Dawn's robustness clamp then sent to offset 0
 * with the minimum stride: the wrong results seen on the H200. i32 results count in i32 either way.
 */
function matrixOps(syntax: MatrixSyntax) {
  const layout = (colMajor: boolean) => (colMajor ? 'col_major' : 'row_major');
  return syntax === 'template'
    ? {
        load: (type: string, ptr: string, offI8: string, colMajor: boolean, strideI8: string) =>
          `subgroupMatrixLoad<${type}, ${layout(colMajor)}>(${ptr}, (${offI8}) / 4u, ${strideI8} / 4u)`,
        store: (ptr: string, off: string, value: string, stride: string) => `subgroupMatrixStore<row_major>(${ptr}, ${off}, ${value}, ${stride})`,
      }
    : {
        load: (type: string, ptr: string, offI8: string, colMajor: boolean, strideI8: string) => `subgroupMatrixLoad<${type}>(${ptr}, ${offI8}, ${colMajor}, ${strideI8})`,
        store: (ptr: string, off: string, value: string, stride: string) => `subgroupMatrixStore(${ptr}, ${off}, ${value}, false, ${stride})`,
      };
}

/**
 * WGSL moving one K step of an operand tile through registers: `load` reads this invocation's
 * share of rows [base, base + rows) × VPR vec4 words at step `step` from global `src` into
 * registers `reg` (zeros past `limit` rows or K), `store` writes them into the staging buffer at
 * byte offset `at` of `sm` (rows RS bytes apart). Unrolled: `count` vec4 words per invocation.
 */
function tileMover(reg: string, src: string, rows: number, base: string, limit: string, threads: number, vpr: number) {
  const count = Math.ceil((rows * vpr) / threads);
  const guard = (rows * vpr) % threads === 0 ? '' : `if (idx >= ${rows * vpr}u) { break; }\n      `;
  const each = (body: string) => `    for (var i = 0u; i < ${count}u; i++) {
      let idx = li + i * THREADS; // [${rows} rows × VPR vec4 words]
      ${guard}let r = idx / VPR;
      let c = idx % VPR;
      ${body}
    }`;
  return {
    decl: `  var ${reg}: array<vec4<u32>, ${count}>;`,
    load: (step: string) =>
      each(`let k = ${step} * VPR + c;
      var v = vec4<u32>(0u);
      if (${base} + r < ${limit} && k < kVec) { v = ${src}[(${base} + r) * kVec + k]; }
      ${reg}[i] = v;`),
    store: (at: string) =>
      each(`let o = (${at} + r * RS + c * 16u) / 4u;
      sm[o] = bitcast<i32>(${reg}[i].x); sm[o + 1u] = bitcast<i32>(${reg}[i].y); sm[o + 2u] = bitcast<i32>(${reg}[i].z); sm[o + 3u] = bitcast<i32>(${reg}[i].w);`),
  };
}

function subgroupMatrixCode(t: Int8Tile, e: Epilogue, params: Record<string, Param>, emulate: boolean, syntax: MatrixSyntax): string {
  const ops = matrixOps(syntax);
  const bm = 16 * t.wm * t.tm;
  const bn = 16 * t.wn * t.tn;
  const nsg = t.wm * t.wn;
  const threads = SUBGROUP * nsg;
  const rs = t.bk + t.pad; // staged row stride in bytes (i8 codes)
  const prefetch = t.stages === 2 || t.prefetch;
  const A = tileMover('ra', 'a', bm, 'm0', 'params.M', threads, t.bk / 16);
  const B = tileMover('rb', 'b', bn, 'n0', 'params.N', threads, t.bk / 16);
  // Byte offsets, in the staging buffer at byte offset `cur`, of the fragment of 16-row (column)
  // tile i (j) at the 32-deep slice kk; i16 = i·16, kk32 = kk·32 (constants, or the emulation's loop variables).
  const lOff = (i16: string, kk32: string) => `cur + (rowBase + ${i16}) * RS + ${kk32}`; // A rows
  const rOff = (j16: string, kk32: string) => `cur + A_BYTES + (colBase + ${j16}) * RS + ${kk32}`; // B rows
  // The epilogue of tile (i, j) from its 16×16 scratch: element idx = q·32 + lane, so that each
  // store writes rows 2q, 2q+1 of the tile, 16 consecutive columns each.
  const drain = (i16: string, j16: string) => `  workgroupBarrier();
  for (var q = 0u; q < 8u; q++) {
    let idx = q * 32u + lane;
    let m = m0 + rowBase + ${i16} + idx / 16u;
    let n = n0 + colBase + ${j16} + idx % 16u;
    if (m < params.M && n < params.N) { ${storeOne(e, 'm', 'n', 'sm[sg * 256u + idx]')} }
  }
  workgroupBarrier();`;
  let decl: string;
  let mma: string;
  let epilogue: string;
  if (emulate) {
    // Plain WGSL with the same staging, offsets and epilogue: lane owns elements idx = lane·8 + q
    // of each 16×16 tile (row idx / 16, column idx % 16); loops over the tiles keep the shader
    // small enough for a CPU Vulkan to compile quickly.
    decl = `  var acc: array<i32, ${t.tm * t.tn * 8}>; // [TM·TN tiles, 8 elements per lane]`;
    mma = `    for (var kk = 0u; kk < ${t.bk / 32}u; kk++) {
      for (var i = 0u; i < ${t.tm}u; i++) {
        for (var j = 0u; j < ${t.tn}u; j++) {
          for (var q = 0u; q < 8u; q++) {
            let idx = lane * 8u + q;
            var sum = 0;
            for (var k = 0u; k < 32u; k++) { sum += smI8(${lOff('i * 16u', 'kk * 32u')} + (idx / 16u) * RS + k) * smI8(${rOff('j * 16u', 'kk * 32u')} + (idx % 16u) * RS + k); }
            acc[(i * ${t.tn}u + j) * 8u + q] += sum;
          }
        }
      }
    }`;
    epilogue = `  for (var i = 0u; i < ${t.tm}u; i++) {
    for (var j = 0u; j < ${t.tn}u; j++) {
      for (var q = 0u; q < 8u; q++) { sm[sg * 256u + lane * 8u + q] = acc[(i * ${t.tn}u + j) * 8u + q]; }
${drain('i * 16u', 'j * 16u')}
    }
  }`;
  } else {
    const tiles = (f: (i: number, j: number) => string) => Array.from({ length: t.tm }, (_, i) => Array.from({ length: t.tn }, (_, j) => f(i, j))).flat();
    decl = tiles((i, j) => `  var acc_${i}_${j} = subgroup_matrix_result<i32, 16, 16>();`).join('\n');
    // Per 32-deep slice: TM left and TN right fragments, then TM·TN multiply-accumulates.
    mma = Array.from({ length: t.bk / 32 }, (_, kk) =>
      [
        '    {',
        ...Array.from({ length: t.tm }, (_, i) => `      let l_${i} = ${ops.load('subgroup_matrix_left<i8, 32, 16>', '&sm', lOff(`${i * 16}u`, `${kk * 32}u`), false, 'RS')};`),
        ...Array.from({ length: t.tn }, (_, j) => `      let r_${j} = ${ops.load('subgroup_matrix_right<i8, 16, 32>', '&sm', rOff(`${j * 16}u`, `${kk * 32}u`), true, 'RS')};`),
        ...tiles((i, j) => `      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(l_${i}, r_${j}, acc_${i}_${j});`),
        '    }',
      ].join('\n'),
    ).join('\n');
    epilogue = tiles((i, j) => `  ${ops.store('&sm', 'sg * 256u', `acc_${i}_${j}`, '16u')};\n${drain(`${i * 16}u`, `${j * 16}u`)}`).join('\n');
  }
  const header = emulate ? '' : 'enable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);';
  // Emulation: the signed i8 at byte e of sm (little-endian bytes of i32 words).
  const i8At = emulate ? 'fn smI8(e: u32) -> i32 { return (sm[e >> 2u] << (24u - 8u * (e & 3u))) >> 24u; }' : '';
  const next = (at: string) => (t.stages === 2 ? `((s + 1u) % 2u) * STAGE` : at);
  return /* wgsl */ `${header}
${bindings(e, 'vec4<u32>', params)}
const BM = ${bm}u;
const BN = ${bn}u;
const RS = ${rs}u; // staged row stride in bytes (i8 codes)
const VPR = ${t.bk / 16}u; // vec4 words (16 codes) per staged row per K step
const A_BYTES = ${bm * rs}u; // the A rows of a staging buffer, then the B rows
const STAGE = ${(bm + bn) * rs}u; // bytes of one staging buffer
const THREADS = ${threads}u;
const GROUP = ${t.group}u; // tiles along M launched together per N tile
// Staging buffers [${t.stages}][A: BM × RS | B: BN × RS] of i8 codes; after the K loop, one 16×16 i32 scratch per subgroup.
var<workgroup> sm: array<i32, ${tileSharedBytes(t) / 4}>;
${i8At}
@compute @workgroup_size(THREADS)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  // Launch order: GROUP tiles down M for each N tile, then the next GROUP rows of tiles.
  let tilesM = (params.M + BM - 1u) / BM;
  let tilesN = (params.N + BN - 1u) / BN;
  let id = wg.y * nwg.x + wg.x;
  if (id >= tilesM * tilesN) { return; }
  let perGroup = GROUP * tilesN;
  let firstM = (id / perGroup) * GROUP;
  let rowsInGroup = min(tilesM - firstM, GROUP);
  let inGroup = id % perGroup;
  let m0 = (firstM + inGroup % rowsInGroup) * BM;
  let n0 = (inGroup / rowsInGroup) * BN;
  let sg = li / ${SUBGROUP}u;
  let lane = li % ${SUBGROUP}u;
  let rowBase = (sg / ${t.wn}u) * ${16 * t.tm}u; // first row of this subgroup inside the tile
  let colBase = (sg % ${t.wn}u) * ${16 * t.tn}u;
  let kVec = params.kWords / 4u;
  let steps = (kVec + VPR - 1u) / VPR;
${decl}
${A.decl}
${B.decl}
${A.load('0u')}
${B.load('0u')}
${A.store('0u')}
${B.store('A_BYTES')}
  workgroupBarrier();
  for (var s = 0u; s < steps; s++) {
    let cur = ${t.stages === 2 ? '(s % 2u) * STAGE' : '0u'}; // this step's staging buffer
${prefetch ? `    if (s + 1u < steps) {\n${A.load('(s + 1u)')}\n${B.load('(s + 1u)')}\n    }` : ''}
${mma}
${t.stages === 1 ? '    workgroupBarrier(); // every subgroup is done with the buffer' : ''}
    if (s + 1u < steps) {
${prefetch ? '' : `${A.load('(s + 1u)')}\n${B.load('(s + 1u)')}`}
${A.store(next('0u'))}
${B.store(`${next('0u')} + A_BYTES`)}
    }
    workgroupBarrier();
  }
${epilogue}
}`;
}

interface GemmArgs {
  a: tf.Tensor2D; // int32 [M, kWords] activation codes
  b: tf.Tensor2D; // int32 [N, kWords] weight codes
  epilogue: Epilogue;
  extra: tf.Tensor[]; // sx [M], sw [N, G], bias [N] as the epilogue needs
  groupWords: number; // words per weight group (kWords when per channel)
  groups: number; // weight groups per row (1 when per channel)
  opts: Int8Options;
}

function gemm({ a, b, epilogue, extra, groupWords, groups, opts }: GemmArgs): tf.Tensor2D {
  const o = { ...INT8_DEFAULTS, ...opts };
  const [M, kWords] = a.shape;
  const [N, kw2] = b.shape;
  if (kw2 !== kWords) throw new Error(`int8 GEMM: activation rows have ${kWords} words, weight rows ${kw2}`);
  if (kWords % 4 !== 0) throw new Error(`int8 GEMM: kWords ${kWords} is not a multiple of 4`);
  const path = resolvePath(o.path);
  if (o.syntax !== 'template' && o.syntax !== 'bool') throw new Error(`unknown subgroup-matrix syntax '${o.syntax}' (template, bool)`);
  const grouped = epilogue.kind === 'dequant' && epilogue.groups;
  const outputs = [{ shape: [M, N], dtype: epilogue.kind === 'int32' ? ('int32' as const) : ('float32' as const) }];
  if ((path === 'subgroup-matrix' || path === 'sm-emulated') && !grouped) {
    const name = o.tile === 'auto' ? chooseInt8Tile(M, N) : o.tile;
    const t: Int8Tile = typeof name === 'string' ? INT8_TILES[name] : name;
    if (!t) throw new Error(`unknown int8 tile '${o.tile}' (known: auto, ${Object.keys(INT8_TILES).join(', ')})`);
    const why = int8TileInvalid(t);
    if (why) throw new Error(`int8 tile ${tileLabel(name)}: ${why}`);
    const limit = deviceLimits()?.maxComputeWorkgroupStorageSize ?? 0;
    if (tileSharedBytes(t) > limit) throw new Error(`int8 tile ${tileLabel(name)} needs ${tileSharedBytes(t)} bytes of workgroup memory, the device allows ${limit}`);
    const params = { M: u32(M), N: u32(N), kWords: u32(kWords) };
    const [y] = runKernel({
      name: `int8-gemm-${path}-${tileLabel(name)}`,
      code: subgroupMatrixCode(t, epilogue, params, path === 'sm-emulated', o.syntax),
      inputs: [a, b, ...extra],
      outputs,
      params,
      workgroups: grid1d(Math.ceil(N / (16 * t.wn * t.tn)) * Math.ceil(M / (16 * t.wm * t.tm))), // tile order: see the kernel's launch order
    });
    return y as tf.Tensor2D;
  }
  const params = { M: u32(M), N: u32(N), kWords: u32(kWords), G: u32(groups), groupWords: u32(groupWords) };
  const [y] = runKernel({
    name: 'int8-gemm-dot4',
    code: dot4Code(epilogue, params),
    inputs: [a, b, ...extra],
    outputs,
    params,
    workgroups: [Math.ceil(N / (4 * DOT4_WG)), Math.ceil(M / (4 * DOT4_WG)), 1],
  });
  return y as tf.Tensor2D;
}

/** Exact int32 accumulators acc [M, N] = Σ_k a[m, k] · b[n, k] of packed INT8 codes (a [M, kWords], b [N, kWords]). */
export function int8Matmul(a: tf.Tensor2D, b: tf.Tensor2D, opts: Int8Options = {}): tf.Tensor2D {
  return gemm({ a, b, epilogue: { kind: 'int32' }, extra: [], groupWords: a.shape[1], groups: 1, opts });
}

/**
 * The GEMM with the dequantizing epilogue on already-quantized activations: codes int32 [M, kWords]
 * and scales float32 [M] (quantizeActInt8) times the packed weight p → y [M, N] fp32 (+ bias [N]).
 * Per-group weights take the portable kernel (the subgroup-matrix epilogue scales per output
 * channel only).
 */
export function int8GemmDequant(codes: tf.Tensor2D, scales: tf.Tensor1D, p: PackedW8A8, bias?: tf.Tensor, opts: Int8Options = {}): tf.Tensor2D {
  if (bias && bias.size !== p.outFeatures) throw new Error(`w8a8: bias has ${bias.size} values, the weight has ${p.outFeatures} outputs`);
  const groups = p.groupSize !== -1;
  return gemm({
    a: codes,
    b: p.codes,
    epilogue: { kind: 'dequant', groups, bias: !!bias },
    extra: [scales, p.scales, ...(bias ? [bias] : [])],
    groupWords: groups ? p.groupSize / 4 : p.kWords,
    groups: p.scales.shape[1],
    opts,
  });
}

/** W8A8 linear: x [M, K] fp32 → y [M, N] fp32 with the weight's INT8 codes and scales (p) and an optional bias [N]. */
export function w8a8Linear(x: tf.Tensor2D, p: PackedW8A8, bias?: tf.Tensor, opts: Int8Options = {}): tf.Tensor2D {
  const K = x.shape[1];
  if (K !== p.inFeatures) throw new Error(`w8a8Linear: x has ${K} features, the weight takes ${p.inFeatures}`);
  const { codes, scales } = quantizeActInt8(x, p.kWords); // [M, kWords], [M]
  try {
    return int8GemmDequant(codes, scales, p, bias, opts);
  } finally {
    tf.dispose([codes, scales]);
  }
}

/** The WGSL of the subgroup-matrix GEMM for a tiling (int32 epilogue), for reading and for compiling on a device without running it. */
export function int8GemmSource(tile: Int8TileName, opts: { emulate?: boolean; syntax?: MatrixSyntax } = {}): string {
  return subgroupMatrixCode(INT8_TILES[tile], { kind: 'int32' }, { M: u32(0), N: u32(0), kWords: u32(0) }, opts.emulate ?? false, opts.syntax ?? 'template');
}

// ---- 3. the same kernels for an executor that binds its own buffers (lib/engine) ----

/** A kernel as complete WGSL: bindings in the order its doc gives, then one `params` uniform with these fields in order. */
export interface Int8KernelSource {
  name: string;
  code: string;
  params: Record<string, Param['type']>;
}

const types = (params: Record<string, Param>) => Object.fromEntries(Object.entries(params).map(([k, p]) => [k, p.type]));

/** Per-token INT8 quantization of x [M, K] (as quantizeActInt8). Bindings: codes u32 [M, kWords] (out), scales [M] (out), x [M, K]; params M, K (= this K), kWords. One workgroup per row, the grid spilled into y. */
export function int8ActQuantSource(K: number): Int8KernelSource {
  const params = { M: u32(0), K: u32(0), kWords: u32(0) };
  return { name: 'w8a8-act-quant', code: actQuantCode(params, K), params: types(params) };
}

/** The GEMM path 'auto' resolves to on this device (see Int8Options.path). */
export const int8PathFor = resolvePath;

/**
 * The INT8 GEMM with the dequantizing epilogue written through `write`, for an executor: the
 * subgroup-matrix kernel (or its emulation) with `tile`, or the dot4 kernel (which alone takes
 * per-group weight scales). `extra` names the params `write` reads beyond the GEMM's own (M, N,
 * kWords, and G, groupWords for dot4). Bindings: y (read-write), a codes [M, kWords], b codes
 * [N, kWords], sx [M], sw [N, G], then bias [N]. `workgroups(M, N)`: a flat count (the kernel
 * reads its index as wg.y · nwg.x + wg.x) or a 2D grid.
 */
export function int8GemmKernel(o: { path: Int8Path; tile: Int8TileName; groups: boolean; bias: boolean; write: OutputWriter; extra: Record<string, Param['type']> }): Int8KernelSource & { workgroups: (M: number, N: number) => number | [number, number, number] } {
  const extra = Object.fromEntries(Object.entries(o.extra).map(([k, t]) => [k, { type: t, value: 0 }]));
  const e: Epilogue = { kind: 'dequant', groups: o.groups, bias: o.bias, write: o.write };
  if (o.path === 'dot4' || o.groups) {
    const params = { M: u32(0), N: u32(0), kWords: u32(0), G: u32(0), groupWords: u32(0), ...extra };
    return { name: `int8-gemm-dot4${o.groups ? '-g' : ''}`, code: dot4Code(e, params), params: types(params), workgroups: (M, N) => [Math.ceil(N / (4 * DOT4_WG)), Math.ceil(M / (4 * DOT4_WG)), 1] };
  }
  const t = INT8_TILES[o.tile];
  if (!t) throw new Error(`unknown int8 tile '${o.tile}' (known: ${Object.keys(INT8_TILES).join(', ')})`);
  const params = { M: u32(0), N: u32(0), kWords: u32(0), ...extra };
  return {
    name: `int8-gemm-${o.path}-${o.tile}`,
    code: subgroupMatrixCode(t, e, params, o.path === 'sm-emulated', 'template'),
    params: types(params),
    workgroups: (M, N) => Math.ceil(N / (16 * t.wn * t.tn)) * Math.ceil(M / (16 * t.wm * t.tm)),
  };
}

/** Rows the INT8 GEMV takes at most (decode steps); more rows take the GEMM. */
export const INT8_GEMV_MAX_ROWS = 8;
const GEMV_COLS = 8; // output columns per workgroup, 32 lanes each

/**
 * The INT8 GEMV for decode steps (M ≤ INT8_GEMV_MAX_ROWS, per-channel weight scales): each
 * workgroup takes 8 output columns; the 32 lanes of a column read its weight row 16 codes at a
 * time (coalesced vec4 words) with the same words of every activation row, accumulate exact int32
 * dot4I8Packed sums per row and reduce them in workgroup memory; the epilogue as int8GemmKernel's.
 * Bindings and params as int8GemmKernel (subgroup-matrix form); workgroups(N): a flat count.
 */
export function int8GemvKernel(o: { bias: boolean; write: OutputWriter; extra: Record<string, Param['type']> }): Int8KernelSource & { workgroups: (N: number) => number } {
  const extra = Object.fromEntries(Object.entries(o.extra).map(([k, t]) => [k, { type: t, value: 0 }]));
  const params = { M: u32(0), N: u32(0), kWords: u32(0), ...extra };
  const e: Epilogue = { kind: 'dequant', groups: false, bias: o.bias, write: o.write };
  const R = INT8_GEMV_MAX_ROWS;
  const code = /* wgsl */ `
${bindings(e, 'vec4<u32>', params)}
var<workgroup> red: array<i32, ${R * GEMV_COLS * SUBGROUP}>; // [rows][columns][lanes]
@compute @workgroup_size(${SUBGROUP}, ${GEMV_COLS})
fn main(@builtin(local_invocation_id) l: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let n = (wg.y * nwg.x + wg.x) * ${GEMV_COLS}u + l.y;
  let lane = l.x;
  let kVec = params.kWords / 4u;
  var acc: array<i32, ${R}>;
  if (n < params.N) {
    for (var k = lane; k < kVec; k += ${SUBGROUP}u) {
      let wv = b[n * kVec + k];
      for (var m = 0u; m < ${R}u; m++) {
        if (m < params.M) {
          let xv = a[m * kVec + k];
          acc[m] += dot4I8Packed(xv.x, wv.x) + dot4I8Packed(xv.y, wv.y) + dot4I8Packed(xv.z, wv.z) + dot4I8Packed(xv.w, wv.w);
        }
      }
    }
  }
  for (var m = 0u; m < ${R}u; m++) { red[(m * ${GEMV_COLS}u + l.y) * ${SUBGROUP}u + lane] = acc[m]; }
  workgroupBarrier();
  for (var s = ${SUBGROUP / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var m = 0u; m < ${R}u; m++) {
        let i = (m * ${GEMV_COLS}u + l.y) * ${SUBGROUP}u + lane;
        red[i] += red[i + s];
      }
    }
    workgroupBarrier();
  }
  if (lane < params.M && n < params.N) {
    let m = lane;
    ${storeOne(e, 'm', 'n', `red[(m * ${GEMV_COLS}u + l.y) * ${SUBGROUP}u]`)}
  }
}`;
  return { name: 'int8-gemv', code, params: types(params), workgroups: (N) => Math.ceil(N / GEMV_COLS) };
}
