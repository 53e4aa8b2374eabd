// SparseGPT (Frantar & Alistarh, 2023): one-shot pruning by approximate OBS reconstruction.
// Columns are processed left to right; a pruned (or quantized) weight's error is spread over the
// not-yet-processed columns through the upper Cholesky factor of H⁻¹ (H = 2/n Σ XᵀX), with lazy
// batch updates every `blocksize` columns. The unstructured mask is chosen adaptively per block of
// columns from w² / [H⁻¹]²_jj; N:M masks per group of M columns as the sweep reaches it.
// Optional joint quantization quantizes the kept weights in the same sweep (GPTQ-style).
import * as tf from '@tensorflow/tfjs';
import {
  maskLowestGlobal,
  patternLabel,
  pruneCount,
  SparsityOptionError,
  toPattern,
  type SparsityPattern,
} from '../quant/sparse-pattern';
import type { Model } from '../models/types';
import { sparsityReport } from '../quant/sparse';
import { describeCalib, type CalibSet } from './calib';
import { prepareHessian } from './hessian';
import { checkModelPattern } from './magnitude';
import { lazyUpdate, maskLowestDevice, prepareHessianDevice, solveBlockLinears, solverKind, sparseBlockSweep, type DeviceHessian } from './solver';
import { runSequential, sequentialDefaults, subPhase } from './sequential';
import { defaultsOf, defineOptions, parseOptions, type InputOf, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  pattern: { type: 'pattern', default: { kind: 'unstructured', ratio: 0.5 }, doc: 'unstructured ratio or N:M (SparseGPT §4: 50%, 2:4, 4:8)' },
  percdamp: { type: 'number', min: 0, default: 0.01, doc: 'fraction of mean diag(H) added to the diagonal (SparseGPT reference: 0.01)' },
  blocksize: { type: 'int', min: 1, default: 128, doc: 'columns per lazy batch update and per adaptive mask selection (paper: 128; a multiple of M for N:M)' },
  wbits: { type: 'int', min: 2, max: 16, nullable: true, default: null, doc: 'joint quantization of the kept weights: bits of an asymmetric per-row min-max grid; null = off' },
  batchSize: { type: 'int', min: 1, default: sequentialDefaults.batchSize, doc: 'calibration windows per forward (memory only, not an algorithm parameter)' },
});
export type SparseGPTOptions = OptionsOf<typeof options>;
export const defaults: SparseGPTOptions = defaultsOf(options);

export type SparseGPTInput = InputOf<typeof options>;

export function resolveOptions(opts: SparseGPTInput = {}): SparseGPTOptions {
  const o = parseOptions('sparsegpt', options, opts);
  if (o.pattern.kind === 'nm' && o.blocksize % o.pattern.m !== 0) {
    throw new SparsityOptionError(`blocksize ${o.blocksize} must be a multiple of M = ${o.pattern.m} for N:M pruning`);
  }
  return o;
}

// ---- joint quantization grid (GPTQ's asymmetric min-max quantizer, per output row) ----------

interface RowGrid {
  scale: Float64Array; // [out]
  zero: Float64Array; // [out]
  maxq: number;
}

function minmaxGrid(w: Float32Array, rows: number, cols: number, bits: number): RowGrid {
  const lo = new Float64Array(rows);
  const hi = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = w[r * cols + c];
      if (v < lo[r]) lo[r] = v;
      if (v > hi[r]) hi[r] = v;
    }
  }
  return gridFromRange(lo, hi, bits);
}

/** The grid from each row's range; lo ≤ 0 ≤ hi (the grid always contains 0). */
function gridFromRange(lo0: ArrayLike<number>, hi0: ArrayLike<number>, bits: number): RowGrid {
  const maxq = 2 ** bits - 1;
  const rows = lo0.length;
  const scale = new Float64Array(rows);
  const zero = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let lo = Math.min(lo0[r], 0);
    let hi = Math.max(hi0[r], 0);
    if (lo === 0 && hi === 0) {
      lo = -1;
      hi = 1;
    }
    scale[r] = (hi - lo) / maxq;
    zero[r] = Math.round(-lo / scale[r]);
  }
  return { scale, zero, maxq };
}

function quantizeValue(v: number, g: RowGrid, r: number): number {
  const q = Math.min(Math.max(Math.round(v / g.scale[r]) + g.zero[r], 0), g.maxq);
  return g.scale[r] * (q - g.zero[r]);
}

// ---- the sweep ---------------------------------------------------------------------------------

export interface SparseGPTResult {
  weight: tf.Tensor2D; // [out, in] pruned (and quantized) weight
  loss: number; // Σ over pruned/quantized weights of (w - q)² / (2 [H⁻¹]²_jj), the OBS error estimate
  dead: number; // input channels never active in calibration (their columns are zeroed)
}

/**
 * Prunes w [out, in] given the layer Hessian h [in, in] (2/n Σ XᵀX over calibration tokens).
 * Neither input is disposed. `prepare`: h's preparation shared with the linears of the same input
 * (PreparedHessians; the device solver only), else h's own.
 */
export async function sparsegptPrune(w: tf.Tensor2D, h: tf.Tensor2D, input: SparseGPTInput = {}, name = 'weight', prepare?: () => Promise<DeviceHessian>): Promise<SparseGPTResult> {
  const o = resolveOptions(input);
  const [rows, cols] = w.shape;
  if (h.shape[0] !== cols || h.shape[1] !== cols) {
    throw new Error(`SparseGPT '${name}': Hessian is [${h.shape}], expected [${cols}, ${cols}]`);
  }
  const p = o.pattern;
  if (p.kind === 'nm' && cols % p.m !== 0) {
    throw new SparsityOptionError(`N:M pattern ${p.n}:${p.m} does not fit '${name}': its input dimension ${cols} is not a multiple of ${p.m}`);
  }
  return solverKind(rows, cols) === 'host' ? sparsegptPruneHost(w, h, o) : sparsegptPruneDevice(w, h, o, prepare);
}

/**
 * sparsegptPrune on the active tfjs backend (lib/methods/solver.ts), fp32: Hinv from the blocked
 * Cholesky, each block's unstructured mask chosen from w² / [H⁻¹]²_jj on the device (exact count,
 * ties in index order: maskLowestDevice), the block swept by one kernel (webgpu) or host loop, the lazy update by one matmul.
 */
export async function sparsegptPruneDevice(w: tf.Tensor2D, h: tf.Tensor2D, o: SparseGPTOptions, prepare?: () => Promise<DeviceHessian>): Promise<SparseGPTResult> {
  const [rows, cols] = w.shape;
  const p = o.pattern;
  const tensors: tf.Tensor[] = []; // disposed at the end
  let grid: tf.Tensor2D | null = null;
  if (o.wbits !== null) {
    // from the full weight before dead columns are zeroed, as the reference
    const [loT, hiT] = tf.tidy(() => [tf.min(w, 1), tf.max(w, 1)]); // [out] each
    const g = gridFromRange((await loT.data()) as Float32Array, (await hiT.data()) as Float32Array, o.wbits);
    tf.dispose([loT, hiT]);
    const gv = new Float32Array(2 * rows);
    gv.set(g.scale);
    gv.set(g.zero, rows);
    grid = tf.tensor2d(gv, [2, rows]);
    tensors.push(grid);
  }
  const { hinv, dead } = await subPhase('hinv', () => (prepare ? prepare() : prepareHessianDevice(h, o.percdamp)));
  if (!prepare) tensors.push(hinv);
  const nDead = dead.filter(Boolean).length;
  let rest: tf.Tensor2D = tf.tidy(() => tf.mul(tf.transpose(w), tf.tensor2d(dead.map((d) => (d ? 0 : 1)), [cols, 1])) as tf.Tensor2D); // [in, out]
  try {
    const outBlocks: tf.Tensor2D[] = [];
    let lossT: tf.Tensor = tf.zeros([rows]); // per row, read once at the end: no round trip per block
    await subPhase('sweep', async () => {
      for (let i1 = 0; i1 < cols; i1 += o.blocksize) {
        const i2 = Math.min(i1 + o.blocksize, cols);
        const count = i2 - i1;
        const block = tf.slice(rest, [i1, 0], [count, rows]); // [count, out]
        const hb = tf.slice(hinv, [i1, i1], [count, count]);
        tensors.push(block, hb);
        let mask: tf.Tensor2D | null = null;
        if (p.kind === 'unstructured') {
          const tmpT = tf.tidy(() => {
            const d = tf.reshape(tf.gather(tf.reshape(hb, [-1]), tf.tensor1d(Array.from({ length: count }, (_, i) => i * (count + 1)), 'int32')), [count, 1]);
            return tf.transpose(tf.div(tf.square(block), tf.square(d))); // [out, count] row-major as the host score
          });
          const k = pruneCount(rows * i2, p.ratio) - pruneCount(rows * i1, p.ratio); // this block's share of the layer's count
          let m: tf.Tensor;
          try {
            m = await maskLowestDevice(tmpT, k); // [out, count], ties in row-major order as maskLowestGlobal
          } finally {
            tmpT.dispose();
          }
          mask = tf.transpose(m) as tf.Tensor2D; // [count, out]
          m.dispose();
          tensors.push(mask);
        }
        const sweep = await sparseBlockSweep({ w: block, hinv: hb, mask, nm: p.kind === 'nm' ? { n: p.n, m: p.m } : null, grid, maxq: o.wbits !== null ? 2 ** o.wbits - 1 : 0 });
        outBlocks.push(sweep.codes);
        tensors.push(sweep.codes, sweep.err, sweep.loss);
        const l = tf.add(lossT, sweep.loss);
        lossT.dispose();
        lossT = l;
        if (i2 < cols) {
          const next = lazyUpdate(rest, hinv, sweep.err, i1);
          rest.dispose();
          rest = next;
        }
        tf.dispose([block, hb, mask ?? [], sweep.err, sweep.loss]);
      }
    });
    tensors.push(lossT);
    let loss = 0;
    for (const v of (await lossT.data()) as Float32Array) loss += v;
    const weight = tf.tidy(() => tf.transpose(tf.concat(outBlocks, 0)) as tf.Tensor2D); // [out, in]
    return { weight, loss, dead: nDead };
  } finally {
    rest.dispose();
    tf.dispose(tensors);
  }
}

/** The host solver (float64 Hinv and sweep; solverKind 'host'): the oracle of the tests. */
async function sparsegptPruneHost(w: tf.Tensor2D, h: tf.Tensor2D, o: SparseGPTOptions): Promise<SparseGPTResult> {
  const [rows, cols] = w.shape;
  const p = o.pattern;
  const wData = Float32Array.from((await w.data()) as Float32Array); // [out, in]
  const grid = o.wbits !== null ? minmaxGrid(wData, rows, cols, o.wbits) : null; // from the full weight, as the reference
  // Hinv: upper Cholesky factor of (H + damp·I)⁻¹; dead inputs (H_jj = 0) get their columns zeroed
  const { hinv, dead } = prepareHessian(Float64Array.from((await h.data()) as Float32Array), cols, o.percdamp);
  let nDead = 0;
  dead.forEach((isDead, j) => {
    if (!isDead) return;
    nDead++;
    for (let r = 0; r < rows; r++) wData[r * cols + j] = 0;
  });

  const hinvT = tf.tensor2d(Float32Array.from(hinv), [cols, cols]); // [in, in] upper factor
  let rest = tf.tensor2d(wData, [rows, cols]); // [out, in - i1]: columns not yet swept
  const out = new Float32Array(rows * cols); // [out, in] result
  let loss = 0;
  try {
    for (let i1 = 0; i1 < cols; i1 += o.blocksize) {
      const i2 = Math.min(i1 + o.blocksize, cols);
      const count = i2 - i1;
      const blockT = tf.slice(rest, [0, 0], [rows, count]);
      const w1 = Float64Array.from((await blockT.data()) as Float32Array); // [out, count]
      blockT.dispose();
      const d = (i: number, j: number) => hinv[(i1 + i) * cols + (i1 + j)]; // Hinv1[i, j]
      let mask: Uint8Array;
      if (p.kind === 'unstructured') {
        const tmp = new Float64Array(rows * count);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < count; c++) tmp[r * count + c] = (w1[r * count + c] * w1[r * count + c]) / (d(c, c) * d(c, c));
        }
        // exact per layer: this block prunes its share of floor(rows·cols·ratio)
        const k = pruneCount(rows * i2, p.ratio) - pruneCount(rows * i1, p.ratio);
        mask = maskLowestGlobal(tmp, k);
      } else mask = new Uint8Array(rows * count);
      const err1 = new Float32Array(rows * count); // [out, count]
      for (let i = 0; i < count; i++) {
        const dii = d(i, i);
        if (p.kind === 'nm' && i % p.m === 0) {
          // choose the n weights of each row's group with the least OBS error w² / d²
          for (let r = 0; r < rows; r++) {
            const idx = Array.from({ length: p.m }, (_, j) => j);
            const s = idx.map((j) => {
              const v = w1[r * count + i + j];
              return (v * v) / (d(i + j, i + j) * d(i + j, i + j));
            });
            idx.sort((a, b) => s[a] - s[b] || a - b);
            for (let j = 0; j < p.n; j++) mask[r * count + i + idx[j]] = 1;
          }
        }
        for (let r = 0; r < rows; r++) {
          const wv = w1[r * count + i];
          let q = mask[r * count + i] ? 0 : wv;
          if (grid) q = quantizeValue(q, grid, r);
          out[r * cols + i1 + i] = q;
          const e = (wv - q) / dii;
          loss += (e * e) / 2;
          err1[r * count + i] = e;
          if (e !== 0) for (let j = i + 1; j < count; j++) w1[r * count + j] -= e * d(i, j);
        }
      }
      if (i2 < cols) {
        const next = tf.tidy(() => {
          const errT = tf.tensor2d(err1, [rows, count]); // [out, count]
          const hBlock = tf.slice(hinvT, [i1, i2], [count, cols - i2]); // [count, in - i2]
          const tail = tf.slice(rest, [0, count], [rows, cols - i2]); // [out, in - i2]
          return tf.sub(tail, tf.matMul(errT, hBlock)) as tf.Tensor2D;
        });
        rest.dispose();
        rest = next;
      }
    }
  } finally {
    rest.dispose();
    hinvT.dispose();
  }
  return { weight: tf.tensor2d(out, [rows, cols]), loss, dead: nDead };
}

/** ‖X Wᵀ − X Ŵᵀ‖²_F: the layer reconstruction error on inputs x [tokens, in]. */
export async function reconstructionError(w: tf.Tensor2D, wHat: tf.Tensor2D, x: tf.Tensor2D): Promise<number> {
  const e = tf.tidy(() => tf.sum(tf.square(tf.matMul(x, tf.sub(w, wHat), false, true)))); // Σ over [tokens, out]
  const v = (await e.data())[0];
  e.dispose();
  return v;
}

export function validate(opts: SparseGPTInput, model?: Model): void {
  const o = resolveOptions(opts);
  if (model) checkModelPattern(model, o.pattern);
}

/**
 * Prunes every linear of every block in place, block by block (reference llama_sequential): all
 * linears of a block get their Hessian from the same block inputs, then the pruned block's
 * outputs feed the next block.
 */
export async function compress(model: Model, calib: CalibSet | null, opts: SparseGPTInput = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = resolveOptions(opts);
  if (!calib) throw new Error('sparsegpt needs a calibration set');
  checkModelPattern(model, o.pattern);
  let totalLoss = 0;
  let dead = 0;
  await runSequential(model, calib, {
    propagate: 'compressed',
    batchSize: o.batchSize,
    ...hooks,
    perBlock: (ctx) =>
      solveBlockLinears(ctx, async (name, w, hessian, prepared) => {
        const H = hessian.value(); // [in, in]
        try {
          const r = await sparsegptPrune(w, H, o, name, () => prepared.get(hessian, H, o.percdamp));
          totalLoss += r.loss;
          dead += r.dead;
          return r.weight;
        } finally {
          H.dispose();
        }
      }, hooks.sample),
  });
  const rep = await sparsityReport(model);
  const config: Record<string, unknown> = { pattern: patternLabel(o.pattern), percdamp: o.percdamp, blocksize: o.blocksize };
  if (o.wbits !== null) config.wbits = o.wbits;
  return {
    method: 'sparsegpt',
    config,
    calib: describeCalib(calib),
    quantized: new Map(),
    actQuant: null,
    artifacts: { sparsity: rep.perLayer },
    stats: { sparsity: rep.global, loss: totalLoss, dead_inputs: dead },
  };
}

export const module = {
  display: 'SparseGPT',
  kind: 'sparsity',
  inPaper: true,
  options,
  describe: 'SparseGPT: OBS reconstruction with lazy block updates; unstructured or N:M, optional joint quantization (wbits)',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<SparseGPTInput>;
