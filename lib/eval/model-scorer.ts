// The Scorer over a kit model: batches run through the transformer's forward with the padding
// mask (right padding), on whatever backend tfjs is on.
import { forward } from '../models/transformer';
import type { Model } from '../models/types';
import { type ScorerOptions, TensorScorer } from './scorer';

/** A Scorer whose sequences are at most the model's context (config.maxPositions). */
export function modelScorer(model: Model, opts: Partial<ScorerOptions> = {}): TensorScorer {
  return new TensorScorer(
    (ids, mask) => forward(model, ids, { attentionMask: mask }),
    model.config.vocabSize,
    model.config.maxPositions,
    opts,
  );
}
