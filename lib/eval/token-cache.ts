// Encodings kept on disk between processes: the matrix runner evaluates every model × method pair
// of a model on the same tasks with the same tokenizer, in a process per pair, and building a task's
// requests is almost all tokenization (HellaSwag: 80k encodings, ~11 s on one core, for a scorer
// that needs 2 s). A TokenCache wraps a tokenizer for one task: encode() answers from the file of
// (tokenizer, task) and encodes only what it has not seen; save() writes the file back (atomically)
// when something was added. The key is the text itself, so the cache cannot go stale: a tokenizer's
// fingerprint (a hash of what its encodings depend on) names its folder, and tokenizers without one
// are not cached.
import fs from 'node:fs';
import path from 'node:path';
import v8 from 'node:v8';
import { REPO_ROOT } from '../cli';
import type { Tokenizer } from '../models/types';
import { writeFileAtomic } from '../results';

/** Where encodings are kept: $LLMCB_CACHE/tokens, else tmp/cache/tokens in the repository. */
export function tokenCacheDir(): string {
  return path.join(process.env.LLMCB_CACHE ?? path.join(REPO_ROOT, 'tmp/cache'), 'tokens');
}

export class TokenCache implements Tokenizer {
  private readonly map: Map<string, Int32Array>; // typed arrays: a third of the file that number[] takes
  private added = 0;

  private constructor(
    readonly inner: Tokenizer,
    readonly file: string | null,
  ) {
    this.map = file ? read(file) : new Map();
  }

  /** The tokenizer, answering from the cache of (its fingerprint, `name`); uncached when it has no fingerprint. */
  static open(inner: Tokenizer, name: string, dir = tokenCacheDir()): TokenCache {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`TokenCache: name '${name}' must be a plain file name`);
    return new TokenCache(inner, inner.fingerprint ? path.join(dir, inner.fingerprint.slice(0, 32), `${name}.v8`) : null);
  }

  get vocabSize(): number {
    return this.inner.vocabSize;
  }
  get bosId(): number | null {
    return this.inner.bosId;
  }
  get eosId(): number | null {
    return this.inner.eosId;
  }
  get fingerprint(): string | undefined {
    return this.inner.fingerprint;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const key = `${opts.bos ? 1 : 0}${text}`;
    let ids = this.map.get(key);
    if (!ids) {
      ids = Int32Array.from(this.inner.encode(text, opts));
      this.map.set(key, ids);
      this.added++;
    }
    return Array.from(ids); // a copy: callers may change it
  }

  decode(ids: readonly number[]): string {
    return this.inner.decode(ids);
  }

  /** Encodings this cache added since it was opened. */
  get misses(): number {
    return this.added;
  }

  /** Writes the file back if anything was added (atomically: a concurrent reader sees the old or the new file). */
  save(): void {
    if (!this.file || this.added === 0) return;
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileAtomic(this.file, v8.serialize(this.map));
    this.added = 0;
  }
}

/** The file's encodings, or none when it is missing or unreadable (a cache: never an error). */
function read(file: string): Map<string, Int32Array> {
  if (!fs.existsSync(file)) return new Map();
  try {
    const m = v8.deserialize(fs.readFileSync(file)) as unknown;
    if (m instanceof Map && [...m.values()].every((v) => v instanceof Int32Array)) return m as Map<string, Int32Array>;
  } catch {
    // unreadable (another Node version?): start afresh, save() replaces it
  }
  console.warn(`token cache ${file} is unreadable: encoding afresh (it is rewritten)`);
  return new Map();
}
