// Reproducibility of a re-run: the scores of two runs of the same matrix cells (two data roots),
// compared cell by cell (the cell hash in each row's note, and the metric). Scoring is deterministic,
// so accuracies (and every other score) must be equal and perplexities within PPL_REL_TOL.
import { rowCell } from '../matrix';
import type { ResultRow } from '../results';

/** Perplexity may move by this relative amount between runs (float sums in another order); everything else must be equal. */
export const PPL_REL_TOL = 1e-4;

/** Tracks whose values are scores (deterministic); Tracks 3-5 measure time, memory and speed. */
export const SCORE_TRACKS = [1, 2, 6] as const;

export interface MetricComparison {
  track: number;
  metric: string;
  compared: number; // cells with an ok row in both runs
  identical: number; // of them, bit-equal values
  maxRelDiff: number; // largest |a − b| / |a| (0 when a = b)
  tolerance: number; // allowed relative difference
  pass: boolean;
}

export interface Mismatch {
  track: number;
  model: string;
  method: string;
  task: string;
  metric: string;
  a: number;
  b: number;
  relDiff: number;
}

/** The latest ok row of each (cell, metric): later rows of a file win (a --redo appends). */
function latestOk(rows: readonly ResultRow[]): Map<string, ResultRow> {
  const out = new Map<string, ResultRow>();
  for (const r of rows) {
    const cell = rowCell(r);
    if (r.status === 'ok' && cell && r.value !== null) out.set(`${cell}|${r.metric}`, r);
  }
  return out;
}

/** Compares run b's score rows with run a's, over the cells both ran (pairs: the rows compared, a's then b's). */
export function compareRuns(a: readonly ResultRow[], b: readonly ResultRow[]): { metrics: MetricComparison[]; mismatches: Mismatch[]; pairs: [ResultRow, ResultRow][] } {
  const A = latestOk(a);
  const groups = new Map<string, MetricComparison>();
  const mismatches: Mismatch[] = [];
  const pairs: [ResultRow, ResultRow][] = [];
  for (const [key, rb] of latestOk(b)) {
    const ra = A.get(key);
    if (!ra || !(SCORE_TRACKS as readonly number[]).includes(rb.track)) continue;
    pairs.push([ra, rb]);
    const tolerance = rb.metric === 'ppl' ? PPL_REL_TOL : 0;
    const va = ra.value as number;
    const vb = rb.value as number;
    const rel = va === vb ? 0 : Math.abs(va - vb) / Math.abs(va);
    const g = groups.get(`${rb.track}|${rb.metric}`) ?? { track: rb.track, metric: rb.metric, compared: 0, identical: 0, maxRelDiff: 0, tolerance, pass: true };
    groups.set(`${rb.track}|${rb.metric}`, g);
    g.compared++;
    if (va === vb) g.identical++;
    g.maxRelDiff = Math.max(g.maxRelDiff, Number.isNaN(rel) ? Infinity : rel);
    if (!(rel <= tolerance)) {
      g.pass = false;
      mismatches.push({ track: rb.track, model: rb.model, method: rb.method, task: rb.task, metric: rb.metric, a: va, b: vb, relDiff: rel });
    }
  }
  const metrics = [...groups.values()].sort((x, y) => x.track - y.track || x.metric.localeCompare(y.metric));
  return { metrics, mismatches, pairs };
}
