// Encodings kept on disk between processes: the matrix runner evaluates every model × method pair
// of a model on the same tasks with the same tokenizer, in a process per pair, and building a task's
// requests is almost all tokenization (HellaSwag: 80k encodings, ~11 s on one core, for a scorer
// that needs 2 s). A TokenCache wraps a tokenizer for one task: encode() answers from the file of
// (tokenizer, task) and encodes only what it has not seen; save() writes the file back (atomically)
// when something was added. The key is the text itself, so the cache cannot go stale: a tokenizer's
// fingerprint (a hash of what its encodings depend on) names its folder, and tokenizers without one
// are not cached. A process keeps what it has read (one tokenizer's files at a time), so the
// runner's cell process, which runs pair after pair of a model, reads each file once.
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
  private readonly maps: Maps; // by text: without BOS, with BOS (shared with the process's other openings of the file)
  private added = 0;

  private constructor(
    readonly inner: Tokenizer,
    readonly file: string | null,
  ) {
    this.maps = file ? kept(file) : [new Map(), new Map()];
  }

  /** Drops the encodings this process keeps: the next open() reads its file again. */
  static forget(): void {
    KEPT.clear();
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
    const map = this.maps[opts.bos ? 1 : 0]; // keyed by the text itself: no key string to build and hash per call
    let ids = map.get(text);
    if (!ids) {
      ids = Int32Array.from(this.inner.encode(text, opts));
      map.set(text, ids);
      this.added++;
    }
    const out = new Array<number>(ids.length); // a copy: callers may change it (a loop: Array.from on a typed array is ~5x slower)
    for (let i = 0; i < ids.length; i++) out[i] = ids[i];
    return out;
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
    writeFileAtomic(this.file, v8.serialize(pack(this.maps)));
    this.added = 0;
  }
}

/**
 * The file's layout: every text in one string and every encoding in one Int32Array, so that reading
 * it back deserializes four values instead of one string and one typed array per entry (HellaSwag:
 * 50k entries, ~0.4 s of v8.deserialize and garbage as a Map).
 */
interface Packed {
  version: 2;
  texts: string; // the texts, concatenated
  textLengths: Int32Array; // [n]
  bos: Uint8Array; // [n] 1 = encoded with BOS
  idOffsets: Int32Array; // [n + 1] entry i's ids are ids[idOffsets[i], idOffsets[i + 1])
  ids: Int32Array;
}

function pack(maps: Maps): Packed {
  const n = maps[0].size + maps[1].size;
  const textLengths = new Int32Array(n);
  const bos = new Uint8Array(n);
  const idOffsets = new Int32Array(n + 1);
  const texts: string[] = [];
  let i = 0;
  for (const b of [0, 1]) {
    for (const [text, ids] of maps[b]) {
      texts.push(text);
      textLengths[i] = text.length;
      bos[i] = b;
      idOffsets[i + 1] = idOffsets[i] + ids.length;
      i++;
    }
  }
  const ids = new Int32Array(idOffsets[n]);
  i = 0;
  for (const b of [0, 1]) for (const v of maps[b].values()) ids.set(v, idOffsets[i++]);
  return { version: 2, texts: texts.join(''), textLengths, bos, idOffsets, ids };
}

function isPacked(x: unknown): x is Packed {
  const p = x as Packed;
  if (!p || p.version !== 2 || typeof p.texts !== 'string') return false;
  if (!(p.textLengths instanceof Int32Array && p.bos instanceof Uint8Array && p.idOffsets instanceof Int32Array && p.ids instanceof Int32Array)) return false;
  const n = p.textLengths.length;
  return p.bos.length === n && p.idOffsets.length === n + 1 && p.idOffsets[n] === p.ids.length && p.textLengths.reduce((a, l) => a + l, 0) === p.texts.length;
}

type Maps = [Map<string, Int32Array>, Map<string, Int32Array>];

/** Encodings this process has read, by file, of one tokenizer (its folder) at a time: a process
 * that evaluates several pairs of a model (the runner's cell process) reads each file once. */
const KEPT = new Map<string, Maps>();

function kept(file: string): Maps {
  let maps = KEPT.get(file);
  if (!maps) {
    for (const k of KEPT.keys()) if (path.dirname(k) !== path.dirname(file)) KEPT.delete(k); // another tokenizer's
    maps = read(file);
    KEPT.set(file, maps);
  }
  return maps;
}

/** The file's encodings, or none when it is missing or unreadable (a cache: never an error). */
function read(file: string): Maps {
  const maps: Maps = [new Map(), new Map()];
  if (!fs.existsSync(file)) return maps;
  try {
    const p = v8.deserialize(fs.readFileSync(file)) as unknown;
    if (isPacked(p)) {
      let at = 0;
      for (let i = 0; i < p.textLengths.length; i++) {
        const text = p.texts.slice(at, at + p.textLengths[i]);
        at += p.textLengths[i];
        maps[p.bos[i]].set(text, p.ids.subarray(p.idOffsets[i], p.idOffsets[i + 1])); // views: no copy
      }
      return maps;
    }
  } catch {
    // unreadable (another Node version?): start afresh, save() replaces it
  }
  console.warn(`token cache ${file} is unreadable or of an older layout: encoding afresh (it is rewritten)`);
  return [new Map(), new Map()];
}
