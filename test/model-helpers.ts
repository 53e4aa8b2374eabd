// Shared by the model tests: the embedded stories260K, a model scoped to a callback, and a small
// calibration set tokenized from a short text.
import path from 'node:path';
import { sampleCalibration, type CalibSet } from '../lib/methods/calib';
import { disposeModel, loadModel } from '../lib/models/load';
import type { Model } from '../lib/models/types';

/** The llama2.c checkpoint of stories260K in models/. */
export const STORIES_BIN = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', 'models/stories260K/stories260K.bin');

/** Loads the model at file, runs fn on it, and disposes the model however fn ends. */
export async function withModel<T>(file: string, fn: (model: Model) => Promise<T>): Promise<T> {
  const model = await loadModel(file);
  try {
    return await fn(model);
  } finally {
    disposeModel(model);
  }
}

export interface TextCalibOptions {
  /** Tokens per window (default 64). */
  seqlen?: number;
  /** Corpus name recorded in the set (default 'test-text'). */
  name?: string;
  /** Model whose tokenizer encodes the text (default stories260K). */
  model?: string;
}

/** 4 calibration windows (seed 0) sampled from text as the model's tokenizer encodes it. */
export function textCalib(text: string, o: TextCalibOptions = {}): Promise<CalibSet> {
  return withModel(o.model ?? STORIES_BIN, async (m) =>
    sampleCalibration(m.tokenizer.encode(text), o.name ?? 'test-text', { nsamples: 4, seqlen: o.seqlen ?? 64, seed: 0 }),
  );
}

/** A tiny GLM (native config keys): 4 query heads over 2 KV groups, head dim 8 (4 rotated), q/k/v biases. */
export const GLM_TINY: Record<string, unknown> = {
  model_type: 'glm', vocab_size: 512, hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 8, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000, attention_bias: true,
  partial_rotary_factor: 0.5, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
