// SmoothQuant (Xiao et al., 2023): migrate activation outliers into the weights with per-channel
// scales s_j = max|X_j|^α / max|W_j|^(1-α) folded into the preceding norm, then W8A8 fake
// quantization (weights per-channel absmax int8; activations per-token dynamic absmax int8, or
// per-tensor static scales calibrated after smoothing). The search (activation maxima) is
// separate from applying it, and its result is a serializable artifact.
import * as tf from '@tensorflow/tfjs';
import { ARCHS, linearName } from '../models/arch';
import type { Model } from '../models/types';
import { absmaxQuantizeMatrix, actKey, checkActSpec, type ActQuantSpec } from '../quant/act';
import { getWeight, linearShape, observeAbsMax, readFloat32, readLinear, replaceWeight, type HostMatrix } from '../quant/weights';
import { dequantizeMatrix, type QuantizedMatrix } from '../quant/quantizer';
import { absmaxQuantizeDevice } from '../quant/quantizer-device';
import { offloadToHost } from '../runtime/residency';
import { describeCalib, type CalibSet } from './calib';
import { blockLinearNames, blockWeightNames, runSequential, streamingOn } from './sequential';
import { solverKind } from './solver';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  alpha: { type: 'number', min: 0, max: 1, default: 0.5, doc: 'migration strength α (paper §4.2: 0.5 for most models, 0.8–0.85 for GLM/OPT-175B)' },
  smooth: { type: 'boolean', default: true, doc: 'SmoothQuant proper; false = the naive W8A8 baseline (paper Table 3 "W8A8")' },
  weightBits: { type: 'int', min: 2, max: 8, default: 8, doc: 'weight bits (W8A8)' },
  weightGranularity: { type: 'enum', values: ['per_channel', 'per_tensor'], default: 'per_channel', doc: 'weight scales (reference fake_quant --weight_quant default per_channel)' },
  actBits: { type: 'int', min: 2, max: 16, default: 8, doc: 'activation bits (W8A8)' },
  actGranularity: { type: 'enum', values: ['per_token', 'per_tensor'], default: 'per_token', doc: 'dynamic per-token (paper O1/O3, reference default) or per-tensor' },
  actStatic: { type: 'boolean', default: false, doc: 'per-tensor scales calibrated once after smoothing (paper O3 static, needs actGranularity per_tensor) instead of dynamic' },
  batchSize: { type: 'int', min: 1, default: 8, doc: 'calibration windows per forward (memory only, not an algorithm parameter)' },
});
export type SmoothQuantOptions = OptionsOf<typeof options>;
export const defaults: SmoothQuantOptions = defaultsOf(options);

export function validate(o: SmoothQuantOptions): void {
  parseOptions('smoothquant', options, o);
  checkActSpec({ bits: o.actBits, granularity: o.actGranularity, staticAbsmax: null });
  if (o.actStatic && o.actGranularity !== 'per_tensor') throw new Error('smoothquant: static activation scales need actGranularity per_tensor');
}

/** Searched artifact: per-block, per-group activation channel maxima (max over calibration tokens of |x_j|). */
export interface ActScales {
  /** "<block>.<first linear of the group>" → max|x_j| per input channel. */
  maxima: Record<string, number[]>;
}

/** Per-channel activation maxima of every linear-group input on the FP model (reference get_act_scales). */
export async function collectActScales(model: Model, calib: CalibSet, batchSize = defaults.batchSize, hooks: MethodHooks = {}): Promise<ActScales> {
  const maxima: Record<string, number[]> = {};
  const firsts = new Set(ARCHS[model.config.arch].groups.map((g) => g.linears[0]));
  await runSequential(model, calib, {
    propagate: 'dense',
    batchSize,
    ...hooks,
    async perBlock(ctx) {
      for (const [l, m] of await observeAbsMax((fn) => ctx.observe(fn), (l) => firsts.has(l), true)) {
        const key = actKey(ctx.block, l);
        const cur = maxima[key];
        maxima[key] = cur ? cur.map((v, i) => Math.max(v, m[i])) : Array.from(m);
      }
    },
  });
  return { maxima };
}

/** The smoothing factors s_j = clamp(max|X_j|^α / max(max_i|W_ij| over the group, 1e-5)^(1-α), 1e-5) (reference smooth_ln_fcs). */
export function smoothingScales(actMax: ArrayLike<number>, weights: { data: Float32Array; rows: number; cols: number }[], alpha: number): Float32Array {
  const f = Math.fround;
  const cols = actMax.length;
  const wmax = new Float64Array(cols); // max_i |W_ij| over the group, row by row (memory order)
  for (const w of weights) {
    for (let r = 0; r < w.rows; r++) for (let j = 0; j < cols; j++) wmax[j] = Math.max(wmax[j], Math.abs(w.data[r * w.cols + j]));
  }
  const s = new Float32Array(cols);
  for (let j = 0; j < cols; j++) s[j] = f(Math.max(f(f(Math.pow(actMax[j], alpha)) / f(Math.pow(f(Math.max(wmax[j], 1e-5)), 1 - alpha))), 1e-5));
  return s;
}

/**
 * Applies smoothing: for every linear group fed by a norm, divides the norm's weight (and bias)
 * by s and multiplies the group's weight columns by s. The FP function is unchanged.
 * Returns the scales used (per group key).
 */
export async function applySmoothing(model: Model, scales: ActScales, alpha: number): Promise<Record<string, number[]>> {
  if (!(alpha >= 0 && alpha <= 1)) throw new Error(`smoothquant: alpha must be in [0, 1], got ${alpha}`);
  const spec = ARCHS[model.config.arch];
  const used: Record<string, number[]> = {};
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const g of spec.groups) {
      if (g.prev.kind !== 'norm') continue; // the reference smooths norm→linears only
      const key = actKey(b, g.linears[0]);
      const actMax = scales.maxima[key];
      if (!actMax) throw new Error(`smoothquant: no activation maxima for block ${b} linear '${g.linears[0]}'`);
      const mats: HostMatrix[] = [];
      for (const l of g.linears) mats.push(await readLinear(model, b, l));
      const s = smoothingScales(actMax, mats, alpha);
      await foldIntoNorm(model, b, g.prev.name, s);
      for (const m of mats) {
        const out = new Float32Array(m.data.length);
        for (let r = 0; r < m.rows; r++) for (let c = 0; c < m.cols; c++) out[r * m.cols + c] = Math.fround(m.data[r * m.cols + c] * s[c]);
        replaceWeight(model, m.name, out);
      }
      used[key] = Array.from(s);
    }
  }
  return used;
}

/** norm.weight /= s (and norm.bias /= s for LayerNorm). */
export async function foldIntoNorm(model: Model, block: number, norm: string, s: Float32Array): Promise<void> {
  const base = `${ARCHS[model.config.arch].blockPrefix(block)}${ARCHS[model.config.arch].norms[norm]}`;
  for (const part of ['weight', 'bias']) {
    const name = `${base}.${part}`;
    if (!model.weights.has(name)) {
      if (part === 'weight') throw new Error(`model has no norm weight '${name}'`);
      continue;
    }
    const w = await readFloat32(getWeight(model, name));
    if (w.length !== s.length) throw new Error(`'${name}' has ${w.length} entries, scales ${s.length}`);
    replaceWeight(model, name, Float32Array.from(w, (v, i) => Math.fround(v / s[i])));
  }
}

/** Per-tensor absmax of every linear's input (static activation scales), on the model as it is. */
export async function collectStaticAbsmax(model: Model, calib: CalibSet, batchSize: number, hooks: MethodHooks = {}): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  await runSequential(model, calib, {
    propagate: 'dense',
    batchSize,
    ...hooks,
    async perBlock(ctx) {
      for (const [l, m] of await observeAbsMax((fn) => ctx.observe(fn), () => true, false)) {
        const key = actKey(ctx.block, l);
        out[key] = Math.max(out[key] ?? 0, m[0]);
      }
    },
  });
  return out;
}

export async function compress(model: Model, calib: CalibSet | null, opts: Partial<SmoothQuantOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o);
  if (!calib && (o.smooth || o.actStatic)) throw new Error('smoothquant needs a calibration set (activation maxima)');
  const artifacts: Record<string, unknown> = {};
  if (o.smooth) {
    const act = await collectActScales(model, calib!, o.batchSize, hooks);
    artifacts.act_maxima = act.maxima;
    artifacts.smoothing_scales = await applySmoothing(model, act, o.alpha);
  }
  let staticAbsmax: Record<string, number> | null = null;
  if (o.actStatic) {
    staticAbsmax = await collectStaticAbsmax(model, calib!, o.batchSize, hooks);
    artifacts.static_act_absmax = staticAbsmax;
  }
  // Weights per linear: big ones on the backend (absmaxQuantizeDevice; a 7B model's 6.5B weights take
  // minutes in host loops), each block's moved back to the host after it when layers stream.
  const quantized = new Map<string, QuantizedMatrix>();
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const l of blockLinearNames(model)) {
      const [rows, cols] = linearShape(model, l, b);
      if (solverKind(rows, cols) === 'device') {
        const name = linearName(model.config.arch, b, l);
        const r = await absmaxQuantizeDevice(getWeight(model, name) as tf.Tensor2D, o.weightBits, o.weightGranularity);
        replaceWeight(model, name, r.weight);
        quantized.set(name, r.quantized);
        continue;
      }
      const m = await readLinear(model, b, l);
      const q = absmaxQuantizeMatrix(m.data, m.rows, m.cols, o.weightBits, o.weightGranularity);
      replaceWeight(model, m.name, dequantizeMatrix(q));
      quantized.set(m.name, q);
    }
    if (streamingOn()) await offloadToHost(model.weights, blockWeightNames(model, b));
    hooks.sample?.();
  }
  const actQuant: ActQuantSpec = { bits: o.actBits, granularity: o.actGranularity, staticAbsmax };
  return {
    method: o.smooth ? 'smoothquant' : 'w8a8-naive',
    config: {
      ...(o.smooth ? { alpha: o.alpha } : {}),
      weightBits: o.weightBits, weightGranularity: o.weightGranularity, actBits: o.actBits, actGranularity: o.actGranularity, actStatic: o.actStatic,
    },
    calib: calib ? describeCalib(calib) : 'none',
    quantized,
    actQuant,
    artifacts,
    stats: {},
  };
}

export const module = {
  display: 'SmoothQuant',
  kind: 'quantization',
  inPaper: true,
  options,
  describe: 'SmoothQuant: migrate activation outliers into weights (alpha), then W8A8 fake quantization',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<SmoothQuantOptions>;
