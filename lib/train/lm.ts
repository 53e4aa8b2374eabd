// Causal-LM objective and held-out perplexity over the engine's differentiable forward().
import * as tf from '@tensorflow/tfjs';
import { ARCHS } from '../models/arch';
import { windowPerplexity } from '../eval/perplexity';
import { head, runBlock } from '../models/transformer';
import { constMatMul, matMulT } from '../models/matmul';
import type { Model } from '../models/types';
import type { LmBatch } from './data';

/** OPT's learned position table is offset by 2 (as in the engine's embed()). */
const OPT_POSITION_OFFSET = 2;

/**
 * The engine's embed() for training (no padding, positions 0..T-1), written so that its gradient
 * is deterministic and exists on every backend: tf.gather's gradient needs UnsortedSegmentSum,
 * which the wasm backend lacks and which WebGPU computes with float atomics (summation order
 * varies between runs, so a resumed run could not reproduce the loss). A one-hot matmul gives the
 * same values (one non-zero term per row) and a plain matmul gradient. Tested equal to embed().
 */
export function trainEmbed(model: Model, ids: tf.Tensor2D): tf.Tensor3D {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const [B, T] = ids.shape;
  return tf.tidy(() => {
    const E = model.weights.get(spec.embedTokens);
    if (!E) throw new Error(`model '${model.name}' has no weight '${spec.embedTokens}' (split embeddings cannot be trained)`);
    const oneHot = tf.oneHot(tf.reshape(tf.cast(ids, 'int32'), [B * T]), c.vocabSize).toFloat() as tf.Tensor2D; // [tokens, V]
    let x: tf.Tensor = constMatMul(oneHot, E as tf.Tensor2D); // [tokens, E]
    if (c.arch !== 'opt') return tf.reshape(x, [B, T, c.hiddenSize]) as tf.Tensor3D;
    if (spec.projectIn && model.weights.has(spec.projectIn)) x = matMulT(x as tf.Tensor2D, model.weights.get(spec.projectIn) as tf.Tensor2D);
    if (T > c.maxPositions) throw new Error(`OPT supports ${c.maxPositions} positions; got ${T}`);
    const P = model.weights.get(spec.embedPositions!)!;
    const pe = tf.slice(P, [OPT_POSITION_OFFSET, 0], [T, c.hiddenSize]); // [T, D]
    return tf.add(tf.reshape(x, [B, T, c.hiddenSize]), pe) as tf.Tensor3D;
  });
}

/** Logits [B, T, V] through trainEmbed and the engine's blocks and head (same values as forward()). */
export function trainLogits(model: Model, ids: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    let x = trainEmbed(model, ids);
    for (let i = 0; i < model.config.numLayers; i++) x = runBlock(model, i, x);
    return head(model, x);
  });
}

/** Mean next-token cross-entropy of a batch (targets = inputs shifted by one). */
export function lmLoss(model: Model, b: LmBatch): tf.Scalar {
  return tf.tidy(() => {
    const V = model.config.vocabSize;
    const ids = tf.tensor2d(b.inputs, [b.batch, b.seqLen], 'int32');
    const logits = tf.reshape(trainLogits(model, ids), [b.batch * b.seqLen, V]); // [tokens, V]
    const labels = tf.oneHot(tf.tensor1d(b.targets, 'int32'), V).toFloat(); // [tokens, V]
    // softmaxCrossEntropy has a fused gradient (softmax − labels): no gather over tokens × V.
    return tf.losses.softmaxCrossEntropy(labels, logits, undefined, undefined, tf.Reduction.MEAN) as tf.Scalar;
  });
}

export interface PerplexityResult {
  nll: number; // summed negative log-likelihood (nats)
  predicted: number; // predicted positions
  meanNll: number; // nll / predicted
  ppl: number; // exp(meanNll)
  windows: number;
}

export interface PerplexityOptions {
  seqLen: number; // window length (the model's context or less)
  batch: number; // windows per forward
  maxWindows: number; // evaluate at most this many windows (Infinity = all)
}
export const PERPLEXITY_DEFAULTS: PerplexityOptions = { seqLen: 256, batch: 8, maxWindows: Infinity };

/**
 * Token perplexity by the kit's protocol (lib/eval's windowPerplexity): non-overlapping windows of
 * seqLen tokens, no BOS, loss over every predicted position (seqLen − 1 per window),
 * PPL = exp(total NLL / predicted).
 */
export async function perplexity(model: Model, tokens: Int32Array, options: Partial<PerplexityOptions> = {}): Promise<PerplexityResult> {
  const o = { ...PERPLEXITY_DEFAULTS, ...options };
  if (o.seqLen > model.config.maxPositions) throw new Error(`perplexity: seqLen ${o.seqLen} exceeds the model's ${model.config.maxPositions} positions`);
  const r = await windowPerplexity(model, tokens, { seqlen: o.seqLen, batch: o.batch, windows: Number.isFinite(o.maxWindows) ? o.maxWindows : null });
  return { nll: r.nll, predicted: r.predicted, meanNll: r.meanNll, ppl: r.ppl, windows: r.windows };
}
