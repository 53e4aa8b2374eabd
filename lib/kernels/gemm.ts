// The fp32 GEMM for the kit's tfjs paths (the linear layer, the calibration forwards and the
// Hessians of the compression methods): y = x·Wᵀ (+ b), x [N, in], W [out, in] (both row-major,
// `in` contiguous, as tfjs's matMul(x, W, false, true)), and the symmetric y = x·xᵀ. The shader is
// the inference executor's (lib/engine/kernels.ts gemmKernel: tiles staged in workgroup memory,
// register blocking, vec4 tiles), run on tfjs tensors through runKernel, so that the executor and
// the tfjs paths share one GEMM and its measured tilings (GEMM_TILES; scripts/bench-engine-gemm.ts
// and bench-kernels --kernels gemm time them).
import * as tf from '@tensorflow/tfjs';
import { GEMM_TILES, gemmKernel, gemmSharedBytes, type GemmTile } from '../engine/kernels';
import { deviceLimits, runKernel, u32 } from './gpu';

export { GEMM_TILES, type GemmTile };
export type GemmTileName = keyof typeof GEMM_TILES;

export const GEMM_DEFAULTS = {
  tiles: 'tallVPC' as GemmTileName, // the executor's default tiling (lib/engine/executor.ts GEMM_FAMILIES.vectorC); pick per GPU with bench-kernels --tiles
};

/** Workgroup threads, workgroup-memory bytes and workgroup counts of one GEMM (CPU-side plan). */
export interface GemmPlan {
  threads: number;
  sharedBytes: number;
  workgroups: [number, number, number];
}

/** Plans y [N, out] = x [N, inDim] · W[out, inDim]ᵀ with the given tiles; throws on inconsistent tiles. */
export function planGemm(N: number, inDim: number, out: number, t: GemmTile): GemmPlan {
  for (const k of ['BM', 'BN', 'BK', 'TM', 'TN'] as const) if (!Number.isInteger(t[k]) || t[k] <= 0) throw new Error(`gemm tiles: ${k} must be a positive integer, got ${t[k]}`);
  if (t.BM % t.TM || t.BN % t.TN) throw new Error(`gemm tiles: BM ${t.BM} / TM ${t.TM} and BN ${t.BN} / TN ${t.TN} must divide`);
  return {
    threads: (t.BM / t.TM) * (t.BN / t.TN),
    sharedBytes: gemmSharedBytes(t),
    workgroups: [Math.ceil(out / t.BN), Math.ceil(N / t.BM), 1],
  };
}

/** Why this GEMM cannot run on the current device with these tiles, or null when it can. */
export function gemmUnsupported(t: GemmTile, p: GemmPlan): string | null {
  const lim = deviceLimits();
  if (!lim) return 'needs the webgpu backend';
  if (p.threads > lim.maxComputeInvocationsPerWorkgroup) return `${p.threads} threads per workgroup exceed the device's ${lim.maxComputeInvocationsPerWorkgroup}`;
  if (p.sharedBytes > lim.maxComputeWorkgroupStorageSize) return `${p.sharedBytes} B of workgroup memory exceed the device's ${lim.maxComputeWorkgroupStorageSize}`;
  if (p.workgroups[1] > lim.maxComputeWorkgroupsPerDimension) return `${p.workgroups[1]} row tiles exceed the device's ${lim.maxComputeWorkgroupsPerDimension} workgroups per dimension`;
  return null;
}

function run(name: string, x: tf.Tensor2D, inputs: tf.Tensor[], out: number, tiles: GemmTile, bias: boolean, symmetric: boolean): tf.Tensor2D {
  const [N, inDim] = x.shape;
  const p = planGemm(N, inDim, out, tiles);
  const why = gemmUnsupported(tiles, p);
  if (why) throw new Error(`${name} [${N}, ${inDim}]·[${out}, ${inDim}]ᵀ: ${why}`);
  const k = gemmKernel(inDim, out, tiles, 'store', bias, 1, symmetric);
  const [y] = runKernel({ name: k.name, code: k.code, inputs, outputs: [{ shape: [N, out], dtype: 'float32' }], params: { M: u32(N), ldy: u32(out), colOff: u32(0) }, workgroups: p.workgroups });
  return y as tf.Tensor2D;
}

/** y [N, out] = x [N, in] · W [out, in]ᵀ (+ bias [out]) on the webgpu backend. */
export function gemm(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor, tiles: GemmTile = GEMM_TILES[GEMM_DEFAULTS.tiles]): tf.Tensor2D {
  const [out, wIn] = w.shape;
  if (wIn !== x.shape[1]) throw new Error(`gemm: x is [${x.shape.join(', ')}] but W is [${w.shape.join(', ')}] (expected [out, ${x.shape[1]}])`);
  if (bias && bias.size !== out) throw new Error(`gemm: bias has ${bias.size} elements, expected ${out}`);
  return run('gemm', x, bias ? [x, w, bias] : [x, w], out, tiles, !!bias, false);
}

/** Tiles for a product y [N, out] = x [N, inDim] · W [out, inDim]ᵀ, or null for tfjs's matMul. */
export type GemmTilesFor = (N: number, inDim: number, out: number) => GemmTile | null;

/** a [n, k] · b [m, k]ᵀ → [n, m] (+ bias [m]) on the GEMM where tilesFor gives tiles, else tfjs's matMul. */
function timesT(a: tf.Tensor2D, b: tf.Tensor2D, tilesFor: GemmTilesFor, bias?: tf.Tensor): tf.Tensor2D {
  const t = tilesFor(a.shape[0], a.shape[1], b.shape[0]);
  if (t) return gemm(a, b, bias, t);
  return tf.tidy(() => {
    const y = tf.matMul(a, b, false, true);
    return (bias ? tf.add(y, bias) : y) as tf.Tensor2D;
  });
}

/**
 * gemm with its gradients, for a gradient tape (OmniQuant's block training): y = x·Wᵀ (+ b) and,
 * backwards, dx = dy·W and dW = dyᵀ·x as x·Wᵀ products of transposed copies (dy·(Wᵀ)ᵀ [N, in],
 * dyᵀ·(xᵀ)ᵀ [out, in]), db = Σ_rows dy. Each of the three products takes tilesFor's tiles or tfjs's
 * matMul. Every gradient is computed (tf.customGrad has no lazy ones, unlike tfjs's own matMul).
 */
export function gemmWithGrad(x: tf.Tensor2D, w: tf.Tensor2D, bias: tf.Tensor | undefined, tilesFor: GemmTilesFor): tf.Tensor2D {
  const grads = (dy: tf.Tensor2D, xs: tf.Tensor2D, ws: tf.Tensor2D): tf.Tensor[] => [
    tf.tidy(() => timesT(dy, tf.transpose(ws), tilesFor)), // dx [N, in]
    tf.tidy(() => timesT(tf.transpose(dy), tf.transpose(xs), tilesFor)), // dW [out, in]
  ];
  type Grad = Parameters<typeof tf.customGrad>[0];
  if (!bias) {
    const f = tf.customGrad(((xi: tf.Tensor2D, wi: tf.Tensor2D, save: tf.GradSaveFunc) => {
      save([xi, wi]);
      return { value: timesT(xi, wi, tilesFor), gradFunc: (dy: tf.Tensor2D, [xs, ws]: tf.Tensor2D[]) => grads(dy, xs, ws) };
    }) as unknown as Grad);
    return f(x, w) as tf.Tensor2D;
  }
  const f = tf.customGrad(((xi: tf.Tensor2D, wi: tf.Tensor2D, bi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi, wi]);
    return { value: timesT(xi, wi, tilesFor, bi), gradFunc: (dy: tf.Tensor2D, [xs, ws]: tf.Tensor2D[]) => [...grads(dy, xs, ws), tf.sum(dy, 0)] };
  }) as unknown as Grad);
  return f(x, w, bias) as tf.Tensor2D;
}

/** y [n, n] = x [n, k] · xᵀ (a Gram matrix: XᵀX of activations passed transposed) on the webgpu backend, from the tiles on and below the diagonal only (gemmKernel's symmetric form). */
export function gemmGram(x: tf.Tensor2D, tiles: GemmTile = GEMM_TILES[GEMM_DEFAULTS.tiles]): tf.Tensor2D {
  return run('gemm gram', x, [x, x], x.shape[0], tiles, false, true);
}
