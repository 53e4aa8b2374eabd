// The cell time limit, enforced: one (model, method) subject's cells run in a child process
// (lib/tracks/cell-process.ts) that the parent kills when a phase (loading and compressing, or one
// cell) outlives the limit. A wasm loop or a synchronous solver holds the child's thread, never the
// parent's, so the parent's timers always fire. The child only computes: it sends its rows as
// messages and the parent writes them (lib/results.ts stays the only writer of rows).
import { fork, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { DataOptions } from '../data/common';
import type { KernelPolicy } from '../kernels';
import type { Cell, MatrixConfig } from '../matrix';
import type { ResultRow, RunContext } from '../results';
import type { RuntimeInfo } from '../runtime/backend';

/** What the work on one subject reports as it goes; in a child process, its messages to the parent. */
export type SubjectEvent =
  | { kind: 'phase'; cell: string | null } // starts loading and compressing (null) or the cell with this hash
  | { kind: 'rows'; cell: string; rows: ResultRow[]; wallS: number }
  | { kind: 'error'; cell: string | null; error: string; cause: 'threw' | 'timeout' | 'crashed' } // null: loading or compressing failed, so no cell of the subject runs
  | { kind: 'log'; message: string } // a line for the run's log
  | { kind: 'progress'; message: string }; // the latest step, shown by the heartbeat only

/** What a child needs to run a subject's cells exactly as the parent would. */
export interface ChildInit {
  matrix: MatrixConfig;
  cells: Cell[]; // one subject's pending cells, in order
  out: string;
  data: DataOptions; // the parent's, resolved
  runtime: Pick<RuntimeInfo, 'backend' | 'device'>; // the backend the parent started (never 'auto'): the child starts the same
  ctx: RunContext; // the parent's run provenance: every row carries the parent's run_id
  kernels: KernelPolicy; // the parent's kernel policy (tfjs flags are per process)
  preload: string[]; // absolute paths of modules to import first (extra methods or tasks)
}

/** Messages of the child: the subject's events, then 'done' when all its cells have reported. */
export type ChildMessage = SubjectEvent | { kind: 'done' };

export interface IsolateOptions {
  limitS: number; // a phase (loading and compressing, or one cell) running longer is killed
  heartbeatS: number; // while a phase runs, a progress line at most this often
  describe: (phase: string | null) => string; // a phase for messages (the cell's label)
  log: (msg: string) => void;
}

/** Seconds a child may take to start (tfjs, the backend, Dawn) before its first phase begins. */
export const CHILD_STARTUP_LIMIT_S = 120;

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cell-process.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Children alive now, killed if the parent exits first (a signal, an uncaught error). */
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of LIVE) c.kill('SIGKILL');
});

/**
 * Runs init.cells in a child process, passing its events to onEvent as they come. When the child
 * is killed at the limit or dies, onEvent gets an error event for the phase in flight; the cells
 * after it get no event (the caller decides whether to run them in a fresh child).
 */
export function runSubjectInChild(init: ChildInit, onEvent: (e: SubjectEvent) => void, o: IsolateOptions): Promise<void> {
  return new Promise((resolve) => {
    const child = fork(CHILD, [], {
      execArgv: ['--import', TSX],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    // through this process's streams, so that a notebook's output capture sees the child's warnings too
    child.stdout!.pipe(process.stdout, { end: false });
    child.stderr!.pipe(process.stderr, { end: false });
    LIVE.add(child);
    let phase: string | null = null; // null until the first cell: starting, loading, compressing
    let phaseStart = performance.now();
    let latest = ''; // the child's latest log line
    let done = false;
    let ending: { error: string; cause: 'timeout' | 'crashed' } | null = null;
    let limit: NodeJS.Timeout | undefined;
    const arm = (seconds: number) => {
      clearTimeout(limit);
      limit = setTimeout(() => {
        ending = { error: `timeout after ${seconds} s`, cause: 'timeout' };
        child.kill('SIGKILL');
      }, seconds * 1000);
    };
    arm(CHILD_STARTUP_LIMIT_S + o.limitS);
    // heartbeat: once a phase has run heartbeatS, a line every heartbeatS
    let lastBeat = 0;
    const beat = setInterval(() => {
      const now = performance.now();
      const s = (now - phaseStart) / 1000;
      if (s < o.heartbeatS || now - lastBeat < o.heartbeatS * 1000) return;
      lastBeat = now;
      o.log(`   … ${s.toFixed(0)} s in ${o.describe(phase)}${latest ? ` (latest: ${latest})` : ''}`);
    }, Math.min(1, o.heartbeatS) * 1000);

    child.on('message', (m: ChildMessage) => {
      if (ending) return; // killed: what it still sent is not trusted
      if (m.kind === 'done') {
        done = true;
        return;
      }
      if (m.kind === 'phase') {
        phase = m.cell;
        phaseStart = performance.now();
        latest = '';
        arm(o.limitS);
      }
      if (m.kind === 'log' || m.kind === 'progress') latest = m.message.trim().slice(0, 160);
      onEvent(m);
    });
    child.on('error', (e) => {
      ending ??= { error: `cell process failed: ${e.message}`, cause: 'crashed' };
      child.kill('SIGKILL');
    });
    child.on('exit', () => LIVE.delete(child));
    // 'close' comes after the IPC channel has delivered every message the child sent
    child.on('close', (code, signal) => {
      clearTimeout(limit);
      clearInterval(beat);
      if (!done) {
        ending ??= { error: `cell process ${signal ? `killed by ${signal}` : `exited with code ${code}`} before the phase ended`, cause: 'crashed' };
        onEvent({ kind: 'error', cell: phase, ...ending });
      }
      resolve();
    });
    child.send(init);
  });
}
