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
import { seededNormal } from '../runtime/bench';
import { caseSeed, maxRelError, runPoisoned, type BenchSetup, type CheckResult, type KernelBench, type KernelCheck } from './cases';
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

function gemmShader(t: GemmTiles, p: GemmPlan, bias: boolean): string {
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
  let col0 = g.x * ${BN}u;
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
      if (r < params.N && c < params.M) { y[r * params.M + c] = acc[i * ${TN}u + j]${bias ? ' + b[c]' : ''}; }
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

/** Seeded x [N, in], W [out, in] and bias [out] for checks and benches. */
function gemmOperands(N: number, inDim: number, out: number, bias: boolean, seed: number): tf.Tensor[] {
  const x = tf.tensor2d(seededNormal(N * inDim, seed), [N, inDim]); // [N, in]
  const w = tf.tensor2d(seededNormal(out * inDim, seed + 1, 1 / Math.sqrt(inDim)), [out, inDim]); // [out, in]
  return bias ? [x, w, tf.tensor1d(seededNormal(out, seed + 2))] : [x, w];
}

function gemmPlain(x: tf.Tensor2D, w: tf.Tensor2D, b?: tf.Tensor): tf.Tensor2D {
  return tf.tidy(() => {
    const y = tf.matMul(x, w, false, true); // [N, out]
    return (b ? tf.add(y, b) : y) as tf.Tensor2D;
  });
}

/** Correctness cases: odd sizes (edges, scalar loads; the first two on every tile shape), plus the bench shapes. */
export function gemmChecks(seed: number): KernelCheck[] {
  const odd: [number, number, number, boolean][] = [[37, 70, 129, true], [130, 132, 65, false], [1, 9, 3, true], [200, 1000, 17, false]];
  const big: [number, number, number, boolean][] = [[1024, 2048, 2048, false], [1024, 4096, 4096, true], [2048, 4096, 14336, false]];
  const cases = [
    ...odd.slice(0, 2).flatMap((s) => (Object.keys(GEMM_TILES) as GemmTileName[]).map((tiles) => ({ s, tiles, small: true }))),
    ...odd.slice(2).map((s) => ({ s, tiles: GEMM_DEFAULTS.tiles, small: true })),
    ...big.map((s) => ({ s, tiles: GEMM_DEFAULTS.tiles, small: false })),
  ];
  return cases.map(({ s: [N, inDim, out, bias], tiles, small }, i) => ({
    kernel: 'gemm',
    name: `N=${N} in=${inDim} out=${out}${bias ? ' bias' : ''} tiles=${tiles}`,
    small,
    async run(): Promise<CheckResult> {
      const [x, w, b] = gemmOperands(N, inDim, out, bias, caseSeed(seed, 100 + i)) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor?];
      const want = gemmPlain(x, w, b);
      const { outputs, poisoned } = await runPoisoned([N * out], () => [gemm(x, w, b, GEMM_TILES[tiles])]);
      try {
        return { metric: 'max_rel_err', error: await maxRelError(outputs[0], want), tolerance: 1e-5, poisoned };
      } finally {
        tf.dispose([x, w, ...(b ? [b] : []), want, ...outputs]);
      }
    },
  }));
}

/** The issue's GEMM shapes (N × in × out), kernel against tfjs's matMul(x, W, false, true). */
export function gemmBenches(): KernelBench[] {
  const shapes: [number, number, number, boolean][] = [[1024, 2048, 2048, false], [1024, 4096, 4096, false], [2048, 4096, 14336, false], [64, 96, 160, true]];
  return shapes.map(([N, inDim, out, small]) => ({
    kernel: 'gemm',
    name: `${N}x${inDim}x${out}`,
    small,
    flops: 2 * N * inDim * out,
    variants: Object.keys(GEMM_TILES),
    setup(variant: string): BenchSetup {
      const tiles = GEMM_TILES[variant as GemmTileName];
      if (!tiles) throw new Error(`gemm: unknown tiles '${variant}' (choose from ${Object.keys(GEMM_TILES).join(', ')})`);
      const [x, w] = gemmOperands(N, inDim, out, false, 7) as [tf.Tensor2D, tf.Tensor2D];
      return { kernel: () => gemm(x, w, undefined, tiles), plain: () => gemmPlain(x, w), dispose: () => tf.dispose([x, w]) };
    },
  }));
}
