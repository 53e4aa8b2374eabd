// The executor's WGSL kernels. Shapes fixed by the model (widths, head counts) are baked into the
// source; what changes per step (token and row counts, attention splits) comes in `params`.
// Buffers bind in the order each generator documents, then the params uniform. Kernels that may
// need more than 65,535 workgroups in x spill into y (engine/gpu.ts spill) and recover the flat
// workgroup index as g.y · ng.x + g.x.
//
// Numerics follow the tfjs forward (lib/models/transformer.ts) operation by operation in fp32
// (RMSNorm (x·r)·w, LayerNorm with the centred variance, RoPE as x·cos + rotate_half(x)·sin with
// host fp32 tables, SiLU as x·sigmoid(x), log-softmax as (x − max) − log Σ exp(x − max)); sums
// differ only in order.
import { memoKernel, type Kernel } from './gpu';
import { onlineSoftmaxRows, REGISTER_KEYS, REGISTER_ROWS, registerAttentionShader, type RegisterLayout } from '../kernels/attention';

/** A WGSL f32 literal of x (rounded to fp32 as the host computes it). */
export const wgslFloat = (x: number) => {
  const s = String(Math.fround(x));
  return s.includes('.') || s.includes('e') ? s : `${s}.0`;
};
const f = wgslFloat;
const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

/** WGSL: the flat workgroup index of a spilled 2D grid. */
const FLAT = 'let wid = g.y * ng.x + g.x;';
const BUILTINS = '@builtin(workgroup_id) g: vec3u, @builtin(num_workgroups) ng: vec3u, @builtin(local_invocation_index) lid: u32';

/** Token embedding rows (+ OPT learned positions at pos + 2): x [T, E] ← table[id − rowStart] for ids in this row block.
 * Bindings: x (out), ids u32 [T], table [rows, E], then with positions: pos u32 [T], ptable [P, E]. */
function embedKernelSource(E: number, positions: boolean): Kernel {
  return {
    name: `embed-${E}${positions ? '-pos' : ''}`,
    params: { n: 'u32', rowStart: 'u32', rows: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, rowStart: u32, rows: u32, }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> table: array<f32>;
${positions ? '@group(0) @binding(3) var<storage, read> pos: array<u32>;\n@group(0) @binding(4) var<storage, read> ptable: array<f32>;\n@group(0) @binding(5) var<uniform> params: Params;' : '@group(0) @binding(3) var<uniform> params: Params;'}
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * 256u + lid;
  if (i >= params.n * ${E}u) { return; }
  let t = i / ${E}u;
  let e = i % ${E}u;
  let id = ids[t];
  if (id < params.rowStart || id >= params.rowStart + params.rows) { return; }
  var v = table[(id - params.rowStart) * ${E}u + e];
  ${positions ? `v = v + ptable[(pos[t] + 2u) * ${E}u + e];` : ''}
  x[i] = v;
}`,
  };
}

/** RMSNorm or LayerNorm of rows of x [*, D] into y [n, D]; with `gather`, row r reads x[rows[r]].
 * Bindings: y (out), x, w [D], then b [D] (LayerNorm), then rows u32 [n] (gather). One workgroup per row. */
function normKernelSource(D: number, kind: 'rms' | 'layer', eps: number, gather: boolean): Kernel {
  const WG = Math.min(256, Math.max(32, nextPow2(D)));
  const PER = Math.ceil(D / WG);
  let b = 3;
  const decl = [
    '@group(0) @binding(0) var<storage, read_write> y: array<f32>;',
    '@group(0) @binding(1) var<storage, read> x: array<f32>;',
    '@group(0) @binding(2) var<storage, read> w: array<f32>;',
    ...(kind === 'layer' ? [`@group(0) @binding(${b++}) var<storage, read> bias: array<f32>;`] : []),
    ...(gather ? [`@group(0) @binding(${b++}) var<storage, read> rows: array<u32>;`] : []),
    `@group(0) @binding(${b}) var<uniform> params: Params;`,
  ].join('\n');
  const reduce = `red[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) { red[lid] += red[lid + k]; }
    workgroupBarrier();
  }`;
  const body =
    kind === 'rms'
      ? `var s = 0.0;
  for (var i = 0u; i < ${PER}u; i++) { s += v[i] * v[i]; }
  ${reduce}
  let r = inverseSqrt(red[0] / ${f(D)} + ${f(eps)});
  for (var i = 0u; i < ${PER}u; i++) {
    let c = lid + i * ${WG}u;
    if (c < ${D}u) { y[row * ${D}u + c] = (v[i] * r) * w[c]; }
  }`
      : `var s = 0.0;
  for (var i = 0u; i < ${PER}u; i++) { s += v[i]; }
  ${reduce}
  let mean = red[0] / ${f(D)};
  workgroupBarrier();
  s = 0.0;
  for (var i = 0u; i < ${PER}u; i++) {
    let c = lid + i * ${WG}u;
    if (c < ${D}u) { v[i] = v[i] - mean; s += v[i] * v[i]; }
  }
  ${reduce.replace('red[lid] = s;', 'red[lid] = s;')}
  let r = inverseSqrt(red[0] / ${f(D)} + ${f(eps)});
  for (var i = 0u; i < ${PER}u; i++) {
    let c = lid + i * ${WG}u;
    if (c < ${D}u) { y[row * ${D}u + c] = (v[i] * r) * w[c] + bias[c]; }
  }`;
  return {
    name: `norm-${kind}-${D}${gather ? '-gather' : ''}`,
    params: { n: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, }
${decl}
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${FLAT}
  let row = wid;
  if (row >= params.n) { return; }
  let src = ${gather ? 'rows[row]' : 'row'} * ${D}u;
  var v: array<f32, ${PER}>;
  for (var i = 0u; i < ${PER}u; i++) {
    let c = lid + i * ${WG}u;
    v[i] = select(0.0, x[src + min(c, ${D - 1}u)], c < ${D}u);
  }
  ${body}
}`,
  };
}

/**
 * What a linear does with its result a = x·Wᵀ (+ b) at output element y[i]:
 *   store: y = a;  add: y = y + a (residual);  relu: y = max(a, 0);  silu-mul: y = silu(y) · a
 *   (y holds the gate projection: SwiGLU's act(gate(x)) · up(x)).
 */
export type Epilogue = 'store' | 'add' | 'relu' | 'silu-mul';

export function epilogueCode(e: Epilogue, idx: string, a: string): string {
  switch (e) {
    case 'store':
      return `y[${idx}] = ${a};`;
    case 'add':
      return `y[${idx}] = y[${idx}] + ${a};`;
    case 'relu':
      return `y[${idx}] = max(${a}, 0.0);`;
    case 'silu-mul':
      return `{ let gv = y[${idx}]; y[${idx}] = (gv * (1.0 / (1.0 + exp(-gv)))) * ${a}; }`;
  }
}

/**
 * The tiling of the fp32 GEMM: BM×BN outputs per workgroup, BK reduction columns staged, TM×TN per
 * thread. `vec`: the staged tiles are vec4 arrays and each thread owns TM/4 × TN/4 blocks of 4×4
 * outputs (rows (g·SY + ty)·4 + q, columns (h·SX + tx)·4 + q'), so one k step reads its TM + TN
 * values with (TM + TN)/4 vector loads from workgroup memory instead of TM + TN scalar ones.
 * `prefetch` (vec only): the next slice is read from global memory into registers while the
 * current one is computed (one workgroup buffer; the loads' latency overlaps the FMAs).
 * `pad` (vec only): the staged rows are padded by one vec4 and two neighbouring threads read a row's
 * K columns, so that a warp's transposed stores into workgroup memory fall in 32 distinct banks
 * (unpadded, four threads share each bank: the stores then take four times the cycles).
 * `warp` (vec only): the 32 threads of a warp take warp × (32 / warp) neighbouring (tx, ty) places
 * instead of one run of tx: with 8, a warp of a 128×64 tile (8×4 a thread) reads 32 rows and 32
 * columns of the staged slices a k step (256 bytes) instead of 16 rows and 64 columns (320 bytes).
 * Only the places move: the results are the same bit for bit.
 */
export interface GemmTile {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
  vec?: boolean;
  prefetch?: boolean;
  pad?: boolean;
  warp?: number;
}

/** Workgroup memory of a GEMM tiling (bytes): the staged x and W slices, with GemmTile.pad's extra vec4 a row. */
export function gemmSharedBytes(t: GemmTile): number {
  const pad = t.pad ? 8 : 0;
  return (t.BM + t.BN + pad) * t.BK * 4;
}

/** Tilings of the executor's GEMM; the executor's families pick among them (lib/engine/executor.ts GEMM_FAMILIES), scripts/bench-engine-gemm.ts times them all. */
export const GEMM_TILES = {
  small: { BM: 32, BN: 64, BK: 16, TM: 2, TN: 4 }, // 256 threads; few rows (short steps, narrow models)
  medium: { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 }, // 256 threads, 16 accumulators each
  wide: { BM: 64, BN: 128, BK: 16, TM: 4, TN: 8 }, // 256 threads, 32 accumulators each
  tall: { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4 }, // 256 threads, 32 accumulators each
  large: { BM: 128, BN: 128, BK: 16, TM: 8, TN: 8 }, // 256 threads, 64 accumulators each
  largeK8: { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8 }, // half the workgroup memory, twice the barriers
  // The same with vector loads from workgroup memory (GemmTile.vec).
  mediumV: { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, vec: true },
  tallV: { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4, vec: true },
  wideV: { BM: 64, BN: 128, BK: 16, TM: 4, TN: 8, vec: true },
  largeV: { BM: 128, BN: 128, BK: 16, TM: 8, TN: 8, vec: true },
  largeVK8: { BM: 128, BN: 128, BK: 8, TM: 8, TN: 8, vec: true },
  // tallV with register prefetch (GemmTile.prefetch): the 1.2B prefill at 11,031 tok/s against tallV's 8,697 in one H100 run (data/bench/forward.csv).
  tallVP: { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4, vec: true, prefetch: true },
  // tallVP with conflict-free staging (GemmTile.pad), the default: clock-held on the H100 at the 1.2B
  // prefill shapes 32.8 / 8.4 / 37.0 / 33.5 / 39.2 TFLOP/s (q/o, k/v, gate/up, down, LM head) against
  // tallVP's 29.7 / 7.9 / 34.6 / 21.2 / 36.1; the 1.2B prefill 12,693 against 11,015 tok/s (rows 5ca72dd).
  // Unrolling its BK steps (written out, constant offsets) was slower: 31.0 / 8.0 / 34.8 / 31.5 / 37.4.
  tallVPC: { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4, vec: true, prefetch: true, pad: true },
  // Candidate (bench-engine-gemm): tallVPC with square warp tiles (GemmTile.warp).
  tallVPCW: { BM: 128, BN: 64, BK: 16, TM: 8, TN: 4, vec: true, prefetch: true, pad: true, warp: 8 },
  // Candidate (bench-engine-gemm): the narrow outputs' 64×64 tiling (mediumV: k/v at 17 TFLOP/s
  // split 4 ways) with the padded staging and prefetch. Tried on the H100 (rows 5ca72dd, 5a410dd)
  // and removed, each slower than tallVPC at the prefill shapes: 32-deep slices (LM head 23.3 against
  // 39.2 TFLOP/s in one run), double-buffered staging with one barrier a slice (27.8; the 1.2B prefill
  // 9,394 against 12,648 tok/s), 8×8 a thread in 128×128 (256 threads) and 128×64 (128 threads)
  // tiles (35.4 and 30.6 against 39.1; the gate|up pair in one GEMM with the SwiGLU epilogue, which
  // needs such tiles, 32.2 against 37.8 for the two GEMMs), 64×64 with 128 threads of 8×4 (32.9).
  // One GEMM for q, k and v (unsplit, 192 workgroups of tallVPC) gave 25.2 TFLOP/s: 4.38 ms a step
  // against 4.1 ms for q, k and v apart. Every accumulator and prefetch register its own variable
  // instead of an array, with the stores written out (rows a4711c5, unsplit): tallVPC's tiling 31.5 /
  // 8.0 / 35.7 / 28.8 / 39.3 and 128×128 with 8×8 a thread 14.2 / 3.6 / 33.4 / 12.9 / 33.9 against
  // tallVPC's 33.0 / 8.4 / 37.0 / 33.6 / 39.2; the 1.2B prefill 12,343 and 11,895 against 12,463 tok/s.
  // tallVPC with 8-deep slices (half the prefetch registers and workgroup memory, twice the barriers;
  // rows b230721): 23.9 / 6.1 / 29.1 / 22.9 / 31.8 against 32.6 / 8.4 / 36.8 / 33.5 / 38.8 TFLOP/s, the
  // 1.2B prefill 10,088 against 11,716 tok/s.
  mediumVPC: { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4, vec: true, prefetch: true, pad: true },
} as const satisfies Record<string, GemmTile>;

/**
 * y [M, ldy] (columns colOff..colOff+N) ⟵epilogue⟵ x [M, K] · W [N, K]ᵀ (+ b [N]), tiled in
 * workgroup memory with register blocking (loads vec4 when K % 4 = 0).
 * Bindings: y (read-write), x, W, then b (bias). Params: M rows, ldy, colOff.
 * With splits > 1, the first pass of a split-K GEMM (splitK below): no epilogue, no bias binding.
 * `symmetric` (y = x·xᵀ: x bound as both x and W, M = N = ldy, store, no bias, one split): the
 * workgroups strictly above the diagonal return at once and the others also store each value at
 * its mirror, which is the skipped workgroup's value bit for bit (the same products, commutative,
 * summed in the same k order).
 */
function gemmKernelSource(K: number, N: number, t: GemmTile, e: Epilogue, bias: boolean, splits = 1, symmetric = false): Kernel {
  if (symmetric && (e !== 'store' || bias || splits !== 1)) throw new Error('gemm: the symmetric form stores x·xᵀ plainly (no epilogue, bias or split)');
  if (t.vec) return gemmVecKernel(K, N, t, e, bias, splits, symmetric);
  const { BM, BN, BK, TM, TN } = t;
  const sk = splitK(K, N, BK, splits, symmetric);
  const SX = BN / TN;
  const SY = BM / TM;
  const threads = SX * SY;
  const V = K % 4 === 0 ? 4 : 1;
  const vt = V === 4 ? 'vec4<f32>' : 'f32';
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const inner = [
    ...range(TM).map((i) => `a[${i}] = xs[k * ${BM}u + l.y + ${i * SY}u];`),
    ...range(TN).map((j) => `bb[${j}] = ws[k * ${BN}u + l.x + ${j * SX}u];`),
    ...range(TM).flatMap((i) => range(TN).map((j) => `acc[${i * TN + j}] = fma(a[${i}], bb[${j}], acc[${i * TN + j}]);`)),
  ].join('\n      ');
  if (t.prefetch || t.pad) throw new Error(`gemm tile ${BM}x${BN}: prefetch and pad need a vector tiling`);
  const load = (buf: string, S: string, R: number, row0: string, rows: string) => stageSlice({ buf, R, BK, K, V, threads, row0, rows, put: (k, v) => `${S}[${k} * ${R}u + r] = ${v};` });
  return {
    name: `gemm-${K}x${N}-${BM}x${BN}-${sk.name(e, bias)}`,
    params: { M: 'u32', ldy: 'u32', colOff: 'u32' },
    code: /* wgsl */ `
struct Params { M: u32, ldy: u32, colOff: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<${vt}>;
@group(0) @binding(2) var<storage, read> w: array<${vt}>;
${sk.bindings(bias)}
var<workgroup> xs: array<f32, ${BM * BK}>;
var<workgroup> ws: array<f32, ${BN * BK}>;
@compute @workgroup_size(${SX}, ${SY}, 1)
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u) {
  let row0 = g.y * ${BM}u;
  let col0 = g.x * ${BN}u;
  ${sk.skip(BM)}
  var acc: array<f32, ${TM * TN}>;
  var a: array<f32, ${TM}>;
  var bb: array<f32, ${TN}>;
  ${sk.loop}
    ${load('x', 'xs', BM, 'row0', 'params.M')}
    ${load('w', 'ws', BN, 'col0', `${N}u`)}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      ${inner}
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let r = row0 + l.y + i * ${SY}u;
    for (var j = 0u; j < ${TN}u; j++) {
      let c = col0 + l.x + j * ${SX}u;
      if (r < params.M && c < ${N}u) {
        ${sk.store(e, 'r', 'c', `acc[i * ${TN}u + j]`, bias)}
      }
    }
  }
}`,
  };
}

/** gemmKernel with GemmTile.vec: vec4 tiles in workgroup memory, 4×4 output blocks per thread. */
function gemmVecKernel(K: number, N: number, t: GemmTile, e: Epilogue, bias: boolean, splits: number, symmetric: boolean): Kernel {
  const { BM, BN, BK, TM, TN } = t;
  const sk = splitK(K, N, BK, splits, symmetric);
  if (TM % 4 !== 0 || TN % 4 !== 0 || BM % 4 !== 0 || BN % 4 !== 0) throw new Error(`gemm tile ${BM}x${BN}: vector tiles need TM, TN, BM and BN multiples of 4`);
  const SX = BN / TN;
  const SY = BM / TM;
  const threads = SX * SY;
  const places = threadPlaces(SX, SY, t.warp);
  const GM = TM / 4; // 4-row groups per thread
  const GN = TN / 4; // 4-column groups per thread
  const V = K % 4 === 0 ? 4 : 1;
  const vt = V === 4 ? 'vec4<f32>' : 'f32';
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  // Row strides of the staged slices in vec4s (GemmTile.pad: one more).
  const LX = BM / 4 + (t.pad ? 1 : 0);
  const LW = BN / 4 + (t.pad ? 1 : 0);
  const inner = [
    ...range(GM).map((g) => `let a${g} = xs[k * ${LX}u + ${g * SY}u + ty];`),
    ...range(GN).map((h) => `let b${h} = ws[k * ${LW}u + ${h * SX}u + tx];`),
    ...range(GM).flatMap((g) => range(4).flatMap((q) => range(GN).map((h) => `acc[${(g * 4 + q) * GN + h}] = fma(vec4<f32>(a${g}[${q}]), b${h}, acc[${(g * 4 + q) * GN + h}]);`))),
  ].join('\n      ');
  // Global → workgroup, stored transposed ([k][row], 4 rows a vec4).
  const stage = { BK, K, V, threads, pairs: !!t.pad && V === 4, put: (S: string, L: number) => (k: string, v: string) => `${S}[${k} * ${L}u + r / 4u][r % 4u] = ${v};` };
  const sx = { ...stage, buf: 'x', R: BM, row0: 'row0', rows: 'params.M', put: stage.put('xs', LX) };
  const sw = { ...stage, buf: 'w', R: BN, row0: 'col0', rows: `${N}u`, put: stage.put('ws', LW) };
  // Without prefetch: stage the slice at k0, then compute. With it: registers hold the slice at k0
  // (read during the previous slice's FMAs), are stored, and the next slice's reads are issued.
  const px = t.prefetch ? stageRegs({ ...sx, tag: 'px' }) : null;
  const pw = t.prefetch ? stageRegs({ ...sw, tag: 'pw' }) : null;
  const before = px && pw ? `${px.decl}\n  ${pw.decl}\n  ${px.fetch(sk.start)}\n  ${pw.fetch(sk.start)}` : '';
  const stageNow = px && pw ? `${px.put}\n    ${pw.put}` : `${stageSlice(sx)}\n    ${stageSlice(sw)}`;
  const fetchNext = px && pw ? `${px.fetch(`k0 + ${BK}u`)}\n    ${pw.fetch(`k0 + ${BK}u`)}` : '';
  const stores = range(GM).flatMap((g) =>
    range(4).flatMap((q) =>
      range(GN).map(
        (h) => `{
    let r = row0 + (${g * SY}u + ty) * 4u + ${q}u;
    let c0 = col0 + (${h * SX}u + tx) * 4u;
    let o = acc[${(g * 4 + q) * GN + h}];
    for (var j = 0u; j < 4u; j++) {
      let c = c0 + j;
      if (r < params.M && c < ${N}u) {
        ${sk.store(e, 'r', 'c', 'o[j]', bias)}
      }
    }
  }`,
      ),
    ),
  );
  return {
    name: `gemmv-${K}x${N}-${BM}x${BN}k${BK}${t.pad ? 'c' : ''}${t.warp ? `w${t.warp}` : ''}-${sk.name(e, bias)}`,
    params: { M: 'u32', ldy: 'u32', colOff: 'u32' },
    code: /* wgsl */ `
struct Params { M: u32, ldy: u32, colOff: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<${vt}>;
@group(0) @binding(2) var<storage, read> w: array<${vt}>;
${sk.bindings(bias)}
var<workgroup> xs: array<vec4<f32>, ${LX * BK}>; // [BK][LX]: x transposed, 4 rows a vector (LX ≥ BM / 4)
var<workgroup> ws: array<vec4<f32>, ${LW * BK}>; // [BK][LW]
@compute @workgroup_size(${threads})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u) {
  ${places}
  let row0 = g.y * ${BM}u;
  let col0 = g.x * ${BN}u;
  ${sk.skip(BM)}
  var acc: array<vec4<f32>, ${(TM * TN) / 4}>; // [TM rows][TN / 4 column groups]
  ${before}
  ${sk.loop}
    ${stageNow}
    workgroupBarrier();
    ${fetchNext}
    for (var k = 0u; k < ${BK}u; k++) {
      ${inner}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`,
  };
}

/**
 * WGSL for a vector tiling's thread place (tx of SX, ty of SY) from lid: a run of tx, or with
 * `warp` (GemmTile.warp) each 32 threads a warp × (32 / warp) block of places.
 */
function threadPlaces(SX: number, SY: number, warp?: number): string {
  if (!warp) return `let tx = lid % ${SX}u;\n  let ty = lid / ${SX}u;`;
  const wy = 32 / warp;
  if (!Number.isInteger(wy) || SX % warp !== 0 || SY % wy !== 0) throw new Error(`gemm: warp ${warp} does not tile ${SX}×${SY} thread places`);
  return `let lane = lid % 32u;
  let wp = lid / 32u;
  let tx = (wp % ${SX / warp}u) * ${warp}u + lane % ${warp}u;
  let ty = (wp / ${SX / warp}u) * ${wy}u + lane / ${warp}u;`;
}

/**
 * Split-K: with splits > 1 the GEMM's K range is cut into `splits` chunks (a multiple of BK each,
 * the last one shorter), workgroup z of a (N/BN, M/BM, splits) grid sums chunk z only and stores
 * its raw partial sums in y = partials [splits, M, N] (params ldy and colOff unused); gemmSplitReduceKernel then adds the chunks,
 * the bias and the epilogue. Few-row GEMMs (prefill, narrow k/v projections) get `splits` times the
 * workgroups. The pieces both GEMM kernels put in their WGSL: the K loop header, the bias and
 * params bindings, the store of one output value (with its mirror in the symmetric form), the
 * symmetric form's early return above the diagonal, and the name suffix.
 */
function splitK(K: number, N: number, BK: number, splits: number, symmetric = false) {
  if (!Number.isInteger(splits) || splits < 1) throw new Error(`gemm: splits must be a positive integer, got ${splits}`);
  const chunk = splitChunk(K, BK, splits);
  return {
    start: splits === 1 ? '0u' : `(g.z * ${chunk}u)`,
    skip: (BM: number) => (symmetric ? `if (col0 >= row0 + ${BM}u) { return; } // strictly above the diagonal: mirrored by the workgroup below it` : ''),
    loop:
      splits === 1
        ? `for (var k0 = 0u; k0 < ${K}u; k0 += ${BK}u) {`
        : `let kEnd = min(${K}u, (g.z + 1u) * ${chunk}u);
  for (var k0 = g.z * ${chunk}u; k0 < kEnd; k0 += ${BK}u) {`,
    bindings: (bias: boolean) =>
      bias && splits === 1 ? '@group(0) @binding(3) var<storage, read> b: array<f32>;\n@group(0) @binding(4) var<uniform> params: Params;' : '@group(0) @binding(3) var<uniform> params: Params;',
    store: (e: Epilogue, r: string, c: string, v: string, bias: boolean) =>
      splits === 1
        ? epilogueCode(e, `${r} * params.ldy + params.colOff + ${c}`, `${v}${bias ? ` + b[${c}]` : ''}`) + (symmetric ? ` y[${c} * params.ldy + ${r}] = ${v};` : '')
        : `y[(g.z * params.M + ${r}) * ${N}u + ${c}] = ${v};`,
    name: (e: Epilogue, bias: boolean) => (splits === 1 ? `${e}${bias ? '-b' : ''}${symmetric ? '-sym' : ''}` : `split${splits}`),
  };
}

/** K columns per split-K chunk: a multiple of BK, so that a staged slice never crosses two chunks. */
export function splitChunk(K: number, BK: number, splits: number): number {
  return Math.ceil(K / splits / BK) * BK;
}

/**
 * The second pass of a split-K GEMM: y [M, ldy] (columns colOff..colOff+N) ⟵epilogue⟵ Σ_z
 * partials [z, M, N] (+ b [N]), one thread an output (ceil(M·N / 256) workgroups). Bindings: y,
 * partials, then b. Params: M, ldy, colOff.
 */
function gemmSplitReduceKernelSource(N: number, splits: number, e: Epilogue, bias: boolean): Kernel {
  const WG = 256;
  return {
    name: `gemm-reduce-${N}-s${splits}-${e}${bias ? '-b' : ''}`,
    params: { M: 'u32', ldy: 'u32', colOff: 'u32' },
    code: /* wgsl */ `
struct Params { M: u32, ldy: u32, colOff: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> part: array<f32>;
${bias ? '@group(0) @binding(2) var<storage, read> b: array<f32>;\n@group(0) @binding(3) var<uniform> params: Params;' : '@group(0) @binding(2) var<uniform> params: Params;'}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * ${WG}u + lid;
  if (i >= params.M * ${N}u) { return; }
  let r = i / ${N}u;
  let c = i % ${N}u;
  var a = 0.0;
  for (var z = 0u; z < ${splits}u; z++) { a += part[z * params.M * ${N}u + i]; }
  ${epilogueCode(e, 'r * params.ldy + params.colOff + c', `a${bias ? ' + b[c]' : ''}`)}
}`,
  };
}

interface Stage { buf: string; R: number; BK: number; K: number; V: number; threads: number; row0: string; rows: string; put: (k: string, v: string) => string; pairs?: boolean }

/**
 * WGSL of element e's row r and first column kk in a staged slice. Neighbouring threads read the K
 * columns of a row; with `pairs` (GemmTile.pad), two threads a row, so that a warp covers 16 rows
 * and its transposed stores hit distinct banks of the padded rows.
 */
function stageIndex(o: Stage, e: string): string {
  const Q = o.BK / o.V; // loads a row
  if (o.pairs) {
    if (Q % 2 !== 0 || o.R % 16 !== 0) throw new Error(`gemm staging: pairs need an even number of loads a row and rows in 16s (BK ${o.BK}, ${o.R} rows)`);
    return `let r = (${e} / 2u) % ${o.R}u;\n        let kk = ((${e} / ${2 * o.R}u) * 2u + ${e} % 2u) * ${o.V}u;`;
  }
  return `let r = ${e} / ${Q}u;\n        let kk = (${e} % ${Q}u) * ${o.V}u;`;
}

/**
 * WGSL staging the BK-deep slice at k0 of R rows (from row0; zeros at and past `rows` and K) of
 * `buf` [rows, K] into workgroup memory, V consecutive k a load: put(k, value) stores element
 * (k, r) of the slice.
 */
function stageSlice(o: Stage): string {
  const { buf, R, BK, K, V, threads } = o;
  return `
    for (var i = 0u; i < ${Math.ceil((R * BK) / V / threads)}u; i++) {
      let e = lid + i * ${threads}u;
      if (e < ${(R * BK) / V}u) {
        ${stageIndex(o, 'e')}
        let gr = ${o.row0} + r;
        var v = ${V === 4 ? 'vec4<f32>' : 'f32'}(0.0);
        if (gr < ${o.rows} && k0 + kk < ${K}u) { v = ${buf}[(gr * ${K}u + k0 + kk) / ${V}u]; }
        ${V === 4 ? [0, 1, 2, 3].map((c) => o.put(`(kk + ${c}u)`, `v[${c}]`)).join(' ') : o.put('kk', 'v')}
      }
    }`;
}

/**
 * stageSlice in two parts, for GemmTile.prefetch: `fetch(k)` reads the slice at column k into the
 * registers `tag` (zeros past the rows and K), `put` stores them into workgroup memory.
 */
function stageRegs(o: Stage & { tag: string }): { decl: string; fetch: (k: string) => string; put: string } {
  const { buf, R, BK, K, V, threads, tag } = o;
  const total = (R * BK) / V;
  const n = Math.ceil(total / threads);
  const vt = V === 4 ? 'vec4<f32>' : 'f32';
  const each = (f: (i: number, e: string, guard: string) => string) =>
    Array.from({ length: n }, (_, i) => f(i, `(lid + ${i * threads}u)`, (i + 1) * threads > total ? `(lid + ${i * threads}u) < ${total}u` : 'true')).join('\n    ');
  const puts = V === 4 ? [0, 1, 2, 3].map((c) => o.put(`(kk + ${c}u)`, `v[${c}]`)).join(' ') : o.put('kk', 'v');
  return {
    decl: `var ${tag}: array<${vt}, ${n}>;`,
    fetch: (k) =>
      each((i, e, guard) => `{
        ${stageIndex(o, e)}
        let gr = ${o.row0} + r;
        ${tag}[${i}] = ${vt}(0.0);
        if (${guard} && gr < ${o.rows} && ${k} + kk < ${K}u) { ${tag}[${i}] = ${buf}[(gr * ${K}u + ${k} + kk) / ${V}u]; }
      }`),
    put: each((i, e, guard) => `if (${guard}) {
        ${stageIndex(o, e)}
        let v = ${tag}[${i}];
        ${puts}
      }`),
  };
}

/** Rows a GEMV dispatch handles at most (decode steps); more rows take the GEMM. */
export const GEMV_MAX_ROWS = 8;

/**
 * GEMV for M ≤ 8 rows (decode): each workgroup computes 8 output columns; 32 threads per column
 * read its weight row with coalesced (vec4 when K % 4 = 0) loads, each accumulating M partial
 * sums, reduced in workgroup memory. Bindings and params as gemmKernel.
 */
function gemvKernelSource(K: number, N: number, e: Epilogue, bias: boolean): Kernel {
  const COLS = 8;
  const LANES = 32;
  const V = K % 4 === 0 ? 4 : 1;
  const vt = V === 4 ? 'vec4<f32>' : 'f32';
  const KV = K / V;
  const M = GEMV_MAX_ROWS;
  return {
    name: `gemv-${K}x${N}-${e}${bias ? '-b' : ''}`,
    params: { M: 'u32', ldy: 'u32', colOff: 'u32' },
    code: /* wgsl */ `
struct Params { M: u32, ldy: u32, colOff: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<${vt}>;
@group(0) @binding(2) var<storage, read> w: array<${vt}>;
${bias ? '@group(0) @binding(3) var<storage, read> b: array<f32>;\n@group(0) @binding(4) var<uniform> params: Params;' : '@group(0) @binding(3) var<uniform> params: Params;'}
var<workgroup> red: array<f32, ${COLS * LANES * M}>;
@compute @workgroup_size(${LANES}, ${COLS}, 1)
fn main(@builtin(local_invocation_id) l: vec3u, ${BUILTINS}) {
  ${FLAT}
  let c = wid * ${COLS}u + l.y;
  let lane = l.x;
  var acc: array<f32, ${M}>;
  if (c < ${N}u) {
    for (var k = lane; k < ${KV}u; k += ${LANES}u) {
      let wv = w[c * ${KV}u + k];
      for (var m = 0u; m < ${M}u; m++) {
        if (m < params.M) { acc[m] += ${V === 4 ? `dot(x[m * ${KV}u + k], wv)` : `x[m * ${KV}u + k] * wv`}; }
      }
    }
  }
  for (var m = 0u; m < ${M}u; m++) { red[(m * ${COLS}u + l.y) * ${LANES}u + lane] = acc[m]; }
  workgroupBarrier();
  for (var s = ${LANES / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var m = 0u; m < ${M}u; m++) {
        let o = (m * ${COLS}u + l.y) * ${LANES}u;
        red[o + lane] += red[o + lane + s];
      }
    }
    workgroupBarrier();
  }
  if (lane < params.M && c < ${N}u) {
    let r = lane;
    let idx = r * params.ldy + params.colOff + c;
    let a = red[(r * ${COLS}u + l.y) * ${LANES}u]${bias ? ' + b[c]' : ''};
    ${epilogueCode(e, 'idx', 'a')}
  }
}`,
  };
}

/** Workgroups of a GEMV over N columns (8 per workgroup, spilled into y). */
export const gemvGroups = (N: number) => Math.ceil(N / 8);

/** How the RoPE/KV kernel reads a head: HF LLaMA's halves over the whole head (default), or GLM's
 * (2j, 2j + 1) pairs of which the first `rotated` rotate; `fused`: q, k and v are the column ranges
 * of one [T, (H + 2·KV)·hd] projection (GLM's query_key_value) instead of three buffers. */
export interface RopeLayout {
  pairs: 'halves' | 'interleaved';
  rotated: number; // rotated pairs per head (= the cos/sin tables' width)
  fused: boolean;
}

/**
 * RoPE on q and k, and the new keys and values written to the KV store at row kvRow[t] + pos[t].
 * q [T, H·hd] (rotated in place; fused: written from the projection), k/v [T, KV·hd] (projections;
 * fused: both bind the one [T, (H + 2·KV)·hd] projection), store [rows, KV·hd]; cos/sin
 * [P, rotated] fp32 tables (positions × frequencies). Without rope: only the copy.
 * Bindings: kStore (rw), vStore (rw), k, v, pos u32, kvRow u32, then q (rw), cos, sin (rope).
 */
function ropeKvKernelSource(H: number, KVH: number, hd: number, rope: boolean, layout: RopeLayout = { pairs: 'halves', rotated: hd / 2, fused: false }): Kernel {
  const half = hd / 2;
  const slots = (rope ? H : 0) + 2 * KVH; // q heads (rotated in place), k heads, v heads
  const kv0 = rope ? H : 0;
  if (layout.fused && !rope) throw new Error('ropeKvKernel: a fused q|k|v projection needs RoPE (it writes q)');
  const rot = layout.rotated;
  // Pair j of one head: dimensions (ia, ib), rotated (x·cos + rotate(x)·sin) when j < rot, else copied.
  const [ia, ib] = layout.pairs === 'halves' ? ['j', `j + ${half}u`] : ['2u * j', '2u * j + 1u'];
  const pair = (src: string, dst: string, rotate: boolean) =>
    rotate
      ? `let a = ${src}[base + ${ia}];
    let b = ${src}[base + ${ib}];
    var cs = 1.0;
    var sn = 0.0;
    if (j < ${rot}u) {
      cs = cosT[p * ${rot}u + j];
      sn = sinT[p * ${rot}u + j];
    }
    ${dst}[dbase + ${ia}] = a * cs + (-b) * sn;
    ${dst}[dbase + ${ib}] = b * cs + a * sn;`
      : `${dst}[dbase + ${ia}] = ${src}[base + ${ia}];
    ${dst}[dbase + ${ib}] = ${src}[base + ${ib}];`;
  const ropeBindings = rope
    ? `@group(0) @binding(6) var<storage, read_write> q: array<f32>;
@group(0) @binding(7) var<storage, read> cosT: array<f32>;
@group(0) @binding(8) var<storage, read> sinT: array<f32>;
@group(0) @binding(9) var<uniform> params: Params;`
    : '@group(0) @binding(6) var<uniform> params: Params;';
  // Source offsets of head `slot` (q) and KV head h (k, v) of token t.
  const N = (H + 2 * KVH) * hd;
  const qSrc = layout.fused ? `t * ${N}u + slot * ${hd}u` : `(t * ${H}u + slot) * ${hd}u`;
  const kSrc = layout.fused ? `t * ${N}u + ${H * hd}u + h * ${hd}u` : `(t * ${KVH}u + h) * ${hd}u`;
  const vSrc = layout.fused ? `t * ${N}u + ${(H + KVH) * hd}u + h * ${hd}u` : kSrc;
  return {
    name: `rope-kv-${H}-${KVH}-${hd}${rope ? '' : '-norope'}${layout.pairs === 'halves' ? '' : `-pairs${rot}`}${layout.fused ? '-fused' : ''}`,
    params: { n: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read_write> ks: array<f32>;
@group(0) @binding(1) var<storage, read_write> vs: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> pos: array<u32>;
@group(0) @binding(5) var<storage, read> kvRow: array<u32>;
${ropeBindings}
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * 256u + lid;
  if (i >= params.n * ${slots * half}u) { return; }
  let t = i / ${slots * half}u;
  let slot = (i / ${half}u) % ${slots}u;
  let j = i % ${half}u;
  let p = pos[t];
  let srow = kvRow[t] + p;
  ${
    rope
      ? `if (slot < ${H}u) {
    let base = ${qSrc};
    let dbase = (t * ${H}u + slot) * ${hd}u;
    ${pair(layout.fused ? 'k' : 'q', 'q', true)}
    return;
  }`
      : ''
  }
  if (slot < ${kv0 + KVH}u) {
    let h = slot - ${kv0}u;
    let base = ${kSrc};
    let dbase = (srow * ${KVH}u + h) * ${hd}u;
    ${pair('k', 'ks', rope)}
  } else {
    let h = slot - ${kv0 + KVH}u;
    let base = ${vSrc};
    let dbase = (srow * ${KVH}u + h) * ${hd}u;
    ${pair('v', 'vs', false)}
  }
}`,
  };
}

/** silu(gate) · up of a fused [T, 2F] gate|up projection into y [T, F] (GLM's dense_h_to_4h).
 * Bindings: y (out), s [T, 2F]. */
function swigluSplitKernelSource(F: number): Kernel {
  return {
    name: `swiglu-split-${F}`,
    params: { n: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> s: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * 256u + lid;
  if (i >= params.n * ${F}u) { return; }
  let t = i / ${F}u;
  let j = i % ${F}u;
  let gv = s[t * ${2 * F}u + j];
  y[i] = (gv * (1.0 / (1.0 + exp(-gv)))) * s[t * ${2 * F}u + ${F}u + j];
}`,
  };
}

/** Attention tiling: query tokens per block (× rep heads = rows), keys staged per step, threads. */
export interface AttnTile {
  rows: number; // query rows (token × head of a KV group) per workgroup, at most
  BKV: number;
  WG: number;
  /** The register-blocked kernel of lib/kernels/attention.ts (rows = BKV = 32, WG = 64, hd % 32 = 0). */
  registers?: boolean;
}

/** The register-blocked tiling (lib/kernels/attention.ts): REGISTER_ROWS rows (of REGISTER_ROWS / rep tokens), REGISTER_KEYS keys a step. */
export const REGISTER_ATTN_TILE: AttnTile = { rows: REGISTER_ROWS, BKV: REGISTER_KEYS, WG: (REGISTER_ROWS / 4) * (REGISTER_KEYS / 4), registers: true };

/** The executor's layout of the register-blocked attention kernel: ragged token blocks, q and out [T, H·hd], the KV store [rows, KV·hd], partials [splits, nb, KV, REGISTER_ROWS, ·]. */
function executorRegisterLayout(H: number, KVH: number, hd: number): RegisterLayout {
  const rep = H / KVH;
  const HD4 = hd / 4;
  const row = (r: string) => `((first + ${r} / ${rep}u) * ${H}u + kvh * ${rep}u + ${r} % ${rep}u) * ${HD4}u`; // local row r's vec4s in q and out
  return {
    decls: (b0) => `struct Params { nb: u32, tilesPerSplit: u32, scale: f32, }
@group(0) @binding(${b0}) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(${b0 + 1}) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(${b0 + 2}) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(${b0 + 3}) var<storage, read> blocks: array<u32>;
@group(0) @binding(${b0 + 4}) var<uniform> params: Params;
${KEY_ROW}`,
    setup: `let blk = g.x;
  let kvh = g.y;
  ${BLOCK_FIELDS}
  let rows = count * ${rep}u;
  let scale = params.scale;
  let kStart = g.z * params.tilesPerSplit * ${REGISTER_KEYS}u;
  let kEnd = min(pos0 + count, kStart + params.tilesPerSplit * ${REGISTER_KEYS}u); // keys 0 .. pos0 + count - 1 are visible to the block's last token`,
    q: row,
    kv: (p) => `(keyRow(${p}, kvBase, pfxBase, pfxLen) * ${KVH}u + kvh) * ${HD4}u`,
    kvLoadable: (p) => `${p} < kEnd`,
    visible: (r, p) => `${p} <= pos0 + ${r} / ${rep}u`,
    out: row,
    partial: (r) => `((g.z * params.nb + blk) * ${KVH}u + kvh) * ${REGISTER_ROWS}u + ${r}`,
  };
}

/**
 * Words per attention block: first token, count, KV row of the sequence's position 0, position of
 * the first token, and a shared prefix: the KV row of its position 0 and its length (positions
 * below it read the prefix's rows: contexts scored once for several continuations; 0 = none).
 */
export const BLOCK_WORDS = 6;

// WGSL: attention block blk's words (BLOCK_WORDS), in both attention kernels.
const BLOCK_FIELDS = `let first = blocks[blk * ${BLOCK_WORDS}u];
  let count = blocks[blk * ${BLOCK_WORDS}u + 1u];
  let kvBase = blocks[blk * ${BLOCK_WORDS}u + 2u];
  let pos0 = blocks[blk * ${BLOCK_WORDS}u + 3u];
  let pfxBase = blocks[blk * ${BLOCK_WORDS}u + 4u];
  let pfxLen = blocks[blk * ${BLOCK_WORDS}u + 5u];`;

// The KV row of key position p: a shared prefix's (another sequence's rows) below pfxLen, else the sequence's own.
const KEY_ROW = 'fn keyRow(p: u32, kvBase: u32, pfxBase: u32, pfxLen: u32) -> u32 { return select(kvBase + p, pfxBase + p, p < pfxLen); }';

/**
 * Causal attention over ragged sequences, grouped-query, with the keys in a KV store. A block is
 * `count` consecutive tokens of one sequence (blocks u32 [nb, BLOCK_WORDS]); a workgroup takes one block × one KV
 * head × one key range (split), rows = count·rep (query row r: token r / rep, head kvh·rep + r % rep),
 * and runs an online softmax over key tiles staged in workgroup memory. With splits, it writes
 * partial (m, l, o) for attnMergeKernel; else the output o [T, H·hd] directly.
 * Bindings: out (or po, ml), q [T, H·hd], kStore, vStore [rows, KV·hd], blocks.
 */
function attentionKernelSource(H: number, KVH: number, hd: number, t: AttnTile, split: boolean): Kernel {
  if (t.registers) {
    const params = { nb: 'u32', tilesPerSplit: 'u32', scale: 'f32' } as const;
    return { name: `attn-${H}-${KVH}-${hd}-reg32${split ? '-split' : ''}`, params, code: registerAttentionShader(hd, executorRegisterLayout(H, KVH, hd), split) };
  }
  const rep = H / KVH;
  const R = t.rows;
  const { BKV, WG } = t;
  const per = (n: number) => Math.ceil(n / WG);
  const each = (n: number, body: string) => `for (var i = 0u; i < ${per(n)}u; i++) {
    let e = lid + i * ${WG}u;
    if (e < ${n}u) {
      let r = e / ${hd}u;
      let d = e % ${hd}u;
      ${body}
    }
  }`;
  const KS = hd + 1;
  const PS = BKV + 1;
  const outs = split
    ? `@group(0) @binding(0) var<storage, read_write> po: array<f32>; // [splits, nb, KV, R, hd]
@group(0) @binding(1) var<storage, read_write> ml: array<f32>; // [splits, nb, KV, R, 2]`
    : `@group(0) @binding(0) var<storage, read_write> out: array<f32>; // [T, H·hd]`;
  const b0 = split ? 2 : 1;
  const write = split
    ? `let base = ((g.z * params.nb + blk) * ${KVH}u + kvh) * ${R}u + r;
        po[base * ${hd}u + d] = acc[i];
        if (d == 0u) { ml[base * 2u] = ms[r]; ml[base * 2u + 1u] = ls[r]; }`
    : `let tok = first + r / ${rep}u;
        let h = kvh * ${rep}u + r % ${rep}u;
        out[(tok * ${H}u + h) * ${hd}u + d] = acc[i] / ls[r];`;
  return {
    name: `attn-${H}-${KVH}-${hd}-r${R}-kv${BKV}${split ? '-split' : ''}`,
    params: { nb: 'u32', tilesPerSplit: 'u32', scale: 'f32' },
    code: /* wgsl */ `
struct Params { nb: u32, tilesPerSplit: u32, scale: f32, }
${outs}
@group(0) @binding(${b0}) var<storage, read> q: array<f32>;
@group(0) @binding(${b0 + 1}) var<storage, read> ks: array<f32>;
@group(0) @binding(${b0 + 2}) var<storage, read> vs: array<f32>;
@group(0) @binding(${b0 + 3}) var<storage, read> blocks: array<u32>;
@group(0) @binding(${b0 + 4}) var<uniform> params: Params;
const NEG = -3.0e38;
var<workgroup> qs: array<f32, ${R * hd}>;
var<workgroup> kvt: array<f32, ${BKV * KS}>;
var<workgroup> ps: array<f32, ${R * PS}>;
var<workgroup> ms: array<f32, ${R}>;
var<workgroup> ls: array<f32, ${R}>;
var<workgroup> as_: array<f32, ${R}>;
${KEY_ROW}
@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u) {
  let blk = g.x;
  let kvh = g.y;
  ${BLOCK_FIELDS}
  let rows = count * ${rep}u;
  ${each(R * hd, `var xq = 0.0;
      if (r < rows) { xq = q[((first + r / ${rep}u) * ${H}u + kvh * ${rep}u + r % ${rep}u) * ${hd}u + d] * params.scale; }
      qs[e] = xq;`)}
  if (lid < ${R}u) { ms[lid] = NEG; ls[lid] = 0.0; }
  let keys = pos0 + count; // keys 0 .. pos0 + count - 1 are visible to the block's last token
  let kStart = g.z * params.tilesPerSplit * ${BKV}u;
  let kEnd = min(keys, kStart + params.tilesPerSplit * ${BKV}u);
  var acc: array<f32, ${per(R * hd)}>;
  workgroupBarrier();
  for (var kt = kStart; kt < kEnd; kt += ${BKV}u) {
    ${each(BKV * hd, `var xk = 0.0;
      if (kt + r < kEnd) { xk = ks[(keyRow(kt + r, kvBase, pfxBase, pfxLen) * ${KVH}u + kvh) * ${hd}u + d]; }
      kvt[r * ${KS}u + d] = xk;`)}
    workgroupBarrier();
    for (var i = 0u; i < ${per(R * BKV)}u; i++) {
      let e = lid + i * ${WG}u;
      if (e < ${R * BKV}u) {
        let r = e / ${BKV}u;
        let j = e % ${BKV}u;
        var s = NEG;
        if (r < rows && kt + j < kEnd && kt + j <= pos0 + r / ${rep}u) {
          s = 0.0;
          for (var d = 0u; d < ${hd}u; d++) { s = fma(qs[r * ${hd}u + d], kvt[j * ${KS}u + d], s); }
        }
        ps[r * ${PS}u + j] = s;
      }
    }
    workgroupBarrier();
    ${each(BKV * hd, `var xv = 0.0;
      if (kt + r < kEnd) { xv = vs[(keyRow(kt + r, kvBase, pfxBase, pfxLen) * ${KVH}u + kvh) * ${hd}u + d]; }
      kvt[r * ${KS}u + d] = xv;`)}
    ${onlineSoftmaxRows(R, BKV, PS)}
    workgroupBarrier();
    ${each(R * hd, `var o = acc[i] * as_[r];
      for (var j = 0u; j < ${BKV}u; j++) { o = fma(ps[r * ${PS}u + j], kvt[j * ${KS}u + d], o); }
      acc[i] = o;`)}
    workgroupBarrier();
  }
  ${each(R * hd, `if (r < rows) {
        ${write}
      }`)}
}`,
  };
}

/** Merges split attention partials into o [T, H·hd]: one thread per (block, KV head, row, d).
 * Bindings: out, po, ml, blocks. */
function attnMergeKernelSource(H: number, KVH: number, hd: number, R: number): Kernel {
  const rep = H / KVH;
  return {
    name: `attn-merge-${H}-${KVH}-${hd}-r${R}`,
    params: { nb: 'u32', splits: 'u32' },
    code: /* wgsl */ `
struct Params { nb: u32, splits: u32, }
@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<storage, read> po: array<f32>;
@group(0) @binding(2) var<storage, read> ml: array<f32>;
@group(0) @binding(3) var<storage, read> blocks: array<u32>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * 64u + lid;
  if (i >= params.nb * ${KVH * R * hd}u) { return; }
  let d = i % ${hd}u;
  let r = (i / ${hd}u) % ${R}u;
  let kvh = (i / ${R * hd}u) % ${KVH}u;
  let blk = i / ${KVH * R * hd}u;
  if (r >= blocks[blk * ${BLOCK_WORDS}u + 1u] * ${rep}u) { return; }
  let cell = (blk * ${KVH}u + kvh) * ${R}u + r;
  let stride = params.nb * ${KVH * R}u;
  var m = -3.0e38;
  for (var s = 0u; s < params.splits; s++) { m = max(m, ml[(s * stride + cell) * 2u]); }
  var l = 0.0;
  var o = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    let c = s * stride + cell;
    let w = exp(ml[c * 2u] - m);
    l += ml[c * 2u + 1u] * w;
    o += po[c * ${hd}u + d] * w;
  }
  let tok = blocks[blk * ${BLOCK_WORDS}u] + r / ${rep}u;
  let h = kvh * ${rep}u + r % ${rep}u;
  out[(tok * ${H}u + h) * ${hd}u + d] = o / l;
}`,
  };
}

/** Per row of logits [n, V]: its max and log Σ exp(x − max); with `argmax`, also the first index
 * of the max of logits / temperature + noise[r] (noise [n, V]; Gumbel-max sampling, as transformer.ts generate) or of logits.
 * Bindings: stats (out) [n, 2], ids (out) u32 [n], logits, then noise [n, V] (sampled). */
function rowStatsKernelSource(V: number, sampled: boolean): Kernel {
  const WG = 256;
  return {
    name: `row-stats-${V}${sampled ? '-sampled' : ''}`,
    params: { n: 'u32', temp: 'f32' },
    code: /* wgsl */ `
struct Params { n: u32, temp: f32, }
@group(0) @binding(0) var<storage, read_write> stats: array<f32>;
@group(0) @binding(1) var<storage, read_write> ids: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
${sampled ? '@group(0) @binding(3) var<storage, read> noise: array<f32>;\n@group(0) @binding(4) var<uniform> params: Params;' : '@group(0) @binding(3) var<uniform> params: Params;'}
var<workgroup> rv: array<f32, ${WG}>;
var<workgroup> ri: array<u32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${FLAT}
  let row = wid;
  if (row >= params.n) { return; }
  let base = row * ${V}u;
  var m = -3.0e38;
  var bv = -3.0e38;
  var bi = 0u;
  for (var c = lid; c < ${V}u; c += ${WG}u) {
    let x = logits[base + c];
    m = max(m, x);
    let s = ${sampled ? 'x / params.temp + noise[base + c]' : 'x'};
    if (s > bv) { bv = s; bi = c; }
  }
  rv[lid] = bv;
  ri[lid] = bi;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) {
      let ov = rv[lid + k];
      let oi = ri[lid + k];
      if (ov > rv[lid] || (ov == rv[lid] && oi < ri[lid])) { rv[lid] = ov; ri[lid] = oi; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ids[row] = ri[0]; }
  workgroupBarrier();
  rv[lid] = m;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) { rv[lid] = max(rv[lid], rv[lid + k]); }
    workgroupBarrier();
  }
  let mx = rv[0];
  workgroupBarrier();
  var s = 0.0;
  for (var c = lid; c < ${V}u; c += ${WG}u) { s += exp(logits[base + c] - mx); }
  rv[lid] = s;
  workgroupBarrier();
  for (var k = ${WG / 2}u; k > 0u; k >>= 1u) {
    if (lid < k) { rv[lid] += rv[lid + k]; }
    workgroupBarrier();
  }
  if (lid == 0u) { stats[row * 2u] = mx; stats[row * 2u + 1u] = log(rv[0]); }
}`,
  };
}

/** Per scored item (row, token): log p = (logit − max) − log Σ exp, and greedy = logit is the row's max.
 * Bindings: lp (out) [n], greedy (out) u32 [n], logits [*, V], stats [*, 2], items u32 [n, 2]. */
function pickKernelSource(V: number): Kernel {
  return {
    name: `pick-${V}`,
    params: { n: 'u32' },
    code: /* wgsl */ `
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read_write> lp: array<f32>;
@group(0) @binding(1) var<storage, read_write> greedy: array<u32>;
@group(0) @binding(2) var<storage, read> logits: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> items: array<u32>;
@group(0) @binding(5) var<uniform> params: Params;
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${FLAT}
  let i = wid * 256u + lid;
  if (i >= params.n) { return; }
  let row = items[i * 2u];
  let x = logits[row * ${V}u + items[i * 2u + 1u]];
  let m = stats[row * 2u];
  lp[i] = (x - m) - stats[row * 2u + 1u];
  greedy[i] = select(0u, 1u, x >= m);
}`,
  };
}

// The generators above (documented there), each memoized by its arguments (engine/gpu.ts memoKernel):
// a plan reuses the kernels, and their WGSL strings, of earlier plans.
export const embedKernel = memoKernel(embedKernelSource);
export const normKernel = memoKernel(normKernelSource);
export const gemmKernel = memoKernel(gemmKernelSource);
export const gemmSplitReduceKernel = memoKernel(gemmSplitReduceKernelSource);
export const gemvKernel = memoKernel(gemvKernelSource);
export const ropeKvKernel = memoKernel(ropeKvKernelSource);
export const swigluSplitKernel = memoKernel(swigluSplitKernelSource);
export const attentionKernel = memoKernel(attentionKernelSource);
export const attnMergeKernel = memoKernel(attnMergeKernelSource);
export const rowStatsKernel = memoKernel(rowStatsKernelSource);
export const pickKernel = memoKernel(pickKernelSource);
