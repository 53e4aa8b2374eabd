// Magnitude pruning (the baseline of the Wanda and SparseGPT papers): zero the weights of smallest
// |W|, compared over the whole matrix (unstructured) or within each group of M input columns (N:M).
// Needs no calibration data; every linear of every block is pruned independently.
import * as tf from '@tensorflow/tfjs';
import { blockLinears, linearName } from '../models/arch';
import type { Model } from '../models/types';
import { sparsityReport } from '../quant/sparse';
import type { CalibSet } from './calib';
import { defaultsOf, defineOptions, parseOptions, type InputOf, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';
import { solverKind, zeroLowestDevice } from './solver';
import {
  checkPatternFits,
  patternLabel,
  pruneCount,
  selectMask,
  toPattern,
  type SparsityPattern,
} from '../quant/sparse-pattern';

export const options = defineOptions({
  pattern: { type: 'pattern', default: { kind: 'unstructured', ratio: 0.5 }, doc: 'unstructured ratio per matrix or N:M (Wanda paper §4 baselines: 50%, 2:4, 4:8)' },
});
export type MagnitudeOptions = OptionsOf<typeof options>;
export const defaults: MagnitudeOptions = defaultsOf(options);

/** Zeroes w where mask is 1; returns a new tensor (w is not disposed). */
export async function applyMask(w: tf.Tensor2D, mask: Uint8Array): Promise<tf.Tensor2D> {
  const data = (await w.data()) as Float32Array;
  if (data.length !== mask.length) throw new Error(`mask of ${mask.length} entries for a weight of ${data.length}`);
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = mask[i] ? 0 : data[i];
  return tf.tensor2d(out, w.shape as [number, number]);
}

/** The magnitude mask of one weight matrix [out, in] (1 = pruned). */
export async function magnitudeMask(w: tf.Tensor2D, pattern: SparsityPattern): Promise<Uint8Array> {
  const [rows, cols] = w.shape;
  const data = (await w.data()) as Float32Array;
  const score = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) score[i] = Math.abs(data[i]);
  return selectMask(score, rows, cols, pattern, 'matrix');
}

/**
 * Prunes one weight matrix [out, in] by magnitude; returns the pruned copy. Unstructured patterns
 * on big layers (solverKind 'device') are selected on the backend (maskLowestDevice: the entries
 * of the host's maskLowestGlobal) without reading the weight back.
 */
export async function magnitudePrune(w: tf.Tensor2D, pattern: SparsityPattern): Promise<tf.Tensor2D> {
  const [rows, cols] = w.shape;
  if (pattern.kind === 'unstructured' && solverKind(rows, cols) === 'device') {
    const score = tf.abs(w);
    try {
      return await zeroLowestDevice(w, score, pruneCount(rows * cols, pattern.ratio), 'all');
    } finally {
      score.dispose();
    }
  }
  return applyMask(w, await magnitudeMask(w, pattern));
}

/** Checks every block linear of the model against the pattern before any work (N:M divisibility). */
export function checkModelPattern(model: Model, pattern: SparsityPattern): void {
  const arch = model.config.arch;
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const l of blockLinears(arch)) {
      const name = linearName(arch, b, l);
      const w = model.weights.get(name) as tf.Tensor2D | undefined;
      if (!w) throw new Error(`model '${model.name}' has no weight '${name}'`);
      checkPatternFits(pattern, w.shape[1], name);
    }
  }
}

export function resolveOptions(opts: MagnitudeInput = {}): MagnitudeOptions {
  return parseOptions('magnitude', options, opts);
}

export type MagnitudeInput = InputOf<typeof options>;

export function validate(opts: MagnitudeInput, model?: Model): void {
  const o = resolveOptions(opts);
  if (model) checkModelPattern(model, o.pattern);
}

/** Prunes every linear of every block in place (old tensors disposed). Calibration is not used. */
export async function compress(model: Model, _calib: CalibSet | null, opts: MagnitudeInput = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = resolveOptions(opts);
  checkModelPattern(model, o.pattern);
  const arch = model.config.arch;
  for (let b = 0; b < model.config.numLayers; b++) {
    const t0 = performance.now();
    for (const l of blockLinears(arch)) {
      const name = linearName(arch, b, l);
      const w = model.weights.get(name) as tf.Tensor2D;
      const pruned = await magnitudePrune(w, o.pattern);
      model.weights.set(name, pruned);
      w.dispose();
    }
    hooks.sample?.();
    hooks.onBlockDone?.(b, performance.now() - t0);
  }
  const rep = await sparsityReport(model);
  return {
    method: 'magnitude',
    config: { pattern: patternLabel(o.pattern) },
    calib: 'none',
    quantized: new Map(),
    actQuant: null,
    artifacts: { sparsity: rep.perLayer },
    stats: { sparsity: rep.global },
  };
}

export const module = {
  display: 'Magnitude',
  kind: 'sparsity',
  inPaper: false,
  options,
  describe: 'magnitude pruning: smallest |W| per matrix (unstructured) or per group of M columns (N:M)',
  defaults,
  needsCalib: false,
  validate,
  compress,
} satisfies MethodModule<MagnitudeInput>;
