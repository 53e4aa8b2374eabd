// The Scorer over a kit model. On webgpu it is the inference executor's GPU-side scorer
// (lib/engine: planned forward, ragged batches, log-likelihoods on the GPU); elsewhere (wasm, cpu)
// the TensorScorer over the transformer's forward (with the padding mask when a batch is padded;
// the model's own activation quantization applies inside forward), batches bounded by the model's
// attention-score size and by the device's largest buffer binding. LLMCB_SCORER=tfjs keeps the
// tfjs path on webgpu too (the exact reference the executor is checked against).
import { executorFamilyUnsupported } from '../engine/executor';
import { EngineScorer } from '../engine/scorer';
import { disposeForwardPrep, forward, prepareForward } from '../models/transformer';
import { maxTensorElements, webgpuDevice } from '../runtime/backend';
import type { InferenceModel } from '../engine/inference';
import { maxHeads } from '../models/weights';
import { type LogitsSession, SCORER_DEFAULTS, type Scorer, type ScorerOptions, TensorScorer } from './scorer';

/** Per scoring run: the model's weights laid out for the active backend once (prepareForward), every
 * batch's forward on them, and the copies freed when the run ends. */
export function modelLogitsSession(model: InferenceModel): LogitsSession {
  const prep = prepareForward(model);
  return {
    // TensorScorer pads on the right only (see its run()): say so, for kernels that know only the causal mask.
    logits: (ids, mask) => forward(model, ids, mask ? { attentionMask: mask, rightPadding: true, kernels: true, prep } : { kernels: true, prep }),
    close: () => disposeForwardPrep(prep),
  };
}

/** Which scorer modelScorer builds on webgpu: 'executor' (default) or 'tfjs' (LLMCB_SCORER). */
export function scorerEngine(): 'executor' | 'tfjs' {
  const v = process.env.LLMCB_SCORER ?? 'executor';
  if (v !== 'executor' && v !== 'tfjs') throw new Error(`LLMCB_SCORER='${v}' (choose executor or tfjs)`);
  return v;
}

/** A tfjs Scorer whose sequences are at most maxLength tokens (default: the model's context). */
export function tensorScorer(model: InferenceModel, opts: Partial<ScorerOptions> = {}, maxLength = model.config.maxPositions): TensorScorer {
  // The [B, T, V] logits and [B·heads, T, T] scores must each fit one GPU buffer binding; on webgpu
  // the flat [B·T·V] gather of the scored logits also needs indices below 2^24 (tfjs-webgpu
  // carries int32 gather indices through f32: larger ones pick the wrong element).
  const cap = maxTensorElements();
  const gather = webgpuDevice() ? 2 ** 24 : Infinity;
  const bounds = { maxLogitElements: Math.min(SCORER_DEFAULTS.maxLogitElements, cap, gather), maxAttentionElements: Math.min(SCORER_DEFAULTS.maxAttentionElements, cap) };
  return new TensorScorer({ open: () => modelLogitsSession(model) }, model.config.vocabSize, maxLength, { heads: maxHeads(model.config), ...bounds, ...opts });
}

/**
 * A Scorer whose sequences are at most maxLength tokens (default: the model's context). On webgpu
 * the executor's (opts.maxBatchTokens caps its tokens per step), except for families it has no
 * kernels for (executorFamilyUnsupported: sliding windows); elsewhere the TensorScorer.
 */
export function modelScorer(model: InferenceModel, opts: Partial<ScorerOptions> = {}, maxLength = model.config.maxPositions): Scorer {
  if (webgpuDevice() && scorerEngine() === 'executor' && executorFamilyUnsupported(model.config) === null) {
    return new EngineScorer(model, maxLength, { executor: opts.maxBatchTokens ? { maxTokens: Math.max(opts.maxBatchTokens, maxLength) } : {}, label: opts.label ?? model.name });
  }
  return tensorScorer(model, opts, maxLength);
}
