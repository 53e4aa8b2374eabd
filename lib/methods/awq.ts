// AWQ (Lin et al., 2024): activation-aware weight quantization. Per block and per linear group
// (arch table: which norm or linear feeds it) a grid search over α of per-input-channel scales
// s = mean|x|^α, normalised, minimising the group's output error after quantizing W·diag(s);
// the best s is folded into the preceding norm / linear (an equivalent transformation), then an
// optional weight-clipping search, then the AWQ quantizer. The next block sees the full-precision
// (scaled, unquantized) block outputs, as the reference run_awq does; quantization is applied
// after all blocks are searched. Search results are serializable artifacts applied separately.
import * as tf from '@tensorflow/tfjs';
import { ARCHS, linearName, linearParts, type LinearGroup } from '../models/arch';
import { blockWidths } from '../models/weights';
import type { Model } from '../models/types';
import { awqFakeQuantize, awqFakeQuantizeGroup, awqQuantizeMatrix, checkWeightSpec, dequantizeMatrix, type QuantizedMatrix, type WeightQuantSpec } from '../quant/quantizer';
import { getWeight, linearShape, readFloat32, readLinear, replaceWeight, type HostMatrix, hostValues } from '../quant/weights';
import { describeCalib, type CalibSet } from './calib';
import { gram } from './hessian';
import { blockLinearNames, runSequential, withCalibKernels, type BlockContext } from './sequential';
import { foldIntoNorm } from './smoothquant';
import { calibMatMulT, solverKind } from './solver';
import { awqFakeQuantDevice, awqQuantizeDevice } from '../quant/quantizer-device';
import { maxTensorElements } from '../runtime/backend';
import { syncDevice } from '../runtime/probes';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  bits: { type: 'int', min: 1, max: 8, default: 4, doc: "weight bits (AWQ paper's INT4, also W3)" },
  groupSize: { type: 'int', min: -1, default: 128, doc: "input columns per group, -1 per channel (AWQ paper's g128)" },
  groupRemainder: { type: 'enum', values: ['error', 'partial'], default: 'error', doc: 'allow a shorter last group (never silently regrouped)' },
  nGrid: { type: 'int', min: 1, default: 20, doc: 'grid points for the scale exponent α in [0, 1) (reference auto_scale n_grid)' },
  clip: { type: 'boolean', default: true, doc: 'weight clipping search after scaling (paper §3.2; the reference runs auto_clip by default)' },
  clipGrid: { type: 'int', min: 1, default: 20, doc: 'clipping grid points (reference auto_clip n_grid)' },
  clipMaxShrink: { type: 'number', min: 0, max: 1, maxOpen: true, default: 0.5, doc: 'largest clip shrink fraction (reference auto_clip max_shrink)' },
  clipSampleTokens: { type: 'int', min: 1, default: 512, doc: 'tokens subsampled for the clipping loss (reference auto_clip n_sample_token)' },
  batchSize: { type: 'int', min: 1, default: 32, doc: 'calibration windows per forward (memory only: fewer, larger forwards make the grid search ~4x faster on the GPU)' },
});
export type AwqOptions = OptionsOf<typeof options>;
export const defaults: AwqOptions = defaultsOf(options);

const spec = (o: AwqOptions): WeightQuantSpec => ({ bits: o.bits, groupSize: o.groupSize, sym: false, groupRemainder: o.groupRemainder });

export function validate(o: AwqOptions, model?: Model): void {
  parseOptions('awq', options, o);
  if (model) for (const l of blockLinearNames(model)) checkWeightSpec(spec(o), linearShape(model, l)[1], `awq ${l}`);
}

/** The searched artifact: per block, the scales of each group and the clipping maxima of each linear. */
export interface AwqArtifact {
  /** "<block>.<first linear of group>" → { prev, linears, scales } */
  scales: Record<string, { prev: LinearGroup['prev']; linears: string[]; scales: number[] }>;
  /** "<block>.<linear>" → max |w| per (row, group), row-major [rows, ngroups]. */
  clip: Record<string, number[]>;
}

/** Fake-quantized W with the AWQ quantizer. */
export function awqFakeQuant(W: Float32Array, rows: number, cols: number, o: AwqOptions): Float32Array {
  return awqFakeQuantize(W, rows, cols, spec(o));
}

/**
 * A linear's calibration inputs [tokens, in]: one tensor where it fits a GPU storage binding (every
 * embedded model: the numerics of one tensor), else chunks, one [tokens_i, in] per calibration
 * batch (a 7B block's 128 × 2048 tokens are 4 GiB at in = 4096, past the H100's 2 GiB binding). The
 * linears of a group (same input) share their tensors.
 */
type Chunks = tf.Tensor2D[];
const tokensOf = (xs: Chunks) => xs.reduce((n, x) => n + x.shape[0], 0);
/** The sum of same-shaped tensors, pairwise (tf.addN binds every input at once: past 16 chunks that exceeds a WebGPU shader's storage buffers). */
const sumOf = (ts: tf.Tensor[]) => ts.reduce((a, b) => tf.add(a, b));

/** One chunk's term of chunkMean over n rows or elements in all: tf.mean itself when it is the only chunk, else Σ p / n (the terms are then added in chunk order). */
const meanTerm = (p: tf.Tensor, n: number, only: boolean, axis?: 0) => (only ? tf.mean(p, axis) : tf.sum(tf.div(p, n), axis));

/** The terms' sum in chunk order (sumOf), the terms disposed; a single term is returned as it is. */
function addTerms(terms: tf.Tensor[]): tf.Tensor {
  try {
    return terms.length === 1 ? terms.pop()! : tf.tidy(() => sumOf(terms));
  } finally {
    tf.dispose(terms);
  }
}

/**
 * The mean of f(part) (same shape as the part; default the part) over every part's rows (axis 0) or
 * over everything; tf.mean itself on one part. Each part's f and term are made and their
 * temporaries freed before the next part's: a 7B block's MLP inputs (11.5 GB at 128 × 2048 tokens)
 * never have a whole |x| beside them.
 */
export function chunkMean(parts: tf.Tensor[], axis?: 0, f: (p: tf.Tensor) => tf.Tensor = (p) => p): tf.Tensor {
  const n = parts.reduce((k, p) => k + (axis === 0 ? p.shape[0] : p.size), 0);
  const terms: tf.Tensor[] = [];
  try {
    for (const p of parts) terms.push(tf.tidy(() => meanTerm(f(p), n, parts.length === 1, axis)));
  } catch (e) {
    tf.dispose(terms);
    throw e;
  }
  return addTerms(terms);
}

/**
 * mean((org − cur)²) over all chunks, as chunkMean of the squared differences (the same sums in the
 * same order), with cur's chunks handed over one at a time by `chunks` and each one's temporaries
 * freed before the next: a candidate's output and its squared error are never whole on the device.
 */
export function squaredError(org: tf.Tensor[], chunks: (each: (i: number, c: tf.Tensor) => void) => void): tf.Tensor {
  const n = org.reduce((k, p) => k + p.size, 0);
  const sums: tf.Tensor[] = []; // [] each
  try {
    chunks((i, c) => sums.push(tf.tidy(() => meanTerm(tf.square(tf.sub(org[i], c)), n, org.length === 1))));
    if (sums.length !== org.length) throw new Error(`awq: ${sums.length} output chunks for ${org.length} reference chunks`);
  } catch (e) {
    tf.dispose(sums);
    throw e;
  }
  return addTerms(sums);
}

/** xs / s (s [in], per column) chunk by chunk, each input chunk disposed once its quotient exists: one chunk's copy at a time. */
export function divideChunks(xs: Chunks, s: Float32Array): Chunks {
  const st = tf.tensor1d(s); // [in], uploaded once for every chunk
  try {
    return xs.map((x) => {
      const y = tf.div(x, st) as tf.Tensor2D;
      x.dispose();
      return y;
    });
  } finally {
    st.dispose();
  }
}

/**
 * Whether a lone linear's scale search is cheaper through the Gram matrix of its inputs (gramLoss):
 * building G = XᵀX costs tokens·in² multiply-adds once, a grid point then out·in² instead of
 * tokens·out·in. A 7B down projection at 128 × 2048 tokens: 20 points in 1 + 20 TFLOP instead of
 * 20 × 24.
 */
export function gramCheaper(tokens: number, out: number, inDim: number, nGrid: number): boolean {
  return tokens * inDim * inDim + nGrid * out * inDim * inDim < nGrid * tokens * out * inDim;
}

/** XᵀX [in, in] of the inputs xs ([tokens, in] in chunks), chunk by chunk (the Hessians' product, under the calibration kernel policy). */
export function inputGram(xs: Chunks): tf.Tensor2D {
  let G: tf.Tensor2D | null = null;
  try {
    for (const x of xs) {
      const g: tf.Tensor2D = withCalibKernels(() => tf.tidy(() => gram(x)));
      if (!G) G = g;
      else {
        const sum: tf.Tensor2D = tf.add(G, g);
        tf.dispose([G, g]);
        G = sum;
      }
    }
  } catch (e) {
    G?.dispose();
    throw e;
  }
  if (!G) throw new Error('awq: no inputs for a Gram matrix');
  return G;
}

/**
 * A lone linear's scale-search loss through G = XᵀX [in, in] of its inputs: the mean over tokens
 * and outputs of (x·(W − W')ᵀ)² is Σ_r d_r·G·d_rᵀ / (tokens·out) with D = W − W' [out, in]: the loss
 * squaredError takes token by token, summed in another order.
 */
export function gramLoss(w: tf.Tensor2D, wq: tf.Tensor2D, G: tf.Tensor2D, tokens: number): tf.Scalar {
  return tf.tidy(() => {
    const d = tf.sub(w, wq) as tf.Tensor2D; // [out, in]
    return tf.div(tf.sum(tf.mul(calibMatMulT(d, G), d)), tokens * w.shape[0]) as tf.Scalar; // D·G (G symmetric: D·Gᵀ)
  });
}

/** Rows idx (ascending token indices over all chunks) as one tensor [idx.length, in]. */
function gatherTokens(xs: Chunks, idx: number[]): tf.Tensor2D {
  return tf.tidy(() => {
    const parts: tf.Tensor2D[] = [];
    let off = 0;
    for (const x of xs) {
      const local = idx.filter((t) => t >= off && t < off + x.shape[0]).map((t) => t - off);
      if (local.length > 0) parts.push(tf.gather(x, tf.tensor1d(local, 'int32')));
      off += x.shape[0];
    }
    return tf.concat(parts) as tf.Tensor2D;
  });
}

/** Host W [rows, cols] → tensor [rows, cols]. */
const toT = (m: { data: Float32Array; rows: number; cols: number }) => tf.tensor2d(m.data, [m.rows, m.cols]);

/** Whether a group of block b can be scaled: its producer exists and (for a linear producer) has as
 * many outputs as the group's inputs; a fused producer (GLM) when its last stacked projection is the
 * one feeding the group linearly (v into o, up into down) and as wide as the group's input, since
 * applyGroupScales divides the last rows. */
function scalable(model: Model, g: LinearGroup, b: number): boolean {
  if (g.prev.kind === 'norm') return true;
  const c = model.config;
  const [prevOut] = linearShape(model, g.prev.name, b);
  const [, inDim] = linearShape(model, g.linears[0], b);
  if (ARCHS[c.arch].fused[g.prev.name]) {
    const last = linearParts(c.arch, g.prev.name, { ...blockWidths(c, b), headDim: c.headDim }).at(-1)!;
    return (last.part === 'v' || last.part === 'up') && last.rows === inDim && last.offset + last.rows === prevOut;
  }
  // The reference scales v→o only when v_proj and o_proj have the same shape (no GQA).
  return prevOut === inDim && (g.prev.name !== ARCHS[model.config.arch].attention.v || linearShape(model, g.prev.name).join() === linearShape(model, g.linears[0]).join());
}

/** Scales W's columns in place by s (W·diag(s)). */
function scaleCols(m: HostMatrix, s: ArrayLike<number>): Float32Array {
  const out = new Float32Array(m.data.length);
  for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) out[r * m.cols + c] = Math.fround(m.data[r * m.cols + c] * s[c]);
  return out;
}

/** Applies a group's scales: prev / s (norm weight or prev linear's rows and bias), linears · s. */
export async function applyGroupScales(model: Model, block: number, g: { prev: LinearGroup['prev']; linears: string[] }, s: Float32Array): Promise<void> {
  if (g.prev.kind === 'norm') await foldIntoNorm(model, block, g.prev.name, s);
  else {
    const p = await readLinear(model, block, g.prev.name);
    const off = p.rows - s.length; // reference scale_fc_fc divides the last s.length rows
    const out = Float32Array.from(p.data);
    for (let r = 0; r < s.length; r++) for (let c = 0; c < p.cols; c++) out[(off + r) * p.cols + c] = Math.fround(p.data[(off + r) * p.cols + c] / s[r]);
    replaceWeight(model, p.name, out);
    const bname = linearName(model.config.arch, block, g.prev.name, 'bias');
    if (model.weights.has(bname)) {
      const b = await readFloat32(getWeight(model, bname));
      replaceWeight(model, bname, Float32Array.from(b, (v, i) => (i >= off ? Math.fround(v / s[i - off]) : v)));
    }
  }
  for (const l of g.linears) {
    const m = await readLinear(model, block, l);
    replaceWeight(model, m.name, scaleCols(m, s));
  }
}

/** Where each calibration batch's token rows lie in a linear's inputs: [chunk, first row, rows] (one chunk per batch, or one for all). */
function batchRows(xs: Chunks, inputs: readonly tf.Tensor3D[]): [tf.Tensor2D, number, number][] {
  if (xs.length !== 1 && xs.length !== inputs.length) throw new Error(`awq: ${xs.length} input chunks for ${inputs.length} calibration batches`);
  let at = 0;
  return inputs.map((x, i) => {
    const n = x.shape[0] * x.shape[1];
    if (xs.length !== 1) return [xs[i], 0, n];
    at += n;
    return [xs[0], at - n, n];
  });
}

/** The scale search of every scalable group of one block (reference auto_scale_block); nothing is applied. */
async function searchBlock(ctx: BlockContext, feats: Map<string, Chunks>, o: AwqOptions): Promise<AwqArtifact['scales']> {
  const { model, block, inputs } = ctx;
  const a = ARCHS[model.config.arch];
  const out: AwqArtifact['scales'] = {};
  for (const g of a.groups) {
    if (!scalable(model, g, block)) continue;
    const xs = feats.get(g.linears[0])!; // [tokens, in] in chunks
    const xMean = await hostValues(() => chunkMean(xs, 0, tf.abs)); // [in]
    const mats: HostMatrix[] = [];
    for (const l of g.linears) mats.push(await readLinear(model, block, l));
    // What the group feeds (reference module2inspect): the whole attention (read off as o_proj of
    // its input: the block's attention half) for q/k/v, the whole gated MLP (the block's MLP half on
    // the group's own inputs) for gate/up, else the linear.
    const through = g.linears.includes(a.attention.q) ? 'attention' : g.linears.includes(a.mlp.inputs[0]) && a.mlp.gated ? 'mlp' : null;
    // The group's output [tokens, out] in chunks with weights ws (the caller's tensors, replacing the
    // group's linears for the call): returned, or with `each` handed over chunk by chunk and freed
    // (a candidate's output is never whole on the device).
    const groupOutput = (ws: tf.Tensor2D[] | null, each?: (i: number, y: tf.Tensor) => void): tf.Tensor[] => {
      const parts: tf.Tensor[] = [];
      let k = 0;
      const emit = (y: tf.Tensor) => {
        if (!each) parts.push(y);
        else {
          each(k++, y);
          y.dispose();
        }
      };
      if (!through) {
        // a single linear: y = x Wᵀ
        const w = ws ? ws[0] : toT(mats[0]);
        for (const x of xs) emit(tf.tidy(() => calibMatMulT(x, w)));
        if (!ws) w.dispose();
        return parts;
      }
      const saved = mats.map((m) => getWeight(model, m.name));
      if (ws) mats.forEach((m, k) => model.weights.set(m.name, ws[k]));
      try {
        // The MLP per calibration batch (its [tokens, F] intermediates as the block forward's), on the group's inputs.
        if (through === 'mlp') {
          for (const [x, at, n] of batchRows(xs, inputs)) emit(tf.tidy(() => tf.reshape(ctx.run(tf.expandDims(tf.slice(x, [at, 0], [n, -1]), 0) as tf.Tensor3D, { half: 'mlp' }), [n, -1]))); // [tokens, D] per batch
          return parts;
        }
        // The attention's output: o_proj of its input, each batch's forward ending there (observe).
        const wt = getWeight(model, linearName(model.config.arch, block, a.attention.o)) as tf.Tensor2D;
        let batches = 0;
        ctx.observe((_, c) => {
          batches++;
          emit(tf.tidy(() => calibMatMulT(c, wt))); // [tokens, out]
        }, { linears: [a.attention.o] });
        if (batches !== inputs.length) throw new Error(`awq: the forward pass reached linear '${a.attention.o}' in ${batches} of ${inputs.length} batches`);
        return parts;
      } finally {
        if (ws) mats.forEach((m, k) => model.weights.set(m.name, saved[k]));
      }
    };
    // Big layers (searchOnDevice): the candidates are fake-quantized on the backend, not on the host.
    const onDevice = mats.every((m) => searchOnDevice(m, o)) ? mats.map(toT) : null;
    // A lone linear on the device: the loss through its inputs' Gram matrix where that is cheaper (gramLoss).
    const tokens = tokensOf(xs);
    const G = !through && onDevice && gramCheaper(tokens, mats[0].rows, mats[0].cols, o.nGrid) ? inputGram(xs) : null; // [in, in]
    const org = G ? [] : groupOutput(null);
    let best = Infinity;
    let bestS: Float32Array | null = null;
    // Every grid point's loss stays on the device; one readback per group picks the best (the first
    // minimum, as the reference's `if loss < best_error`).
    const candidates: Float32Array[] = [];
    const losses: tf.Tensor[] = []; // [] each
    try {
      for (let k = 0; k < o.nGrid; k++) {
        const ratio = k / o.nGrid;
        const s = new Float32Array(xMean.length);
        let mx = -Infinity;
        let mn = Infinity;
        for (let j = 0; j < s.length; j++) {
          s[j] = Math.max(Math.fround(Math.pow(xMean[j], ratio)), 1e-4);
          mx = Math.max(mx, s[j]);
          mn = Math.min(mn, s[j]);
        }
        const norm = Math.fround(Math.sqrt(Math.fround(mx * mn)));
        for (let j = 0; j < s.length; j++) s[j] = Math.fround(s[j] / norm);
        // W' = Q(W·diag(s)) / diag(s)
        const ws: tf.Tensor2D[] = onDevice
          ? tf.tidy(() => {
              const st = tf.tensor1d(s);
              return onDevice.map((w) => scaledFakeQuantDevice(w, st, o));
            })
          : mats.map((m) => {
              const q = awqFakeQuant(scaleCols(m, s), m.rows, m.cols, o);
              for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) q[r * m.cols + c] = Math.fround(q[r * m.cols + c] / s[c]);
              return tf.tensor2d(q, [m.rows, m.cols]);
            });
        try {
          losses.push(G ? gramLoss(onDevice![0], ws[0], G, tokens) : squaredError(org, (each) => groupOutput(ws, each)));
        } finally {
          tf.dispose(ws);
        }
        candidates.push(s);
        // The host waits for each grid point's work: without a readback it would queue all of them at
        // once, and memory the GPU has not yet released (Dawn frees after the queued work) piles up.
        await syncDevice();
      }
      const values = await hostValues(() => tf.stack(losses));
      for (let k = 0; k < values.length; k++) {
        if (values[k] < best) {
          best = values[k];
          bestS = candidates[k];
        }
      }
    } finally {
      tf.dispose(losses);
      G?.dispose();
    }
    tf.dispose(org);
    if (onDevice) tf.dispose(onDevice);
    if (!bestS) throw new Error(`awq: scale search failed for block ${block} group ${g.linears.join('/')} (loss not finite)`);
    out[`${block}.${g.linears[0]}`] = { prev: g.prev, linears: g.linears, scales: Array.from(bestS) };
  }
  return out;
}

/** Whether AWQ's searches run on the tfjs backend for this linear: solverKind's choice for its size, and whole groups. */
function searchOnDevice(m: { rows: number; cols: number }, o: AwqOptions): boolean {
  return solverKind(m.rows, m.cols) === 'device' && m.cols % (o.groupSize === -1 ? m.cols : o.groupSize) === 0;
}

/**
 * awqFakeQuant(W·diag(s)) / diag(s) on the tfjs backend, for w [rows, cols] with whole groups and
 * s [cols]: the same fp32 operations as the host's (awqQuantizeMatrix per group), element-wise.
 */
export function scaledFakeQuantDevice(w: tf.Tensor2D, s: tf.Tensor1D, o: AwqOptions): tf.Tensor2D {
  const [rows, cols] = w.shape;
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  if (cols % gs !== 0) throw new Error(`awq fake quantization on the device: ${cols} columns are not whole groups of ${gs}`);
  return tf.tidy(() => {
    const x = tf.reshape(tf.mul(w, s), [rows, cols / gs, gs]); // [rows, groups, gs]
    return tf.div(tf.reshape(awqFakeQuantDevice(x, o.bits), [rows, cols]), s) as tf.Tensor2D;
  });
}

/** The tokens the clipping loss is measured on (reference auto_clip: every (tokens / n_sample_token)-th). */
function clipSampleTokens(tokens: number, o: AwqOptions): number[] {
  const step = Math.max(1, Math.floor(tokens / o.clipSampleTokens));
  return Array.from({ length: Math.ceil(tokens / step) }, (_, i) => i * step);
}

/**
 * Clipping search for one linear (reference auto_clip_layer): best max|w| per (row, group). The
 * loss of a candidate w' is mean over the sampled tokens of (x·(w' − w))², evaluated in float64 as
 * dᵀ G d / n with d = w' − w and G = XᵀX of the group's columns over the sampled tokens: G is shared
 * by every row, so a candidate costs gs² / 2 instead of gs × tokens (the same loss; the first
 * minimum wins, as the reference's `<`).
 */
export function clipSearch(W: Float32Array, rows: number, cols: number, X: Float32Array, tokens: number, o: AwqOptions): Float32Array {
  const idx = clipSampleTokens(tokens, o);
  const sampled = new Float32Array(idx.length * cols); // [n, cols]
  idx.forEach((t, k) => sampled.set(X.subarray(t * cols, (t + 1) * cols), k * cols));
  return clipSearchSampled(W, rows, cols, sampled, o);
}

/** clipSearch on the sampled tokens' inputs Xs [n, cols] (clipSampleTokens' rows, in order). */
function clipSearchSampled(W: Float32Array, rows: number, cols: number, Xs: Float32Array, o: AwqOptions): Float32Array {
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const ng = Math.ceil(cols / gs);
  const n = Xs.length / cols;
  const best = new Float32Array(rows * ng);
  for (let g = 0; g < ng; g++) {
    const c0 = g * gs;
    const w = Math.min(gs, cols - c0);
    const G = new Float64Array(w * w); // upper triangle of Xᵀ X [w, w]
    for (let t = 0; t < n; t++) {
      const x = Xs.subarray(t * cols + c0, t * cols + c0 + w);
      for (let a = 0; a < w; a++) {
        const xa = x[a];
        if (xa === 0) continue;
        for (let b = a; b < w; b++) G[a * w + b] += xa * x[b];
      }
    }
    const d = new Float64Array(w);
    const seg = new Float32Array(w); // a candidate's clipped segment
    const q = new Float32Array(w); // and its fake quantization
    for (let r = 0; r < rows; r++) {
      const seg0 = W.subarray(r * cols + c0, r * cols + c0 + w);
      let orgMax = 0;
      for (let c = 0; c < w; c++) orgMax = Math.max(orgMax, Math.abs(seg0[c]));
      let minErr = 1e9;
      let bestMax = orgMax;
      for (let i = 0; i < Math.floor(o.clipMaxShrink * o.clipGrid); i++) {
        // the clipped segment fake-quantized as one group
        const maxVal = Math.fround(orgMax * (1 - i / o.clipGrid));
        for (let c = 0; c < w; c++) seg[c] = Math.min(Math.max(seg0[c], -maxVal), maxVal);
        awqFakeQuantizeGroup(seg, 0, w, o.bits, q);
        for (let c = 0; c < w; c++) d[c] = q[c] - seg0[c];
        let err = 0; // dᵀ G d from the upper triangle
        for (let a = 0; a < w; a++) {
          if (d[a] === 0) continue;
          let off = 0;
          for (let b = a + 1; b < w; b++) off += G[a * w + b] * d[b];
          err += d[a] * (G[a * w + a] * d[a] + 2 * off);
        }
        err /= n;
        if (err < minErr) {
          minErr = err;
          bestMax = maxVal;
        }
      }
      best[r * ng + g] = bestMax;
    }
  }
  return best;
}

/**
 * clipSearch on the active tfjs backend (webgpu on a GPU host): the same search over the sampled
 * tokens, every (row, group) at once as batched matmuls over the groups, in fp32 (sums in another
 * order than the host's). W [rows, cols] on the host, xs the inputs [tokens, cols] in chunks (not
 * disposed); cols must be whole groups. Only the sampled tokens are touched: no [tokens, cols] readback.
 */
export async function clipSearchDevice(W: Float32Array, rows: number, cols: number, xs: Chunks, o: AwqOptions): Promise<Float32Array> {
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  if (cols % gs !== 0) throw new Error(`awq clipping on the device: ${cols} columns are not whole groups of ${gs}`);
  const ng = cols / gs;
  const idx = clipSampleTokens(tokensOf(xs), o);
  const best = new Float32Array(rows * ng);
  // Rows per pass, so that one [ng, chunk, n] product stays near 2^26 elements.
  const chunk = Math.max(1, Math.min(rows, Math.floor(2 ** 26 / (cols * idx.length / gs))));
  const xt = tf.tidy(() => tf.transpose(tf.reshape(gatherTokens(xs, idx), [idx.length, ng, gs]), [1, 2, 0])); // [ng, gs, n]
  try {
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const n = Math.min(chunk, rows - r0);
      const [w, org, orgMax] = tf.tidy(() => {
        const w = tf.transpose(tf.tensor3d(W.subarray(r0 * cols, (r0 + n) * cols), [n, ng, gs]), [1, 0, 2]); // [ng, n, gs]
        return [w, tf.matMul(w, xt), tf.max(tf.abs(w), 2, true)]; // org [ng, n, tokens], orgMax [ng, n, 1]
      });
      let bestMax: tf.Tensor = orgMax.clone();
      let minErr: tf.Tensor = tf.fill([ng, n, 1], 1e9);
      try {
        for (let i = 0; i < Math.floor(o.clipMaxShrink * o.clipGrid); i++) {
          const next = tf.tidy(() => {
            const maxVal = tf.mul(orgMax, 1 - i / o.clipGrid);
            const cur = tf.minimum(tf.maximum(w, tf.neg(maxVal)), maxVal);
            const out = tf.matMul(awqFakeQuantDevice(cur, o.bits), xt); // [ng, n, tokens]
            const err = tf.mean(tf.square(tf.sub(out, org)), 2, true); // [ng, n, 1]
            const better = tf.less(err, minErr); // strict: the first grid point wins ties, as on the host
            return [tf.where(better, err, minErr), tf.where(better, maxVal, bestMax)];
          });
          tf.dispose([minErr, bestMax]);
          [minErr, bestMax] = next;
        }
        const res = tf.tidy(() => tf.transpose(tf.reshape(bestMax, [ng, n]))); // [n, ng]
        best.set((await res.data()) as Float32Array, r0 * ng);
        res.dispose();
      } finally {
        tf.dispose([w, org, orgMax, minErr, bestMax]);
      }
    }
  } finally {
    xt.dispose();
  }
  return best;
}

/** Clamps W to ±max per (row, group) (reference apply_clip). */
export async function applyClip(model: Model, name: string, maxima: ArrayLike<number>, groupSize: number): Promise<void> {
  const t = getWeight(model, name);
  const [rows, cols] = t.shape as [number, number];
  const gs = groupSize === -1 ? cols : groupSize;
  const ng = Math.ceil(cols / gs);
  const W = await readFloat32(t);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    const m = maxima[r * ng + Math.floor(c / gs)];
    W[r * cols + c] = Math.min(Math.max(W[r * cols + c], -m), m);
  }
  replaceWeight(model, name, W);
}

/** The row ranges of a block linear that AWQ clips: every projection but q and k (the reference
 * skips them: their outputs meet in attention scores, not a linear output), so GLM's fused q|k|v
 * clips its v rows only. */
function clipParts(model: Model, block: number, short: string): { offset: number; rows: number | null }[] {
  const c = model.config;
  const a = ARCHS[c.arch].attention;
  const skip = new Set(['q', 'k', a.q, a.k].filter((n) => !ARCHS[c.arch].fused[n]));
  return linearParts(c.arch, short, { ...blockWidths(c, block), headDim: c.headDim }).filter((p) => !skip.has(p.part));
}

/** max |w| of each (row, column group) of m, row-major [rows, ngroups] (groupSize −1: one group per row). */
function groupMaxima(m: HostMatrix, groupSize: number): Float32Array {
  const gs = groupSize === -1 ? m.cols : groupSize;
  const ng = Math.ceil(m.cols / gs);
  const out = new Float32Array(m.rows * ng);
  for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) out[r * ng + Math.floor(c / gs)] = Math.max(out[r * ng + Math.floor(c / gs)], Math.abs(m.data[r * m.cols + c]));
  return out;
}

/** Runs the AWQ search (scales then clipping) block by block, applying the equivalent transformations as it goes. */
export async function search(model: Model, calib: CalibSet, opts: Partial<AwqOptions> = {}, hooks: MethodHooks = {}): Promise<AwqArtifact> {
  const o = { ...defaults, ...opts };
  validate(o, model);
  const art: AwqArtifact = { scales: {}, clip: {} };
  const a = ARCHS[model.config.arch];
  await runSequential(model, calib, {
    propagate: 'dense',
    batchSize: o.batchSize,
    ...hooks,
    async perBlock(ctx) {
      // Inputs of every linear on the FP block (reference input_feat), [tokens, in] in chunks; one copy per distinct input.
      const feats = new Map<string, Chunks>();
      const copies = new Map<tf.Tensor2D, tf.Tensor2D>();
      await ctx.timed('capture', () =>
        ctx.observe((l, x) => {
          if (!copies.has(x)) copies.set(x, x.clone());
          if (!feats.has(l)) feats.set(l, []);
          feats.get(l)!.push(copies.get(x)!);
        }),
      );
      copies.clear();
      // One tensor per input where it fits a binding (see Chunks).
      const merged = new Map<tf.Tensor2D, tf.Tensor2D>(); // first chunk → the input as one tensor
      for (const [l, xs] of feats) {
        if (xs.length < 2 || xs.reduce((n, x) => n + x.size, 0) > maxTensorElements()) continue;
        if (!merged.has(xs[0])) merged.set(xs[0], tf.concat(xs) as tf.Tensor2D);
        feats.set(l, [merged.get(xs[0])!]);
        xs.forEach((x) => x.dispose()); // chunks shared by the group's linears: disposing twice is harmless
      }
      // The dense outputs (propagated to the next block) are computed before any change.
      await ctx.timed('dense', () => ctx.denseOutputs());
      try {
        const scales = await ctx.timed('scale search', () => searchBlock(ctx, feats, o));
        for (const [key, v] of Object.entries(scales)) {
          const s = Float32Array.from(v.scales);
          await applyGroupScales(model, ctx.block, v, s);
          art.scales[key] = v;
          // The reference also scales the cached inputs of the group's linears (for clipping): once, as they share them.
          const old = new Set(v.linears.flatMap((l) => feats.get(l)!));
          const scaled = divideChunks(feats.get(v.linears[0])!, s);
          for (const l of v.linears) feats.set(l, scaled);
          old.forEach((x) => x.dispose()); // the group's linears share their chunks: disposing twice is harmless
        }
        if (o.clip) {
          await ctx.timed('clip', async () => {
            for (const l of blockLinearNames(model)) {
              const parts = clipParts(model, ctx.block, l);
              if (parts.length === 0) continue;
              const m = await readLinear(model, ctx.block, l);
              const xs = feats.get(l)!;
              // Only the sampled tokens' inputs are read (host search) or touched (device search, searchOnDevice).
              const device = searchOnDevice(m, o);
              const X = device ? null : await hostValues(() => gatherTokens(xs, clipSampleTokens(tokensOf(xs), o)));
              // Rows outside the clipped parts keep their own maxima (clipping them to it changes nothing).
              const maxima = groupMaxima(m, o.groupSize);
              const ng = maxima.length / m.rows;
              for (const p of parts) {
                const rows = p.rows ?? m.rows;
                const w = m.data.subarray(p.offset * m.cols, (p.offset + rows) * m.cols);
                maxima.set(device ? await clipSearchDevice(w, rows, m.cols, xs, o) : clipSearchSampled(w, rows, m.cols, X!, o), p.offset * ng);
              }
              art.clip[`${ctx.block}.${l}`] = Array.from(maxima);
              await applyClip(model, m.name, maxima, o.groupSize);
            }
          });
        }
      } finally {
        new Set([...feats.values()].flat()).forEach((t) => t.dispose());
      }
    },
  });
  return art;
}

/** Applies a searched artifact to an FP model (scales, then clipping): the equivalent transformation without searching again. */
export async function applyArtifact(model: Model, art: AwqArtifact, o: Pick<AwqOptions, 'groupSize'>): Promise<void> {
  for (const [key, v] of Object.entries(art.scales)) await applyGroupScales(model, Number(key.split('.')[0]), v, Float32Array.from(v.scales));
  for (const [key, m] of Object.entries(art.clip)) {
    const [b, l] = key.split('.');
    await applyClip(model, linearName(model.config.arch, Number(b), l), m, o.groupSize);
  }
}

/** Quantizes every block linear with the AWQ quantizer (reference pseudo_quantize_model_weight). */
export async function quantizeAll(model: Model, o: AwqOptions): Promise<Map<string, QuantizedMatrix>> {
  const q = new Map<string, QuantizedMatrix>();
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const l of blockLinearNames(model)) {
      const [rows, cols] = linearShape(model, l, b);
      if (searchOnDevice({ rows, cols }, o)) {
        // big layers (as the searches): the codes and the weight on the backend
        const name = linearName(model.config.arch, b, l);
        const { quantized, weight } = await awqQuantizeDevice(getWeight(model, name) as tf.Tensor2D, spec(o));
        replaceWeight(model, name, weight);
        q.set(name, quantized);
        continue;
      }
      const m = await readLinear(model, b, l);
      const qm = awqQuantizeMatrix(m.data, m.rows, m.cols, spec(o));
      replaceWeight(model, m.name, dequantizeMatrix(qm));
      q.set(m.name, qm);
    }
  }
  return q;
}

export async function compress(model: Model, calib: CalibSet | null, opts: Partial<AwqOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o, model);
  if (!calib) throw new Error('awq needs a calibration set');
  const art = await search(model, calib, o, hooks);
  const quantized = await quantizeAll(model, o);
  return {
    method: 'awq',
    config: { bits: o.bits, groupSize: o.groupSize, clip: o.clip, nGrid: o.nGrid },
    calib: describeCalib(calib),
    quantized,
    actQuant: null,
    artifacts: { awq: art },
    stats: {},
  };
}

export const module = {
  display: 'AWQ',
  kind: 'quantization',
  inPaper: true,
  options,
  describe: 'AWQ: activation-aware per-channel scale search + weight clipping, folded into the previous op',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<AwqOptions>;
