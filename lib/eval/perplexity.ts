// The kit's one window perplexity (DESIGN §1, /work/shared/reference/README.md): non-overlapping
// windows of seqlen tokens (the remainder dropped), no BOS by default (the window's first token
// is context and the other seqlen−1 are predicted), mean NLL over the predicted positions,
// PPL = exp(mean). Runs through the TensorScorer (log-softmax and gathers on the device, batches
// bounded in tokens, logits and attention-score elements, no mask for full windows), reads back
// only the gathered log-probabilities asynchronously and accumulates in float64 on the host.
// Used by the WikiText-2 task, the reproduction script, the training loop's held-out eval and
// the engines' perplexity check.
import type { InferenceModel } from '../engine/inference';
import type { ActQuantSpec } from '../quant/act';
import { modelScorer } from './model-scorer';
import type { ContinuationRequest, Progress, Scorer, ScorerOptions } from './scorer';

export interface WindowPplOptions {
  /** Window length in tokens (≥ 2). */
  seqlen: number;
  /** Score the first this many windows; null: all. */
  windows: number | null;
  /** Score exactly these window indices (ascending, e.g. a seeded subset); overrides `windows`. */
  pick: number[] | null;
  /** Windows per forward at most (further bounded by the scorer's attention and logits limits). */
  batch: number;
  /** Activation quantization to run with (W8A8); null: the model's own (InferenceModel.actQuant). Models only. */
  actQuant: ActQuantSpec | null;
  /** BOS id to prepend to every window (then all seqlen tokens are predicted); null: no BOS (the protocol). */
  bosId: number | null;
  /** Called as batches finish. */
  onProgress?: Progress;
}

export const WINDOW_PPL_DEFAULTS: Omit<WindowPplOptions, 'seqlen' | 'onProgress'> = {
  windows: null, // the whole token stream
  pick: null, // no subset
  batch: 32, // 32 windows of 512 keep stories260K's attention scores at 2^26 elements
  actQuant: null, // the model as it is
  bosId: null, // DESIGN §1: no BOS for perplexity
};

export interface WindowPplResult {
  ppl: number; // exp(meanNll)
  meanNll: number; // nll / predicted (nats per token)
  nll: number; // summed NLL over every predicted position (float64)
  predicted: number; // predicted positions
  windows: number; // windows scored
  /** Per scored window: its summed NLL and predicted positions (for a per-window bootstrap). */
  windowNll: number[];
  windowTokens: number[];
  /** Windows the stream holds in all. */
  totalWindows: number;
}

/** Non-overlapping windows of seqlen tokens (the remainder is dropped) as continuation requests:
 * without BOS the window's first token is context and the other seqlen-1 are predicted; with BOS,
 * BOS is the context and all seqlen tokens are predicted. Every token is predicted at most once. */
export function pplRequests(tokens: ArrayLike<number>, seqlen: number, bosId: number | null): ContinuationRequest[] {
  if (!(Number.isInteger(seqlen) && seqlen >= 2)) throw new Error(`seqlen ${seqlen} must be an integer ≥ 2`);
  const n = Math.floor(tokens.length / seqlen);
  const reqs: ContinuationRequest[] = [];
  for (let i = 0; i < n; i++) {
    const w = Array.from({ length: seqlen }, (_, j) => tokens[i * seqlen + j]);
    reqs.push(bosId === null ? { context: [w[0]], continuation: w.slice(1) } : { context: [bosId], continuation: w });
  }
  return reqs;
}

const isModel = (x: InferenceModel | Scorer): x is InferenceModel => (x as InferenceModel).weights instanceof Map;

/**
 * Window perplexity of a model (or any Scorer) on a token stream. With a model, batches of at most
 * `batch` windows run through forward() (the model's activation quantization, or opts.actQuant).
 */
export async function windowPerplexity(source: InferenceModel | Scorer, ids: ArrayLike<number>, options: Partial<WindowPplOptions> & { seqlen: number }): Promise<WindowPplResult> {
  const o: WindowPplOptions = { ...WINDOW_PPL_DEFAULTS, ...options };
  if (!(Number.isInteger(o.batch) && o.batch >= 1)) throw new Error(`windowPerplexity: batch ${o.batch} must be a positive integer`);
  if (o.windows !== null && !(Number.isInteger(o.windows) && o.windows >= 1)) throw new Error(`windowPerplexity: windows ${o.windows} must be a positive integer or null`);
  const all = pplRequests(ids, o.seqlen, o.bosId);
  if (all.length === 0) throw new Error(`windowPerplexity: ${ids.length} tokens make no window of ${o.seqlen}`);
  let pick: number[];
  if (o.pick) {
    pick = o.pick;
    for (const i of pick) if (!(Number.isInteger(i) && i >= 0 && i < all.length)) throw new Error(`windowPerplexity: window index ${i} outside [0, ${all.length})`);
  } else {
    pick = Array.from({ length: Math.min(o.windows ?? all.length, all.length) }, (_, i) => i);
  }
  let scorer: Scorer;
  if (isModel(source)) {
    const model = o.actQuant ? { ...source, actQuant: o.actQuant } : source;
    // Sequences are at most seqlen tokens (seqlen-1 without BOS); batch windows per forward.
    if (o.seqlen > model.config.maxPositions) throw new Error(`windowPerplexity: seqlen ${o.seqlen} exceeds the model's context ${model.config.maxPositions}`);
    const opts: Partial<ScorerOptions> = { maxBatchTokens: o.batch * o.seqlen };
    scorer = modelScorer(model, opts, o.seqlen);
  } else {
    if (o.actQuant) throw new Error('windowPerplexity: actQuant applies to a model, not to a Scorer (build the scorer over a model with actQuant)');
    if (o.seqlen > source.maxLength) throw new Error(`windowPerplexity: seqlen ${o.seqlen} exceeds the scorer's maxLength ${source.maxLength}`);
    scorer = source;
  }
  const scored = await scorer.continuations(pick.map((i) => all[i]), o.onProgress);
  const windowNll = scored.map((s) => -s.logprob);
  const windowTokens = scored.map((s) => s.tokens);
  let nll = 0;
  let predicted = 0;
  for (let k = 0; k < scored.length; k++) {
    nll += windowNll[k]; // float64 on the host
    predicted += windowTokens[k];
  }
  const meanNll = nll / predicted;
  return { ppl: Math.exp(meanNll), meanNll, nll, predicted, windows: pick.length, windowNll, windowTokens, totalWindows: all.length };
}
