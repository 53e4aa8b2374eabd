// Runs any slice of a matrix: expands it into cells, skips the cells whose config hash already has
// rows under the output root (resumable), loads and compresses each (model, method) pair once for
// all its pending cells, and appends each cell's rows through lib/results.ts as soon as the cell
// ends (an interrupted run loses at most the cell in flight).
//
// With a cell time limit (MatrixConfig.cellTimeoutS, the default), the pairs run one after another
// in a child process (lib/tracks/isolate.ts) that is killed when loading and compressing, or one
// cell, runs past the limit: that cell's rows say not_run ("timeout after N s"), and the pair's
// later cells go on in a fresh child. Without a limit (cellTimeoutS null) the pairs run in this
// process: nothing can stop a cell that hangs, and no heartbeat.
// One run at a time writes into an output folder: <out>/.run.lock names it (lib/lock.ts).
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatCsv } from '../csv';
import type { EvalOutcome } from '../eval/evaluate';
import { REPO_ROOT } from '../cli';
import { resolveDataDir } from '../data/common';
import { EngineNotRun } from '../efficiency/engines/types';
import { kernelPolicy } from '../kernels';
import { acquireLock } from '../lock';
import {
  cellPending, checkMatrix, checkSlice, expandCells, finishedCells, type Cell, type MatrixConfig, type Slice,
} from '../matrix';
import { canonicalJson } from '../metrics/names';
import { appendResults, trackFile, type ResultRow, type RunContext } from '../results';
import { envDefaults, notRunRows, openEnv, prepareSubject, type EnvOptions, type Subject, type TrackEnv } from './common';
import { evaluationCell, taskMetrics, taskTrack } from './evaluation';
import { engineMetrics, hardwareCell, openEngine } from './hardware';
import { inferenceCell, TRACK4_METRICS } from './inference';
import { CellProcess, type SubjectEvent } from './isolate';
import { trainingCell, TRACK3_METRICS } from './training';

export interface RunOptions extends EnvOptions {
  slice: Slice; // which part of the matrix
  retry: boolean; // also redo cells whose rows say no_data with the same data (the hub again); data that appears under the data root changes the cell key, so those cells run without it
  redo: boolean; // run every cell of the slice again, ok ones too (new rows are added; each cell's latest row counts): a re-measurement after an engine change. Not resumable: a second run redoes them again
  budgetS: number | null; // start no new (model, method) pair after this many seconds; null: no limit
  dryRun: boolean; // only list the pending cells
  preload: string[]; // modules imported before the run, here and in every cell process (extra methods or tasks)
  heartbeatS: number; // while a cell runs in a cell process, a progress line at most this often
}

export const runDefaults: RunOptions = {
  ...envDefaults,
  slice: {}, // the whole matrix
  retry: false, // no_data cells stay done until their data appears (or until asked)
  redo: false, // finished cells stay done
  budgetS: null, // run to the end
  dryRun: false, // do the work
  preload: [], // the built-in methods and tasks only
  heartbeatS: 10, // quiet for short cells
};

/** The lock file of an output folder: one run at a time writes into it. */
export const runLockFile = (out: string) => path.join(out, '.run.lock');

export interface RunSummary {
  matrix: string;
  cells: number; // cells in the slice
  pending: number; // cells that had to run
  ran: number; // cells that wrote rows in this run
  failed: { cell: string; error: string }[]; // cells that threw or whose process died (their rows say not_run)
  timedOut: { cell: string; error: string }[]; // cells killed at the cell time limit (their rows say not_run)
  stopped: null | 'budget'; // why the run ended early
  rows: ResultRow[]; // every row written in this run
  pendingCells: Cell[];
  wallS: number;
  /** Wall seconds of the cells run, by track; `subjects` the rest of each model × method's time (loading, compressing, its cell process). */
  wallByPart: Record<string, number>;
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

/**
 * Loads and compresses one (model, method) subject and runs its cells in order, reporting each
 * step to `report` (in a cell process, these are its messages). Never throws for a failed phase:
 * that is an error event (a failed load or compression stops the subject).
 */
export async function runSubject(env: TrackEnv, cells: Cell[], report: (e: SubjectEvent) => void): Promise<void> {
  const { model, method } = cells[0];
  const before = tf.memory().numTensors;
  report({ kind: 'phase', cell: null });
  let subject: Subject;
  try {
    subject = await prepareSubject(env, model, method);
  } catch (e) {
    report({ kind: 'error', cell: null, error: (e as Error).message, cause: 'threw' });
    return;
  }
  const memo = new Map<string, EvalOutcome>();
  try {
    for (const cell of cells) {
      report({ kind: 'phase', cell: cell.hash });
      const t = performance.now();
      try {
        const rows = await runCell(env, cell, subject, memo);
        report({ kind: 'rows', cell: cell.hash, rows, wallS: (performance.now() - t) / 1000 });
      } catch (e) {
        report({ kind: 'error', cell: cell.hash, error: (e as Error).message, cause: 'threw' });
      }
    }
  } finally {
    subject.dispose();
  }
  const leaked = tf.memory().numTensors - before;
  if (leaked > 0) env.log(`   warning: ${leaked} tensor(s) still live after ${model.id} × ${method.id}`);
}

/** "wall time by part: track 1 12.3 s, …, loading/compressing 45.6 s" (RunSummary.wallByPart, tracks in order). */
export function wallByPartLine(parts: Record<string, number>): string {
  const keys = Object.keys(parts).sort((a, b) => (a === 'subjects' ? 1 : b === 'subjects' ? -1 : a.localeCompare(b, 'en', { numeric: true })));
  return `wall time by part: ${keys.map((k) => `${k === 'subjects' ? 'loading/compressing/cell processes' : k} ${parts[k].toFixed(1)} s`).join(', ') || 'none'}`;
}

/** Runs the pending cells of a slice of the matrix; rows go to <out>/results/track<N>.csv. */
export async function runMatrix(mx: MatrixConfig, options: Partial<RunOptions> = {}): Promise<RunSummary> {
  const o = { ...runDefaults, ...options };
  o.preload = o.preload.map((p) => path.resolve(p));
  const t0 = performance.now();
  checkMatrix(mx);
  checkSlice(mx, o.slice);
  for (const p of o.preload) await import(pathToFileURL(p).href);
  const lock = o.dryRun ? null : acquireLock(runLockFile(o.out), { what: `output folder '${o.out}'`, warn: o.log });
  try {
    return await runSlice(mx, o, t0);
  } finally {
    lock?.release();
  }
}

/** <out>/runs.csv: a line per run that ran cells (what, where, in how long); a run resumed over several calls sums its lines. */
export function runsFile(out: string): string {
  return path.join(out, 'runs.csv');
}

const TRACK_NUMBERS = [1, 2, 3, 4, 5, 6];
const RUN_COLUMNS = [
  'run_id', 'matrix', 'slice', 'backend', 'device', 'git_sha', 'started_at', 'pending', 'ran', 'stopped', 'wall_s',
  ...TRACK_NUMBERS.map((t) => `track${t}_s`), 'subjects_s', // subjects: loading, compressing (Track 3) and cell processes
];

function recordRun(out: string, mx: MatrixConfig, slice: Slice, ctx: RunContext, s: RunSummary): void {
  const part = (k: string) => (s.wallByPart[k] ?? 0).toFixed(1);
  const line = [
    ctx.run_id, mx.name, canonicalJson(slice), ctx.backend, ctx.device, ctx.git_sha, ctx.started_at, String(s.pending), String(s.ran), s.stopped ?? '', s.wallS.toFixed(1),
    ...TRACK_NUMBERS.map((t) => part(`track ${t}`)), part('subjects'),
  ];
  const file = runsFile(out);
  const text = formatCsv(RUN_COLUMNS, [line]);
  fs.appendFileSync(file, fs.existsSync(file) ? text.slice(text.indexOf('\n') + 1) : text);
}

/** The engines of these Track 5 cells, other than the kit's own, that cannot open here, with the reason (opened once each). */
async function unopenableEngines(cells: Cell[]): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of new Set(cells.filter((c) => c.track === 5 && c.item !== 'kit').map((c) => c.item))) {
    try {
      await (await openEngine(name)).dispose();
    } catch (e) {
      if (!(e instanceof EngineNotRun)) throw e;
      out.set(name, e.reason);
    }
  }
  return out;
}

async function runSlice(mx: MatrixConfig, o: RunOptions, t0: number): Promise<RunSummary> {
  // The data identity of each cell is in its hash: cells computed without their data (no_data) or
  // on other data come back by themselves when the data appears or changes.
  const cells = expandCells(mx, o.slice, taskTrack, resolveDataDir(o.dataDir, REPO_ROOT));
  const done = finishedCells(o.out);
  const pending = o.redo ? cells : cells.filter((c) => cellPending(done.get(c.hash), o.retry));
  const summary: RunSummary = { matrix: mx.name, cells: cells.length, pending: pending.length, ran: 0, failed: [], timedOut: [], stopped: null, rows: [], pendingCells: pending, wallS: 0, wallByPart: {} };
  const addWall = (part: string, s: number) => (summary.wallByPart[part] = (summary.wallByPart[part] ?? 0) + s);
  if (o.dryRun || pending.length === 0) {
    summary.wallS = (performance.now() - t0) / 1000;
    return summary;
  }
  const env = await openEnv(mx, o);
  const limitS = mx.cellTimeoutS;
  env.log(
    `matrix '${mx.name}': ${cells.length} cells, ${pending.length} pending, backend ${env.runtime.backend} (${env.runtime.device}), ` +
      `${limitS === null ? 'no cell time limit (in process)' : `cell time limit ${limitS} s (pairs in a cell process)`}, rows -> ${o.out}/results`,
  );
  const write = (rows: ResultRow[]) => {
    for (const t of [...new Set(rows.map((r) => r.track))]) appendResults(trackFile(t, o.out), rows.filter((r) => r.track === t));
    summary.rows.push(...rows);
  };
  // Track 5 cells of an engine that cannot open here are not_run now, before any pair is loaded and
  // compressed for them (a rerun retries not_run cells: without this it would compress every pair again).
  const noEngine = await unopenableEngines(pending);
  for (const [engine, reason] of noEngine) env.log(`engine ${engine} cannot run here (${reason}): its Track 5 cells are not_run`);
  const runnable = pending.filter((c) => {
    const reason = c.track === 5 ? noEngine.get(c.item) : undefined;
    if (reason === undefined) return true;
    write(notRunRows(env, c, expectedMetrics(c), reason));
    summary.ran++;
    return false;
  });
  // (model, method) pairs in matrix order, each with its pending cells
  const pairs = new Map<string, Cell[]>();
  for (const c of runnable) {
    const k = `${c.model.id}\u0000${c.method.id}`;
    pairs.set(k, [...(pairs.get(k) ?? []), c]);
  }
  // with a cell time limit, every pair runs in a cell process, reused until a phase times out or it dies
  const proc = limitS === null ? null : new CellProcess(
    { matrix: mx, out: o.out, data: env.data, runtime: { backend: env.runtime.backend, device: env.runtime.device }, ctx: env.ctx, kernels: kernelPolicy(), preload: o.preload },
    { limitS, heartbeatS: o.heartbeatS, log: env.log },
  );
  try {
    for (const group of pairs.values()) {
      if (o.budgetS !== null && (performance.now() - t0) / 1000 > o.budgetS) {
        summary.stopped = 'budget';
        break;
      }
      const { model, method } = group[0];
      const pair = `${model.id} × ${method.id}`;
      const byHash = new Map(group.map((c) => [c.hash, c]));
      const reported = new Set<string>();
      const pairT0 = performance.now();
      let cellsS = 0; // wall seconds of this pair's cells
      const onEvent = (e: SubjectEvent) => {
        if (e.kind === 'log') env.log(e.message);
        if (e.kind === 'rows') {
          const cell = byHash.get(e.cell)!;
          write(e.rows);
          reported.add(cell.hash);
          summary.ran++;
          const st = e.rows.every((r) => r.status === 'ok') ? 'ok' : [...new Set(e.rows.map((r) => r.status))].join('/');
          env.log(`   ${label(cell)}: ${e.rows.length} rows, ${st} (${e.wallS.toFixed(1)} s)`);
          addWall(`track ${cell.track}`, e.wallS);
          cellsS += e.wallS;
        }
        if (e.kind !== 'error') return;
        // a failed load or compression: every cell of the pair not yet reported is not run
        const hit = e.cell === null ? group.filter((c) => !reported.has(c.hash)) : [byHash.get(e.cell)!];
        const what = e.cell === null ? `${pair} (loading and compressing)` : label(hit[0]);
        const note = e.cell === null ? `${method.id} on ${model.id}: ${e.error}` : e.cause === 'timeout' ? e.error : `error: ${e.error}`;
        for (const c of hit) {
          write(notRunRows(env, c, expectedMetrics(c), note));
          reported.add(c.hash);
        }
        summary.ran += hit.length;
        env.log(`   ${what}: ${e.cause === 'timeout' ? 'TIMEOUT' : e.cell === null ? 'not run' : 'FAILED'}: ${e.error}`);
        if (e.cause === 'timeout') summary.timedOut.push({ cell: what, error: e.error });
        else summary.failed.push({ cell: what, error: e.error });
      };
      env.log(`== ${pair}: ${group.length} cell(s)`);
      const describe = (h: string | null) => (h === null ? `${pair} (loading and compressing)` : label(byHash.get(h)!));
      let left = group;
      while (left.length > 0) {
        if (proc === null) await runSubject(env, left, onEvent);
        else await proc.run(left, onEvent, describe);
        const next = left.filter((c) => !reported.has(c.hash));
        if (next.length === left.length) throw new Error(`${pair}: the cell process reported no cell (internal error)`);
        if (next.length > 0) env.log(`   ${pair}: the ${next.length} cell(s) left go on in a fresh cell process`);
        left = next;
      }
      addWall('subjects', (performance.now() - pairT0) / 1000 - cellsS);
    }
  } finally {
    await proc?.close();
  }
  summary.wallS = (performance.now() - t0) / 1000;
  recordRun(o.out, mx, o.slice, env.ctx, summary);
  env.log(`matrix '${mx.name}': ran ${summary.ran} of ${pending.length} pending cells in ${summary.wallS.toFixed(1)} s${summary.stopped ? ` (stopped: ${summary.stopped}; rerun to resume)` : ''}; ${wallByPartLine(summary.wallByPart)}`);
  return summary;
}
