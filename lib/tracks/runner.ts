// Runs any slice of a matrix: expands it into cells, skips the cells whose config hash already has
// rows under the output root (resumable), loads and compresses each (model, method) pair once for
// all its pending cells, and appends each cell's rows through lib/results.ts as soon as the cell
// ends (an interrupted run loses at most the cell in flight).
import * as tf from '@tensorflow/tfjs';
import type { EvalOutcome } from '../eval/evaluate';
import { resolveDataDir } from '../data/common';
import {
  cellPending, checkMatrix, REPO_ROOT, checkSlice, expandCells, finishedCells, type Cell, type MatrixConfig, type Slice,
} from '../matrix';
import { appendResults, trackFile, type ResultRow } from '../results';
import { envDefaults, notRunRows, openEnv, prepareSubject, type EnvOptions, type Subject, type TrackEnv } from './common';
import { evaluationCell, taskMetrics, taskTrack } from './evaluation';
import { engineMetrics, hardwareCell } from './hardware';
import { inferenceCell, TRACK4_METRICS } from './inference';
import { trainingCell, TRACK3_METRICS } from './training';

export interface RunOptions extends EnvOptions {
  slice: Slice; // which part of the matrix
  retry: boolean; // also redo cells whose rows say no_data with the same data (the hub again); data that appears under the data root changes the cell key, so those cells run without it
  budgetS: number | null; // start no new (model, method) pair after this many seconds; null: no limit
  dryRun: boolean; // only list the pending cells
}

export const runDefaults: RunOptions = {
  ...envDefaults,
  slice: {}, // the whole matrix
  retry: false, // no_data cells stay done until their data appears (or until asked)
  budgetS: null, // run to the end
  dryRun: false, // do the work
};

export interface RunSummary {
  matrix: string;
  cells: number; // cells in the slice
  pending: number; // cells that had to run
  ran: number; // cells that wrote rows in this run
  failed: { cell: string; error: string }[]; // cells that threw (their rows say not_run)
  stopped: null | 'budget' | 'timeout'; // why the run ended early
  rows: ResultRow[]; // every row written in this run
  pendingCells: Cell[];
  wallS: number;
}

export class CellTimeout extends Error {
  constructor(readonly label: string, readonly seconds: number) {
    super(`${label}: exceeded the cell time limit of ${seconds} s`);
    this.name = 'CellTimeout';
  }
}

/** Resolves with p, or rejects with CellTimeout after `seconds` (the work itself cannot be preempted). */
export async function withTimeout<T>(p: Promise<T>, seconds: number, label: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CellTimeout(label, seconds)), seconds * 1000);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

/** The metrics a cell writes, for its not_run rows. */
export function expectedMetrics(cell: Cell): { task: string; metric: string; higher_is_better: boolean }[] {
  if (cell.track === 3) return TRACK3_METRICS;
  if (cell.track === 4) return TRACK4_METRICS;
  if (cell.track === 5) return engineMetrics(cell.item);
  return taskMetrics(cell.item);
}

const label = (c: Cell) => `track ${c.track} ${c.model.id} ${c.method.id} ${c.item} [${c.hash}]`;

async function runCell(env: TrackEnv, cell: Cell, s: Subject, memo: Map<string, EvalOutcome>): Promise<ResultRow[]> {
  if (cell.track === 3) return trainingCell(env, cell, s);
  if (cell.track === 4) return inferenceCell(env, cell, s);
  if (cell.track === 5) return hardwareCell(env, cell, s);
  return evaluationCell(env, cell, s, memo);
}

/** Runs the pending cells of a slice of the matrix; rows go to <out>/results/track<N>.csv. */
export async function runMatrix(mx: MatrixConfig, options: Partial<RunOptions> = {}): Promise<RunSummary> {
  const o = { ...runDefaults, ...options };
  const t0 = performance.now();
  checkMatrix(mx);
  checkSlice(mx, o.slice);
  // The data identity of each cell is in its hash: cells computed without their data (no_data) or
  // on other data come back by themselves when the data appears or changes.
  const cells = expandCells(mx, o.slice, taskTrack, resolveDataDir(o.dataDir, REPO_ROOT));
  const done = finishedCells(o.out);
  const pending = cells.filter((c) => cellPending(done.get(c.hash), o.retry));
  const summary: RunSummary = { matrix: mx.name, cells: cells.length, pending: pending.length, ran: 0, failed: [], stopped: null, rows: [], pendingCells: pending, wallS: 0 };
  if (o.dryRun || pending.length === 0) {
    summary.wallS = (performance.now() - t0) / 1000;
    return summary;
  }
  const env = await openEnv(mx, o);
  env.log(`matrix '${mx.name}': ${cells.length} cells, ${pending.length} pending, backend ${env.runtime.backend} (${env.runtime.device}), rows -> ${o.out}/results`);
  const write = (rows: ResultRow[]) => {
    for (const t of [...new Set(rows.map((r) => r.track))]) appendResults(trackFile(t, o.out), rows.filter((r) => r.track === t));
    summary.rows.push(...rows);
  };
  // (model, method) pairs in matrix order, each with its pending cells
  const pairs = new Map<string, Cell[]>();
  for (const c of pending) {
    const k = `${c.model.id}\u0000${c.method.id}`;
    pairs.set(k, [...(pairs.get(k) ?? []), c]);
  }
  outer: for (const group of pairs.values()) {
    if (o.budgetS !== null && (performance.now() - t0) / 1000 > o.budgetS) {
      summary.stopped = 'budget';
      break;
    }
    const { model, method } = group[0];
    const before = tf.memory().numTensors;
    env.log(`== ${model.id} × ${method.id}: ${group.length} cell(s)`);
    let subject: Subject;
    try {
      subject = await withTimeout(prepareSubject(env, model, method), mx.cellTimeoutS, `${model.id} × ${method.id} compression`);
    } catch (e) {
      const msg = (e as Error).message;
      env.log(`   not run: ${msg}`);
      for (const c of group) write(notRunRows(env, c, expectedMetrics(c), `${method.id} on ${model.id}: ${msg}`));
      summary.ran += group.length;
      if (!(e instanceof CellTimeout)) summary.failed.push({ cell: `${model.id} × ${method.id}`, error: msg });
      if (e instanceof CellTimeout) {
        summary.stopped = 'timeout';
        break;
      }
      continue;
    }
    const memo = new Map<string, EvalOutcome>();
    try {
      for (const cell of group) {
        const tc = performance.now();
        try {
          const rows = await withTimeout(runCell(env, cell, subject, memo), mx.cellTimeoutS, label(cell));
          write(rows);
          const st = rows.every((r) => r.status === 'ok') ? 'ok' : [...new Set(rows.map((r) => r.status))].join('/');
          env.log(`   ${label(cell)}: ${rows.length} rows, ${st} (${((performance.now() - tc) / 1000).toFixed(1)} s)`);
        } catch (e) {
          const msg = (e as Error).message;
          write(notRunRows(env, cell, expectedMetrics(cell), `error: ${msg}`));
          env.log(`   ${label(cell)}: FAILED ${msg}`);
          if (e instanceof CellTimeout) {
            summary.stopped = 'timeout';
            break outer;
          }
          summary.failed.push({ cell: label(cell), error: msg });
        } finally {
          summary.ran++;
        }
      }
    } finally {
      if (summary.stopped !== 'timeout') subject.dispose();
    }
    const leaked = tf.memory().numTensors - before;
    if (leaked > 0) env.log(`   warning: ${leaked} tensor(s) still live after ${model.id} × ${method.id}`);
  }
  summary.wallS = (performance.now() - t0) / 1000;
  env.log(`matrix '${mx.name}': ran ${summary.ran} of ${pending.length} pending cells in ${summary.wallS.toFixed(1)} s${summary.stopped ? ` (stopped: ${summary.stopped}; rerun to resume)` : ''}`);
  return summary;
}
