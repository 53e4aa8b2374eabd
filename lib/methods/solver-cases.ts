// The device solvers (lib/methods/solver.ts) against the float64 host solvers on random layers with
// correlated inputs, outlier channels and one dead input. Each comparison returns the disagreement:
// the vitest suites (test/solver-cases.ts, wasm and lavapipe) and scripts/check-kernels.ts's
// 'solver' group (solverChecks, on the GPU host) state their tolerances.
import * as tf from '@tensorflow/tfjs';
import { gptqQuantize, gptqQuantizeDevice, defaults as gptqDefaults, type GptqOptions } from './gptq';
import { prepareHessian } from './hessian';
import { findParams, maxq } from '../quant/quantizer';
import type { KernelCheck } from '../kernels/cases';
import { choleskyLowerDevice, gptqBlockSweep, gptqBlockSweepHost, maskLowestDevice, prepareHessianDevice } from './solver';
import { sparsegptPrune } from './sparsegpt';
import { maskLowestGlobal, maskLowestPerRow } from '../quant/sparse-pattern';
import { absmaxQuantizeMatrix } from '../quant/act';
import { absmaxQuantizeDevice } from '../quant/quantizer-device';

/** A seeded uniform generator in [0, 1) (an LCG: cheap, and the same draws on every machine). */
export function rng(seed: number) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** n standard normal draws (Box-Muller on rng(seed)). */
export function randn(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r()));
}

export interface Layer {
  rows: number;
  cols: number;
  tokens: number;
  W: Float32Array; // [rows, cols]
  X: Float32Array; // [tokens, cols]
  H: Float64Array; // [cols, cols] = 2/tokens XᵀX (one "sequence" per token row: the scale does not matter)
}

/** Correlated inputs with outlier channels, like real activations: X = Z·M / √cols [tokens, cols], every 13th channel ×8, input `dead` (if any) never active. */
export function correlatedInputs(tokens: number, cols: number, seed: number, dead = -1): Float32Array {
  const Z = randn(tokens * cols, seed);
  const M = randn(cols * cols, seed + 1);
  const X = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) for (let j = 0; j < cols; j++) {
    if (j === dead) continue;
    let s = 0;
    for (let k = 0; k < cols; k++) s += Z[t * cols + k] * M[k * cols + j];
    X[t * cols + j] = (s / Math.sqrt(cols)) * (j % 13 === 0 ? 8 : 1);
  }
  return X;
}

/** A random layer: correlated inputs, input `dead` never active. */
export function randomLayer(rows: number, cols: number, tokens: number, seed: number, dead = 5): Layer {
  const X = correlatedInputs(tokens, cols, seed, dead);
  const H = new Float64Array(cols * cols);
  for (let t = 0; t < tokens; t++) for (let i = 0; i < cols; i++) {
    const xi = X[t * cols + i];
    if (xi === 0) continue;
    for (let j = 0; j < cols; j++) H[i * cols + j] += (2 / tokens) * xi * X[t * cols + j];
  }
  return { rows, cols, tokens, W: randn(rows * cols, seed + 2), X, H };
}

/** ‖X Wᵀ − X Qᵀ‖² for X [tokens, cols], W and Q [rows, cols]. */
export function outputError(X: ArrayLike<number>, tokens: number, W: ArrayLike<number>, Q: ArrayLike<number>, rows: number, cols: number): number {
  let e = 0;
  for (let t = 0; t < tokens; t++) for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += X[t * cols + c] * (W[r * cols + c] - Q[r * cols + c]);
    e += s * s;
  }
  return e;
}

/** outputError of a layer. */
export function outErr(L: Layer, Q: ArrayLike<number>): number {
  return outputError(L.X, L.tokens, L.W, Q, L.rows, L.cols);
}

const hTensor = (L: Layer) => tf.tensor2d(Float32Array.from(L.H), [L.cols, L.cols]);

/** max |L Lᵀ − A| / max |A| of the blocked device Cholesky on the layer's dampened Hessian. */
export async function choleskyResidual(L: Layer): Promise<number> {
  const A = tf.tidy(() => tf.add(hTensor(L), tf.eye(L.cols).mul(0.1)) as tf.Tensor2D);
  const Lt = await choleskyLowerDevice(A);
  const r = tf.tidy(() => tf.div(tf.max(tf.abs(tf.sub(tf.matMul(Lt, Lt, false, true), A))), tf.max(tf.abs(A))));
  const v = (await r.data())[0];
  tf.dispose([A, Lt, r]);
  return v;
}

/** Device vs host Hinv: max |Δ| / max |Hinv|, and whether dead columns and damp agree. */
export async function hinvDifference(L: Layer, perm?: number[]): Promise<{ rel: number; sameDead: boolean; dampRel: number }> {
  const h = hTensor(L);
  const dev = await prepareHessianDevice(h, 0.01, perm);
  const host = prepareHessian(L.H, L.cols, 0.01, perm);
  const d = (await dev.hinv.data()) as Float32Array;
  let maxDiff = 0;
  let maxAbs = 0;
  for (let i = 0; i < d.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(d[i] - host.hinv[i]));
    maxAbs = Math.max(maxAbs, Math.abs(host.hinv[i]));
  }
  tf.dispose([h, dev.hinv]);
  return { rel: maxDiff / maxAbs, sameDead: dev.dead.join() === host.dead.join(), dampRel: Math.abs(dev.damp - host.damp) / host.damp };
}

/** Device vs host GPTQ: fraction of codes that differ, relative difference of the output errors, and both errors. */
export async function gptqDifference(L: Layer, opts: Partial<GptqOptions>): Promise<{ codes: number; errRel: number; errDevice: number; errHost: number; sameGroups: boolean }> {
  const o = { ...gptqDefaults, ...opts };
  const host = gptqQuantize(L.W, L.rows, L.cols, L.H, o);
  const h = hTensor(L);
  const w = tf.tensor2d(L.W, [L.rows, L.cols]);
  const res = await gptqQuantizeDevice(w, h, o);
  tf.dispose([h, w]);
  const dev = { ...res, weight: (await res.weight.data()) as Float32Array };
  res.weight.dispose();
  let diff = 0;
  for (let i = 0; i < host.quantized.codes.length; i++) if (host.quantized.codes[i] !== dev.quantized.codes[i]) diff++;
  const errHost = outErr(L, host.weight);
  const errDevice = outErr(L, dev.weight);
  const sameGroups = host.quantized.scales.length === dev.quantized.scales.length && (host.quantized.gIdx?.join() ?? '') === (dev.quantized.gIdx?.join() ?? '');
  return { codes: diff / host.quantized.codes.length, errRel: Math.abs(errDevice - errHost) / errHost, errDevice, errHost, sameGroups };
}

/** Device vs host SparseGPT (LLMCB_SOLVER switched around the call): mask disagreement, output-error difference, zero counts. */
export async function sparsegptDifference(L: Layer, pattern: string, extra: { wbits?: number; blocksize?: number } = {}): Promise<{ mask: number; errRel: number; zerosDevice: number; zerosHost: number }> {
  const w = tf.tensor2d(L.W, [L.rows, L.cols]);
  const h = hTensor(L);
  const run = async (kind: string) => {
    const old = process.env.LLMCB_SOLVER;
    process.env.LLMCB_SOLVER = kind;
    try {
      const r = await sparsegptPrune(w, h, { pattern, ...extra });
      const v = Float32Array.from((await r.weight.data()) as Float32Array);
      r.weight.dispose();
      return v;
    } finally {
      if (old === undefined) delete process.env.LLMCB_SOLVER;
      else process.env.LLMCB_SOLVER = old;
    }
  };
  const dev = await run('device');
  const host = await run('host');
  tf.dispose([w, h]);
  let mask = 0;
  let zd = 0;
  let zh = 0;
  for (let i = 0; i < dev.length; i++) {
    if ((dev[i] === 0) !== (host[i] === 0)) mask++;
    if (dev[i] === 0) zd++;
    if (host[i] === 0) zh++;
  }
  const eh = outErr(L, host);
  return { mask: mask / dev.length, errRel: Math.abs(outErr(L, dev) - eh) / eh, zerosDevice: zd, zerosHost: zh };
}

/**
 * The WGSL GPTQ sweep against its float64 host twin on one block: W4 per channel over the layer's
 * first 128 columns with its own (ill-conditioned) Hinv block. Codes that differ, and max |Δerr| / max |err|.
 */
export async function gptqBlockDifference(L: Layer): Promise<{ codes: number; errRel: number }> {
  const count = 128;
  const { rows, cols } = L;
  const hinv = prepareHessian(L.H, cols, 0.01).hinv;
  const hb = Float32Array.from({ length: count * count }, (_, k) => hinv[Math.floor(k / count) * cols + (k % count)]);
  const wb = Float32Array.from({ length: count * rows }, (_, k) => L.W[(k % rows) * cols + Math.floor(k / rows)]);
  const table = new Float32Array(2 * rows); // per row (scale, zero) of the whole row, as GPTQ per channel
  for (let r = 0; r < rows; r++) {
    const row = L.W.subarray(r * cols, (r + 1) * cols);
    const p = findParams(Math.min(...row), Math.max(...row), 4, false);
    table[r] = p.scale;
    table[rows + r] = p.zero;
  }
  const input = { w: tf.tensor2d(wb, [count, rows]), hinv: tf.tensor2d(hb, [count, count]), table: tf.tensor2d(table, [2, rows]), group: new Int32Array(count), maxq: maxq(4) };
  const [dev, host] = [await gptqBlockSweep(input), await gptqBlockSweepHost(input)];
  const [dc, hc, de, he] = (await Promise.all([dev.codes.data(), host.codes.data(), dev.err.data(), host.err.data()])) as Float32Array[];
  let codes = 0;
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < hc.length; i++) {
    if (dc[i] !== hc[i]) codes++;
    diff = Math.max(diff, Math.abs(de[i] - he[i]));
    scale = Math.max(scale, Math.abs(he[i]));
  }
  tf.dispose([input.w, input.hinv, input.table, dev.codes, dev.err, dev.loss, host.codes, host.err, host.loss]);
  return { codes, errRel: diff / scale };
}

/**
 * maskLowestDevice against the host selections on a [300, 256] score with exact zeros, coarse
 * values (many ties) and extremes: over the whole score (76,800 entries: three index passes) and
 * per row, at several k. The number of entries whose decision differs (0 when exact).
 */
export async function maskSelectionDifference(seed: number): Promise<number> {
  const [rows, cols] = [300, 256];
  const r = rng(seed);
  const score = Float32Array.from({ length: rows * cols }, (_, i) => (i % cols < 40 ? 0 : i % 97 === 0 ? 1e-30 * r() : i % 89 === 0 ? 1e30 : Math.floor(r() * 20) / 8));
  const t = tf.tensor2d(score, [rows, cols]);
  let differ = 0;
  const count = async (m: tf.Tensor, want: Uint8Array) => {
    const got = (await m.data()) as Float32Array;
    m.dispose();
    for (let i = 0; i < want.length; i++) if ((got[i] > 0.5 ? 1 : 0) !== want[i]) differ++;
  };
  try {
    for (const k of [1, 40 * rows, 40 * rows + 3, 41_000, rows * cols - 1]) await count(await maskLowestDevice(t, k), maskLowestGlobal(score, k));
    for (const k of [1, 40, 41, 128, 255]) await count(await maskLowestDevice(t, k, 'row'), maskLowestPerRow(score, rows, cols, k));
  } finally {
    t.dispose();
  }
  return differ;
}

/**
 * SmoothQuant's W8 absmax quantizer on the backend (absmaxQuantizeDevice) against the host's
 * (absmaxQuantizeMatrix) on a rows × cols normal weight with outlier columns: the fraction of codes
 * that differ (a GPU division may round a value lying on a rounding boundary the other way) and the
 * largest relative difference of the scales.
 */
export async function absmaxDifference(rows: number, cols: number, seed: number, granularity: 'per_channel' | 'per_tensor'): Promise<{ codes: number; scaleRel: number }> {
  const W = randn(rows * cols, seed);
  for (let i = 0; i < W.length; i += 97) W[i] *= 20; // outliers: SmoothQuant's weights after smoothing
  const host = absmaxQuantizeMatrix(W, rows, cols, 8, granularity);
  const w = tf.tensor2d(W, [rows, cols]);
  try {
    const dev = await absmaxQuantizeDevice(w, 8, granularity);
    dev.weight.dispose();
    let codes = 0;
    for (let i = 0; i < host.codes.length; i++) if (dev.quantized.codes[i] !== host.codes[i]) codes++;
    let scaleRel = 0;
    for (let r = 0; r < rows; r++) scaleRel = Math.max(scaleRel, Math.abs(dev.quantized.scales[r] - host.scales[r]) / host.scales[r]);
    return { codes: codes / host.codes.length, scaleRel };
  } finally {
    w.dispose();
  }
}

/**
 * The device solvers against the host ones on the GPU (scripts/check-kernels.ts --kernels solver):
 * the suites' 48 × 304 layer and a larger 256 × 512 one (not small), drawn from the seed, with the
 * suites' tolerances. A whole-algorithm check has no single output buffer to poison (poisoned: null).
 */
export function solverChecks(seed: number): KernelCheck[] {
  const layers = [
    { label: '48x304', small: true, make: () => randomLayer(48, 304, 600, seed) },
    { label: '256x512', small: false, make: () => randomLayer(256, 512, 1024, seed + 7) },
  ];
  const checks: KernelCheck[] = [
    { kernel: 'solver', name: 'k lowest scores (global and per row) vs host', small: true, run: async () => ({ metric: 'entries_differ', error: await maskSelectionDifference(seed), tolerance: 0, poisoned: null }) },
  ];
  // SmoothQuant's W8 weights on the backend, at a small shape and at LLaMA-2-7B's MLP shapes.
  for (const [rows, cols, granularity, small] of [[48, 304, 'per_channel', true], [11008, 4096, 'per_channel', false], [4096, 11008, 'per_tensor', false]] as const) {
    checks.push({
      kernel: 'solver',
      name: `SmoothQuant W8 absmax ${granularity} ${rows}x${cols} vs host`,
      small,
      run: async () => {
        const d = await absmaxDifference(rows, cols, seed + rows, granularity);
        return { metric: 'codes_frac', error: d.scaleRel <= 1e-6 ? d.codes : Infinity, tolerance: 1e-5, note: `scales max rel diff ${d.scaleRel.toExponential(2)}`, poisoned: null };
      },
    });
  }
  for (const { label, small, make } of layers) {
    let layer: Layer | null = null;
    const L = () => (layer ??= make());
    const check = (name: string, run: () => Promise<{ metric: string; error: number; tolerance: number; note?: string }>) =>
      checks.push({ kernel: 'solver', name: `${label} ${name}`, small, run: async () => ({ ...(await run()), poisoned: null }) });
    check('blocked Cholesky: L·Lᵀ = A', async () => ({ metric: 'max_rel_err', error: await choleskyResidual(L()), tolerance: 1e-5 }));
    check('Hinv vs float64 host', async () => {
      const d = await hinvDifference(L());
      return { metric: 'max_rel_err', error: d.sameDead ? d.rel : Infinity, tolerance: 1e-5, note: d.sameDead ? '' : 'dead inputs differ' };
    });
    check('GPTQ W4 block sweep vs float64 twin', async () => {
      const d = await gptqBlockDifference(L());
      return { metric: 'codes_differ', error: d.codes, tolerance: 0, note: `max rel err difference ${d.errRel.toExponential(2)}` };
    });
    // The fp32 sweep against the float64 one: a weight within fp32 rounding of a grid boundary can
    // take the other code, and the changed error it feeds to the later columns moves more codes. On
    // the 8-bit grid (16 times finer) that happens on some seeds: seed 1330856501 moved 0.63% of the
    // 48x304 layer's codes on lavapipe and on the H100 alike (layer error +0.24%); on wasm 38 of
    // 40 other seeds moved none. So W8 is held to 1% of the codes, every width to the host's layer error
    // within 1%.
    for (const o of [{ bits: 4 }, { bits: 8 }, { bits: 4, groupSize: 16 }] as Partial<GptqOptions>[]) {
      check(`GPTQ ${JSON.stringify(o)} layer vs host`, async () => {
        const d = await gptqDifference(L(), o);
        const note = `layer error ${d.errDevice.toExponential(4)} vs host ${d.errHost.toExponential(4)}`;
        return { metric: 'codes_frac', error: d.errRel <= 0.01 ? d.codes : Infinity, tolerance: o.bits === 8 ? 0.01 : 0.001, note };
      });
    }
    check('SparseGPT 50% layer vs host', async () => {
      const d = await sparsegptDifference(L(), '50%');
      return { metric: 'mask_frac', error: d.zerosDevice === d.zerosHost ? d.mask : Infinity, tolerance: 0.001, note: `layer error rel ${d.errRel.toExponential(2)}` };
    });
  }
  return checks;
}
