// Calibration sets: N windows of L tokens drawn from a token stream with Python's `random`
// (Mersenne Twister, `random.seed(s); random.randint(0, n - L - 1)`), exactly as the GPTQ /
// SparseGPT / Wanda reference data loaders draw them, so the same corpus and seed give the
// same windows as the authors' code. The calibration set is part of every result's config.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { numberFlag } from '../cli';
import { verifyDataFile } from '../data/verify';
import type { Model, Tokenizer } from '../models/types';
import { DEFAULT_CORPUS_DIR, readCorpusSplit } from '../train/corpus';

export interface CalibOptions {
  nsamples: number; // number of windows (GPTQ paper: 128 random 2048-token segments)
  seqlen: number; // tokens per window (GPTQ paper: 2048, capped at the model's context)
  seed: number; // Python random.seed (GPTQ/Wanda reference scripts: 0)
}

export const calibDefaults: CalibOptions = {
  nsamples: 128, // GPTQ paper §4 "128 random 2048 token segments"
  seqlen: 2048, // GPTQ paper §4; capped by capSeqlen() at the model's context
  seed: 0, // reference scripts' default --seed
};

/** A calibration set: token windows plus a description that goes into every result row. */
export interface CalibSet {
  /** Corpus name ('wikitext2-valid', a file name, …). */
  corpus: string;
  windows: number[][]; // [nsamples][seqlen] token ids
  nsamples: number;
  seqlen: number;
  /** null when the windows were given (calib-ids file) rather than drawn here. */
  seed: number | null;
}

/** One line for the `calib` column of result rows, e.g. "wikitext2-valid:128x512:seed0". */
export function describeCalib(c: CalibSet): string {
  return `${c.corpus}:${c.nsamples}x${c.seqlen}:${c.seed === null ? 'given' : `seed${c.seed}`}`;
}

export class CalibError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CalibError';
  }
}

/** Caps seqlen at the model's context length (the paper's 2048 is longer than small models' contexts). */
export function capSeqlen(seqlen: number, model: Pick<Model, 'config'>): number {
  return Math.min(seqlen, model.config.maxPositions);
}

/** Validates calibration options before any work starts. */
export function checkCalibOptions(opts: CalibOptions, corpusTokens?: number, corpus = 'corpus'): void {
  if (!Number.isInteger(opts.nsamples) || opts.nsamples < 1) throw new CalibError(`calibration: nsamples must be a positive integer, got ${opts.nsamples}`);
  if (!Number.isInteger(opts.seqlen) || opts.seqlen < 2) throw new CalibError(`calibration: seqlen must be an integer >= 2, got ${opts.seqlen}`);
  if (!Number.isInteger(opts.seed) || opts.seed < 0) throw new CalibError(`calibration: seed must be a non-negative integer, got ${opts.seed}`);
  if (corpusTokens !== undefined && corpusTokens < opts.seqlen + 2) {
    throw new CalibError(`calibration: corpus '${corpus}' has ${corpusTokens} tokens, too few for one window of seqlen ${opts.seqlen} (needs at least ${opts.seqlen + 2})`);
  }
  if (corpusTokens !== undefined && opts.nsamples * opts.seqlen > corpusTokens) {
    throw new CalibError(`calibration: ${opts.nsamples} windows × ${opts.seqlen} tokens = ${opts.nsamples * opts.seqlen} tokens is longer than corpus '${corpus}' (${corpusTokens} tokens)`);
  }
}

/**
 * Draws windows from a token stream: for each sample i = randint(0, n - seqlen - 1), window
 * ids[i : i + seqlen] (GPTQ datautils.get_wikitext2 / get_c4 convention).
 */
export function sampleCalibration(ids: ArrayLike<number>, corpus: string, opts: Partial<CalibOptions> = {}): CalibSet {
  const o = { ...calibDefaults, ...opts };
  checkCalibOptions(o, ids.length, corpus);
  const rng = new PyRandom(o.seed);
  const windows: number[][] = [];
  for (let s = 0; s < o.nsamples; s++) {
    const i = rng.randint(0, ids.length - o.seqlen - 1);
    windows.push(Array.from({ length: o.seqlen }, (_, k) => ids[i + k]));
  }
  return { corpus, windows, nsamples: o.nsamples, seqlen: o.seqlen, seed: o.seed };
}

/** Tokenizes text once (no BOS, as the reference loaders) and draws windows from it. */
export function calibrationFromText(text: string, tokenizer: Tokenizer, corpus: string, opts: Partial<CalibOptions> = {}): CalibSet {
  return sampleCalibration(tokenizer.encode(text, { bos: false }), corpus, opts);
}

/** The dataset files (paths under the data root) a named corpus reads: part of a cell's data identity. */
export const CALIB_DATA_FILES = {
  'wikitext2-valid': ['wikitext-2-raw/wiki.valid.raw'],
  'wikitext2-test': ['wikitext-2-raw/wiki.test.raw'],
} as const satisfies Record<string, readonly string[]>;

/** The dataset files a calibration corpus reads (none for the shipped corpus or a file given by path). */
export function calibDataFiles(corpus: string): readonly string[] {
  return (CALIB_DATA_FILES as Record<string, readonly string[]>)[corpus] ?? [];
}

/** Local corpora known by name; each resolves to text (joined the way the reference scripts join rows). */
export const CALIB_CORPORA = {
  // WikiText-2 raw validation: rows (file lines) joined with " " as ../shared/reference's calibration file.
  'wikitext2-valid': (dataRoot: string) => readLines(path.join(dataRoot, CALIB_DATA_FILES['wikitext2-valid'][0])).join(' '),
  // WikiText-2 raw test (for experiments only: it is the evaluation split).
  'wikitext2-test': (dataRoot: string) => readLines(path.join(dataRoot, CALIB_DATA_FILES['wikitext2-test'][0])).join('\n\n'),
  // The King James Bible train split the repository ships for its zoo: calibration text on a
  // fresh clone without the benchmark datasets (public domain; see data/zoo/corpus/corpus.json).
  'kjv-train': () => readCorpusSplit(DEFAULT_CORPUS_DIR, 'train'),
  // Its valid split: what bench-engines.ts calibrates the zoo's models on.
  'kjv-valid': () => readCorpusSplit(DEFAULT_CORPUS_DIR, 'valid'),
} satisfies Record<string, (dataRoot: string) => string>;
export type CalibCorpus = keyof typeof CALIB_CORPORA;

function readLines(file: string): string[] {
  if (!fs.existsSync(file)) throw new CalibError(`calibration corpus file ${file} does not exist`);
  verifyDataFile(file); // a dataset file: checked against its data root's SHA256SUMS
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Text of a named corpus, or of a plain-text file when name is a path. */
export function corpusText(name: string, dataRoot: string): string {
  if (name in CALIB_CORPORA) return CALIB_CORPORA[name as CalibCorpus](dataRoot);
  if (fs.existsSync(name)) return fs.readFileSync(name, 'utf8');
  throw new CalibError(`calibration corpus '${name}' is neither a known corpus (${Object.keys(CALIB_CORPORA).join(', ')}) nor a file`);
}

/** Where a script's calibration set comes from: a corpus (named or a file) with the draw, or a windows file. */
export interface CalibSource extends CalibOptions {
  corpus: string; // a CALIB_CORPORA name or a text file (default 'wikitext2-valid')
  idsFile: string | null; // a --calib-ids JSON file of windows instead of a corpus
  dataRoot: string; // the datasets directory the named corpora are read from
}

/** The calibration flags of the scripts that compress (compress.ts, eval.ts --method): parseArgs options. */
export const CALIB_FLAGS = {
  calib: { type: 'string' },
  'calib-ids': { type: 'string' },
  'calib-nsamples': { type: 'string' },
  'calib-seqlen': { type: 'string' },
  'calib-seed': { type: 'string' },
} as const;

/** Usage lines of CALIB_FLAGS. */
export const CALIB_USAGE = `calibration (methods that need it): [--calib wikitext2-valid|kjv-train|FILE | --calib-ids FILE]
  [--calib-nsamples ${calibDefaults.nsamples}] [--calib-seqlen ${calibDefaults.seqlen} (capped at the context)] [--calib-seed ${calibDefaults.seed}]`;

/** A CalibSource from CALIB_FLAGS' parsed values; dataRoot is the datasets directory (--data). */
export function calibSourceFromFlags(v: Partial<Record<keyof typeof CALIB_FLAGS, string>>, dataRoot: string | null): CalibSource {
  if (v.calib && v['calib-ids']) throw new CalibError('give --calib or --calib-ids, not both');
  const int = (flag: keyof typeof CALIB_FLAGS, min: number, dflt: number): number => numberFlag(flag, v[flag], { integer: true, min }) ?? dflt;
  return {
    corpus: v.calib ?? 'wikitext2-valid',
    idsFile: v['calib-ids'] ?? null,
    nsamples: int('calib-nsamples', 1, calibDefaults.nsamples),
    seqlen: int('calib-seqlen', 2, calibDefaults.seqlen),
    seed: int('calib-seed', 0, calibDefaults.seed),
    dataRoot: dataRoot ?? '.',
  };
}

/**
 * The calibration set for `model` from `src` (seqlen capped at the model's context), checked
 * against the model's vocabulary and context.
 */
export function calibrationFor(model: Pick<Model, 'config' | 'tokenizer'>, src: CalibSource): CalibSet {
  const calib = src.idsFile
    ? loadCalibIds(src.idsFile, { vocabSize: model.config.vocabSize })
    : calibrationFromText(corpusText(src.corpus, src.dataRoot), model.tokenizer, src.corpus, { nsamples: src.nsamples, seqlen: capSeqlen(src.seqlen, model), seed: src.seed });
  checkCalibForModel(calib, model);
  return calib;
}

/** Reads a `--calib-ids` JSON file: { windows: number[][], seed?, source? } (../shared/reference format). */
export function loadCalibIds(file: string, opts: { nsamples?: number; seqlen?: number; vocabSize?: number } = {}): CalibSet {
  if (!fs.existsSync(file)) throw new CalibError(`calib-ids file ${file} does not exist`);
  let j: { windows?: unknown; seed?: unknown };
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CalibError(`calib-ids file ${file}: not JSON (${(e as Error).message})`);
  }
  const w = j.windows;
  if (!Array.isArray(w) || w.length === 0 || !w.every((r) => Array.isArray(r) && r.length > 1 && r.every((t) => Number.isInteger(t) && t >= 0))) {
    throw new CalibError(`calib-ids file ${file}: 'windows' must be a non-empty array of arrays of token ids`);
  }
  const windows = w as number[][];
  const len = windows[0].length;
  windows.forEach((r, i) => {
    if (r.length !== len) throw new CalibError(`calib-ids file ${file}: window ${i} has ${r.length} tokens, window 0 has ${len}`);
    if (opts.vocabSize !== undefined) {
      const bad = r.find((t) => t >= opts.vocabSize!);
      if (bad !== undefined) throw new CalibError(`calib-ids file ${file}: window ${i} has token id ${bad} >= vocab size ${opts.vocabSize}`);
    }
  });
  const nsamples = opts.nsamples ?? windows.length;
  if (nsamples > windows.length) throw new CalibError(`calib-ids file ${file} has ${windows.length} windows, ${nsamples} asked for`);
  const seqlen = opts.seqlen ?? len;
  if (seqlen > len) throw new CalibError(`calib-ids file ${file} has windows of ${len} tokens, seqlen ${seqlen} asked for`);
  return {
    corpus: path.basename(file),
    windows: windows.slice(0, nsamples).map((r) => r.slice(0, seqlen)),
    nsamples,
    seqlen,
    seed: typeof j.seed === 'number' ? j.seed : null,
  };
}

/** Checks a calibration set against a model's vocabulary and context. */
export function checkCalibForModel(c: CalibSet, model: Pick<Model, 'config'>): void {
  if (c.seqlen > model.config.maxPositions) throw new CalibError(`calibration windows of ${c.seqlen} tokens exceed the model's context ${model.config.maxPositions}`);
  for (const [i, r] of c.windows.entries()) {
    for (const t of r) if (t >= model.config.vocabSize) throw new CalibError(`calibration window ${i} has token id ${t} >= vocab size ${model.config.vocabSize}`);
  }
}

/** The windows as int32 batches of at most batchSize windows each. Caller disposes. */
export function calibBatches(c: CalibSet, batchSize: number): tf.Tensor2D[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new CalibError(`calibration batch size must be a positive integer, got ${batchSize}`);
  const out: tf.Tensor2D[] = [];
  for (let i = 0; i < c.windows.length; i += batchSize) {
    const rows = c.windows.slice(i, i + batchSize);
    out.push(tf.tensor2d(rows, [rows.length, c.seqlen], 'int32')); // [B, T]
  }
  return out;
}

/**
 * Python's `random` module (MT19937, init_by_array seeding, getrandbits-based randbelow), enough
 * to reproduce `random.seed(s); random.randint(a, b)` bit for bit.
 */
export class PyRandom {
  private mt = new Uint32Array(624);
  private idx = 625;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new CalibError(`PyRandom: seed must be a non-negative safe integer, got ${seed}`);
    // Python seeds from abs(seed) split into 32-bit words, least significant first.
    const key: number[] = [];
    let s = seed;
    do {
      key.push(s % 0x100000000);
      s = Math.floor(s / 0x100000000);
    } while (s > 0);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.idx = 624;
  }

  private initByArray(key: number[]): void {
    this.initGenrand(19650218);
    const mt = this.mt;
    let i = 1;
    let j = 0;
    for (let k = Math.max(624, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  /** genrand_uint32 */
  nextUint32(): number {
    const mt = this.mt;
    if (this.idx >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.idx = 0;
    }
    let y = mt[this.idx++];
    y ^= y >>> 11;
    y = (y ^ ((y << 7) & 0x9d2c5680)) >>> 0;
    y = (y ^ ((y << 15) & 0xefc60000)) >>> 0;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** random.getrandbits(k) for 1 <= k <= 53. */
  getrandbits(k: number): number {
    if (k <= 32) return this.nextUint32() >>> (32 - k);
    const lo = this.nextUint32();
    const hi = this.nextUint32() >>> (64 - k);
    return hi * 0x100000000 + lo;
  }

  /** random.randint(a, b), both ends inclusive. */
  randint(a: number, b: number): number {
    const n = b - a + 1;
    if (!Number.isSafeInteger(n) || n < 1) throw new CalibError(`randint: empty range [${a}, ${b}]`);
    let k = 0; // n.bit_length()
    for (let m = n; m > 0; m = Math.floor(m / 2)) k++;
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return a + r;
  }

  /** random.random() */
  random(): number {
    const a = this.nextUint32() >>> 5;
    const b = this.nextUint32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}
