// Declarative task definitions (DESIGN §5.6): what to load, how a document becomes a prompt and
// choices, which metrics come out and whether higher is better. The evaluator (lib/eval) turns
// these into token requests; nothing here touches a model.
import type { DataOptions, LoadResult } from '../data/common';
import type { Track } from '../results';

export interface MetricDef {
  name: string;
  higherIsBetter: boolean;
}

/** Per-document scores: metric name → value (a metric absent for a document is not averaged over it). */
export type DocScores = Record<string, number>;

interface TaskBase<Doc> {
  name: string;
  /** Result track the rows go to (1 performance, 6 trustworthiness). */
  track: Track;
  /** Bumped whenever prompts or scoring change, so rows stay comparable. */
  version: string;
  description: string;
  metrics: readonly MetricDef[];
  /** The paper's BOS choice for this task (LLMCBench's scripts: none; lm-eval: BOS for LLaMA). */
  defaultBos: boolean;
  /** Paths under the data root its local copy reads (files, or folders read whole; every candidate
   * name): their hashes are the data identity in each cell's key (lib/data/verify.ts dataIdentity). */
  dataFiles: readonly string[];
  load(data: DataOptions): Promise<LoadResult<Doc>>;
  /** Sub-groups a document also counts toward (e.g. 'mmlu/stem'); each becomes a task of its own in the rows. */
  groups?(doc: Doc): string[];
  /** Facts every row of this task should carry (protocol deviations, fixed defects). */
  notes?: readonly string[];
}

/** Token-perplexity over non-overlapping windows of the tokenized text. */
export interface RollingTask<Doc> extends TaskBase<Doc> {
  outputType: 'loglikelihood_rolling';
  docToText(doc: Doc): string;
}

/**
 * lm-eval multiple choice: the log-likelihood of each continuation given its context.
 * docToText gives one context for all choices, or one context per choice (partial scoring,
 * WinoGrande), in which case docToChoice gives the one shared continuation.
 */
export interface MultipleChoiceTask<Doc> extends TaskBase<Doc> {
  outputType: 'multiple_choice';
  docToText(doc: Doc): string | string[];
  docToChoice(doc: Doc): string[];
  /** Put between context and continuation (lm-eval's target_delimiter). */
  targetDelimiter: string;
  docToTarget(doc: Doc): number;
  /** Scores from the continuations' summed log-probabilities (lls[i] belongs to choice i). */
  processResults(doc: Doc, lls: number[], choices: string[]): DocScores;
}

/** How a letter task draws its few-shot demonstrations. */
export type FewshotSource =
  | { kind: 'none' }
  /** A separate pool (MMLU: the dev split, first k of the same subject). */
  | { kind: 'pool'; load(data: DataOptions): Promise<LoadResult<unknown>>; key(doc: unknown): string }
  /** The first k documents of the evaluated split per key, then excluded from scoring (LLMCBench's AdvGLUE). */
  | { kind: 'head'; key(doc: unknown): string };

/**
 * LLMCBench's letter-answer scoring: the prompt's next-token log-probabilities of the answer
 * letters (" A", " B", ...); the prediction is the argmax.
 */
export interface LetterTask<Doc> extends TaskBase<Doc> {
  outputType: 'letter';
  /** One prompt per document, or several scored variants (AdvGLUE: adversarial and original text). */
  variants?: readonly string[];
  /** The prompt with k demonstrations in front. */
  docToText(doc: Doc, shots: readonly Doc[], variant: string): string;
  /** The letters to compare (their last token of tokenizer.encode(letter), as LLMCBench's tokenizer("A").input_ids[-1]). */
  letters(doc: Doc): readonly string[];
  /** Index into letters() of the right answer. */
  docToTarget(doc: Doc): number;
  /** Metric a variant's accuracy is reported under (default 'acc'). */
  variantMetric?(variant: string): string;
  fewshot: FewshotSource;
}

export type Task<Doc = any> = RollingTask<Doc> | MultipleChoiceTask<Doc> | LetterTask<Doc>;

/** lm-eval's multiple-choice metrics: acc = argmax of summed log-likelihood; acc_norm = argmax of it per character of the choice. */
export function mcAccuracy(lls: number[], choices: string[], gold: number): DocScores {
  if (lls.length !== choices.length) throw new Error(`mcAccuracy: ${lls.length} log-likelihoods for ${choices.length} choices`);
  const argmax = (xs: number[]) => xs.reduce((best, x, i) => (x > xs[best] ? i : best), 0);
  const norm = lls.map((ll, i) => ll / choices[i].length);
  return { acc: argmax(lls) === gold ? 1 : 0, acc_norm: argmax(norm) === gold ? 1 : 0 };
}

export const ACC: MetricDef = { name: 'acc', higherIsBetter: true };
export const ACC_NORM: MetricDef = { name: 'acc_norm', higherIsBetter: true };
