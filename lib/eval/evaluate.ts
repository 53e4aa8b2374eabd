// evaluate(scorer, tokenizer, task): loads the task's data, builds token requests the way the task
// declares, scores them through the Scorer, and aggregates per-document scores into metrics with
// standard errors. A task whose data is absent yields a 'no_data' outcome, never an exception.
import { type DataOptions, dataOptions, type LoadResult } from '../data/common';
import type { RunContext, ResultRow } from '../results';
import { makeRow } from '../results';
import type { Tokenizer } from '../models/types';
import type { DocScores, LetterTask, MultipleChoiceTask, RollingTask, Task } from '../tasks/types';
import type { ContinuationRequest, Scorer } from './scorer';
import { assertFinite } from './finite';
import { windowPerplexity } from './perplexity';
import { bootstrapPplStderr, meanStderr, subsample } from './stats';

export interface EvalOptions {
  /** Prepend BOS to every sequence; null: the task's paper default. */
  bos: boolean | null;
  /** Few-shot demonstrations (letter tasks only); LLMCBench runs 0-shot. */
  shots: number;
  /** Perplexity window length; null: min(2048, scorer.maxLength) (the paper's 2048, capped at the context). */
  seqlen: number | null;
  /** Score at most this many documents (perplexity: windows), a seeded random subset; null: all. */
  limit: number | null;
  /** Seed of the subset and of the bootstrap. */
  seed: number;
  /** Bootstrap resamples for the perplexity standard error. */
  bootstrap: number;
  /** Where the data comes from. */
  data: DataOptions;
  /** Names the evaluated model and method in errors (e.g. "stories260K × wanda-50%"). */
  label: string;
  /** Called as batches finish (stage names what is being scored). */
  onProgress?: (stage: string, done: number, total: number) => void;
}

export const EVAL_DEFAULTS: Omit<EvalOptions, 'data' | 'onProgress'> = {
  bos: null, // per task: the paper's choice
  shots: 0, // LLMCBench: 0-shot everywhere
  seqlen: null, // 2048 capped at the model context (DESIGN §1)
  limit: null, // full splits
  seed: 0, // DESIGN §1: seed 0
  bootstrap: 1000, // resamples for the PPL stderr
  label: 'model', // the runner passes "<model> × <method>"
};

export interface MetricResult {
  /** The task, or a sub-group such as 'mmlu/stem'. */
  task: string;
  metric: string;
  value: number | null;
  stderr: number | null;
  n: number | null;
  higherIsBetter: boolean;
}

export interface EvalOutcome {
  task: string;
  track: Task['track'];
  status: 'ok' | 'no_data';
  results: MetricResult[];
  /** Provenance and deviations, copied into every row's note. */
  notes: string[];
  bos: boolean;
  shots: number;
  seqlen: number | null;
  durationS: number;
}

export async function evaluate(scorer: Scorer, tokenizer: Tokenizer, task: Task, options: Partial<EvalOptions> = {}): Promise<EvalOutcome> {
  const opts: EvalOptions = { ...EVAL_DEFAULTS, data: dataOptions(), ...options };
  const t0 = performance.now();
  const bos = opts.bos ?? task.defaultBos;
  if (bos && tokenizer.bosId === null) throw new Error(`${task.name}: BOS requested but the tokenizer has no BOS id`);
  if (opts.shots < 0 || !Number.isInteger(opts.shots)) throw new Error(`${task.name}: shots ${opts.shots} must be a non-negative integer`);
  if (opts.shots > 0 && (task.outputType !== 'letter' || task.fewshot.kind === 'none')) {
    throw new Error(`${task.name}: few-shot demonstrations are not supported (shots must be 0)`);
  }
  const seqlen = task.outputType === 'loglikelihood_rolling' ? (opts.seqlen ?? Math.min(2048, scorer.maxLength)) : null;
  const base = { task: task.name, track: task.track, bos, shots: opts.shots, seqlen };
  const noData = (reason: string): EvalOutcome => ({
    ...base,
    status: 'no_data',
    results: task.metrics.map((m) => ({ task: task.name, metric: m.name, value: null, stderr: null, n: null, higherIsBetter: m.higherIsBetter })),
    notes: [reason],
    durationS: (performance.now() - t0) / 1000,
  });
  const loaded = await task.load(opts.data);
  if (loaded.status === 'no_data') return noData(loaded.reason);
  const notes = [`source=${loaded.source}`, `shots=${opts.shots}`, `v${task.version}`, ...(task.notes ?? []), ...loaded.notes];
  const progress = (stage: string) => (done: number, total: number) => opts.onProgress?.(`${task.name} ${stage}`, done, total);
  let body: { results: MetricResult[]; notes: string[] } | { noData: string };
  if (task.outputType === 'loglikelihood_rolling') body = await runRolling(scorer, tokenizer, task, loaded.docs, bos, seqlen!, opts, progress);
  else if (task.outputType === 'multiple_choice') body = await runMultipleChoice(scorer, tokenizer, task, loaded.docs, bos, opts, progress);
  else body = await runLetter(scorer, tokenizer, task, loaded.docs, bos, opts, progress);
  if ('noData' in body) return noData(body.noData);
  // The aggregated metrics: finite, or the task fails (never an ok row from NaN or Infinity).
  assertFinite(body.results.flatMap((r) => [r.value ?? 0, r.stderr ?? 0]), `${opts.label}: ${task.name} metrics`);
  return { ...base, status: 'ok', results: body.results, notes: [...notes, ...body.notes], durationS: (performance.now() - t0) / 1000 };
}

type StageProgress = (stage: string) => (done: number, total: number) => void;

// ---------------------------------------------------------------------------------------------
// Perplexity

// Windows and their requests: perplexity.ts (windowPerplexity, pplRequests).

async function runRolling<D>(
  scorer: Scorer,
  tok: Tokenizer,
  task: RollingTask<D>,
  docs: D[],
  bos: boolean,
  seqlen: number,
  opts: EvalOptions,
  progress: StageProgress,
) {
  if (seqlen > scorer.maxLength) throw new Error(`${task.name}: seqlen ${seqlen} exceeds the model's context ${scorer.maxLength}`);
  const tokens = docs.flatMap((d) => tok.encode(task.docToText(d)));
  const total = Math.floor(tokens.length / seqlen);
  if (total === 0) throw new Error(`${task.name}: ${tokens.length} tokens make no window of ${seqlen}`);
  const pick = subsample(total, opts.limit, opts.seed);
  const r = await windowPerplexity(scorer, tokens, { seqlen, pick, bosId: bos ? tok.bosId : null, onProgress: progress('windows') });
  assertFinite(r.windowNll, `${opts.label}: ${task.name} window log-likelihoods`);
  return {
    results: [
      {
        task: task.name,
        metric: 'ppl',
        value: r.ppl,
        stderr: bootstrapPplStderr(r.windowNll, r.windowTokens, opts.bootstrap, opts.seed),
        n: r.windows,
        higherIsBetter: false,
      },
    ],
    notes: [`tokens=${tokens.length}`, `windows=${r.windows}/${r.totalWindows}`, `predicted=${r.predicted}`],
  };
}

// ---------------------------------------------------------------------------------------------
// Multiple choice (lm-eval)

/** lm-eval's _encode_pair: trailing spaces of the context move to the continuation; the pair is
 * encoded whole and split at the length of the context's own encoding, so the continuation's
 * tokens are those of the whole text. */
export function encodePair(tok: Tokenizer, context: string, continuation: string, bosId: number | null): ContinuationRequest {
  const nSpaces = context.length - context.trimEnd().length;
  if (nSpaces > 0) {
    continuation = context.slice(-nSpaces) + continuation;
    context = context.slice(0, -nSpaces);
  }
  const whole = tok.encode(context + continuation);
  const cut = Math.min(tok.encode(context).length, whole.length - 1); // at least one continuation token
  if (cut < 0) throw new Error(`encodePair: ${JSON.stringify(context + continuation)} encodes to no tokens`);
  const prefix = bosId === null ? [] : [bosId];
  return { context: [...prefix, ...whole.slice(0, cut)], continuation: whole.slice(cut) };
}

async function runMultipleChoice<D>(
  scorer: Scorer,
  tok: Tokenizer,
  task: MultipleChoiceTask<D>,
  allDocs: D[],
  bos: boolean,
  opts: EvalOptions,
  progress: StageProgress,
) {
  const pick = subsample(allDocs.length, opts.limit, opts.seed);
  const docs = pick.map((i) => allDocs[i]);
  const bosId = bos ? tok.bosId : null;
  const reqs: ContinuationRequest[] = [];
  const spans: { start: number; choices: string[] }[] = [];
  for (const doc of docs) {
    const text = task.docToText(doc);
    const choices = task.docToChoice(doc);
    const start = reqs.length;
    if (Array.isArray(text)) {
      if (choices.length !== 1) throw new Error(`${task.name}: per-choice contexts need exactly one shared continuation`);
      for (const ctx of text) reqs.push(encodePair(tok, ctx, task.targetDelimiter + choices[0], bosId));
    } else {
      for (const c of choices) reqs.push(encodePair(tok, text, task.targetDelimiter + c, bosId));
    }
    spans.push({ start, choices });
  }
  const scored = await scorer.continuations(reqs, progress('choices'));
  assertFinite(scored.map((s) => s.logprob), `${opts.label}: ${task.name} choice log-likelihoods`);
  const perDoc: DocScores[] = docs.map((doc, k) => {
    const end = k + 1 < spans.length ? spans[k + 1].start : scored.length;
    const lls = scored.slice(spans[k].start, end).map((s) => s.logprob);
    return task.processResults(doc, lls, spans[k].choices);
  });
  const truncated = scored.filter((s) => s.truncated > 0).length;
  const partial = scored.filter((s) => s.unscored > 0).length;
  return {
    results: aggregate(task, docs, perDoc),
    notes: [
      `docs=${docs.length}/${allDocs.length}`,
      ...(truncated ? [`${truncated} requests left-truncated to ${scorer.maxLength} tokens`] : []),
      ...(partial ? [`${partial} continuations longer than ${scorer.maxLength} tokens: only their last ${scorer.maxLength} tokens scored`] : []),
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// Letter answers (LLMCBench)

/** The token a letter answer is read at: the last id of encode(letter), as LLMCBench's tokenizer("A").input_ids[-1]. */
export function letterToken(tok: Tokenizer, letter: string): number {
  const ids = tok.encode(letter);
  if (ids.length === 0) throw new Error(`letter ${JSON.stringify(letter)} encodes to no token`);
  return ids[ids.length - 1];
}

async function runLetter<D>(
  scorer: Scorer,
  tok: Tokenizer,
  task: LetterTask<D>,
  allDocs: D[],
  bos: boolean,
  opts: EvalOptions,
  progress: StageProgress,
): Promise<{ results: MetricResult[]; notes: string[] } | { noData: string }> {
  const k = opts.shots;
  if (k > 0 && task.fewshot.kind === 'pool') {
    const fs = task.fewshot;
    const pool = (await fs.load(opts.data)) as LoadResult<D>;
    if (pool.status === 'no_data') return { noData: `${task.name}: few-shot pool missing: ${pool.reason}` };
    const byKey = new Map<string, D[]>();
    for (const d of pool.docs) {
      const key = fs.key(d);
      if (!byKey.has(key)) byKey.set(key, []);
      byKey.get(key)!.push(d);
    }
    const shotsFor = (doc: D) => (byKey.get(fs.key(doc)) ?? []).slice(0, k);
    return scoreLetters(scorer, tok, task, allDocs, shotsFor, bos, opts, progress, [`fewshot=first ${k} of ${pool.source}`]);
  }
  if (k > 0 && task.fewshot.kind === 'head') {
    const fs = task.fewshot;
    const heads = new Map<string, D[]>();
    const scoredDocs = allDocs.filter((d) => {
      const key = fs.key(d);
      const h = heads.get(key) ?? [];
      heads.set(key, h);
      if (h.length < k) {
        h.push(d);
        return false; // a demonstration is not scored
      }
      return true;
    });
    const shotsFor = (doc: D) => heads.get(fs.key(doc)) ?? [];
    return scoreLetters(scorer, tok, task, scoredDocs, shotsFor, bos, opts, progress, [`fewshot=first ${k} per group, excluded from scoring`]);
  }
  return scoreLetters(scorer, tok, task, allDocs, () => [], bos, opts, progress, []);
}

async function scoreLetters<D>(
  scorer: Scorer,
  tok: Tokenizer,
  task: LetterTask<D>,
  allDocs: D[],
  shotsFor: (doc: D) => D[],
  bos: boolean,
  opts: EvalOptions,
  progress: StageProgress,
  notes: string[],
) {
  const pick = subsample(allDocs.length, opts.limit, opts.seed);
  const docs = pick.map((i) => allDocs[i]);
  const variants = task.variants ?? ['default'];
  const prefix = bos ? [tok.bosId!] : [];
  const letterIds = new Map<string, number>();
  const idOf = (l: string) => {
    if (!letterIds.has(l)) letterIds.set(l, letterToken(tok, l));
    return letterIds.get(l)!;
  };
  const reqs: { context: number[]; candidates: number[] }[] = [];
  let reducedShots = 0;
  for (const doc of docs) {
    const shots = shotsFor(doc);
    for (const v of variants) {
      // LLMCBench drops demonstrations until the prompt fits (while len > seqlen: k -= 1).
      let s = shots.length;
      let ids = [...prefix, ...tok.encode(task.docToText(doc, shots, v))];
      while (ids.length > scorer.maxLength && s > 0) {
        s--;
        ids = [...prefix, ...tok.encode(task.docToText(doc, shots.slice(0, s), v))];
      }
      if (s < shots.length) reducedShots++;
      reqs.push({ context: ids, candidates: task.letters(doc).map(idOf) });
    }
  }
  const scored = await scorer.nextToken(reqs, progress('prompts'));
  // A NaN log-probability would still give a finite accuracy (the argmax falls on the first letter).
  assertFinite(scored.flatMap((s) => s.logprobs), `${opts.label}: ${task.name} letter log-probabilities`);
  const perDoc: DocScores[] = docs.map((doc, d) => {
    const out: DocScores = {};
    variants.forEach((v, j) => {
      const lp = scored[d * variants.length + j].logprobs;
      const pred = lp.reduce((best, x, i) => (x > lp[best] ? i : best), 0);
      out[task.variantMetric?.(v) ?? 'acc'] = pred === task.docToTarget(doc) ? 1 : 0;
    });
    return out;
  });
  const truncated = scored.filter((s) => s.truncated > 0).length;
  return {
    results: aggregate(task, docs, perDoc),
    notes: [
      ...notes,
      `docs=${docs.length}/${allDocs.length}`,
      `letters=${[...letterIds].map(([l, id]) => `${l}:${id}`).join(',')}`,
      ...(reducedShots ? [`${reducedShots} prompts had demonstrations dropped to fit ${scorer.maxLength} tokens`] : []),
      ...(truncated ? [`${truncated} prompts left-truncated to ${scorer.maxLength} tokens`] : []),
    ],
  };
}

// ---------------------------------------------------------------------------------------------

/** Means and stderrs per metric over all documents, then per group (in first-seen order). */
function aggregate<D>(task: Task<D>, docs: D[], perDoc: DocScores[]): MetricResult[] {
  const out: MetricResult[] = [];
  const groups = new Map<string, number[]>([[task.name, docs.map((_, i) => i)]]);
  if (task.groups) {
    docs.forEach((d, i) => {
      for (const g of task.groups!(d)) {
        if (!groups.has(g)) groups.set(g, []);
        groups.get(g)!.push(i);
      }
    });
  }
  for (const [g, idx] of groups) {
    for (const m of task.metrics) {
      const xs = idx.map((i) => perDoc[i][m.name]).filter((x): x is number => x !== undefined);
      if (xs.length === 0) continue;
      const { mean, stderr, n } = meanStderr(xs);
      out.push({ task: g, metric: m.name, value: mean, stderr, n, higherIsBetter: m.higherIsBetter });
    }
  }
  return out;
}

/** What the rows say about the evaluated model and how it was compressed. */
export type RowModelInfo = Pick<ResultRow, 'model' | 'model_family' | 'model_params' | 'method' | 'method_config'> & { calib?: string };

/** Result rows of one outcome (through results.ts's makeRow); bos, seqlen, shots and notes in every row. */
export function outcomeRows(ctx: RunContext, outcome: EvalOutcome, info: RowModelInfo, seed: number): ResultRow[] {
  return outcome.results.map((r) =>
    makeRow(ctx, {
      track: outcome.track,
      model: info.model,
      model_family: info.model_family,
      model_params: info.model_params,
      method: info.method,
      method_config: info.method_config,
      calib: info.calib ?? 'none',
      task: r.task,
      metric: r.metric,
      value: r.value,
      higher_is_better: r.higherIsBetter,
      n: r.n,
      stderr: r.stderr,
      seqlen: outcome.seqlen,
      bos: outcome.bos,
      seed,
      duration_s: outcome.durationS,
      status: outcome.status,
      note: outcome.status === 'ok' ? outcome.notes.join('; ') : `no data: ${outcome.notes.join('; ')}`,
    }),
  );
}
