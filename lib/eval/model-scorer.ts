// The Scorer over a kit model: batches run through the transformer's forward (with the padding
// mask when a batch is padded; the model's own activation quantization applies inside forward),
// on whatever backend tfjs is on, with batches bounded by the model's attention-score size and by
// the device's largest buffer binding.
import { disposeForwardPrep, forward, prepareForward } from '../models/transformer';
import { maxTensorElements } from '../runtime/backend';
import type { Model } from '../models/types';
import { maxHeads } from '../models/weights';
import { type LogitsFn, type LogitsSession, SCORER_DEFAULTS, type ScorerOptions, TensorScorer } from './scorer';

/** The model's logits function for a TensorScorer: forward() with the padding mask when there is
 * one; scoring is inference, so the custom kernels run where the kernel policy turns them on. */
export function modelLogitsFn(model: Model): LogitsFn {
  return (ids, mask) => forward(model, ids, mask ? { attentionMask: mask, kernels: true } : { kernels: true });
}

/** Per scoring run: the model's weights laid out for the active backend once (prepareForward), every
 * batch's forward on them, and the copies freed when the run ends. */
export function modelLogitsSession(model: Model): LogitsSession {
  const prep = prepareForward(model);
  return {
    // TensorScorer pads on the right only (see its run()): say so, for kernels that know only the causal mask.
    logits: (ids, mask) => forward(model, ids, mask ? { attentionMask: mask, rightPadding: true, kernels: true, prep } : { kernels: true, prep }),
    close: () => disposeForwardPrep(prep),
  };
}

/** A Scorer whose sequences are at most maxLength tokens (default: the model's context, config.maxPositions). */
export function modelScorer(model: Model, opts: Partial<ScorerOptions> = {}, maxLength = model.config.maxPositions): TensorScorer {
  // The [B, T, V] logits and [B·heads, T, T] scores must each fit one GPU buffer binding.
  const cap = maxTensorElements();
  const bounds = { maxLogitElements: Math.min(SCORER_DEFAULTS.maxLogitElements, cap), maxAttentionElements: Math.min(SCORER_DEFAULTS.maxAttentionElements, cap) };
  return new TensorScorer({ open: () => modelLogitsSession(model) }, model.config.vocabSize, maxLength, { heads: maxHeads(model.config), ...bounds, ...opts });
}
