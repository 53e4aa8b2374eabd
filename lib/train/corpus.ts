// The zoo's training corpus: the King James Bible (1611; public domain) as shipped by Debian's
// `bible-kjv-text` package and printed by `bible-kjv`'s `bible` program. One document per chapter;
// chapters are assigned to train/valid/test by their index, so the split is deterministic and
// never depends on a random seed or on the machine.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { createHash } from 'node:crypto';

export type Split = 'train' | 'valid' | 'test';
export const SPLITS: readonly Split[] = ['train', 'valid', 'test'];

export interface SplitOptions {
  period: number; // chapters are taken in blocks of `period`: one goes to valid, one to test
  validOffset: number; // chapter index % period that goes to valid
  testOffset: number; // chapter index % period that goes to test
}
export const SPLIT_DEFAULTS: SplitOptions = {
  period: 25, // 4% valid + 4% test (48 chapters each of the 1,189)
  validOffset: 12,
  testOffset: 24,
};

export interface Chapter {
  ref: string; // e.g. 'Ge1'
  verses: string[];
}

/** Parses `bible -f Gen1:1-Rev22:21` output ("Ge1:1 In the beginning ...", one verse a line) into chapters. */
export function parseBibleOutput(text: string, source = 'bible output'): Chapter[] {
  const chapters: Chapter[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trimEnd();
    if (line === '') continue;
    const m = /^(\d?[A-Za-z]+)(\d+):(\d+) (.*)$/.exec(line);
    if (!m) throw new Error(`${source}:${i + 1}: not a verse line ("Book1:1 text"): ${JSON.stringify(line.slice(0, 60))}`);
    const ref = `${m[1]}${m[2]}`;
    const text = m[4].replace(/\s+/g, ' ').trim();
    const last = chapters[chapters.length - 1];
    if (last && last.ref === ref) last.verses.push(text);
    else chapters.push({ ref, verses: [text] });
  }
  if (chapters.length === 0) throw new Error(`${source}: no verses found`);
  return chapters;
}

/** Which split chapter i belongs to. */
export function splitOf(i: number, opts: SplitOptions = SPLIT_DEFAULTS): Split {
  const r = i % opts.period;
  if (r === opts.validOffset) return 'valid';
  if (r === opts.testOffset) return 'test';
  return 'train';
}

/** A chapter as a document: one verse a line. Documents are joined with a blank line. */
export function chapterText(c: Chapter): string {
  return c.verses.join('\n');
}
export const DOC_SEPARATOR = '\n\n';

export function splitCorpus(chapters: Chapter[], opts: SplitOptions = SPLIT_DEFAULTS): Record<Split, string> {
  const docs: Record<Split, string[]> = { train: [], valid: [], test: [] };
  chapters.forEach((c, i) => docs[splitOf(i, opts)].push(chapterText(c)));
  return { train: docs.train.join(DOC_SEPARATOR), valid: docs.valid.join(DOC_SEPARATOR), test: docs.test.join(DOC_SEPARATOR) };
}

export function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The corpus manifest written next to the split files. */
export interface CorpusManifest {
  name: string;
  source: string;
  licence: string;
  obtain: string;
  split: SplitOptions & { unit: string };
  files: Record<Split, { file: string; chars: number; bytes: number; docs: number; sha256: string }>;
}

export const CORPUS_FILE = (split: Split) => `kjv.${split}.txt.gz`;
export const DEFAULT_CORPUS_DIR = 'data/zoo/corpus';

/** Reads one split of a built corpus directory (gzip files named by CORPUS_FILE), checking its sha256. */
export function readCorpusSplit(dir: string, split: Split): string {
  const file = path.join(dir, CORPUS_FILE(split));
  if (!fs.existsSync(file)) {
    throw new Error(`corpus split '${split}' not found at ${file}: build it with \`npx tsx scripts/build-corpus.ts --out ${dir}\``);
  }
  const text = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8');
  const manifestFile = path.join(dir, 'corpus.json');
  if (fs.existsSync(manifestFile)) {
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8')) as CorpusManifest;
    const want = manifest.files[split]?.sha256;
    if (want && want !== sha256(text)) throw new Error(`${file}: sha256 differs from ${manifestFile} (corrupt or rebuilt without its manifest)`);
  }
  return text;
}
