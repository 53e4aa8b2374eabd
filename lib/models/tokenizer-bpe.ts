// A byte-level BPE tokenizer the kit trains itself (GPT-2 style: bytes mapped to printable
// characters, the GPT-2 pre-tokenization regex, merges learned by pair frequency), saved as a
// standard Hugging Face tokenizer.json that @huggingface/tokenizers and transformers load.
import fs from 'node:fs';
import path from 'node:path';
import { readJson } from './hf';
import type { Tokenizer } from './types';

/** GPT-2's pre-tokenization pattern (the one ByteLevel uses with use_regex: true). */
export const PRETOKENIZE_RE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/** GPT-2's reversible map from the 256 byte values to printable unicode characters. */
export function bytesToUnicode(): string[] {
  const keep: number[] = [];
  for (let b = 33; b <= 126; b++) keep.push(b);
  for (let b = 161; b <= 172; b++) keep.push(b);
  for (let b = 174; b <= 255; b++) keep.push(b);
  const chars = new Array<string>(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (keep.includes(b)) chars[b] = String.fromCharCode(b);
    else chars[b] = String.fromCharCode(256 + n++);
  }
  return chars;
}
const BYTE_CHARS = bytesToUnicode();
const CHAR_BYTES = new Map(BYTE_CHARS.map((c, b) => [c, b]));
const UTF8 = new TextEncoder();

/** A pre-tokenized word in byte-level characters (one character per byte). */
function toByteLevel(word: string): string {
  let s = '';
  for (const b of UTF8.encode(word)) s += BYTE_CHARS[b];
  return s;
}

export interface BpeTrainOptions {
  vocabSize: number; // total vocabulary: special tokens + 256 bytes + merges
  specialTokens: string[]; // ids 0.. in this order, before the byte tokens
  minFrequency: number; // stop when the most frequent pair occurs fewer times than this
}
export const BPE_TRAIN_DEFAULTS: BpeTrainOptions = {
  vocabSize: 4096, // the zoo's vocabulary size
  specialTokens: ['<pad>', '<s>', '</s>'], // pad 0, bos 1, eos 2
  minFrequency: 2, // a merge seen once does not generalize
};

export interface BpeModel {
  /** id → token string (byte-level characters; specials verbatim). */
  vocab: string[];
  /** Merges in rank order, as pairs of token strings. */
  merges: [string, string][];
  specialTokens: string[];
}

/** A max-heap of (count, key) with ties broken by the smaller key, for lazy-deletion pair selection. */
class PairHeap {
  private c: number[] = [];
  private k: number[] = [];
  private better(i: number, j: number): boolean {
    return this.c[i] > this.c[j] || (this.c[i] === this.c[j] && this.k[i] < this.k[j]);
  }
  private swap(i: number, j: number): void {
    [this.c[i], this.c[j]] = [this.c[j], this.c[i]];
    [this.k[i], this.k[j]] = [this.k[j], this.k[i]];
  }
  get size(): number {
    return this.c.length;
  }
  push(count: number, key: number): void {
    this.c.push(count);
    this.k.push(key);
    let i = this.c.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.better(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [number, number] {
    const top: [number, number] = [this.c[0], this.k[0]];
    const lc = this.c.pop()!;
    const lk = this.k.pop()!;
    if (this.c.length > 0) {
      this.c[0] = lc;
      this.k[0] = lk;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.c.length && this.better(l, m)) m = l;
        if (r < this.c.length && this.better(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Learns byte-level BPE merges from text. Deterministic: ties go to the pair with the smaller ids. */
export function trainBpe(text: string, options: Partial<BpeTrainOptions> = {}): BpeModel {
  const o = { ...BPE_TRAIN_DEFAULTS, ...options };
  const nBase = o.specialTokens.length + 256;
  if (o.vocabSize < nBase) throw new Error(`vocabSize ${o.vocabSize} is below ${nBase} (special tokens + 256 bytes)`);
  const vocab = [...o.specialTokens, ...BYTE_CHARS];
  const idOf = new Map(vocab.map((t, i) => [t, i]));
  // Unique words with their counts, as arrays of symbol ids.
  const counts = new Map<string, number>();
  for (const m of text.matchAll(PRETOKENIZE_RE)) {
    const w = toByteLevel(m[0]);
    counts.set(w, (counts.get(w) ?? 0) + 1);
  }
  const words: number[][] = [];
  const freq: number[] = [];
  for (const [w, c] of counts) {
    words.push(Array.from(w, (ch) => idOf.get(ch)!));
    freq.push(c);
  }
  const K = o.vocabSize; // pair key = a * K + b
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const heap = new PairHeap();
  const addPairs = (wi: number, sign: number, touched: Set<number>) => {
    const s = words[wi];
    for (let j = 0; j + 1 < s.length; j++) {
      const key = s[j] * K + s[j + 1];
      pairCount.set(key, (pairCount.get(key) ?? 0) + sign * freq[wi]);
      touched.add(key);
      if (sign > 0) {
        let set = pairWords.get(key);
        if (!set) pairWords.set(key, (set = new Set()));
        set.add(wi);
      }
    }
  };
  const init = new Set<number>();
  words.forEach((_, wi) => addPairs(wi, +1, init));
  for (const key of init) heap.push(pairCount.get(key)!, key);

  const merges: [string, string][] = [];
  while (vocab.length < o.vocabSize && heap.size > 0) {
    const [c, key] = heap.pop();
    if (pairCount.get(key) !== c) continue; // stale heap entry
    if (c < o.minFrequency) break;
    const a = Math.floor(key / K);
    const b = key % K;
    const merged = vocab[a] + vocab[b];
    let id = idOf.get(merged);
    if (id === undefined) {
      id = vocab.length;
      vocab.push(merged);
      idOf.set(merged, id);
    }
    merges.push([vocab[a], vocab[b]]);
    const touched = new Set<number>();
    for (const wi of pairWords.get(key) ?? []) {
      const s = words[wi];
      let has = false;
      for (let j = 0; j + 1 < s.length; j++) if (s[j] === a && s[j + 1] === b) has = true;
      if (!has) continue;
      addPairs(wi, -1, touched);
      const out: number[] = [];
      for (let j = 0; j < s.length; j++) {
        if (j + 1 < s.length && s[j] === a && s[j + 1] === b) {
          out.push(id);
          j++;
        } else out.push(s[j]);
      }
      words[wi] = out;
      addPairs(wi, +1, touched);
    }
    pairWords.delete(key);
    pairCount.delete(key);
    for (const t of touched) {
      const n = pairCount.get(t);
      if (n === undefined) continue;
      if (n <= 0) pairCount.delete(t);
      else heap.push(n, t);
    }
  }
  return { vocab, merges, specialTokens: o.specialTokens };
}

/** Encoder/decoder over a trained BPE model; equal to @huggingface/tokenizers on its tokenizer.json. */
export class ByteLevelBpe implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly padId: number | null;
  private readonly idOf: Map<string, number>;
  private readonly rank: Map<string, number>; // 'a b' → merge rank
  private readonly cache = new Map<string, number[]>();

  constructor(readonly model: BpeModel) {
    this.vocabSize = model.vocab.length;
    this.idOf = new Map(model.vocab.map((t, i) => [t, i]));
    this.rank = new Map(model.merges.map(([a, b], r) => [`${a} ${b}`, r]));
    const sp = (t: string) => (model.specialTokens.includes(t) ? this.idOf.get(t)! : null);
    this.bosId = sp('<s>');
    this.eosId = sp('</s>');
    this.padId = sp('<pad>');
  }

  /** BPE on one byte-level word: merge the lowest-ranked adjacent pair (leftmost first) until none applies. */
  private bpe(word: string): number[] {
    const hit = this.cache.get(word);
    if (hit) return hit;
    let syms = Array.from(word);
    while (syms.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let j = 0; j + 1 < syms.length; j++) {
        const r = this.rank.get(`${syms[j]} ${syms[j + 1]}`);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = j;
        }
      }
      if (best < 0) break;
      const [a, b] = this.model.merges[bestRank];
      const out: string[] = [];
      for (let j = 0; j < syms.length; j++) {
        if (j + 1 < syms.length && syms[j] === a && syms[j + 1] === b) {
          out.push(a + b);
          j++;
        } else out.push(syms[j]);
      }
      syms = out;
    }
    const ids = syms.map((s) => {
      const id = this.idOf.get(s);
      if (id === undefined) throw new Error(`BPE produced '${s}', which is not in the vocabulary (inconsistent merges)`);
      return id;
    });
    if (this.cache.size < 1 << 17) this.cache.set(word, ids);
    return ids;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids: number[] = [];
    if (opts.bos) {
      if (this.bosId === null) throw new Error('this tokenizer has no <s> token for bos');
      ids.push(this.bosId);
    }
    for (const m of text.matchAll(PRETOKENIZE_RE)) for (const id of this.bpe(toByteLevel(m[0]))) ids.push(id);
    return ids;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const t = this.model.vocab[id];
      if (t === undefined) throw new Error(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
      if (this.model.specialTokens.includes(t)) continue;
      for (const ch of t) bytes.push(CHAR_BYTES.get(ch)!);
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }

  /** The standard Hugging Face tokenizer.json object (BPE model, ByteLevel pre-tokenizer and decoder). */
  toTokenizerJson(): Record<string, unknown> {
    const vocab: Record<string, number> = {};
    this.model.vocab.forEach((t, i) => {
      if (!(t in vocab)) vocab[t] = i;
    });
    return {
      version: '1.0',
      truncation: null,
      padding: null,
      added_tokens: this.model.specialTokens.map((t) => ({
        id: this.idOf.get(t)!, content: t, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
      })),
      normalizer: null,
      pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      post_processor: null,
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: false,
        vocab,
        merges: this.model.merges.map(([a, b]) => `${a} ${b}`),
      },
    };
  }

  /** tokenizer_config.json for transformers (no BOS added by default, as LLMCBench loads tokenizers). */
  toTokenizerConfig(maxLength: number): Record<string, unknown> {
    return {
      tokenizer_class: 'PreTrainedTokenizerFast',
      bos_token: this.bosId === null ? null : this.model.vocab[this.bosId],
      eos_token: this.eosId === null ? null : this.model.vocab[this.eosId],
      pad_token: this.padId === null ? null : this.model.vocab[this.padId],
      add_bos_token: false,
      add_eos_token: false,
      clean_up_tokenization_spaces: false,
      model_max_length: maxLength,
    };
  }

  /** Writes tokenizer.json and tokenizer_config.json into dir. */
  save(dir: string, maxLength: number): void {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(this.toTokenizerJson()) + '\n');
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(this.toTokenizerConfig(maxLength), null, 2) + '\n');
  }

  /** Reads back a tokenizer.json written by save() (or any byte-level BPE tokenizer.json without a normalizer). */
  static fromTokenizerJson(json: Record<string, unknown>, source = 'tokenizer.json'): ByteLevelBpe {
    const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] } | undefined;
    if (!model || model.type !== 'BPE' || !model.vocab || !model.merges) throw new Error(`${source}: not a BPE tokenizer.json (model.type must be 'BPE' with vocab and merges)`);
    const pre = json.pre_tokenizer as { type?: string } | null;
    if (!pre || pre.type !== 'ByteLevel') throw new Error(`${source}: pre_tokenizer must be ByteLevel for ByteLevelBpe`);
    if (typeof model.vocab !== 'object' || !Array.isArray(model.merges)) throw new Error(`${source}: model.vocab must be an object and model.merges a list`);
    const entries = Object.entries(model.vocab as Record<string, unknown>);
    const vocab: string[] = new Array(entries.length);
    for (const [t, i] of entries) {
      if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= entries.length) throw new Error(`${source}: token ${JSON.stringify(t)} has id ${JSON.stringify(i)}, not one of 0..${entries.length - 1}`);
      vocab[i] = t;
    }
    for (let i = 0; i < vocab.length; i++) if (vocab[i] === undefined) throw new Error(`${source}: vocabulary has no token with id ${i}`);
    const merges = (model.merges as unknown[]).map((m) => {
      const pair: unknown = typeof m === 'string' ? m.split(' ') : m;
      if (!Array.isArray(pair) || pair.length !== 2 || !pair.every((x) => typeof x === 'string')) throw new Error(`${source}: malformed merge ${JSON.stringify(m)}`);
      return pair as [string, string];
    });
    // Encoding starts from the 256 byte symbols and only ever forms merge results: all must be tokens.
    const known = new Set(vocab);
    const missing = [...bytesToUnicode(), ...merges.map(([a, b]) => a + b)].find((t) => !known.has(t));
    if (missing !== undefined) throw new Error(`${source}: ${JSON.stringify(missing)} (a byte symbol or a merge's result) is not in the vocabulary`);
    const added = json.added_tokens ?? [];
    if (!Array.isArray(added) || !added.every((t) => typeof t === 'object' && t !== null && typeof t.content === 'string')) {
      throw new Error(`${source}: added_tokens must be a list of {content, special} objects`);
    }
    return new ByteLevelBpe({ vocab, merges, specialTokens: added.filter((t) => t.special).map((t) => t.content) });
  }

  static load(dir: string): ByteLevelBpe {
    const file = path.join(dir, 'tokenizer.json');
    return ByteLevelBpe.fromTokenizerJson(readJson(file), file);
  }
}
