// Dataset integrity: every local dataset file is checked against the SHA256SUMS of its data root
// before it is read (a corrupt copy is an error naming the file and both checksums, never a
// number), and a cell's data identity is the hash of the files it reads, so a cell computed on other
// data (corrupt, changed, or absent then) is a different cell. Each file is hashed once per
// process for its size and mtime.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** The checksum list of a data root (`sha256sum` format: "<hex>  ./<path>", paths relative to its folder). */
export const SUMS_FILE = 'SHA256SUMS';

export class DatasetChecksumError extends Error {
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly actual: string,
    readonly sumsFile: string,
  ) {
    super(`${file}: sha256 ${actual} does not match ${expected} listed in ${sumsFile} (a corrupt or changed copy: restore the file or fix the list)`);
    this.name = 'DatasetChecksumError';
  }
}

interface Stamped<T> {
  size: number;
  mtimeMs: number;
  value: T;
}

/** A per-path cache whose entries hold while the file's size and mtime stay the same. */
function stampedCache<T>(compute: (file: string) => T): (file: string, st: fs.Stats) => T {
  const cache = new Map<string, Stamped<T>>();
  return (file, st) => {
    const hit = cache.get(file);
    if (hit && hit.size === st.size && hit.mtimeMs === st.mtimeMs) return hit.value;
    const value = compute(file);
    cache.set(file, { size: st.size, mtimeMs: st.mtimeMs, value });
    return value;
  };
}

const sha256Cached = stampedCache((file) => createHash('sha256').update(fs.readFileSync(file)).digest('hex'));

/** The sha256 (hex) of a file, computed once per (path, size, mtime) in this process. */
export function fileSha256(file: string): string {
  const abs = path.resolve(file);
  return sha256Cached(abs, fs.statSync(abs));
}

/** Parses a SHA256SUMS text: relative path (without './') → hex digest; a malformed line is an error naming it. */
export function parseSums(text: string, file: string): Map<string, string> {
  const out = new Map<string, string>();
  text.split(/\r?\n/).forEach((line, k) => {
    if (line.trim() === '') return;
    const m = /^([0-9a-fA-F]{64}) [ *](.+)$/.exec(line);
    if (!m) throw new Error(`${file}:${k + 1}: not a sha256sum line ("<64 hex digits>  <path>")`);
    out.set(path.posix.normalize(m[2].replace(/^\.\//, '')), m[1].toLowerCase());
  });
  return out;
}

const sumsCached = stampedCache((file) => parseSums(fs.readFileSync(file, 'utf8'), file));

/** The nearest SHA256SUMS at or above the file's folder (the data root's list), or null. */
function sumsFor(file: string): { sumsFile: string; rel: string; sums: Map<string, string> } | null {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const sumsFile = path.join(dir, SUMS_FILE);
    if (fs.existsSync(sumsFile)) {
      return { sumsFile, rel: path.relative(dir, file).split(path.sep).join('/'), sums: sumsCached(sumsFile, fs.statSync(sumsFile)) };
    }
    if (path.dirname(dir) === dir) return null;
  }
}

/**
 * Checks a dataset file against the SHA256SUMS of its data root (the nearest one above it) and
 * returns its sha256. A file the list does not name (a dataset added by hand) or without a list
 * passes unchecked; a mismatch throws a DatasetChecksumError naming the file and both checksums.
 * Hashing is cached per (size, mtime): a run hashes each file once.
 */
export function verifyDataFile(file: string): string {
  const abs = path.resolve(file);
  const sha = fileSha256(abs);
  const list = sumsFor(abs);
  const expected = list?.sums.get(list.rel);
  if (list && expected && expected !== sha) throw new DatasetChecksumError(abs, expected, sha, list.sumsFile);
  return sha;
}

/** Files under a path: the path itself when it is a file, every file below it (sorted) when a folder, none when absent. */
function filesUnder(p: string): string[] {
  if (!fs.existsSync(p)) return [];
  if (!fs.statSync(p).isDirectory()) return [p];
  return fs
    .readdirSync(p)
    .sort()
    .flatMap((f) => filesUnder(path.join(p, f)));
}

/**
 * The identity of the dataset files a cell reads: a 16-hex-digit hash of each path's sha256 under
 * the data root (null where absent, or with no root), folders file by file; null when the cell
 * reads no dataset files. Paths are relative to the root, so moving the root keeps the identity;
 * changing, fixing or adding a file changes it.
 */
export function dataIdentity(root: string | null, rels: readonly string[]): string | null {
  if (rels.length === 0) return null;
  const entries: Record<string, string | null> = {};
  for (const rel of rels) {
    const files = root ? filesUnder(path.join(root, rel)) : [];
    if (files.length === 0) entries[rel] = null;
    for (const f of files) entries[path.relative(root!, f).split(path.sep).join('/')] = fileSha256(f);
  }
  const sorted = Object.keys(entries).sort().map((k) => [k, entries[k]]);
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 16);
}
