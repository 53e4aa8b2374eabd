// llama2.c's tokenizer (tokenizer.bin / tok512.bin): a SentencePiece-style BPE where the merge
// applied next is always the adjacent pair whose merged piece has the highest score (leftmost on
// ties), with a dummy-prefix space, UTF-8 code points looked up whole and `<0xNN>` byte fallback.
// The merge loop runs on a linked list with a heap of candidate pairs, so it is O(n log n) and
// gives exactly the pairs llama2.c's O(n²) rescan would pick.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Tokenizer } from './types';

export interface Llama2cTokenizerOptions {
  /** BOS id (llama2.c: 1). */
  bosId?: number;
  /** EOS id (llama2.c: 2). */
  eosId?: number;
  /** Where the vocabulary came from, for error messages (fromFile: the file). */
  source?: string;
}

const DEFAULTS: Required<Llama2cTokenizerOptions> = {
  bosId: 1, // llama2.c's `<s>`
  eosId: 2, // llama2.c's `</s>`
  source: 'llama2.c tokenizer',
};

/** Parses a llama2.c tokenizer file: int32 max_token_length, then per token float32 score, int32 length, bytes. */
export function parseLlama2cTokenizer(buf: Uint8Array, vocabSize: number, file = '<buffer>'): { pieces: string[]; scores: Float32Array } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.byteLength < 4) throw new Error(`${file}: llama2.c tokenizer is truncated (${buf.byteLength} bytes, no header)`);
  let off = 4; // skip max_token_length
  const pieces: string[] = [];
  const scores = new Float32Array(vocabSize);
  for (let i = 0; i < vocabSize; i++) {
    if (off + 8 > buf.byteLength) throw new Error(`${file}: llama2.c tokenizer is truncated at token ${i} of ${vocabSize}`);
    scores[i] = view.getFloat32(off, true);
    const len = view.getInt32(off + 4, true);
    off += 8;
    if (len < 0 || off + len > buf.byteLength) throw new Error(`${file}: token ${i} has a bad length ${len}`);
    // Pieces are kept as binary strings (one char per byte) so lookups are byte-exact.
    pieces.push(latin1(buf.subarray(off, off + len)));
    off += len;
  }
  return { pieces, scores };
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 8192) s += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return s;
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  private readonly lookup = new Map<string, number>();
  /** Byte value → token id of `<0xNN>` (llama2.c assumes byte + 3; we look it up). */
  private readonly byteIds = new Int32Array(256).fill(-1);
  private readonly byteOf: Int16Array;
  private readonly source: string;

  constructor(
    readonly pieces: readonly string[],
    readonly scores: Float32Array,
    opts: Llama2cTokenizerOptions = {},
  ) {
    const o = { ...DEFAULTS, ...opts };
    this.vocabSize = pieces.length;
    this.bosId = o.bosId;
    this.eosId = o.eosId;
    this.source = o.source;
    this.byteOf = new Int16Array(pieces.length).fill(-1);
    pieces.forEach((p, i) => {
      if (!this.lookup.has(p)) this.lookup.set(p, i);
      const m = BYTE_PIECE.exec(p);
      if (m) {
        const b = parseInt(m[1], 16);
        this.byteOf[i] = b;
        if (this.byteIds[b] < 0) this.byteIds[b] = i;
      }
    });
  }

  private hash: string | undefined;
  /** sha256 of the vocabulary file and the special ids (Tokenizer.fingerprint). */
  get fingerprint(): string {
    this.hash ??= createHash('sha256').update(this.toBinary()).update(`llama2c bos=${this.bosId} eos=${this.eosId}`).digest('hex');
    return this.hash;
  }

  static fromFile(file: string, vocabSize: number, opts?: Llama2cTokenizerOptions): Llama2cTokenizer {
    let buf: Buffer;
    try {
      buf = readFileSync(file);
    } catch (e) {
      throw new Error(`cannot read llama2.c tokenizer ${file}: ${(e as Error).message}`);
    }
    const { pieces, scores } = parseLlama2cTokenizer(buf, vocabSize, file);
    return new Llama2cTokenizer(pieces, scores, { source: file, ...opts });
  }

  /** The llama2.c tokenizer file format (the inverse of parseLlama2cTokenizer). */
  toBinary(): Buffer {
    const maxLen = this.pieces.reduce((m, p) => Math.max(m, p.length), 0);
    const size = 4 + this.pieces.reduce((a, p) => a + 8 + p.length, 0);
    const buf = Buffer.alloc(size);
    buf.writeInt32LE(maxLen, 0);
    let off = 4;
    this.pieces.forEach((p, i) => {
      buf.writeFloatLE(this.scores[i], off);
      buf.writeInt32LE(p.length, off + 4);
      buf.write(p, off + 8, 'latin1');
      off += 8 + p.length;
    });
    return buf;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const out: number[] = [];
    if (opts.bos) out.push(this.bosId);
    if (text.length === 0) return out;
    const bytes = Buffer.from(text, 'utf8');
    // Initial symbols: dummy prefix, then one per UTF-8 code point (or its bytes).
    const ids: number[] = [];
    const space = this.lookup.get(' ');
    if (space === undefined) throw new Error(`${this.source}: llama2.c tokenizer has no ' ' piece for the dummy prefix`);
    ids.push(space);
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      const next = i + 1 < bytes.length ? bytes[i + 1] : 0;
      if ((next & 0xc0) === 0x80 && i + 1 - start < 4) continue; // code point continues
      const piece = latin1(bytes.subarray(start, i + 1));
      const id = this.lookup.get(piece);
      if (id !== undefined) ids.push(id);
      else {
        for (let k = start; k <= i; k++) {
          const b = this.byteIds[bytes[k]];
          if (b < 0) throw new Error(`${this.source}: llama2.c tokenizer has no byte piece <0x${bytes[k].toString(16).toUpperCase().padStart(2, '0')}>`);
          ids.push(b);
        }
      }
      start = i + 1;
    }
    for (const id of this.merge(ids)) out.push(id);
    return out;
  }

  /** Applies best-score-first merges (leftmost on ties) until no adjacent pair forms a piece. */
  private merge(ids: number[]): number[] {
    const n = ids.length;
    const tok = Int32Array.from(ids);
    const next = new Int32Array(n);
    const prev = new Int32Array(n);
    const version = new Int32Array(n); // bumped whenever a node changes or dies
    for (let i = 0; i < n; i++) {
      next[i] = i + 1 < n ? i + 1 : -1;
      prev[i] = i - 1;
    }
    const heap = new PairHeap();
    const push = (i: number) => {
      const j = next[i];
      if (i < 0 || j < 0) return;
      const id = this.lookup.get(this.pieces[tok[i]] + this.pieces[tok[j]]);
      if (id === undefined) return;
      heap.push(this.scores[id], i, j, id, version[i], version[j]);
    };
    for (let i = 0; i + 1 < n; i++) push(i);
    while (heap.size > 0) {
      const e = heap.pop();
      const { i, j } = e;
      // Stale candidates: a side was merged away or changed since this pair was seen.
      if (version[i] !== e.vi || version[j] !== e.vj || next[i] !== j) continue;
      tok[i] = e.id;
      version[i]++;
      version[j] = -1 - version[j]; // dead: never equal to a recorded (non-negative) version
      const k = next[j];
      next[i] = k;
      if (k >= 0) prev[k] = i;
      push(prev[i]);
      push(i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]) out.push(tok[i]);
    return out;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    let afterStart = true; // at the start or right after BOS: drop the dummy-prefix space
    for (const id of ids) {
      if (id === this.bosId) {
        afterStart = true;
        continue;
      }
      if (id === this.eosId) continue;
      if (id < 0 || id >= this.vocabSize) throw new Error(`token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
      const b = this.byteOf[id];
      if (b >= 0) bytes.push(b);
      else {
        const p = this.pieces[id];
        for (let k = afterStart && p.charCodeAt(0) === 0x20 ? 1 : 0; k < p.length; k++) bytes.push(p.charCodeAt(k));
      }
      afterStart = false;
    }
    return Buffer.from(bytes).toString('utf8');
  }
}

/** Max-heap of merge candidates: higher score first, then the leftmost left node. */
class PairHeap {
  private s: number[] = [];
  private i: number[] = [];
  private j: number[] = [];
  private id: number[] = [];
  private vi: number[] = [];
  private vj: number[] = [];
  get size(): number {
    return this.s.length;
  }
  private before(a: number, b: number): boolean {
    return this.s[a] > this.s[b] || (this.s[a] === this.s[b] && this.i[a] < this.i[b]);
  }
  private swap(a: number, b: number): void {
    for (const arr of [this.s, this.i, this.j, this.id, this.vi, this.vj]) {
      const t = arr[a];
      arr[a] = arr[b];
      arr[b] = t;
    }
  }
  push(score: number, i: number, j: number, id: number, vi: number, vj: number): void {
    let c = this.s.length;
    this.s.push(score);
    this.i.push(i);
    this.j.push(j);
    this.id.push(id);
    this.vi.push(vi);
    this.vj.push(vj);
    while (c > 0) {
      const p = (c - 1) >> 1;
      if (!this.before(c, p)) break;
      this.swap(c, p);
      c = p;
    }
  }
  pop(): { i: number; j: number; id: number; vi: number; vj: number } {
    const top = { i: this.i[0], j: this.j[0], id: this.id[0], vi: this.vi[0], vj: this.vj[0] };
    const last = this.s.length - 1;
    this.swap(0, last);
    for (const arr of [this.s, this.i, this.j, this.id, this.vi, this.vj]) arr.pop();
    let c = 0;
    const n = this.s.length;
    for (;;) {
      const l = 2 * c + 1;
      const r = l + 1;
      let m = c;
      if (l < n && this.before(l, m)) m = l;
      if (r < n && this.before(r, m)) m = r;
      if (m === c) break;
      this.swap(c, m);
      c = m;
    }
    return top;
  }
}
