// Shared plumbing of the dataset loaders: where data comes from (a local directory in the
// original formats, then the Hugging Face hub as parquet), strict parsing with file:line errors,
// and the "no data" outcome that a missing dataset becomes (never an invented number).
import fs from 'node:fs';
import path from 'node:path';
import { verifyDataFile } from './verify';

/** A malformed dataset file: the message names the file and (where known) the line. */
export class DatasetError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    problem: string,
  ) {
    super(`${line === null ? file : `${file}:${line}`}: ${problem}`);
    this.name = 'DatasetError';
  }
}

/** A dataset that loaded: its documents, where they came from, and anything a reader should know. */
export interface LoadedData<T> {
  status: 'ok';
  docs: T[];
  /** 'local:<path>' or 'hub:<repo>@<revision>/<file>' for provenance. */
  source: string;
  /** Deviations or facts about the copy (e.g. rows dropped because they have no gold label). */
  notes: string[];
}

/** A dataset that could not be found anywhere: the reason lists every place tried. */
export interface NoData {
  status: 'no_data';
  reason: string;
}

export type LoadResult<T> = LoadedData<T> | NoData;

export interface DataOptions {
  /** Local root holding the original formats (e.g. ../shared/datasets); null: none. */
  dataDir: string | null;
  /** Try the Hugging Face hub when the local copy is absent (off when HF_HUB_OFFLINE=1). */
  hub: boolean;
  /** Hub cache directory; null: @huggingface/hub's default (HF_HUB_CACHE or ~/.cache/huggingface/hub). */
  cacheDir: string | null;
  /** Give up on one hub request after this many milliseconds. */
  hubTimeoutMs: number;
}

export const DATA_DEFAULTS: DataOptions = {
  dataDir: null, // resolved by resolveDataDir() in the CLI
  hub: true, // the issue's second source
  cacheDir: null, // @huggingface/hub's own default
  hubTimeoutMs: 20_000, // a dead network fails fast instead of hanging a run
};

/** Fills defaults; HF_HUB_OFFLINE=1 turns the hub off. */
export function dataOptions(opts: Partial<DataOptions> = {}): DataOptions {
  const o = { ...DATA_DEFAULTS, ...opts };
  if (process.env.HF_HUB_OFFLINE === '1' && opts.hub === undefined) o.hub = false;
  return o;
}

/**
 * The local data root: an explicit directory, else LLMCB_DATA, else ../shared/datasets or
 * shared/datasets next to the repository when present, else null (hub only).
 */
export function resolveDataDir(explicit: string | null | undefined, repoRoot = process.cwd()): string | null {
  if (explicit) {
    if (!fs.existsSync(explicit)) throw new Error(`--data ${explicit}: no such directory`);
    return path.resolve(explicit);
  }
  if (process.env.LLMCB_DATA) {
    if (!fs.existsSync(process.env.LLMCB_DATA)) throw new Error(`LLMCB_DATA=${process.env.LLMCB_DATA}: no such directory`);
    return path.resolve(process.env.LLMCB_DATA);
  }
  for (const c of [path.resolve(repoRoot, '../shared/datasets'), path.resolve(repoRoot, 'shared/datasets')]) {
    if (fs.existsSync(c)) return c;
  }
  return null;
}

/** The first existing file among candidates under the data root, or null. */
export function findLocal(opts: DataOptions, ...candidates: string[]): string | null {
  if (!opts.dataDir) return null;
  for (const c of candidates) {
    const p = path.join(opts.dataDir, c);
    if (fs.existsSync(p)) return p;
  }
  return null;
}

/** A local dataset file's text, after checking it against its data root's SHA256SUMS (verify.ts). */
export function readText(file: string): string {
  verifyDataFile(file);
  let text = fs.readFileSync(file, 'utf8');
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1); // BOM (TruthfulQA.csv has one)
  return text;
}

/** Lines of a text file without the empty string after a final newline. */
export function readLines(file: string): string[] {
  const lines = readText(file).split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Parses a JSON-lines file; each non-empty line must be a JSON object. */
export function readJsonl(file: string): { line: number; value: Record<string, unknown> }[] {
  const out: { line: number; value: Record<string, unknown> }[] = [];
  readLines(file).forEach((text, k) => {
    if (text.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(text);
    } catch (e) {
      throw new DatasetError(file, k + 1, `invalid JSON (${(e as Error).message})`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new DatasetError(file, k + 1, 'expected a JSON object');
    out.push({ line: k + 1, value: v as Record<string, unknown> });
  });
  return out;
}

/** A required string field of a record; the error names file, line and field. */
export function str(rec: Record<string, unknown>, key: string, file: string, line: number | null): string {
  const v = rec[key];
  if (typeof v !== 'string') throw new DatasetError(file, line, `field '${key}' must be a string, got ${JSON.stringify(v)?.slice(0, 60)}`);
  return v;
}

/** A required integer field within [lo, hi]; accepts numeric strings ("1") as the hub often stores labels. */
export function int(rec: Record<string, unknown>, key: string, lo: number, hi: number, file: string, line: number | null): number {
  const raw = rec[key];
  const v = typeof raw === 'bigint' ? Number(raw) : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw) : raw;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    throw new DatasetError(file, line, `field '${key}' must be an integer in [${lo}, ${hi}], got ${JSON.stringify(typeof raw === 'bigint' ? String(raw) : raw)}`);
  }
  return v;
}

/** Parses tab-separated text with a header row (GLUE tsv); every row must have the header's width. */
export function readTsv(file: string): { line: number; rec: Record<string, string> }[] {
  const lines = readLines(file);
  if (lines.length === 0) throw new DatasetError(file, null, 'empty file (no header row)');
  const header = lines[0].split('\t');
  const out: { line: number; rec: Record<string, string> }[] = [];
  for (let k = 1; k < lines.length; k++) {
    if (lines[k] === '') continue;
    const cells = lines[k].split('\t');
    if (cells.length !== header.length) {
      throw new DatasetError(file, k + 1, `${cells.length} tab-separated fields, header has ${header.length}`);
    }
    out.push({ line: k + 1, rec: Object.fromEntries(header.map((h, j) => [h, cells[j]])) });
  }
  return out;
}

export function requireColumns(file: string, have: string[], need: string[]): void {
  const missing = need.filter((c) => !have.includes(c));
  if (missing.length) throw new DatasetError(file, 1, `missing column(s) ${missing.join(', ')} (has ${have.join(', ')})`);
}

/** A split on the hub, read from its parquet conversion. */
export interface HubSplit {
  repo: string; // dataset repository, e.g. 'nyu-mll/glue'
  config: string; // dataset config, e.g. 'mnli'
  split: string; // e.g. 'validation_matched'
  /** Defaults to the auto-converted parquet branch every public dataset has. */
  revision?: string;
  /** Defaults to '<config>/<split>/0000.parquet' (the converted branch's layout). */
  file?: string;
}

/**
 * Reads a split from the hub (cached by @huggingface/hub in its cache directory). Returns the rows,
 * or a reason string when the hub cannot be reached or the file is not there.
 */
export async function loadHubRows(
  spec: HubSplit,
  opts: DataOptions,
): Promise<{ rows: Record<string, unknown>[]; source: string } | { error: string }> {
  const revision = spec.revision ?? 'refs/convert/parquet';
  const file = spec.file ?? `${spec.config}/${spec.split}/0000.parquet`;
  const where = `hub:${spec.repo}@${revision}/${file}`;
  if (!opts.hub) return { error: `${where}: hub disabled (HF_HUB_OFFLINE=1 or --no-hub)` };
  let local: string;
  try {
    const { downloadFileToCacheDir } = await import('@huggingface/hub');
    const timed: typeof fetch = (input, init) => fetch(input, { ...init, signal: AbortSignal.timeout(opts.hubTimeoutMs) });
    local = await downloadFileToCacheDir({
      repo: { type: 'dataset', name: spec.repo },
      path: file,
      revision,
      fetch: timed,
      ...(opts.cacheDir ? { cacheDir: opts.cacheDir } : {}),
    });
  } catch (e) {
    return { error: `${where}: ${(e as Error).message.split('\n')[0]}` };
  }
  const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet');
  try {
    const rows = (await parquetReadObjects({ file: await asyncBufferFromFile(local) })) as Record<string, unknown>[];
    return { rows, source: where };
  } catch (e) {
    throw new DatasetError(local, null, `unreadable parquet (${(e as Error).message})`);
  }
}

/** Loads from the local copy when it exists, else from the hub, else reports no data. */
export async function localThenHub<T>(
  name: string,
  opts: DataOptions,
  local: { file: string | null; expected: string; read: (file: string) => { docs: T[]; notes?: string[]; source?: string } },
  hub: { spec: HubSplit; convert: (rows: Record<string, unknown>[], source: string) => { docs: T[]; notes?: string[] } } | null,
): Promise<LoadResult<T>> {
  if (local.file) {
    const r = local.read(local.file);
    if (r.docs.length === 0) throw new DatasetError(local.file, null, `no ${name} items in the file`);
    return { status: 'ok', docs: r.docs, source: r.source ?? `local:${local.file}`, notes: r.notes ?? [] };
  }
  const tried = [opts.dataDir ? `local: no ${local.expected} under ${opts.dataDir}` : 'local: no data directory given (--data or LLMCB_DATA)'];
  if (hub) {
    const h = await loadHubRows(hub.spec, opts);
    if ('rows' in h) {
      const r = hub.convert(h.rows, h.source);
      if (r.docs.length === 0) throw new DatasetError(h.source, null, `no ${name} items in the file`);
      return { status: 'ok', docs: r.docs, source: h.source, notes: r.notes ?? [] };
    }
    tried.push(h.error);
  } else {
    tried.push('hub: no hub copy of this dataset');
  }
  return { status: 'no_data', reason: `${name}: not found (${tried.join('; ')})` };
}

/** A list of strings from a parquet cell (lists arrive as arrays). */
export function strList(v: unknown, what: string, where: string, row: number): string[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new DatasetError(where, null, `row ${row}: ${what} must be a list of strings`);
  }
  return v as string[];
}
