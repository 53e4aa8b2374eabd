// The only writer of result rows (DESIGN §4): tidy, long, one row per
// (run, model, method config, task, metric), validated, provenance-stamped, written atomically.
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { formatCsv, parseCsvRecords } from './csv';
import { acquireLock } from './lock';
import { isCostTrack, metricDef, metricNames } from './metrics/catalogue';
import type { RuntimeInfo } from './runtime/backend';

export const TRACKS = {
  1: 'compression performance',
  2: 'generalization',
  3: 'training consumption',
  4: 'inference consumption',
  5: 'hardware acceleration',
  6: 'trustworthiness',
} as const satisfies Record<number, string>;
export type Track = keyof typeof TRACKS;

/** ok: value measured. no_data: the dataset/model was absent. not_run: skipped, reason in note. */
export type RowStatus = 'ok' | 'no_data' | 'not_run';

export interface ResultRow {
  run_id: string;
  track: Track;
  model: string;
  model_family: string;
  /** Parameter count of the (compressed) model; null when unknown. */
  model_params: number | null;
  method: string;
  /** Method options (bits, group_size, sparsity, pattern, alpha…) as a JSON object. */
  method_config: Record<string, unknown>;
  task: string;
  metric: string;
  /** Null exactly when status is not 'ok'. */
  value: number | null;
  higher_is_better: boolean;
  n: number | null;
  stderr: number | null;
  backend: string;
  device: string;
  seqlen: number | null;
  bos: boolean | null;
  calib: string;
  seed: number | null;
  git_sha: string;
  started_at: string;
  duration_s: number | null;
  // Added to DESIGN §4 so that absent data and skipped cells are rows too, never silent gaps.
  status: RowStatus;
  note: string;
}

export const COLUMNS = [
  'run_id', 'track', 'model', 'model_family', 'model_params', 'method', 'method_config', 'task',
  'metric', 'value', 'higher_is_better', 'n', 'stderr', 'backend', 'device', 'seqlen', 'bos',
  'calib', 'seed', 'git_sha', 'started_at', 'duration_s', 'status', 'note',
] as const satisfies readonly (keyof ResultRow)[];

export class ResultRowError extends Error {
  constructor(
    readonly where: string,
    readonly field: string,
    problem: string,
  ) {
    super(`${where}: field '${field}' ${problem}`);
    this.name = 'ResultRowError';
  }
}

const isFiniteOrNull = (v: unknown) => v === null || (typeof v === 'number' && Number.isFinite(v));
const nonEmpty = (v: unknown) => typeof v === 'string' && v.trim() !== '';

/** Throws a ResultRowError naming the row and the first field that breaks the schema. */
export function validateRow(row: ResultRow, where = 'row'): void {
  const fail = (field: string, problem: string): never => {
    throw new ResultRowError(where, field, problem);
  };
  for (const f of COLUMNS) if (!(f in row)) fail(f, 'is missing');
  for (const f of ['run_id', 'model', 'model_family', 'method', 'task', 'metric', 'backend', 'device', 'calib'] as const) {
    if (!nonEmpty(row[f])) fail(f, 'must be a non-empty string');
  }
  if (!(row.track in TRACKS)) fail('track', `is ${JSON.stringify(row.track)}, not one of 1-6`);
  if (!/^[0-9a-f]{7,40}(\+dirty)?$/.test(String(row.git_sha))) fail('git_sha', `is ${JSON.stringify(row.git_sha)}, not a commit`);
  if (!nonEmpty(row.started_at) || Number.isNaN(Date.parse(row.started_at))) fail('started_at', 'must be an ISO date');
  if (!['ok', 'no_data', 'not_run'].includes(row.status)) fail('status', `is ${JSON.stringify(row.status)}`);
  if (row.status === 'ok') {
    if (typeof row.value !== 'number' || !Number.isFinite(row.value)) fail('value', `is ${row.value}, not a finite number`);
  } else {
    if (row.value !== null) fail('value', `must be null when status is ${row.status}`);
    if (!nonEmpty(row.note)) fail('note', `must give the reason when status is ${row.status}`);
  }
  if (typeof row.higher_is_better !== 'boolean') fail('higher_is_better', 'must be a boolean');
  for (const f of ['model_params', 'n', 'stderr', 'seqlen', 'seed', 'duration_s'] as const) {
    if (!isFiniteOrNull(row[f])) fail(f, `is ${row[f]}, not a finite number or null`);
  }
  if (row.bos !== null && typeof row.bos !== 'boolean') fail('bos', 'must be a boolean or null');
  if (typeof row.method_config !== 'object' || row.method_config === null || Array.isArray(row.method_config)) {
    fail('method_config', 'must be a JSON object');
  }
  if (typeof row.note !== 'string') fail('note', 'must be a string');
}

/**
 * Rows of Tracks 3-5 name their metric, and Tracks 3 and 4 their task, as the metric catalogue
 * (lib/metrics/catalogue.ts) does: checked on every write, so a misspelt writer fails at once.
 * (Reading stays lenient: scripts/migrate-rows.ts reads rows under older names to rename them.)
 */
export function checkCatalogueNames(row: Pick<ResultRow, 'track' | 'task' | 'metric'>, where = 'row'): void {
  if (!isCostTrack(row.track)) return;
  const d = metricDef(row.track, row.metric);
  if (!d) throw new ResultRowError(where, 'metric', `'${row.metric}' is not a Track ${row.track} metric of lib/metrics/catalogue.ts (${metricNames(row.track).join(', ')}); rows under older names: npx tsx scripts/migrate-rows.ts`);
  if (d.task !== null && d.task !== row.task) throw new ResultRowError(where, 'task', `is '${row.task}', but Track ${row.track}'s ${row.metric} is filed under '${d.task}'`);
}

/** The current commit, '+dirty' when the tree has uncommitted changes; LLMCB_GIT_SHA overrides (GPU hosts carry no .git). */
export function gitSha(cwd = process.cwd()): string {
  if (process.env.LLMCB_GIT_SHA) return process.env.LLMCB_GIT_SHA;
  try {
    const sha = execFileSync('git', ['rev-parse', 'HEAD'], { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd, encoding: 'utf8' }).trim();
    return dirty ? `${sha}+dirty` : sha;
  } catch {
    throw new Error('no git commit found for provenance: run inside the repository or set LLMCB_GIT_SHA');
  }
}

/** Provenance shared by every row of one run. */
export interface RunContext {
  run_id: string;
  git_sha: string;
  started_at: string;
  backend: string;
  device: string;
}

export function startRun(runtime: Pick<RuntimeInfo, 'backend' | 'device'>): RunContext {
  return {
    run_id: randomUUID(),
    git_sha: gitSha(),
    started_at: new Date().toISOString(),
    backend: runtime.backend,
    device: runtime.device,
  };
}

type RowFields = Omit<ResultRow, keyof RunContext | 'status' | 'note' | 'n' | 'stderr' | 'seqlen' | 'bos' | 'calib' | 'seed' | 'duration_s' | 'model_params'> &
  Partial<Pick<ResultRow, 'status' | 'note' | 'n' | 'stderr' | 'seqlen' | 'bos' | 'calib' | 'seed' | 'duration_s' | 'model_params'>>;

/** Builds a row stamped with the run's provenance; optional fields default to null / 'none' / 'ok'. */
export function makeRow(ctx: RunContext, fields: RowFields): ResultRow {
  return {
    model_params: null, n: null, stderr: null, seqlen: null, bos: null, calib: 'none', seed: null,
    duration_s: null, status: 'ok', note: '',
    ...ctx,
    ...fields,
  };
}

function toCells(row: ResultRow): string[] {
  return COLUMNS.map((c) => {
    const v = row[c];
    if (v === null) return '';
    if (c === 'method_config') return JSON.stringify(v);
    return String(v);
  });
}

const NUMERIC = new Set(['model_params', 'value', 'n', 'stderr', 'seqlen', 'seed', 'duration_s']);

function fromRecord(rec: Record<string, string>): ResultRow {
  const out: Record<string, unknown> = {};
  for (const c of COLUMNS) {
    const s = rec[c];
    if (c === 'track') out[c] = Number(s);
    else if (NUMERIC.has(c)) out[c] = s === '' ? null : Number(s);
    else if (c === 'higher_is_better') out[c] = s === 'true';
    else if (c === 'bos') out[c] = s === '' ? null : s === 'true';
    else if (c === 'method_config') out[c] = JSON.parse(s || '{}');
    else out[c] = s;
  }
  return out as unknown as ResultRow;
}

/** Reads and validates a results CSV; errors name the file and line. */
export function readResults(file: string): ResultRow[] {
  if (!fs.existsSync(file)) return [];
  const text = fs.readFileSync(file, 'utf8');
  return parseCsvRecords(text, file).map((rec, k) => {
    const where = `${file}:${k + 2}`;
    let row: ResultRow;
    try {
      row = fromRecord(rec);
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
    validateRow(row, where);
    return row;
  });
}

/** What writeFileAtomic writes: text, bytes, or a function that writes to the temp file's descriptor. */
export type AtomicContent = string | Uint8Array | ((fd: number) => void);

/**
 * Writes a file atomically: a temp file beside it (its folder created if missing), then rename.
 * A crash or a throw (from the content function too) leaves the old file or none, never a partial
 * one, and removes the temp file.
 */
export function writeFileAtomic(file: string, content: AtomicContent): void {
  const tmp = tempBeside(file);
  try {
    if (typeof content !== 'function') fs.writeFileSync(tmp, content);
    else {
      const fd = fs.openSync(tmp, 'w');
      try {
        content(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** writeFileAtomic for content written asynchronously (e.g. tensors read from a device between writes). */
export async function writeFileAtomicAsync(file: string, write: (fd: number) => Promise<void>): Promise<void> {
  const tmp = tempBeside(file);
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      await write(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

/** A fresh temp file name beside file (same folder, so the rename stays on one filesystem). */
function tempBeside(file: string): string {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  return `${file}.${process.pid}.${randomUUID().slice(0, 8)}.tmp`;
}

/** How long appendResults waits for another process's append to the same file (held for milliseconds). */
export const APPEND_LOCK_WAIT_S = 30;

/**
 * Appends validated rows to a results CSV. Every row is checked before anything is written;
 * the file is replaced atomically, so readers see the old or the new file, never a partial one.
 * The read-and-rewrite holds <file>.lock, so appends from several processes never lose a row.
 */
export function appendResults(file: string, rows: ResultRow[]): void {
  writeResults(file, rows, 'new row', true);
}

/**
 * Replaces a results CSV's rows (a migration of names, never of measured values): every row is
 * validated first, the file is replaced atomically under the same lock as appendResults.
 */
export function rewriteResults(file: string, rows: ResultRow[]): void {
  writeResults(file, rows, 'row', false);
}

/** Validates rows, then (under <file>.lock) writes the file's rows followed by them, or them alone. */
function writeResults(file: string, rows: ResultRow[], what: string, append: boolean): void {
  rows.forEach((r, k) => {
    const where = `${path.basename(file)} ${what} ${k + 1} (${r.task}/${r.metric})`;
    validateRow(r, where);
    checkCatalogueNames(r, where);
  });
  const lock = acquireLock(`${file}.lock`, { what: `results file ${file}`, waitS: APPEND_LOCK_WAIT_S });
  try {
    const existing = append ? readResults(file) : [];
    writeFileAtomic(file, formatCsv(COLUMNS, [...existing, ...rows].map(toCells)));
  } finally {
    lock.release();
  }
}

/** The data root results and benchmark CSVs go under: $LLMCB_DATA_OUT, else ./data. */
export function dataOutDir(): string {
  return process.env.LLMCB_DATA_OUT ?? 'data';
}

/** data/results/track<N>.csv under the data root (LLMCB_DATA_OUT or ./data). */
export function trackFile(track: Track, root = dataOutDir()): string {
  return path.join(root, 'results', `track${track}.csv`);
}
