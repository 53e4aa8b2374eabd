// The evaluator's one interface to a model: batches of token-id requests in, per-request
// log-likelihoods out. TensorScorer implements it over any logits function (the transformer's
// forward, or a hand-made table in tests): requests sorted by length, right-padded, attention-
// masked (no mask when a batch needs no padding), log-probabilities and gathers on the device; only the
// gathered numbers come back. Batches are bounded in tokens, logits and attention-score elements.
import * as tf from '@tensorflow/tfjs';
import { webgpuDevice } from '../runtime/backend';
import { wasmKernelsAvailable, wasmTokenLogprobStats } from '../kernels/wasm-simd';
import { maxRows, softmaxRows } from '../runtime/rows';
import { assertFinite } from './finite';

/** log P(continuation | context), summed over the continuation's tokens. */
export interface ContinuationRequest {
  context: number[];
  continuation: number[];
}

export interface ContinuationResult {
  /** Sum of the continuation tokens' log-probabilities. */
  logprob: number;
  /** Every continuation token was the argmax (lm-eval's is_greedy). */
  greedy: boolean;
  /** Context tokens dropped on the left to fit maxLength. */
  truncated: number;
  /** Tokens scored: the continuation's length, or maxLength when the continuation is longer. */
  tokens: number;
  /** Leading continuation tokens left unscored because the continuation exceeds maxLength (else 0). */
  unscored: number;
}

/** Log-probabilities of candidate next tokens after the context (letter-answer scoring). */
export interface NextTokenRequest {
  context: number[];
  candidates: number[];
}

export interface NextTokenResult {
  logprobs: number[];
  truncated: number;
}

export type Progress = (done: number, total: number) => void;

export interface Scorer {
  /** Most tokens one sequence may feed the model. */
  readonly maxLength: number;
  continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]>;
  nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]>;
}

/** ids [B, T] int32, mask [B, T] (1 real, 0 padding; undefined when no row is padded) → logits [B, T, V]. */
export type LogitsFn = (ids: tf.Tensor2D, mask: tf.Tensor2D | undefined) => tf.Tensor3D;

/** A logits function with per-run state (e.g. weights laid out for the backend): open() before a
 * run's batches, close() after them, errors included. */
export interface LogitsSession {
  logits: LogitsFn;
  close(): void;
}

/** What a TensorScorer scores with: a plain logits function, or a source of per-run sessions. */
export type LogitsSource = LogitsFn | { open(): LogitsSession };

export interface ScorerOptions {
  /** Most tokens (B × T, padding included) in one forward batch. */
  maxBatchTokens: number;
  /** Most logits (B × T × V) in one batch: bounds the [B, T, V] log-softmax. */
  maxLogitElements: number;
  /** Pad T up to a multiple of this, so a GPU backend compiles few distinct shapes. */
  padMultiple: number;
  /** Token id written into padded positions (masked, never scored). */
  padId: number;
  /** Most attention-score elements (B × heads × T × T) in one batch. */
  maxAttentionElements: number;
  /** Attention heads of the widest block (bounds the [B·heads, T, T] scores); 1 for logits tables. */
  heads: number;
  /** Names the scored model and method in errors (a non-finite log-probability, lib/eval/finite.ts). */
  label: string;
}

export const SCORER_DEFAULTS: ScorerOptions = {
  maxBatchTokens: 16384, // 32 windows of 512: fits stories260K's attention maps easily
  maxLogitElements: 1 << 27, // 128M floats = 512 MB per [B,T,V] tensor; < 2^31 keeps int32 gather indices valid
  padMultiple: 32, // ~16 distinct lengths up to 512
  padId: 0,
  maxAttentionElements: 1 << 26, // 64M floats: tfjs-webgpu gave wrong WikiText-2 PPL (392 for 121) with 268M-element scores
  heads: 1, // a logits table has no attention; modelScorer passes the model's heads
  label: 'model', // the runner passes "<model> × <method>"
};

/** One row of a batch: the input ids and which (position, token) pairs to gather. */
interface Row {
  req: number; // request index
  input: number[]; // model input, length L ≤ maxLength
  /** Positions whose next-token distribution is read, and the token read at each. */
  positions: number[];
  tokens: number[];
  truncated: number;
}

/**
 * A continuation request as a model of maxLength tokens reads it: the last maxLength + 1 tokens of
 * context + continuation are kept, the model reads all but the last and predicts the rest. A
 * continuation longer than the window (lm-eval's left truncation) is scored on its last maxLength
 * tokens only. Returns the input, the positions whose next token is scored, those tokens, and how
 * many context tokens were dropped. Every scorer (TensorScorer, the executor's) feeds requests so.
 */
export function continuationInput(r: ContinuationRequest, k: number, maxLength: number): { input: number[]; positions: number[]; tokens: number[]; truncated: number } {
  if (r.continuation.length === 0) throw new Error(`continuation request ${k}: empty continuation`);
  if (r.context.length === 0) throw new Error(`continuation request ${k}: empty context (pass BOS or a first token)`);
  const full = r.context.concat(r.continuation);
  const start = Math.max(0, full.length - 1 - maxLength);
  const input = full.slice(start, -1);
  const tokens = r.continuation.slice(-input.length);
  const first = input.length - tokens.length; // position predicting tokens[0]
  return { input, positions: tokens.map((_, j) => first + j), tokens, truncated: Math.min(start, r.context.length) };
}

/** A next-token request as a model of maxLength tokens reads it: its last maxLength context tokens (the last position is scored). */
export function nextTokenInput(r: NextTokenRequest, k: number, maxLength: number): { input: number[]; truncated: number } {
  if (r.context.length === 0) throw new Error(`next-token request ${k}: empty context`);
  if (r.candidates.length === 0) throw new Error(`next-token request ${k}: no candidates`);
  const start = Math.max(0, r.context.length - maxLength);
  return { input: r.context.slice(start), truncated: start };
}

export class TensorScorer implements Scorer {
  readonly opts: ScorerOptions;

  constructor(
    private readonly source: LogitsSource,
    readonly vocabSize: number,
    readonly maxLength: number,
    opts: Partial<ScorerOptions> = {},
  ) {
    this.opts = { ...SCORER_DEFAULTS, ...opts };
    if (!(maxLength >= 1)) throw new Error(`TensorScorer: maxLength ${maxLength} must be ≥ 1`);
    if (!(Number.isInteger(this.opts.heads) && this.opts.heads >= 1)) throw new Error(`TensorScorer: heads ${this.opts.heads} must be a positive integer`);
    if (this.opts.maxBatchTokens < maxLength) {
      throw new Error(`TensorScorer: maxBatchTokens ${this.opts.maxBatchTokens} is below maxLength ${maxLength}: a full-length sequence could never run`);
    }
  }

  async continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    const rows = reqs.map((r, k): Row => ({ req: k, ...continuationInput(r, k, this.maxLength) }));
    const out = await this.run(rows, onProgress);
    return reqs.map((r, k) => {
      const { picked, greedy } = out[k];
      let s = 0;
      for (const v of picked) s += v; // float64 on the host
      const tokens = rows[k].tokens.length;
      return { logprob: s, greedy: greedy.every(Boolean), truncated: rows[k].truncated, tokens, unscored: r.continuation.length - tokens };
    });
  }

  async nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    const rows = reqs.map((r, k): Row => {
      const { input, truncated } = nextTokenInput(r, k, this.maxLength);
      return { req: k, input, positions: r.candidates.map(() => input.length - 1), tokens: r.candidates, truncated };
    });
    const out = await this.run(rows, onProgress);
    return reqs.map((_, k) => ({ logprobs: out[k].picked, truncated: rows[k].truncated }));
  }

  /** Runs rows longest first in token-budgeted batches; returns per row the gathered log-probs and greedy flags. */
  private async run(rows: Row[], onProgress?: Progress): Promise<{ picked: number[]; greedy: boolean[] }[]> {
    const results: { picked: number[]; greedy: boolean[] }[] = new Array(rows.length);
    const order = rows.map((_, i) => i).sort((a, b) => rows[b].input.length - rows[a].input.length || a - b);
    const V = this.vocabSize;
    const { padMultiple, heads } = this.opts;
    let done = 0;
    let i = 0;
    const session: LogitsSession = typeof this.source === 'function' ? { logits: this.source, close: () => {} } : this.source.open();
    try {
      while (i < order.length) {
        const longest = rows[order[i]].input.length;
        const padded = Math.min(this.maxLength, Math.ceil(longest / padMultiple) * padMultiple);
        const B = batchSize(padded, V, heads, this.opts, order.length - i);
        const batch = order.slice(i, i + B).map((k) => rows[k]);
        i += B;
        // A batch of equal lengths runs unpadded and without a mask (WikiText-2 windows always do).
        const T = batch.every((r) => r.input.length === longest) ? longest : padded;
        const got = await this.runBatch(session.logits, batch, T);
        batch.forEach((r, b) => (results[r.req] = got[b]));
        done += batch.length;
        onProgress?.(done, rows.length);
      }
    } finally {
      session.close();
    }
    return results;
  }

  private async runBatch(logitsFn: LogitsFn, batch: Row[], T: number): Promise<{ picked: number[]; greedy: boolean[] }[]> {
    const B = batch.length;
    const V = this.vocabSize;
    if (webgpuDevice() && B * T * V > 2 ** 24) {
      throw new Error(`TensorScorer on webgpu: ${B}×${T} positions × ${V} logits need gather indices past 2^24, which tfjs-webgpu carries through f32 (wrong elements); score with the executor (the default on webgpu) or shorter sequences`);
    }
    const ids = new Int32Array(B * T).fill(this.opts.padId);
    const mask = new Float32Array(B * T);
    const flat: number[] = []; // (b*T + t)*V + token
    const rowIdx: number[] = []; // b*T + t
    const tokIdx: number[] = []; // token
    batch.forEach((r, b) => {
      r.input.forEach((id, t) => {
        if (!(id >= 0 && id < V)) throw new Error(`token id ${id} outside the vocabulary [0, ${V})`);
        ids[b * T + t] = id;
        mask[b * T + t] = 1;
      });
      r.positions.forEach((p, j) => {
        const id = r.tokens[j];
        if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new Error(`scored token id ${id} outside the vocabulary [0, ${V})`);
        flat.push((b * T + p) * V + r.tokens[j]);
        rowIdx.push(b * T + p);
        tokIdx.push(id);
      });
    });
    const full = batch.every((r) => r.input.length === T);
    // tfjs-wasm: one SIMD pass per scored row gives (x_token − max, Σ exp(x − max)) and the host
    // takes the log in float64; other backends do it with tensor ops.
    const wasmStats = wasmKernelsAvailable();
    const outs = tf.tidy(() => {
      const idsT = tf.tensor2d(ids, [B, T], 'int32');
      const maskT = full ? undefined : tf.tensor2d(mask, [B, T], 'float32');
      const logits = logitsFn(idsT, maskT); // [B, T, V]
      if (logits.shape[0] !== B || logits.shape[1] !== T || logits.shape[2] !== V) {
        throw new Error(`logits shape [${logits.shape}] is not [${B}, ${T}, ${V}]`);
      }
      const rows = logits.reshape([B * T, V]) as tf.Tensor2D; // [B*T, V]
      const rowsIdx = tf.tensor1d(rowIdx, 'int32');
      // Σ logits of each scored row: NaN or ±Infinity when any logit of the row is (the wasm
      // kernel's max and exp pass over a NaN logit without one), checked on the host below.
      const sums = tf.gather(tf.sum(rows, 1), rowsIdx); // [N]
      if (wasmStats) return [sums, wasmTokenLogprobStats(rows, rowsIdx, tf.tensor1d(tokIdx, 'int32'))]; // [N], [N, 2]
      // log p(token) = (x_token − max) + log(max softmax): max softmax = 1/Σ exp(x − max), so this
      // is log-softmax without its [B·T, V] exp and log passes; max softmax ≥ 1/V: no underflow.
      const top = tf.gather(maxRows(rows).reshape([-1]), rowsIdx); // [N] max logit of each scored row
      const topP = tf.gather(maxRows(softmaxRows(rows)).reshape([-1]), rowsIdx); // [N] its probability
      const gap = tf.sub(tf.gather(rows.reshape([-1]), tf.tensor1d(flat, 'int32')), top); // [N] ≤ 0, 0 iff greedy
      return [sums, tf.add(gap, tf.log(topP)), gap];
    });
    const [sums, ...vals] = await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    // NaN or ±Infinity logits are an error, never a score.
    assertFinite(sums, `${this.opts.label}: scoring ${B} sequence(s) of ${T} tokens: logits (sum per scored position)`);
    const picked = wasmStats ? Float64Array.from(rowIdx, (_, n) => vals[0][2 * n] - Math.log(vals[0][2 * n + 1])) : vals[0];
    const gap = wasmStats ? Float64Array.from(rowIdx, (_, n) => vals[0][2 * n]) : vals[1];
    assertFinite(picked, `${this.opts.label}: scoring ${B} sequence(s) of ${T} tokens: log-probabilities`);
    const out: { picked: number[]; greedy: boolean[] }[] = [];
    let n = 0;
    for (const r of batch) {
      const p: number[] = [];
      const g: boolean[] = [];
      for (let j = 0; j < r.positions.length; j++, n++) {
        p.push(picked[n]);
        g.push(gap[n] >= 0);
      }
      out.push({ picked: p, greedy: g });
    }
    return out;
  }
}

/**
 * Sequences of length T per batch under every bound: tokens (B·T), logits (B·T·V) and attention
 * scores (B·heads·T·T); at least 1, at most `left`.
 */
export function batchSize(T: number, V: number, heads: number, o: Pick<ScorerOptions, 'maxBatchTokens' | 'maxLogitElements' | 'maxAttentionElements'>, left: number): number {
  return Math.max(1, Math.min(Math.floor(o.maxBatchTokens / T), Math.floor(o.maxLogitElements / (T * V)), Math.floor(o.maxAttentionElements / (heads * T * T)), left));
}

/** The base of Scorers that wrap another: the inner scorer and its maxLength. */
export abstract class WrappingScorer implements Scorer {
  constructor(protected readonly inner: Scorer) {}

  get maxLength(): number {
    return this.inner.maxLength;
  }

  abstract continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]>;
  abstract nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]>;
}

/** A Scorer that passes everything to another and keeps each task's requests with the answers
 * (for exporting a sample to an independent implementation). */
export class RecordingScorer extends WrappingScorer {
  readonly log = {
    continuations: [] as (ContinuationRequest & { logprob: number; greedy: boolean })[],
    nextToken: [] as (NextTokenRequest & { logprobs: number[] })[],
  };

  async continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    const out = await this.inner.continuations(reqs, onProgress);
    // Requests as the model reads them (left truncation applied), so a reference sees the same tokens.
    reqs.forEach((r, k) => this.log.continuations.push({ context: r.context.slice(out[k].truncated), continuation: r.continuation, logprob: out[k].logprob, greedy: out[k].greedy }));
    return out;
  }

  async nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    const out = await this.inner.nextToken(reqs, onProgress);
    reqs.forEach((r, k) => this.log.nextToken.push({ context: r.context.slice(out[k].truncated), candidates: r.candidates, logprobs: out[k].logprobs }));
    return out;
  }
}
