// The GEMM kernel's correctness checks and benchmarks against tfjs's matMul (lib/kernels/suites.ts
// registers them); kept out of gemm.ts so that the forward pass does not load them.
import * as tf from '@tensorflow/tfjs';
import { seededNormal } from '../runtime/bench';
import { caseSeed, maxRelError, maxRelErrorOf, runPoisoned, weightedSumAndGrads, type BenchSetup, type CheckResult, type KernelBench, type KernelCheck } from './cases';
import { GEMM_DEFAULTS, GEMM_TILES, gemm, gemmGram, gemmWithGrad, type GemmTileName } from './gemm';

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

/** Correctness cases: odd sizes (edges, scalar loads; the first on every tile shape), plus the bench shapes; then the symmetric form's (gramChecks). */
export function gemmChecks(seed: number): KernelCheck[] {
  const odd: [number, number, number, boolean][] = [[37, 70, 129, true], [130, 132, 65, false], [1, 9, 3, true], [200, 1000, 17, false]];
  const big: [number, number, number, boolean][] = [[1024, 2048, 2048, false], [1024, 4096, 4096, true], [2048, 4096, 14336, false]];
  const cases = [
    ...(Object.keys(GEMM_TILES) as GemmTileName[]).map((tiles) => ({ s: odd[0], tiles, small: true })),
    ...odd.slice(1).map((s) => ({ s, tiles: GEMM_DEFAULTS.tiles, small: true })),
    ...big.map((s) => ({ s, tiles: GEMM_DEFAULTS.tiles, small: false })),
  ];
  const plain = cases.map(({ s: [N, inDim, out, bias], tiles, small }, i): KernelCheck => ({
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
  return [...plain, ...gramChecks(seed), ...gradChecks(seed)];
}

/**
 * The symmetric form (gemmGram: x·xᵀ from the tiles on and below the diagonal, mirrored) against
 * tfjs's matMul; its entries must also equal the full GEMM's gemm(x, x) bit for bit (the mirror is
 * exact), else the error is reported as Infinity. An odd size on a scalar and a vec4 tiling, two more small ones, one large.
 */
function gramChecks(seed: number): KernelCheck[] {
  const cases = [
    ...(['medium', GEMM_DEFAULTS.tiles] as GemmTileName[]).map((tiles) => ({ n: 37, k: 70, small: true, tiles })), // a scalar and a vec4 tiling
    { n: 130, k: 132, small: true, tiles: GEMM_DEFAULTS.tiles },
    { n: 300, k: 64, small: true, tiles: GEMM_DEFAULTS.tiles },
    { n: 2048, k: 4096, small: false, tiles: GEMM_DEFAULTS.tiles },
  ];
  return cases.map(({ n, k, small, tiles }, i) => ({
    kernel: 'gemm',
    name: `gram n=${n} k=${k} tiles=${tiles}`,
    small,
    async run(): Promise<CheckResult> {
      const x = tf.tensor2d(seededNormal(n * k, caseSeed(seed, 300 + i)), [n, k]); // [n, k]
      const want = gemmPlain(x, x);
      const full = gemm(x, x, undefined, GEMM_TILES[tiles]);
      const { outputs, poisoned } = await runPoisoned([n * n], () => [gemmGram(x, GEMM_TILES[tiles])]);
      try {
        const [got, f] = (await Promise.all([outputs[0].data(), full.data()])) as Float32Array[];
        const exact = got.every((v, j) => v === f[j]);
        return { metric: 'max_rel_err', error: exact ? await maxRelError(outputs[0], want) : Infinity, tolerance: 1e-5, poisoned, note: exact ? 'equals gemm(x, x) exactly' : 'differs from gemm(x, x)' };
      } finally {
        tf.dispose([x, want, full, ...outputs]);
      }
    },
  }));
}

/** The GEMM shapes (N × in × out), kernel against tfjs's matMul(x, W, false, true). */
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

/**
 * gemmWithGrad's value and gradients (dx, dW, db of Σ y·c for a seeded c) against tfjs's matMul
 * gradients; the error is the largest of the four, and Infinity unless all three products ran on the
 * GEMM.
 */
function gradChecks(seed: number): KernelCheck[] {
  const cases: { s: [number, number, number, boolean]; small: boolean }[] = [
    { s: [70, 130, 96, true], small: true },
    { s: [100, 67, 65, false], small: true },
    { s: [2048, 4096, 4096, false], small: false },
  ];
  return cases.map(({ s: [N, inDim, out, bias], small }, i) => ({
    kernel: 'gemm',
    name: `gradients N=${N} in=${inDim} out=${out}${bias ? ' bias' : ''} tiles=${GEMM_DEFAULTS.tiles}`,
    small,
    async run(): Promise<CheckResult> {
      const ops = gemmOperands(N, inDim, out, bias, caseSeed(seed, 400 + i));
      const c = tf.tensor2d(seededNormal(N * out, caseSeed(seed, 450 + i)), [N, out]); // [N, out]: the loss's weights
      let products = 0;
      const tiles = GEMM_TILES[GEMM_DEFAULTS.tiles];
      const want = weightedSumAndGrads((x, w, b) => gemmPlain(x as tf.Tensor2D, w as tf.Tensor2D, b), ops, c);
      const got = weightedSumAndGrads((x, w, b) => gemmWithGrad(x as tf.Tensor2D, w as tf.Tensor2D, b, () => (products++, tiles)), ops, c);
      try {
        const error = await maxRelErrorOf(got, want);
        return { metric: 'max_rel_err', error: products === 3 ? error : Infinity, tolerance: 1e-5, poisoned: null, note: `value, dx, dW${bias ? ', db' : ''}; ${products} GEMM products` };
      } finally {
        tf.dispose([...ops, c, ...want, ...got]);
      }
    },
  }));
}
