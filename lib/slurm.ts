// The matrix as a Slurm job array: one array task per model × method pair with pending cells (so
// each task loads and compresses once), each running scripts/run.ts on its pair into its own shard
// folder (<out>/shards/<task>: the runner's lock and resume work per shard), and a merge that
// appends the shards' rows to <out>/results by cell hash: a cell already done in <out> is skipped,
// so merging twice, or after a resubmitted task, adds nothing twice. A killed task is resubmitted
// alone (its shard resumes where it stopped) and merged again.
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './cli';
import { bestStatusByCell, rowCell, STATUS_RANK, type Cell, type Slice } from './matrix';
import { appendResults, readResults, trackFile, writeFileAtomic, type ResultRow, type Track } from './results';

const TRACKS: Track[] = [1, 2, 3, 4, 5, 6];

/** One array task: the pair it runs, as a run.ts slice. */
export interface Shard {
  model: string;
  method: string;
  cells: number;
  slice: string;
}

/**
 * The shards of a matrix's pending cells: one per model × method pair, in matrix order. Each
 * shard's slice is its pair plus the run's own slice's tracks, tasks and engines (a shard runs
 * only the cells the run selected).
 */
export function shardsOf(pending: readonly Cell[], slice: Slice = {}): Shard[] {
  const bad = (id: string) => {
    if (/[;,=\s'"\\$`]/.test(id)) throw new Error(`slurm: id '${id}' cannot go into a --slice`);
    return id;
  };
  const rest = (['tracks', 'tasks', 'engines'] as const)
    .filter((k) => slice[k] !== undefined)
    .map((k) => `;${k}=${slice[k]!.map((v) => bad(String(v))).join(',')}`)
    .join('');
  const byPair = new Map<string, Shard>();
  for (const c of pending) {
    const k = `${c.model.id}\u0000${c.method.id}`;
    const s = byPair.get(k) ?? { model: c.model.id, method: c.method.id, cells: 0, slice: `models=${bad(c.model.id)};methods=${bad(c.method.id)}${rest}` };
    s.cells++;
    byPair.set(k, s);
  }
  return [...byPair.values()];
}

/** The saved plan of an output folder: shard i always runs the same pair, in <out>/shards/<i>. */
export const planFile = (out: string) => path.join(out, 'shards', 'plan.json');

/** The saved plan's shards ([] when there is none). */
export function readPlan(out: string): Shard[] {
  const file = planFile(out);
  if (!fs.existsSync(file)) return [];
  const j = JSON.parse(fs.readFileSync(file, 'utf8')) as { shards?: Shard[] };
  if (!Array.isArray(j.shards)) throw new Error(`${file}: no 'shards' list (delete the file to plan anew)`);
  return j.shards;
}

/** Saves a plan (matrix: run.ts's --matrix argument the shards were planned from). */
export function writePlan(out: string, matrix: string, shards: Shard[]): void {
  writeFileAtomic(planFile(out), JSON.stringify({ matrix, shards }, null, 1));
}

/**
 * The plan for these pending cells (of a run with this slice) on top of a saved one: a pending pair
 * the saved plan has keeps its shard index (its folder resumes) with this run's slice, a new pair
 * is appended, a saved pair with nothing pending stays as it was (indices never move).
 */
export function extendPlan(saved: readonly Shard[], pending: readonly Cell[], slice: Slice = {}): Shard[] {
  const key = (s: Pick<Shard, 'model' | 'method'>) => `${s.model}\u0000${s.method}`;
  const now = new Map(shardsOf(pending, slice).map((s) => [key(s), s]));
  const plan = saved.map((s) => now.get(key(s)) ?? s);
  const have = new Set(saved.map(key));
  return [...plan, ...[...now.values()].filter((s) => !have.has(key(s)))];
}

/** The run.ts flags every shard's run passes on (besides its --slice and shard folder). */
export interface ShardRunFlags {
  data?: string;
  noHub?: boolean;
  backend?: string;
  limit?: string;
  cellTimeoutS?: string;
  preload?: string[];
  retry?: boolean;
}

export function shardRunFlags(f: ShardRunFlags): string[] {
  return [
    ...(f.data ? ['--data', path.resolve(f.data)] : []),
    ...(f.noHub ? ['--no-hub'] : []),
    ...(f.backend ? ['--backend', f.backend] : []),
    ...(f.limit ? ['--limit', f.limit] : []),
    ...(f.cellTimeoutS ? ['--cell-timeout-s', f.cellTimeoutS] : []),
    ...(f.preload ?? []).flatMap((p) => ['--preload', path.resolve(p)]),
    ...(f.retry ? ['--retry'] : []),
  ];
}

/** run.ts's --matrix argument for a shard's run: a matrix file as an absolute path (the run may start elsewhere). */
export const matrixArg = (matrix: string) => (fs.existsSync(matrix) ? path.resolve(matrix) : matrix);

export interface ArrayOptions {
  /** run.ts's --matrix (a name or a JSON file: absolute, the task may start elsewhere). */
  matrix: string;
  out: string;
  shards: Shard[];
  /** run.ts flags every task passes on (--data, --backend, --limit, --cell-timeout-s, --preload …). */
  runFlags: string[];
  /** Slurm resources per task. */
  gpus: number;
  cpus: number;
  memGb: number;
  timeMin: number;
  partition: string | null;
  /** Array indices to run (default all: 0..n-1), e.g. [3] to resubmit one task. */
  only: number[] | null;
  /** The node binary and tsx loader the tasks run (default: this process's). */
  node: string;
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** The sbatch script of the job array (task i runs shard i into <out>/shards/<i>). */
export function arrayScript(o: ArrayOptions): string {
  if (o.shards.length === 0) throw new Error('slurm: no pending cells, nothing to submit');
  const indices = o.only ?? o.shards.map((_, i) => i);
  for (const i of indices) if (!(Number.isInteger(i) && i >= 0 && i < o.shards.length)) throw new Error(`slurm: task ${i} is not in 0..${o.shards.length - 1}`);
  const out = path.resolve(o.out);
  const lines = [
    '#!/bin/bash',
    `#SBATCH --job-name=llmcb`,
    `#SBATCH --array=${indices.join(',')}`,
    `#SBATCH --cpus-per-task=${o.cpus}`,
    `#SBATCH --mem=${o.memGb}G`,
    `#SBATCH --time=${o.timeMin}`,
    ...(o.gpus > 0 ? [`#SBATCH --gpus=${o.gpus}`] : []),
    ...(o.partition ? [`#SBATCH --partition=${o.partition}`] : []),
    `#SBATCH --output=${out}/shards/%a.log`,
    '# One model × method pair per task (scripts/slurm.ts); the shard folder resumes when the task is resubmitted.',
    'set -euo pipefail',
    `cd ${q(REPO_ROOT)}`,
    'SLICES=(',
    ...o.shards.map((s, i) => `  ${q(s.slice)} # ${i}: ${s.cells} cell(s)`),
    ')',
    `exec ${q(o.node)} --import tsx scripts/run.ts --matrix ${q(o.matrix)} --slice "\${SLICES[$SLURM_ARRAY_TASK_ID]}" --out ${q(out)}/shards/$SLURM_ARRAY_TASK_ID --no-derived ${o.runFlags.map(q).join(' ')}`,
    '',
  ];
  return lines.join('\n');
}

/** The shard folders under <out>/shards. */
export function shardDirs(out: string): string[] {
  const root = path.join(out, 'shards');
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .filter((d) => /^\d+$/.test(d) && fs.statSync(path.join(root, d)).isDirectory())
    .sort((a, b) => Number(a) - Number(b))
    .map((d) => path.join(root, d));
}

/**
 * Appends to <out>/results the rows of each cell the shards finished better than <out> has it (a
 * cell's rows of its best status); cells <out> has done (ok or no_data) are left alone. Returns the
 * rows added per track.
 */
export function mergeShards(out: string, shards = shardDirs(out)): Record<number, number> {
  const added: Record<number, number> = {};
  for (const t of TRACKS) {
    const best = bestStatusByCell(readResults(trackFile(t, out)));
    const rows: ResultRow[] = [];
    for (const dir of shards) {
      const shardRows = readResults(trackFile(t, dir));
      for (const [h, status] of bestStatusByCell(shardRows)) {
        const have = best.get(h);
        if (have !== undefined && STATUS_RANK[have] <= STATUS_RANK[status]) continue;
        // All rows of the run that gave the cell its best status (a cell's rows may mix statuses: Track 4's ok/not_run).
        const run = shardRows.filter((r) => rowCell(r) === h && r.status === status).at(-1)!.run_id;
        rows.push(...shardRows.filter((r) => rowCell(r) === h && r.run_id === run));
        best.set(h, status);
      }
    }
    if (rows.length > 0) appendResults(trackFile(t, out), rows);
    added[t] = rows.length;
  }
  return added;
}
