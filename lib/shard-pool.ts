// The matrix over several GPUs of one host, without a scheduler (scripts/run.ts --gpus N): the
// same model × method shards as the Slurm path (lib/slurm.ts: shard i runs one pair into
// <out>/shards/<i>, the plan kept in <out>/shards/plan.json), one worker per GPU, each pinned to
// its GPU (lib/gpus.ts) and taking the next shard from one shared queue when its last one ends (a
// long pair holds one GPU while the others go on through the queue; the likely longest go first).
// A shard is scripts/run.ts on the pair's part of the slice in its folder, so it resumes like any
// run; each is merged into <out>/results by cell hash (mergeShards) as it ends. A rerun merges what
// the shards hold, then queues only the pairs with cells still pending in <out>.
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from './cli';
import { pinEnv, pinVerdict, probePin, slotLabel, type GpuSlot } from './gpus';
import { acquireLock, pidAlive } from './lock';
import { modelIdentity, type Cell, type Slice } from './matrix';
import { readResults, trackFile, type Track } from './results';
import { extendPlan, mergeShards, readPlan, writePlan, type Shard } from './slurm';
import { runLockFile } from './tracks/runner';

export interface PoolOptions {
  out: string; // merged rows go to <out>/results, shard i runs in <out>/shards/<i>
  matrix: string; // run.ts's --matrix for every shard (a name, or an absolute file path)
  slice: Slice; // the run's slice: each shard runs its pair's part of it
  runFlags: string[]; // the other run.ts flags every shard passes on (lib/slurm.ts shardRunFlags)
  slots: GpuSlot[]; // one worker per slot
  pending: () => Promise<Cell[]>; // the cells pending in <out> now (run.ts's dry run)
  checkPins: boolean; // before any shard, check each GPU's pin in a probe process (lib/gpus.ts); for the webgpu backend
  budgetS: number | null; // start no new shard after this many seconds; null: no limit
  log: (line: string) => void; // progress and the workers' output, prefixed with their GPU
}

export interface ShardRun {
  shard: number;
  pair: string; // "model × method"
  gpu: number; // the slot's index
  pid: number;
  code: number; // run.ts's exit code (0, 1, 3); 1 also for a process killed by a signal
  wallS: number;
  rows: number; // rows it wrote into its shard folder
  merged: number; // rows it added to <out>/results
}

export interface PoolSummary {
  shards: number; // in the plan
  queued: number; // with pending cells when the run started
  runs: ShardRun[]; // the shards run, in the order they ended
  stopped: null | 'budget';
  left: number; // cells still pending in <out> after the run
  wallS: number;
  code: number; // as run.ts: 3 a shard's cell timed out, else 1 a shard failed (or its process died), else 0
}

const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const TRACKS: Track[] = [1, 2, 3, 4, 5, 6];

/** Shard processes alive now: sent SIGTERM (then SIGKILL after a grace time) when this process exits. */
const LIVE = new Set<ChildProcess>();
const KILL_GRACE_MS = 10_000;
process.on('exit', () => {
  if (LIVE.size === 0) return;
  for (const c of LIVE) c.kill('SIGTERM'); // run.ts releases its shard's lock and kills its cell processes
  const until = Date.now() + KILL_GRACE_MS;
  const alive = () => [...LIVE].filter((c) => c.pid !== undefined && pidAlive(c.pid));
  while (alive().length && Date.now() < until) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  for (const c of alive()) c.kill('SIGKILL');
});

const total = (added: Record<number, number>) => Object.values(added).reduce((a, b) => a + b, 0);

/** Rows in a folder's results files. */
const rowCount = (dir: string) => TRACKS.reduce((n, t) => n + readResults(trackFile(t, dir)).length, 0);

/**
 * The queue's order: the likely longest shards first (model bytes × pending cells; the plan's order
 * among equals), so that the last shards, which may leave GPUs idle, are short ones.
 */
export function longestFirst<T extends { cells: number; bytes: number | null }>(queue: T[]): T[] {
  const work = (q: T) => (q.bytes ?? 1) * q.cells;
  return queue.map((q, k) => ({ q, k })).sort((a, b) => work(b.q) - work(a.q) || a.k - b.k).map((x) => x.q);
}

/** The code of a run from its shards' codes, as run.ts's: 3 wins over 1, 1 over 0. */
export function poolCode(codes: number[]): number {
  if (codes.includes(3)) return 3;
  return codes.some((c) => c !== 0) ? 1 : 0;
}

/** Runs the pending cells of <out> over the slots' workers; returns when the queue is empty (or at the budget). */
export async function runShardPool(o: PoolOptions): Promise<PoolSummary> {
  const t0 = performance.now();
  const out = path.resolve(o.out);
  if (o.checkPins) for (const slot of o.slots) o.log(pinVerdict(slot, probePin(slot, o.slots.length)));
  const lock = acquireLock(runLockFile(out), { what: `output folder '${out}'`, warn: o.log });
  let stopped: PoolSummary['stopped'] = null;
  try {
    // What an earlier (killed) run left in its shards counts first.
    const mergedBefore = total(mergeShards(out));
    if (mergedBefore) o.log(`merged ${mergedBefore} rows the shards held from an earlier run`);
    const pending = await o.pending();
    const shards = extendPlan(readPlan(out), pending, o.slice);
    if (pending.length) writePlan(out, o.matrix, shards);
    const queue = longestFirst(
      shards.flatMap((s, i) => {
        const cells = pending.filter((c) => c.model.id === s.model && c.method.id === s.method);
        return cells.length ? [{ i, s, cells: cells.length, bytes: modelIdentity(cells[0].model).bytes as number | null }] : [];
      }),
    );
    const queued = queue.length;
    o.log(
      `${pending.length} pending cells in ${queued} shard(s) (one per model × method; plan ${path.join(out, 'shards', 'plan.json')}) on ${o.slots.length} worker(s): ` +
        o.slots.map(slotLabel).join('; '),
    );
    const runs: ShardRun[] = [];
    const worker = async (slot: GpuSlot) => {
      for (;;) {
        if (o.budgetS !== null && (performance.now() - t0) / 1000 > o.budgetS) {
          stopped = 'budget';
          return;
        }
        const next = queue.shift();
        if (!next) return;
        const run = await runShard(next.i, next.s, next.cells, slot, o, out);
        runs.push(run);
        o.log(
          `shard ${run.shard} (${run.pair}) on GPU ${slot.index}: exit ${run.code} in ${run.wallS.toFixed(1)} s, ${run.rows} rows, +${run.merged} merged ` +
            `[${runs.length}/${queued} done, ${LIVE.size} running, ${queue.length} queued, ${((performance.now() - t0) / 1000).toFixed(0)} s]`,
        );
        if (run.code !== 0 && run.rows === 0) {
          // nothing ran: the worker's GPU or setup is broken (a pin that did not take, a backend that cannot start)
          o.log(`GPU ${slot.index} takes no more shards: shard ${run.shard} ended with exit ${run.code} before writing a row (its output is above)`);
          return;
        }
      }
    };
    await Promise.all(o.slots.map(worker));
    const late = total(mergeShards(out)); // anything a shard wrote after its own merge
    if (late) o.log(`merged ${late} more rows`);
    const left = (await o.pending()).length;
    return { shards: shards.length, queued, runs, stopped, left, wallS: (performance.now() - t0) / 1000, code: poolCode(runs.map((r) => r.code)) };
  } finally {
    lock.release();
  }
}

/** Runs shard i (scripts/run.ts on its slice into <out>/shards/<i>) pinned to slot; merges it when it ends. */
function runShard(i: number, s: Shard, cells: number, slot: GpuSlot, o: PoolOptions, out: string): Promise<ShardRun> {
  const dir = path.join(out, 'shards', String(i));
  const pair = `${s.model} × ${s.method}`;
  const args = ['--import', TSX, path.join(REPO_ROOT, 'scripts', 'run.ts'), '--matrix', o.matrix, '--slice', s.slice, '--out', dir, '--no-derived', ...o.runFlags];
  const t = performance.now();
  const rowsBefore = rowCount(dir);
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: { ...process.env, ...pinEnv(slot, o.slots.length) }, stdio: ['ignore', 'pipe', 'pipe'] });
  LIVE.add(child);
  const prefix = `[GPU ${slot.index}] `;
  for (const stream of [child.stdout!, child.stderr!]) createInterface({ input: stream }).on('line', (l) => o.log(prefix + l));
  o.log(`${prefix}shard ${i}: ${pair}, ${cells} pending cell(s), pid ${child.pid}`);
  return new Promise((resolve) => {
    let ended = false;
    const end = (code: number) => {
      if (ended) return;
      ended = true;
      LIVE.delete(child);
      const merged = total(mergeShards(out, [dir]));
      resolve({ shard: i, pair, gpu: slot.index, pid: child.pid ?? -1, code, wallS: (performance.now() - t) / 1000, rows: rowCount(dir) - rowsBefore, merged });
    };
    child.on('error', (e) => {
      o.log(`${prefix}shard ${i}: run.ts failed: ${e.message}`);
      end(1);
    });
    child.on('close', (code, signal) => {
      if (signal) o.log(`${prefix}shard ${i}: run.ts killed by ${signal} (rerun to resume the shard)`);
      end(code ?? 1);
    });
  });
}

/** Lines summing up a pool run: per GPU its shards and busy time, then the totals. */
export function poolReport(s: PoolSummary, slots: GpuSlot[]): string[] {
  const lines = slots.map((g) => {
    const mine = s.runs.filter((r) => r.gpu === g.index);
    const busy = mine.reduce((a, r) => a + r.wallS, 0);
    return `  GPU ${g.index}: ${mine.length} shard(s), busy ${busy.toFixed(1)} s of ${s.wallS.toFixed(1)} s${mine.some((r) => r.code !== 0) ? `, exit codes ${mine.map((r) => r.code).join(',')}` : ''}`;
  });
  const failed = s.runs.filter((r) => r.code !== 0).map((r) => `shard ${r.shard} (${r.pair}) exit ${r.code}`);
  return [
    `${s.runs.length} of ${s.queued} queued shard(s) ran on ${slots.length} worker(s) in ${s.wallS.toFixed(1)} s (${os.hostname()}); ${s.left} cell(s) still pending` +
      (s.stopped ? '; stopped at --budget-s (rerun to resume)' : s.left ? ' (rerun to retry them)' : ''),
    ...lines,
    ...(failed.length ? [`  not clean: ${failed.join('; ')}`] : []),
  ];
}
