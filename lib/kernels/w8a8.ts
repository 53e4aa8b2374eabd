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
// Subgroup-matrix kernel: operands are i8 subgroup matrices loaded from i32 arrays (offsets and
// strides as matrixOps explains: the two builtin forms count them in different units); the
// workgroup stages a BM×BK tile of activations and a BN×BK tile of weights in workgroup memory
// (rows optionally padded against bank conflicts; zero-filled past M, N and K: sizes need not be
// tile multiples), WM×WN subgroups each own TM×TN
// 16×16 result tiles, and the epilogue goes through a per-subgroup 16×16 scratch in workgroup
// memory. The tile shape is a table (INT8_TILES) to sweep on the GPU (scripts/bench-kernels.ts).
import * as tf from '@tensorflow/tfjs';
import { deviceLimits, grid1d, paramsStruct, runKernel, subgroupMatrixConfigs, subgroupSizes, u32, type Param } from './gpu';
import type { PackedW8A8 } from './packed-linear';

/** One workgroup tiling of the subgroup-matrix GEMM. */
export interface Int8Tile {
  wm: number; // subgroups along M
  wn: number; // subgroups along N
  tm: number; // 16-row result tiles per subgroup along M
  tn: number; // 16-column result tiles per subgroup along N
  bk: number; // K depth staged per step (multiple of 32)
  pad: number; // bytes added to each staged row in workgroup memory (0 or a multiple of 16), against bank conflicts of the matrix loads
}

/** Tilings to sweep on the GPU (BM = 16·wm·tm, BN = 16·wn·tn; 32·wm·wn invocations per workgroup). */
export const INT8_TILES = {
  '64x64-sg4-k32': { wm: 2, wn: 2, tm: 2, tn: 2, bk: 32, pad: 0 },
  '128x64-sg8-k32': { wm: 4, wn: 2, tm: 2, tn: 2, bk: 32, pad: 0 },
  '128x128-sg4-k32': { wm: 2, wn: 2, tm: 4, tn: 4, bk: 32, pad: 0 },
  '128x128-sg8-k32': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32, pad: 0 },
  '128x128-sg8-k32-pad16': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 32, pad: 16 },
  '128x128-sg8-k64': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 64, pad: 0 },
  '128x128-sg8-k64-pad16': { wm: 4, wn: 2, tm: 2, tn: 4, bk: 64, pad: 16 },
  '128x256-sg8-k32': { wm: 2, wn: 4, tm: 4, tn: 4, bk: 32, pad: 0 },
  '256x128-sg8-k32': { wm: 4, wn: 2, tm: 4, tn: 4, bk: 32, pad: 0 },
  '256x128-sg8-k64-pad16': { wm: 4, wn: 2, tm: 4, tn: 4, bk: 64, pad: 16 },
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
  /** Subgroup-matrix tiling (default '128x128-sg8-k32'). */
  tile?: Int8TileName;
  /** How the matrix loads/stores name their layout: 'template' (subgroupMatrixLoad<T, row_major>(p, offset, stride), Dawn's current form)
   * or 'bool' (subgroupMatrixLoad<T>(p, offset, col_major, stride), the first form, deprecated in Dawn). */
  syntax?: MatrixSyntax;
}

export type MatrixSyntax = 'template' | 'bool';

export const INT8_DEFAULTS: Required<Int8Options> = {
  path: 'auto', // fastest kernel the device supports
  tile: '128x128-sg8-k32', // 8 subgroups × 2×4 tiles: a square tile with few registers per lane
  syntax: 'template', // Dawn warns that the bool form is deprecated
};

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

function actQuantCode(params: Record<string, Param>): string {
  return /* wgsl */ `
${paramsStruct(params)}
@group(0) @binding(0) var<storage, read_write> codes: array<u32>; // [M, kWords]
@group(0) @binding(1) var<storage, read_write> scales: array<f32>; // [M]
@group(0) @binding(2) var<storage, read> x: array<f32>; // [M, K]
@group(0) @binding(3) var<uniform> params: Params;
const WG = ${ACT_WG}u;
var<workgroup> red: array<f32, WG>;
@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let row = wg.y * nwg.x + wg.x;
  if (row >= params.M) { return; }
  let base = row * params.K;
  var m = 0.0;
  for (var k = li; k < params.K; k += WG) { m = max(m, abs(x[base + k])); }
  red[li] = m;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let scale = max(red[0], 1e-5) / ${QMAX}.0;
  if (li == 0u) { scales[row] = scale; }
  for (var w = li; w < params.kWords; w += WG) {
    var word = 0u;
    for (var j = 0u; j < 4u; j++) {
      let k = w * 4u + j;
      if (k < params.K) {
        let q = i32(clamp(round(x[base + k] / scale), -128.0, 127.0));
        word |= (bitcast<u32>(q) & 0xffu) << (8u * j);
      }
    }
    codes[row * params.kWords + w] = word;
  }
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
    code: actQuantCode(params),
    inputs: [x],
    outputs: [{ shape: [M, kWords], dtype: 'int32' }, { shape: [M], dtype: 'float32' }],
    params,
    workgroups: grid1d(M),
  });
  return { codes: codes as tf.Tensor2D, scales: scales as tf.Tensor1D };
}

// ---- 2. INT8 GEMM + epilogue ----

/** What the GEMM writes: fp32 y with the dequantizing epilogue, or the raw int32 accumulators (checks). */
type Epilogue = { kind: 'int32' } | { kind: 'dequant'; groups: boolean; bias: boolean };

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
  const b = e.bias ? ` + bias[${n}]` : '';
  return `y[${m} * params.N + ${n}] = f32(${acc}) * sx[${m}] * sw[${n}]${b};`;
}

// Portable kernel: each invocation computes a 4×4 block of outputs from packed words with
// dot4I8Packed; per-group scales fold each group's exact int32 sum into an fp32 accumulator.
const DOT4_WG = 8; // 8×8 invocations → 32×32 outputs per workgroup

function dot4Code(e: Epilogue, params: Record<string, Param>): string {
  const grouped = e.kind === 'dequant' && e.groups;
  const stores: string[] = [];
  for (let i = 0; i < 4; i++) {
    for (let j = 0; j < 4; j++) {
      const body = grouped
        ? `y[(m0 + ${i}u) * params.N + n0 + ${j}u] = f[${i * 4 + j}] * sx[m0 + ${i}u]${e.bias ? ` + bias[n0 + ${j}u]` : ''};`
        : storeOne(e, `(m0 + ${i}u)`, `(n0 + ${j}u)`, `acc[${i * 4 + j}]`);
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

/** Workgroup memory (bytes) a tiling needs: operand tiles plus one 16×16 int32 scratch per subgroup. */
export function tileSharedBytes(t: Int8Tile): number {
  const bm = 16 * t.wm * t.tm;
  const bn = 16 * t.wn * t.tn;
  return (bm + bn) * (t.bk + t.pad) + t.wm * t.wn * 16 * 16 * 4;
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

/** WGSL: stages rows [base, base+rows) × one K step of codes from `src` (vec4 words) into workgroup `dst` [rows, RS] (zeros past `limit` or K). */
function stageTile(dst: string, src: string, rows: string, base: string, limit: string): string {
  return `    for (var i = li; i < ${rows} * VPR; i += THREADS) {
      let r = i / VPR;
      let c = i % VPR;
      var v = vec4<u32>(0u);
      if (${base} + r < ${limit} && k0 + c < kVec) { v = ${src}[(${base} + r) * kVec + k0 + c]; }
      let o = r * (RS / 4u) + c * 4u;
      ${dst}[o] = bitcast<i32>(v.x); ${dst}[o + 1u] = bitcast<i32>(v.y); ${dst}[o + 2u] = bitcast<i32>(v.z); ${dst}[o + 3u] = bitcast<i32>(v.w);
    }`;
}

function subgroupMatrixCode(t: Int8Tile, e: Epilogue, params: Record<string, Param>, emulate: boolean, syntax: MatrixSyntax): string {
  const ops = matrixOps(syntax);
  const bm = 16 * t.wm * t.tm;
  const bn = 16 * t.wn * t.tn;
  const nsg = t.wm * t.wn;
  const threads = SUBGROUP * nsg;
  const vecPerRow = t.bk / 16; // vec4<u32> (16 codes) per staged row
  const decl: string[] = [];
  const mma: string[] = [];
  const store: string[] = [];
  const lOff = (i: number, kk: number) => `(rowBase + ${i * 16}u) * RS + ${kk * 32}u`; // i8 elements into As
  const rOff = (j: number, kk: number) => `(colBase + ${j * 16}u) * RS + ${kk * 32}u`; // i8 elements into Bs
  for (let i = 0; i < t.tm; i++) {
    for (let j = 0; j < t.tn; j++) decl.push(emulate ? `  var acc_${i}_${j}: array<i32, 8>;` : `  var acc_${i}_${j} = subgroup_matrix_result<i32, 16, 16>();`);
  }
  for (let kk = 0; kk < t.bk / 32; kk++) {
    mma.push('    {');
    if (emulate) {
      // Lane owns elements idx = lane·8 + q of each 16×16 tile (row idx / 16, column idx % 16).
      for (let i = 0; i < t.tm; i++) {
        for (let j = 0; j < t.tn; j++) {
          mma.push(`      for (var q = 0u; q < 8u; q++) {
        let idx = lane * 8u + q;
        for (var k = 0u; k < 32u; k++) { acc_${i}_${j}[q] += AsAt(${lOff(i, kk)} + (idx / 16u) * RS + k) * BsAt(${rOff(j, kk)} + (idx % 16u) * RS + k); }
      }`);
        }
      }
    } else {
      for (let i = 0; i < t.tm; i++) mma.push(`      let l_${i} = ${ops.load('subgroup_matrix_left<i8, 32, 16>', '&As', lOff(i, kk), false, 'RS')};`);
      for (let j = 0; j < t.tn; j++) mma.push(`      let r_${j} = ${ops.load('subgroup_matrix_right<i8, 16, 32>', '&Bs', rOff(j, kk), true, 'RS')};`);
      for (let i = 0; i < t.tm; i++) for (let j = 0; j < t.tn; j++) mma.push(`      acc_${i}_${j} = subgroupMatrixMultiplyAccumulate(l_${i}, r_${j}, acc_${i}_${j});`);
    }
    mma.push('    }');
  }
  for (let i = 0; i < t.tm; i++) {
    for (let j = 0; j < t.tn; j++) {
      const toScratch = emulate ? `  for (var q = 0u; q < 8u; q++) { Cs[sg * 256u + lane * 8u + q] = acc_${i}_${j}[q]; }` : `  ${ops.store('&Cs', 'sg * 256u', `acc_${i}_${j}`, '16u')};`;
      store.push(`${toScratch}
  workgroupBarrier();
  for (var q = 0u; q < 8u; q++) {
    let idx = lane * 8u + q;
    let m = m0 + rowBase + ${i * 16}u + idx / 16u;
    let n = n0 + colBase + ${j * 16}u + idx % 16u;
    if (m < params.M && n < params.N) { ${storeOne(e, 'm', 'n', 'Cs[sg * 256u + idx]')} }
  }
  workgroupBarrier();`);
    }
  }
  const header = emulate ? '' : 'enable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);';
  // Emulation: the signed i8 at element e of As / Bs (little-endian bytes of i32 words).
  const i8At = emulate
    ? ['As', 'Bs'].map((v) => `fn ${v}At(e: u32) -> i32 { return (${v}[e >> 2u] << (24u - 8u * (e & 3u))) >> 24u; }`).join('\n')
    : '';
  return /* wgsl */ `${header}
${bindings(e, 'vec4<u32>', params)}
const BM = ${bm}u;
const BN = ${bn}u;
const BK = ${t.bk}u;
const RS = ${t.bk + t.pad}u; // staged row stride in i8 elements
const VPR = ${vecPerRow}u; // vec4 words per staged row
const THREADS = ${threads}u;
var<workgroup> As: array<i32, ${(bm * (t.bk + t.pad)) / 4}>; // [BM, RS] i8 codes
var<workgroup> Bs: array<i32, ${(bn * (t.bk + t.pad)) / 4}>; // [BN, RS] i8 codes
var<workgroup> Cs: array<i32, ${nsg * 256}>; // one 16×16 accumulator tile per subgroup
${i8At}
@compute @workgroup_size(${threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let sg = li / ${SUBGROUP}u;
  let lane = li % ${SUBGROUP}u;
  let rowBase = (sg / ${t.wn}u) * ${16 * t.tm}u; // first row of this subgroup inside the tile
  let colBase = (sg % ${t.wn}u) * ${16 * t.tn}u;
  let m0 = wg.y * BM;
  let n0 = wg.x * BN;
  let kVec = params.kWords / 4u;
${decl.join('\n')}
  for (var k0 = 0u; k0 < kVec; k0 += VPR) {
${stageTile('As', 'a', 'BM', 'm0', 'params.M')}
${stageTile('Bs', 'b', 'BN', 'n0', 'params.N')}
    workgroupBarrier();
${mma.join('\n')}
    workgroupBarrier();
  }
${store.join('\n')}
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
    const t: Int8Tile = INT8_TILES[o.tile];
    if (!t) throw new Error(`unknown int8 tile '${o.tile}' (known: ${Object.keys(INT8_TILES).join(', ')})`);
    const limit = deviceLimits()?.maxComputeWorkgroupStorageSize ?? 0;
    if (tileSharedBytes(t) > limit) throw new Error(`int8 tile '${o.tile}' needs ${tileSharedBytes(t)} bytes of workgroup memory, the device allows ${limit}`);
    const params = { M: u32(M), N: u32(N), kWords: u32(kWords) };
    const [y] = runKernel({
      name: `int8-gemm-${path}-${o.tile}`,
      code: subgroupMatrixCode(t, epilogue, params, path === 'sm-emulated', o.syntax),
      inputs: [a, b, ...extra],
      outputs,
      params,
      workgroups: [Math.ceil(N / (16 * t.wn * t.tn)), Math.ceil(M / (16 * t.wm * t.tm)), 1],
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
