// Scorer benchmarking against an independent implementation (scripts/bench-eval.ts,
// scripts/py/score_torch.py): a timing wrapper for any Scorer, the batch plan of the kit's scorer,
// the export of recorded requests (+ that plan) for the PyTorch side, its result file, and the
// per-request comparison.
//
// Scored tokens (the unit of every tok/s here): for continuation requests, the sum of each
// result's `tokens` (positions whose log-probability is summed: the continuation's length, or
// maxLength when it is longer); for next-token requests, 1 per request (one position is scored;
// its candidates are read from that one distribution). Context tokens are not counted.
//
// Rows: each request becomes one model row (continuation: the last maxLength + 1 tokens of
// context + continuation, all but the last fed; next-token: the last maxLength context tokens),
// as both kit scorers (TensorScorer, lib/engine's EngineScorer) truncate. Both run rows longest
// first (ties: request order) in consecutive groups, so a plan is that order plus the size and
// length T of each batch:
//   - 'tensor-scorer' (the tfjs TensorScorer: wasm, cpu, LLMCB_SCORER=tfjs): planBatches, its rule
//     (scorer.ts TensorScorer.run): a batch starts at the longest row left, its padded length is
//     P = min(maxLength, ceil(longest / padMultiple) · padMultiple), it takes B = batchSize(P, …)
//     rows (token, logit and attention-score budgets) and runs at T = longest when all its rows
//     have that length (no mask), else at T = P (right padding, attention mask). Checked against
//     the batches the scorer reports (and in test/bench-eval.test.ts against the shapes it runs).
//   - 'observed' (any other scorer, e.g. the WebGPU executor, which packs ragged rows into steps
//     by its own token and score-row budgets, unpadded): the batch sizes the scorer reported
//     through its progress callback (one call per batch, cumulative counts, as both scorers do),
//     T = the batch's longest row. A scorer that does not report per batch gets the budget rule:
//     rows are added while their summed lengths stay within budgetTokens.
// PyTorch runs the exported plan as given (right-padded to T with a mask where rows are shorter),
// so the batching is decided in one place, here.
import fs from 'node:fs';
import path from 'node:path';
import { timeRegion } from '../runtime/probes';
import { writeFileAtomic } from '../results';
import {
  batchSize,
  WrappingScorer,
  type RecordingScorer,
  type ContinuationRequest,
  type ContinuationResult,
  type NextTokenRequest,
  type NextTokenResult,
  type Progress,
  type Scorer,
  type ScorerOptions,
} from './scorer';

export type RequestKind = 'continuation' | 'next_token';

/** One scorer call as the TimingScorer saw it. */
export interface TimedCall {
  kind: RequestKind;
  /** Requests in the call. */
  n: number;
  /** Wall time of the call, the device synchronised before and after (ms). */
  ms: number;
  /** Scored tokens (see the header). */
  scoredTokens: number;
  /** Requests per batch as the scorer reported them through its progress callback, in order. */
  batchSizes: number[];
}

/** A progress callback that also records the batch sizes (differences of the cumulative counts). */
function sizeRecorder(onProgress: Progress | undefined): { sizes: number[]; progress: Progress } {
  const sizes: number[] = [];
  let last = 0;
  return {
    sizes,
    progress: (done, total) => {
      if (done > last) sizes.push(done - last);
      last = Math.max(last, done);
      onProgress?.(done, total);
    },
  };
}

/** Scored tokens of continuation results: the sum of their `tokens`. */
export function continuationScoredTokens(results: readonly Pick<ContinuationResult, 'tokens'>[]): number {
  return results.reduce((s, r) => s + r.tokens, 0);
}

/** A Scorer that passes everything to another and times each call (device synchronised around it). */
export class TimingScorer extends WrappingScorer {
  readonly calls: TimedCall[] = [];

  async continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    const rec = sizeRecorder(onProgress);
    const { result, ms } = await timeRegion(() => this.inner.continuations(reqs, rec.progress));
    this.calls.push({ kind: 'continuation', n: reqs.length, ms, scoredTokens: continuationScoredTokens(result), batchSizes: rec.sizes });
    return result;
  }

  async nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    const rec = sizeRecorder(onProgress);
    const { result, ms } = await timeRegion(() => this.inner.nextToken(reqs, rec.progress));
    this.calls.push({ kind: 'next_token', n: reqs.length, ms, scoredTokens: reqs.length, batchSizes: rec.sizes });
    return result;
  }
}

/** What the batch plan needs of a scorer: its sequence bound, vocabulary and budgets. */
export type BatchingOptions = Pick<ScorerOptions, 'maxBatchTokens' | 'maxLogitElements' | 'maxAttentionElements' | 'padMultiple' | 'padId' | 'heads'> & {
  maxLength: number;
  vocabSize: number;
};

/** A recorded request as the model reads it (left truncation already applied, as RecordingScorer keeps it). */
export type RecordedRequest = { kind: 'continuation'; context: number[]; continuation: number[] } | { kind: 'next_token'; context: number[]; candidates: number[] };

/** Length of the model row a request becomes (see the header). */
export function rowLength(r: RecordedRequest, maxLength: number): number {
  return r.kind === 'continuation' ? Math.min(r.context.length + r.continuation.length - 1, maxLength) : Math.min(r.context.length, maxLength);
}

export interface BatchPlan {
  /** Request indices, longest row first: batches are consecutive slices of it. */
  order: number[];
  /** [T, count] per batch, in run order. */
  batches: [number, number][];
}

/** How the plan of the kit's batches is made (see the header). */
export type PlanRule =
  | { kind: 'tensor-scorer'; options: BatchingOptions }
  | { kind: 'observed'; maxLength: number; vocabSize: number; budgetTokens: number };

/** Request indices by row length, longest first (ties: request order), as both kit scorers run them. */
export function longestFirst(lengths: readonly number[]): number[] {
  return lengths.map((_, i) => i).sort((a, b) => lengths[b] - lengths[a] || a - b);
}

/** A plan from batch sizes over the longest-first order: each batch at its longest row's length. */
export function planFromSizes(lengths: readonly number[], sizes: readonly number[]): BatchPlan {
  const order = longestFirst(lengths);
  if (sizes.reduce((a, b) => a + b, 0) !== lengths.length || sizes.some((b) => !(Number.isInteger(b) && b >= 1))) {
    throw new Error(`planFromSizes: batch sizes ${sizes.join(',')} do not cover ${lengths.length} rows`);
  }
  const batches: [number, number][] = [];
  let i = 0;
  for (const b of sizes) {
    batches.push([lengths[order[i]], b]);
    i += b;
  }
  return { order, batches };
}

/** Batch sizes that keep each batch's summed row lengths within `budget` (at least one row each), longest first. */
export function sizesByBudget(lengths: readonly number[], budget: number): number[] {
  const sizes: number[] = [];
  let n = 0;
  let t = 0;
  for (const k of longestFirst(lengths)) {
    if (n > 0 && t + lengths[k] > budget) {
      sizes.push(n);
      n = 0;
      t = 0;
    }
    n++;
    t += lengths[k];
  }
  if (n > 0) sizes.push(n);
  return sizes;
}

/** The batches a TensorScorer runs for one call of these row lengths (the rule in the header). */
export function planBatches(lengths: readonly number[], o: BatchingOptions): BatchPlan {
  const order = longestFirst(lengths);
  const batches: [number, number][] = [];
  let i = 0;
  while (i < order.length) {
    const longest = lengths[order[i]];
    const padded = Math.min(o.maxLength, Math.ceil(longest / o.padMultiple) * o.padMultiple);
    const B = batchSize(padded, o.vocabSize, o.heads, o, order.length - i);
    const rows = order.slice(i, i + B);
    const T = rows.every((k) => lengths[k] === longest) ? longest : padded;
    batches.push([T, rows.length]);
    i += B;
  }
  return { order, batches };
}

/** One task's requests for the reference side: flat tokens plus lengths, in the file format below. */
export interface ExportedTask {
  name: string;
  kind: RequestKind;
  requests: RecordedRequest[];
  plan: BatchPlan;
}

/** Model the reference loads: an HF directory, or a random model of a config (speed only). */
export type TorchModelSpec = { hf: string } | { random_config: Record<string, unknown>; seed: number };

export const EXPORT_FORMAT = 'llmcb-bench-eval-requests/1';
export const TORCH_FORMAT = 'llmcb-bench-eval-torch/1';

/**
 * Writes `dir/manifest.json` and one `dir/<k>-<task>.i32` per task (little-endian int32: each
 * request's context then its continuation or candidates, back to back). The manifest holds per
 * task ctx_len and tail_len (continuation length or candidate count) per request, the batch plan
 * (order, batches as [T, count]), the batching (maxLength, vocabSize, padId, and how the plan was
 * made) and the warm-up request both sides run first.
 */
export function writeExport(
  dir: string,
  info: { model: string; rule: PlanRule; torch: TorchModelSpec | null; warmup: ContinuationRequest },
  tasks: readonly ExportedTask[],
): string {
  fs.mkdirSync(dir, { recursive: true });
  const entries = tasks.map((t, k) => {
    const file = `${k}-${t.name.replace(/[^\w.-]/g, '_')}.i32`;
    let total = 0;
    for (const r of t.requests) total += r.context.length + (r.kind === 'continuation' ? r.continuation.length : r.candidates.length);
    const ids = new Int32Array(total);
    let p = 0;
    const ctxLen: number[] = [];
    const tailLen: number[] = [];
    for (const r of t.requests) {
      if (r.kind !== t.kind) throw new Error(`writeExport: ${t.name} mixes ${r.kind} requests into a ${t.kind} task`);
      const tail = r.kind === 'continuation' ? r.continuation : r.candidates;
      ids.set(r.context, p);
      ids.set(tail, p + r.context.length);
      p += r.context.length + tail.length;
      ctxLen.push(r.context.length);
      tailLen.push(tail.length);
    }
    const bytes = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('writeExport: the .i32 files are little-endian; this host is not');
    writeFileAtomic(path.join(dir, file), bytes);
    return { name: t.name, kind: t.kind, n: t.requests.length, tokens: file, ctx_len: ctxLen, tail_len: tailLen, order: t.plan.order, batches: t.plan.batches };
  });
  // What the reference needs of the batching (the plan itself is per task): the row bound, the
  // vocabulary, a pad id; the rest is provenance.
  const r = info.rule;
  const batching = r.kind === 'tensor-scorer' ? { rule: r.kind, ...r.options } : { rule: r.kind, maxLength: r.maxLength, vocabSize: r.vocabSize, budgetTokens: r.budgetTokens, padId: 0 };
  const manifest = { format: EXPORT_FORMAT, model: info.model, batching, torch: info.torch, warmup: info.warmup, tasks: entries };
  const file = path.join(dir, 'manifest.json');
  writeFileAtomic(file, JSON.stringify(manifest) + '\n');
  return file;
}

/** One task as the kit ran it: its requests and plan for the export, the kit's answers, time and tokens. */
export interface CollectedTask {
  exported: ExportedTask;
  kit: KitAnswers;
  /** Summed wall time of the task's scorer calls (s). */
  wallS: number;
  scoredTokens: number;
  /** Where the plan came from: 'tensor-scorer', 'observed', or 'budget' (the scorer reported no per-batch progress). */
  planSource: 'tensor-scorer' | 'observed' | 'budget';
}

/** The plan of one scorer call (see the header); throws when a TensorScorer's reported batches differ from its rule. */
export function planCall(lengths: readonly number[], reported: readonly number[], rule: PlanRule): { plan: BatchPlan; source: CollectedTask['planSource'] } {
  const covers = reported.reduce((a, b) => a + b, 0) === lengths.length;
  if (rule.kind === 'tensor-scorer') {
    const plan = planBatches(lengths, rule.options);
    const sizes = plan.batches.map(([, b]) => b);
    if (covers && sizes.join(',') !== reported.join(',')) throw new Error(`the TensorScorer reported batches of ${reported.join(',')} where its rule gives ${sizes.join(',')}`);
    return { plan, source: 'tensor-scorer' };
  }
  if (covers) return { plan: planFromSizes(lengths, reported), source: 'observed' };
  return { plan: planFromSizes(lengths, sizesByBudget(lengths, rule.budgetTokens)), source: 'budget' };
}

/**
 * Takes (and clears) what `rec` recorded and `timed` timed since the last call, for one task whose
 * requests went through rec → timed → the scorer, with the plan of each scorer call (request
 * indices offset by the earlier calls of the task). A task's calls must all be of one kind.
 */
export function collectTask(name: string, rec: RecordingScorer, timed: TimingScorer, rule: PlanRule): CollectedTask | null {
  const calls = timed.calls.splice(0);
  const conts = rec.log.continuations.splice(0);
  const nexts = rec.log.nextToken.splice(0);
  if (calls.length === 0) return null;
  const kind = calls[0].kind;
  if (calls.some((c) => c.kind !== kind)) throw new Error(`${name}: the task made both continuation and next-token calls`);
  const n = calls.reduce((s, c) => s + c.n, 0);
  if ((kind === 'continuation' ? conts.length : nexts.length) !== n || (kind === 'continuation' ? nexts.length : conts.length) !== 0) {
    throw new Error(`${name}: ${conts.length} + ${nexts.length} recorded requests for ${n} timed ones (wrap as RecordingScorer(TimingScorer(scorer)))`);
  }
  const requests: RecordedRequest[] =
    kind === 'continuation'
      ? conts.map((r) => ({ kind, context: r.context, continuation: r.continuation }))
      : nexts.map((r) => ({ kind, context: r.context, candidates: r.candidates }));
  const maxLength = rule.kind === 'tensor-scorer' ? rule.options.maxLength : rule.maxLength;
  const plan: BatchPlan = { order: [], batches: [] };
  const sources = new Set<CollectedTask['planSource']>();
  let offset = 0;
  for (const c of calls) {
    const lengths = requests.slice(offset, offset + c.n).map((r) => rowLength(r, maxLength));
    const p = planCall(lengths, c.batchSizes, rule);
    plan.order.push(...p.plan.order.map((i) => i + offset));
    plan.batches.push(...p.plan.batches);
    sources.add(p.source);
    offset += c.n;
  }
  const kit: KitAnswers =
    kind === 'continuation' ? { kind, logprob: conts.map((r) => r.logprob), greedy: conts.map((r) => r.greedy) } : { kind, logprobs: nexts.map((r) => r.logprobs) };
  return {
    exported: { name, kind, requests, plan },
    kit,
    wallS: calls.reduce((s, c) => s + c.ms, 0) / 1000,
    scoredTokens: calls.reduce((s, c) => s + c.scoredTokens, 0),
    planSource: sources.has('budget') ? 'budget' : [...sources][0],
  };
}

/** One task of score_torch.py's output. */
export interface TorchTaskResult {
  name: string;
  kind: RequestKind;
  n_requests: number;
  scored_tokens: number;
  wall_s: number;
  batches: number;
  /** continuation: summed log-prob per request; next_token: per request, one per candidate. null: not finite. */
  logprobs: (number | null)[] | (number | null)[][];
  /** continuation only: every scored token was the argmax. */
  greedy?: boolean[];
}

export interface TorchResults {
  format: string;
  /** 'cuda', 'cpu', or 'python' (the pure-Python stand-in). */
  backend: string;
  device: string;
  torch: string;
  transformers: string;
  dtype: string;
  model_load_s: number;
  tasks: TorchTaskResult[];
}

/** Reads score_torch.py's JSON, checking the format and that every task the export named came back. */
export function readTorchResults(file: string, expected: readonly ExportedTask[]): TorchResults {
  const r = JSON.parse(fs.readFileSync(file, 'utf8')) as TorchResults;
  if (r.format !== TORCH_FORMAT) throw new Error(`${file}: format '${r.format}', expected '${TORCH_FORMAT}'`);
  for (const t of expected) {
    const got = r.tasks.find((x) => x.name === t.name);
    if (!got) throw new Error(`${file}: no result for task ${t.name}`);
    if (got.n_requests !== t.requests.length || got.logprobs.length !== t.requests.length) {
      throw new Error(`${file}: ${t.name} has ${got.logprobs.length} results for ${t.requests.length} requests`);
    }
  }
  return r;
}

/** The kit's answers for one task, aligned with ExportedTask.requests. */
export type KitAnswers = { kind: 'continuation'; logprob: number[]; greedy: boolean[] } | { kind: 'next_token'; logprobs: number[][] };

export interface Agreement {
  /** Largest |kit − reference| of a per-request log-probability (next-token: over the candidates); Infinity when one is missing or not finite. */
  maxAbsDiff: number;
  /** Fraction of requests with the same greedy flag (continuation) or the same argmax candidate (next-token: the predicted letter). */
  greedyAgree: number;
  n: number;
}

/** First index of the largest value (the evaluator's prediction rule). */
export function argmax(xs: readonly number[]): number {
  return xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);
}

/** Per-request agreement of the kit and the reference on one task. */
export function compareTask(kit: KitAnswers, ref: Pick<TorchTaskResult, 'kind' | 'logprobs' | 'greedy'>): Agreement {
  if (kit.kind !== ref.kind) throw new Error(`compareTask: kit ${kit.kind} vs reference ${ref.kind}`);
  const diff = (a: number, b: number | null) => (b === null || !Number.isFinite(a) || !Number.isFinite(b) ? Infinity : Math.abs(a - b));
  let maxAbsDiff = 0;
  let same = 0;
  if (kit.kind === 'continuation') {
    const lp = ref.logprobs as (number | null)[];
    const g = ref.greedy;
    if (lp.length !== kit.logprob.length || !g || g.length !== kit.greedy.length) throw new Error(`compareTask: ${kit.logprob.length} kit answers vs ${lp.length} reference answers`);
    kit.logprob.forEach((a, k) => {
      maxAbsDiff = Math.max(maxAbsDiff, diff(a, lp[k]));
      if (kit.greedy[k] === g[k]) same++;
    });
    return { maxAbsDiff, greedyAgree: kit.logprob.length ? same / kit.logprob.length : NaN, n: kit.logprob.length };
  }
  const lps = ref.logprobs as (number | null)[][];
  if (lps.length !== kit.logprobs.length) throw new Error(`compareTask: ${kit.logprobs.length} kit answers vs ${lps.length} reference answers`);
  kit.logprobs.forEach((a, k) => {
    const b = lps[k];
    if (!Array.isArray(b) || b.length !== a.length) {
      maxAbsDiff = Infinity;
      return;
    }
    a.forEach((x, j) => (maxAbsDiff = Math.max(maxAbsDiff, diff(x, b[j]))));
    if (b.every((x) => x !== null) && argmax(a) === argmax(b as number[])) same++;
  });
  return { maxAbsDiff, greedyAgree: kit.logprobs.length ? same / kit.logprobs.length : NaN, n: kit.logprobs.length };
}
