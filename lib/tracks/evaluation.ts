// Tracks 1, 2 and 6 share one cell kind: evaluate the subject on a task. Track 1 holds the
// knowledge and inference tasks, Track 6 AdvGLUE and TruthfulQA (each task names its track),
// Track 2 is WikiText-2 perplexity across every model, the same measurement filed under Track 2.
import { evaluate, outcomeRows, type EvalOutcome } from '../eval/evaluate';
import { modelScorer } from '../eval/model-scorer';
import type { Scorer } from '../eval/scorer';
import { TokenCache } from '../eval/token-cache';
import { cellNote, type Cell, type TaskInfo } from '../matrix';
import type { ResultRow } from '../results';
import { getTasks } from '../tasks/index';
import type { Task } from '../tasks/types';
import { subjectFields, subjectLabel, type Subject, type TrackEnv } from './common';

/** The task's track, version and data files (what cells and hashes need to know about it). */
export function taskTrack(name: string): TaskInfo {
  const [t] = getTasks([name]);
  return { track: t.track, version: t.version, dataFiles: t.dataFiles };
}

/** A scorer over the subject: activation fake-quantization in the forward when the method needs it. */
export function subjectScorer(env: TrackEnv, s: Subject): Scorer {
  const bt = env.matrix.eval.batchTokens;
  const opts = { label: subjectLabel(s), ...(bt ? { maxBatchTokens: Math.max(bt, s.model.config.maxPositions) } : {}) };
  // W8A8: forward() quantizes linear inputs when the model carries the spec (set it once only).
  const act = s.compress?.actQuant ?? null;
  return modelScorer(act && !s.model.actQuant ? { ...s.model, actQuant: act } : s.model, opts);
}

/**
 * Evaluates the subject on a cell's task and returns the rows for the cell's track. `memo` keeps
 * outcomes per task within one subject, so Track 1's and Track 2's WikiText-2 cells share one run.
 */
export async function evaluationCell(env: TrackEnv, cell: Cell, s: Subject, memo: Map<string, EvalOutcome>): Promise<ResultRow[]> {
  let outcome = memo.get(cell.item);
  if (!outcome) {
    const task = keptLoads(getTasks([cell.item])[0], env);
    const e = env.matrix.eval;
    // Encodings come from the disk cache of (tokenizer, task): the model's other pairs built the same requests.
    const tokenizer = TokenCache.open(s.model.tokenizer, task.name);
    outcome = await evaluate(subjectScorer(env, s), tokenizer, task, {
      bos: e.bos,
      seqlen: e.seqlen === null ? null : Math.min(e.seqlen, s.model.config.maxPositions),
      limit: e.limit,
      seed: e.seed,
      data: env.data,
      label: subjectLabel(s),
      onProgress: undefined,
    });
    tokenizer.save();
    memo.set(cell.item, outcome);
  }
  return outcomeRows(env.ctx, outcome, subjectFields(s), env.matrix.eval.seed).map((r) => ({ ...r, track: cell.track, note: cellNote(cell.hash, r.note, cell.data) }));
}

/** Task data loaded in this process, by task and data options: the runner's cell process runs pair
 * after pair, and parsing a task's files again for each (MMLU: 0.7 s) is wasted. */
const LOADED = new Map<string, ReturnType<Task['load']>>();

/** The task, its load() answered from LOADED (evaluate() only reads the documents). */
function keptLoads(task: Task, env: TrackEnv): Task {
  const key = `${task.name}\u0000${JSON.stringify(env.data)}`;
  return {
    ...task,
    load: (data) => {
      if (data !== env.data) return task.load(data);
      if (!LOADED.has(key)) LOADED.set(key, task.load(data).catch((e) => (LOADED.delete(key), Promise.reject(e))));
      return LOADED.get(key)!;
    },
  } as Task;
}

/** The metrics a task's rows carry (for not_run rows of a cell that never got to evaluate). */
export function taskMetrics(name: string): { task: string; metric: string; higher_is_better: boolean }[] {
  const [t] = getTasks([name]);
  return t.metrics.map((m) => ({ task: t.name, metric: m.name, higher_is_better: m.higherIsBetter }));
}
