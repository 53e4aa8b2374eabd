// The cell time limit, enforced: (model, method) subjects' cells run in a child process
// (lib/tracks/cell-process.ts), one subject after another, that the parent kills when a phase
// (loading and compressing, or one cell) outlives the limit. A wasm loop or a synchronous solver
// holds the child's thread, never the parent's, so the parent's timers always fire. The child only
// computes: it sends its rows as messages and the parent writes them (lib/results.ts stays the only
// writer of rows).
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

/** What a cell process needs to run subjects' cells exactly as the parent would: its first message. */
export interface ChildInit {
  matrix: MatrixConfig;
  out: string;
  data: DataOptions; // the parent's, resolved
  runtime: Pick<RuntimeInfo, 'backend' | 'device'>; // the backend the parent started (never 'auto'): the child starts the same
  ctx: RunContext; // the parent's run provenance: every row carries the parent's run_id
  kernels: KernelPolicy; // the parent's kernel policy (tfjs flags are per process)
  preload: string[]; // absolute paths of modules to import first (extra methods or tasks)
}

/** The parent's messages after the ChildInit: one subject's pending cells at a time, in order. */
export interface SubjectRequest {
  kind: 'subject';
  cells: Cell[];
}

/** Messages of the child: a subject's events, then 'done' when all its cells have reported. */
export type ChildMessage = SubjectEvent | { kind: 'done' };

export interface IsolateOptions {
  limitS: number; // a phase (loading and compressing, or one cell) running longer is killed
  heartbeatS: number; // while a phase runs, a progress line at most this often
  log: (msg: string) => void;
}

/** Seconds a child may take to start (tfjs, the backend, Dawn) before its first phase begins. */
export const CHILD_STARTUP_LIMIT_S = 120;

/** Extra node flags for cell processes, space-separated (e.g. "--cpu-prof --cpu-prof-dir=prof", which NODE_OPTIONS refuses). */
export const CELL_NODE_FLAGS_ENV = 'LLMCB_CELL_NODE_FLAGS';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'cell-process.ts');
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Children alive now, killed if the parent exits first (a signal, an uncaught error). */
const LIVE = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of LIVE) c.kill('SIGKILL');
});

/** The subject in flight in a cell process. */
interface Flight {
  onEvent: (e: SubjectEvent) => void;
  describe: (phase: string | null) => string; // a phase for messages (the cell's label)
  resolve: () => void;
  phase: string | null; // null until the first cell: starting, loading, compressing
  phaseStart: number;
  latest: string; // the child's latest log line
  lastBeat: number;
}

/**
 * A child process that runs subjects one after another, so that the model × method pairs of a run
 * share one process start, backend and shader compilations, task data and token caches. A subject
 * whose phase outlives the limit, or whose process dies, ends that process; the next subject starts
 * a fresh one. close() ends the process when the run is done.
 */
export class CellProcess {
  private child: ChildProcess | null = null;
  private flight: Flight | null = null;
  private ending: { error: string; cause: 'timeout' | 'crashed' } | null = null; // why the child is being killed
  private limit: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;

  constructor(
    private readonly init: ChildInit,
    private readonly o: IsolateOptions,
  ) {}

  /**
   * Runs one subject's cells, passing its events to onEvent as they come. When the child is killed
   * at the limit or dies, onEvent gets an error event for the phase in flight; the cells after it
   * get no event (the caller decides whether to run them in a fresh child).
   */
  run(cells: Cell[], onEvent: (e: SubjectEvent) => void, describe: (phase: string | null) => string): Promise<void> {
    if (this.flight) throw new Error('CellProcess.run: a subject is already in flight');
    return new Promise((resolve) => {
      this.flight = { onEvent, describe, resolve, phase: null, phaseStart: performance.now(), latest: '', lastBeat: 0 };
      const fresh = this.child === null;
      const child = this.child ?? this.start();
      this.arm((fresh ? CHILD_STARTUP_LIMIT_S : 0) + this.o.limitS);
      // heartbeat: once a phase has run heartbeatS, a line every heartbeatS
      this.beat = setInterval(() => this.heartbeat(), Math.min(1, this.o.heartbeatS) * 1000);
      child.send({ kind: 'subject', cells } satisfies SubjectRequest);
    });
  }

  /** Ends the child: it exits when its IPC channel closes (killed if it has not within 10 s). */
  async close(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.disconnect();
    await exited;
    clearTimeout(kill);
  }

  private start(): ChildProcess {
    const child = fork(CHILD, [], {
      execArgv: ['--import', TSX, '--expose-gc', ...(process.env[CELL_NODE_FLAGS_ENV] ?? '').split(' ').filter(Boolean)], // gc: Track 5 collects before timing (warmThenTime)
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    // through this process's streams, so that a notebook's output capture sees the child's warnings too
    child.stdout!.pipe(process.stdout, { end: false });
    child.stderr!.pipe(process.stderr, { end: false });
    LIVE.add(child);
    this.child = child;
    this.ending = null;
    child.on('message', (m: ChildMessage) => this.message(m));
    child.on('error', (e) => {
      this.ending ??= { error: `cell process failed: ${e.message}`, cause: 'crashed' };
      child.kill('SIGKILL');
    });
    child.on('exit', () => LIVE.delete(child));
    // 'close' comes after the IPC channel has delivered every message the child sent
    child.on('close', (code, signal) => {
      if (this.child === child) this.child = null;
      const f = this.flight;
      if (!f) return; // ended between subjects (close())
      const ending = this.ending ?? { error: `cell process ${signal ? `killed by ${signal}` : `exited with code ${code}`} before the phase ended`, cause: 'crashed' as const };
      f.onEvent({ kind: 'error', cell: f.phase, ...ending });
      this.land();
    });
    child.send(this.init);
    return child;
  }

  private message(m: ChildMessage): void {
    const f = this.flight;
    if (this.ending || !f) return; // killed: what it still sent is not trusted
    if (m.kind === 'done') return this.land();
    if (m.kind === 'phase') {
      f.phase = m.cell;
      f.phaseStart = performance.now();
      f.latest = '';
      this.arm(this.o.limitS);
    }
    if (m.kind === 'log' || m.kind === 'progress') f.latest = m.message.trim().slice(0, 160);
    f.onEvent(m);
  }

  /** The subject in flight has ended (all its cells reported, or its process is gone). */
  private land(): void {
    clearTimeout(this.limit);
    clearInterval(this.beat);
    const f = this.flight!;
    this.flight = null;
    f.resolve();
  }

  private arm(seconds: number): void {
    clearTimeout(this.limit);
    this.limit = setTimeout(() => {
      this.ending = { error: `timeout after ${seconds} s`, cause: 'timeout' };
      this.child?.kill('SIGKILL');
    }, seconds * 1000);
  }

  private heartbeat(): void {
    const f = this.flight;
    if (!f) return;
    const now = performance.now();
    const s = (now - f.phaseStart) / 1000;
    if (s < this.o.heartbeatS || now - f.lastBeat < this.o.heartbeatS * 1000) return;
    f.lastBeat = now;
    this.o.log(`   … ${s.toFixed(0)} s in ${f.describe(f.phase)}${f.latest ? ` (latest: ${f.latest})` : ''}`);
  }
}
