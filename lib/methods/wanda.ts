// Wanda (Sun et al., 2023, "A Simple and Effective Pruning Approach for LLMs"): the importance of
// W[i,j] is |W[i,j]| · ‖X_j‖₂, the weight magnitude times the L2 norm of input channel j over all
// calibration tokens; weights are compared per output row (unstructured) or per group of M input
// columns (N:M). No weight update. Blocks are pruned in order, each calibrated on the outputs of
// the already-pruned blocks before it.
import * as tf from '@tensorflow/tfjs';
import { linearName } from '../models/arch';
import type { Model } from '../models/types';
import { sparsityReport } from '../quant/sparse';
import { patternLabel, pruneCount, selectMask, toPattern, type SparsityPattern } from '../quant/sparse-pattern';
import { describeCalib, type CalibSet } from './calib';
import { applyMask, checkModelPattern } from './magnitude';
import { runSequential, sequentialDefaults, subPhase } from './sequential';
import { defaultsOf, defineOptions, parseOptions, type InputOf, type OptionsOf } from './options';
import { solverKind, zeroLowestDevice } from './solver';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  pattern: { type: 'pattern', default: { kind: 'unstructured', ratio: 0.5 }, doc: 'unstructured ratio per output row or N:M (Wanda paper §3: 50%, 2:4, 4:8)' },
  batchSize: { type: 'int', min: 1, default: sequentialDefaults.batchSize, doc: 'calibration windows per forward (memory only, not an algorithm parameter)' },
});
export type WandaOptions = OptionsOf<typeof options>;
export const defaults: WandaOptions = defaultsOf(options);

export function resolveOptions(opts: WandaInput = {}): WandaOptions {
  return parseOptions('wanda', options, opts);
}

/** Per-linear state: the running Σ x_j² over calibration tokens (addBatch / prune / dispose). */
export class WandaLayer {
  private sumSq: tf.Tensor1D | null = null; // [in] Σ over tokens of x²
  tokens = 0;

  constructor(readonly name: string, readonly inFeatures: number) {}

  /** x: [tokens, in]; not disposed. */
  addBatch(x: tf.Tensor2D): void {
    if (x.shape[1] !== this.inFeatures) {
      throw new Error(`Wanda '${this.name}': input has ${x.shape[1]} features, the weight expects ${this.inFeatures}`);
    }
    // tf.keep: forward hooks run inside the block's tf.tidy, which would free the running sum
    const old = this.sumSq;
    this.sumSq = tf.keep(tf.tidy(() => {
      const add = tf.sum(tf.square(x), 0) as tf.Tensor1D; // [in]
      return old ? (tf.add(old, add) as tf.Tensor1D) : add;
    }));
    old?.dispose();
    this.tokens += x.shape[0];
  }

  /** The Wanda score |W| · ‖X_j‖₂ [out, in] on the backend (caller disposes). */
  scoreTensor(w: tf.Tensor2D): tf.Tensor2D {
    if (!this.sumSq) throw new Error(`Wanda '${this.name}': no calibration batches were added`);
    return tf.tidy(() => tf.mul(tf.abs(w), tf.sqrt(this.sumSq as tf.Tensor1D).reshape([1, -1]))); // [out, in]
  }

  /** The Wanda score |W| · ‖X_j‖₂ as host data, [out, in] row-major. */
  async score(w: tf.Tensor2D): Promise<Float32Array> {
    const s = this.scoreTensor(w);
    const data = (await s.data()) as Float32Array;
    s.dispose();
    return data;
  }

  async mask(w: tf.Tensor2D, pattern: SparsityPattern): Promise<Uint8Array> {
    const [rows, cols] = w.shape;
    return selectMask(await this.score(w), rows, cols, pattern, 'row');
  }

  /**
   * Returns the pruned copy of w [out, in]. Unstructured patterns are selected on the device
   * (maskLowestDevice, the same entries as the host's maskLowestPerRow) unless solverKind says host.
   */
  async prune(w: tf.Tensor2D, pattern: SparsityPattern): Promise<tf.Tensor2D> {
    if (pattern.kind === 'unstructured' && solverKind(w.shape[0], w.shape[1]) === 'device') {
      const s = this.scoreTensor(w);
      try {
        return await subPhase('select', () => zeroLowestDevice(w, s, pruneCount(w.shape[1], pattern.ratio), 'row'));
      } finally {
        s.dispose();
      }
    }
    return applyMask(w, await this.mask(w, pattern));
  }

  dispose(): void {
    this.sumSq?.dispose();
    this.sumSq = null;
  }
}

export type WandaInput = InputOf<typeof options>;

export function validate(opts: WandaInput, model?: Model): void {
  const o = resolveOptions(opts);
  if (model) checkModelPattern(model, o.pattern);
}

/**
 * Prunes every linear of every block in place, block by block: each block's linears are scored
 * on the same block inputs (one calibration pass), then the pruned block's outputs feed the next.
 */
export async function compress(model: Model, calib: CalibSet | null, opts: WandaInput = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = resolveOptions(opts);
  if (!calib) throw new Error('wanda needs a calibration set');
  checkModelPattern(model, o.pattern);
  await runSequential(model, calib, {
    propagate: 'compressed',
    batchSize: o.batchSize,
    ...hooks,
    async perBlock(ctx) {
      const layers = new Map<string, WandaLayer>();
      try {
        for (const l of ctx.linears) {
          const name = linearName(model.config.arch, ctx.block, l);
          layers.set(l, new WandaLayer(name, (model.weights.get(name) as tf.Tensor2D).shape[1]));
        }
        await ctx.timed('capture', () => ctx.observe((l, x) => layers.get(l)!.addBatch(x)));
        hooks.sample?.();
        await ctx.timed('prune', async () => {
          for (const layer of layers.values()) {
            const w = model.weights.get(layer.name) as tf.Tensor2D;
            model.weights.set(layer.name, await layer.prune(w, o.pattern));
            w.dispose();
          }
        });
      } finally {
        layers.forEach((x) => x.dispose());
      }
    },
  });
  const rep = await sparsityReport(model);
  return {
    method: 'wanda',
    config: { pattern: patternLabel(o.pattern) },
    calib: describeCalib(calib),
    quantized: new Map(),
    actQuant: null,
    artifacts: { sparsity: rep.perLayer },
    stats: { sparsity: rep.global },
  };
}

export const module = {
  display: 'Wanda',
  kind: 'sparsity',
  inPaper: true,
  options,
  describe: 'Wanda: prune by |W|·‖X‖₂ per output row (unstructured) or per group of M columns (N:M)',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<WandaInput>;
