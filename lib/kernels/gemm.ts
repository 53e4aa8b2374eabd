// Tiled fp32 GEMM for the kit's linear layer: y = x·Wᵀ (+ b), x [N, in], W [out, in] (both
// row-major, `in` contiguous, as tfjs's matMul(x, W, false, true)). Each workgroup computes a
// tileRows × tileCols block of y, staging x and W tiles of `tileK` columns in workgroup memory;
// each thread accumulates threadRows × threadCols outputs in registers, strided across the tile so
// that neighbouring threads read neighbouring workgroup-memory words and write neighbouring
// outputs. Global loads are vec4 when `in` is a multiple of 4. Edges (N, out, in not multiples of
// the tile) are bounds-checked. Subgroups are not used: with operands in workgroup memory, register
// blocking is what an fp32 GEMM gains from, and subgroup shuffles would only replace broadcasts.
// The tile shapes are a table (GEMM_TILES): which is fastest depends on the GPU, so the bench
// (scripts/bench-kernels.ts --tiles) compares them.
import * as tf from '@tensorflow/tfjs';
import { deviceLimits, paramsStruct, runKernel, u32 } from './gpu';

export interface GemmTiles {
  tileRows: number; // rows of y (rows of x) per workgroup
  tileCols: number; // columns of y (rows of W) per workgroup
  tileK: number; // reduction columns staged per step
  threadRows: number; // rows of y per thread
  threadCols: number; // columns of y per thread
}

/** Tile shapes to choose from; threads per workgroup = (tileRows/threadRows)·(tileCols/threadCols). */
export const GEMM_TILES = {
  '32x32': { tileRows: 32, tileCols: 32, tileK: 16, threadRows: 2, threadCols: 2 }, // 256 threads, small problems
  '64x64': { tileRows: 64, tileCols: 64, tileK: 16, threadRows: 4, threadCols: 4 }, // 256 threads
  '64x128': { tileRows: 64, tileCols: 128, tileK: 16, threadRows: 4, threadCols: 8 }, // 256 threads
  '128x64': { tileRows: 128, tileCols: 64, tileK: 16, threadRows: 8, threadCols: 4 }, // 256 threads
  '128x128': { tileRows: 128, tileCols: 128, tileK: 16, threadRows: 8, threadCols: 8 }, // 256 threads, 64 accumulators each
  '128x128k8': { tileRows: 128, tileCols: 128, tileK: 8, threadRows: 8, threadCols: 8 }, // same, half the workgroup memory
  '128x128k32': { tileRows: 128, tileCols: 128, tileK: 32, threadRows: 8, threadCols: 8 }, // half the barriers, 32 KiB of workgroup memory
} satisfies Record<string, GemmTiles>;
export type GemmTileName = keyof typeof GEMM_TILES;

export const GEMM_DEFAULTS = {
  tiles: '128x128' as GemmTileName, // a common choice for large fp32 GEMMs; pick per GPU with bench-kernels --tiles
};

/** Workgroup threads, workgroup-memory bytes and workgroup counts of one GEMM (CPU-side plan). */
export interface GemmPlan {
  threads: number;
  sharedBytes: number;
  workgroups: [number, number, number];
  vec: 1 | 4; // global load width along `in`
}

/** Plans y [N, out] = x [N, inDim] · W[out, inDim]ᵀ with the given tiles; throws on inconsistent tiles. */
export function planGemm(N: number, inDim: number, out: number, t: GemmTiles): GemmPlan {
  for (const [k, v] of Object.entries(t)) if (!Number.isInteger(v) || v <= 0) throw new Error(`gemm tiles: ${k} must be a positive integer, got ${v}`);
  if (t.tileRows % t.threadRows || t.tileCols % t.threadCols) {
    throw new Error(`gemm tiles: tileRows ${t.tileRows} / threadRows ${t.threadRows} and tileCols ${t.tileCols} / threadCols ${t.threadCols} must divide`);
  }
  const vec = inDim % 4 === 0 && t.tileK % 4 === 0 ? 4 : 1;
  return {
    threads: (t.tileRows / t.threadRows) * (t.tileCols / t.threadCols),
    sharedBytes: (t.tileRows + t.tileCols) * t.tileK * 4,
    workgroups: [Math.ceil(out / t.tileCols), Math.ceil(N / t.tileRows), 1],
    vec,
  };
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * The shader; `symmetric` (y = x·xᵀ, one input bound as both x and w, square y): the workgroups
 * strictly above the diagonal return at once and every other one writes each value also to its
 * mirror. The mirror is the value the skipped workgroup would have written, bit for bit: it sums
 * the same products fma(x[r,k], x[c,k]) (commutative) in the same k order.
 */
function gemmShader(t: GemmTiles, p: GemmPlan, bias: boolean, symmetric = false): string {
  const { tileRows: BM, tileCols: BN, tileK: BK, threadRows: TM, threadCols: TN } = t;
  const SX = BN / TN; // threads along columns
  const SY = BM / TM; // threads along rows
  const V = p.vec;
  const vt = V === 4 ? 'vec4<f32>' : 'f32';
  // A tile of R rows × BK columns loaded by all threads, stored k-major: S[k·R + r].
  // The register-blocked product, unrolled here so every acc/a/b index is a constant (registers, not local memory).
  const unrolled = [
    ...range(TM).map((i) => `a[${i}] = xs[k * ${BM}u + l.y + ${i * SY}u];`),
    ...range(TN).map((j) => `bb[${j}] = ws[k * ${BN}u + l.x + ${j * SX}u];`),
    ...range(TM).flatMap((i) => range(TN).map((j) => `acc[${i * TN + j}] = fma(a[${i}], bb[${j}], acc[${i * TN + j}]);`)),
  ].join('\n      ');
  const load = (buf: string, S: string, R: number, row0: string, rows: string) => `
    for (var i = 0u; i < ${Math.ceil((R * BK) / V / p.threads)}u; i++) {
      let e = lid + i * ${p.threads}u;
      if (e < ${(R * BK) / V}u) {
        let r = e / ${BK / V}u;
        let kk = (e % ${BK / V}u) * ${V}u;
        let gr = ${row0} + r;
        var v = ${vt}(0.0);
        if (gr < ${rows} && k0 + kk < params.K) { v = ${buf}[(gr * params.K + k0 + kk) / ${V}u]; }
        ${V === 4 ? [0, 1, 2, 3].map((c) => `${S}[(kk + ${c}u) * ${R}u + r] = v[${c}];`).join(' ') : `${S}[kk * ${R}u + r] = v;`}
      }
    }`;
  return `
${paramsStruct({ N: u32(0), K: u32(0), M: u32(0) })}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<${vt}>;
@group(0) @binding(2) var<storage, read> w: array<${vt}>;
${bias ? '@group(0) @binding(3) var<storage, read> b: array<f32>;\n@group(0) @binding(4) var<uniform> params: Params;' : '@group(0) @binding(3) var<uniform> params: Params;'}
var<workgroup> xs: array<f32, ${BM * BK}>;
var<workgroup> ws: array<f32, ${BN * BK}>;

@compute @workgroup_size(${SX}, ${SY}, 1)
fn main(@builtin(local_invocation_id) l: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u) {
  let row0 = g.y * ${BM}u;
  let col0 = g.x * ${BN}u;${symmetric ? `
  if (col0 >= row0 + ${BM}u) { return; } // strictly above the diagonal: mirrored by the tile below it` : ''}
  var acc: array<f32, ${TM * TN}>;
  var a: array<f32, ${TM}>;
  var bb: array<f32, ${TN}>;
  for (var k0 = 0u; k0 < params.K; k0 += ${BK}u) {
    ${load('x', 'xs', BM, 'row0', 'params.N')}
    ${load('w', 'ws', BN, 'col0', 'params.M')}
    workgroupBarrier();
    for (var k = 0u; k < ${BK}u; k++) {
      ${unrolled}
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < ${TM}u; i++) {
    let r = row0 + l.y + i * ${SY}u;
    for (var j = 0u; j < ${TN}u; j++) {
      let c = col0 + l.x + j * ${SX}u;
      if (r < params.N && c < params.M) { y[r * params.M + c] = acc[i * ${TN}u + j]${bias ? ' + b[c]' : ''};${symmetric ? ` y[c * params.M + r] = acc[i * ${TN}u + j];` : ''} }
    }
  }
}`;
}

/** Why this GEMM cannot run on the current device with these tiles, or null when it can. */
export function gemmUnsupported(t: GemmTiles, p: GemmPlan): string | null {
  const lim = deviceLimits();
  if (!lim) return 'needs the webgpu backend';
  if (p.threads > lim.maxComputeInvocationsPerWorkgroup) return `${p.threads} threads per workgroup exceed the device's ${lim.maxComputeInvocationsPerWorkgroup}`;
  if (p.sharedBytes > lim.maxComputeWorkgroupStorageSize) return `${p.sharedBytes} B of workgroup memory exceed the device's ${lim.maxComputeWorkgroupStorageSize}`;
  if (p.workgroups[1] > lim.maxComputeWorkgroupsPerDimension) return `${p.workgroups[1]} row tiles exceed the device's ${lim.maxComputeWorkgroupsPerDimension} workgroups per dimension`;
  return null;
}

/** y [n, n] = x [n, k] · xᵀ (a Gram matrix: XᵀX of activations passed transposed) on the webgpu backend, computing the tiles on and below the diagonal only. */
export function gemmGram(x: tf.Tensor2D, tiles: GemmTiles = GEMM_TILES[GEMM_DEFAULTS.tiles]): tf.Tensor2D {
  const [n, k] = x.shape;
  const p = planGemm(n, k, n, tiles);
  const why = gemmUnsupported(tiles, p);
  if (why) throw new Error(`gemm gram [${n}, ${k}]·[${n}, ${k}]ᵀ: ${why}`);
  const [y] = runKernel({ name: 'gemm-gram', code: gemmShader(tiles, p, false, true), inputs: [x, x], outputs: [{ shape: [n, n], dtype: 'float32' }], params: { N: u32(n), K: u32(k), M: u32(n) }, workgroups: p.workgroups });
  return y as tf.Tensor2D;
}

/** y [N, out] = x [N, in] · W [out, in]ᵀ (+ bias [out]) on the webgpu backend. */
export function gemm(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor, tiles: GemmTiles = GEMM_TILES[GEMM_DEFAULTS.tiles]): tf.Tensor2D {
  const [N, inDim] = x.shape;
  const [out, wIn] = w.shape;
  if (wIn !== inDim) throw new Error(`gemm: x is [${x.shape.join(', ')}] but W is [${w.shape.join(', ')}] (expected [out, ${inDim}])`);
  if (bias && bias.size !== out) throw new Error(`gemm: bias has ${bias.size} elements, expected ${out}`);
  const p = planGemm(N, inDim, out, tiles);
  const why = gemmUnsupported(tiles, p);
  if (why) throw new Error(`gemm [${N}, ${inDim}]·[${out}, ${inDim}]ᵀ: ${why}`);
  const [y] = runKernel({
    name: 'gemm',
    code: gemmShader(tiles, p, !!bias),
    inputs: bias ? [x, w, bias] : [x, w],
    outputs: [{ shape: [N, out], dtype: 'float32' }],
    params: { N: u32(N), K: u32(inDim), M: u32(out) },
    workgroups: p.workgroups,
  });
  return y as tf.Tensor2D;
}
