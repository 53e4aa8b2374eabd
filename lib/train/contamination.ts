// Training-corpus contamination against the evaluation data: word n-gram overlap (13-grams by
// default, as GPT-3's and lm-eval's decontamination). Text is compared as lower-case words (runs of
// Unicode letters and digits; everything else separates), so formatting (WikiText's " @-@ ",
// JSON quoting, CSV commas) does not hide an overlap. n-grams are kept as 53-bit hashes (two
// 32-bit FNV-1a hashes of the word sequence): a collision could only report an overlap that is not
// there, never hide one.
import fs from 'node:fs';
import path from 'node:path';
import { TASKS } from '../tasks/index';
import { REPO_ROOT } from '../cli';
import { formatCsv } from '../csv';
import { SPLITS, readCorpusManifest, readCorpusSplit, sha256, splitDocuments, type CorpusDoc, type Split } from './corpus';

export const NGRAM_DEFAULT = 13;

/** Lower-case words of a text: runs of letters and digits. */
export function words(text: string): string[] {
  return text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
}

function fnv(s: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The hashes of every n-word window of a word list (none when it has fewer than n words). */
export function ngramHashes(ws: readonly string[], n = NGRAM_DEFAULT): number[] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`n-gram length must be a positive integer, got ${n}`);
  const a = ws.map((w) => fnv(w, 0x811c9dc5));
  const b = ws.map((w) => fnv(w, 0x01000193));
  const out: number[] = [];
  for (let i = 0; i + n <= ws.length; i++) {
    let h1 = 0x811c9dc5;
    let h2 = 0x9747b28c;
    for (let j = i; j < i + n; j++) {
      h1 = Math.imul(h1 ^ a[j], 16777619) >>> 0;
      h2 = Math.imul(h2 ^ b[j], 2246822519) >>> 0;
    }
    out.push((h1 & 0x1fffff) * 2 ** 32 + h2); // 21 + 32 bits: exact in a double
  }
  return out;
}

/** An evaluation split: a name and the dataset files (paths under the data root) it reads. */
export interface EvalSplit {
  name: string;
  files: string[]; // files, or folders read whole
}

/**
 * The evaluation splits the corpus must not overlap: WikiText-2 valid and test, and every task of
 * the registry with the files it reads (lib/tasks dataFiles; several candidate names for one split
 * are one split).
 */
export function evalSplits(): EvalSplit[] {
  const out: EvalSplit[] = [
    { name: 'wikitext2-valid', files: ['wikitext-2-raw/wiki.valid.raw'] },
    { name: 'wikitext2-test', files: ['wikitext-2-raw/wiki.test.raw'] },
  ];
  for (const [name, task] of Object.entries(TASKS)) {
    if (name === 'wikitext2') continue;
    out.push({ name, files: [...task.dataFiles] });
  }
  return out;
}

/** Every string inside a JSON value. */
function jsonStrings(v: unknown, out: string[]): void {
  if (typeof v === 'string') out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => jsonStrings(x, out));
  else if (v && typeof v === 'object') Object.values(v).forEach((x) => jsonStrings(x, out));
}

/** The texts of one dataset file: the strings of a .json/.jsonl file (one text per record), else the file as one text. */
export function fileTexts(file: string): string[] {
  const raw = fs.readFileSync(file, 'utf8');
  if (file.endsWith('.jsonl')) {
    return raw.split('\n').filter((l) => l.trim() !== '').map((l, i) => {
      const strings: string[] = [];
      try {
        jsonStrings(JSON.parse(l), strings);
      } catch (e) {
        throw new Error(`${file}:${i + 1}: not JSON (${(e as Error).message})`);
      }
      return strings.join('\n');
    });
  }
  if (file.endsWith('.json')) {
    const strings: string[] = [];
    jsonStrings(JSON.parse(raw), strings);
    return strings;
  }
  return [raw];
}

/** The files of an eval split present under dataRoot (folders expanded, sorted). */
export function presentFiles(dataRoot: string, split: EvalSplit): string[] {
  const out: string[] = [];
  for (const f of split.files) {
    const p = path.join(dataRoot, f);
    if (!fs.existsSync(p)) continue;
    if (fs.statSync(p).isDirectory()) out.push(...fs.readdirSync(p).sort().map((x) => path.join(f, x)));
    else out.push(f);
  }
  return out;
}

/** A loaded evaluation split: its n-gram hashes and the files (with sha256) they came from. */
export interface EvalNgrams {
  name: string;
  files: { file: string; sha256: string }[];
  ngrams: Set<number>;
}

/** The n-grams of an eval split under dataRoot; null when none of its files is there. */
export function loadEvalNgrams(dataRoot: string, split: EvalSplit, n = NGRAM_DEFAULT): EvalNgrams | null {
  const files = presentFiles(dataRoot, split);
  if (files.length === 0) return null;
  const ngrams = new Set<number>();
  const info: EvalNgrams['files'] = [];
  for (const f of files) {
    const p = path.join(dataRoot, f);
    info.push({ file: f, sha256: sha256(fs.readFileSync(p)) });
    for (const t of fileTexts(p)) for (const h of ngramHashes(words(t), n)) ngrams.add(h);
  }
  return { name: split.name, files: info, ngrams };
}

/** Does a text share any n-gram with the set? */
export function sharesNgram(text: string, ngrams: ReadonlySet<number>, n = NGRAM_DEFAULT): boolean {
  return ngramHashes(words(text), n).some((h) => ngrams.has(h));
}

/** The decontamination rule, in words (corpus.json and the report card). */
export function decontaminationRule(n = NGRAM_DEFAULT): string {
  return `a corpus document is dropped when any of its ${n}-word n-grams (lower-case runs of letters and digits) occurs in any evaluation split`;
}

/** Drops every document that shares an n-gram with any eval split; says which splits each dropped one met. */
export function decontaminate(docs: readonly CorpusDoc[], evals: readonly EvalNgrams[], n = NGRAM_DEFAULT): { kept: CorpusDoc[]; dropped: { id: string; evals: string[] }[] } {
  const kept: CorpusDoc[] = [];
  const dropped: { id: string; evals: string[] }[] = [];
  for (const d of docs) {
    const hs = ngramHashes(words(d.text), n);
    const hit = evals.filter((e) => hs.some((h) => e.ngrams.has(h))).map((e) => e.name);
    if (hit.length) dropped.push({ id: d.id, evals: hit });
    else kept.push(d);
  }
  return { kept, dropped };
}

/** One row of the contamination report: a corpus split against an eval split. */
export interface OverlapRow {
  corpus_split: Split;
  eval_split: string;
  status: string; // 'ok', or 'absent: <files>' when the eval data is not there
  corpus_docs: number;
  docs_sharing: number; // corpus documents sharing at least one n-gram with the eval split
  docs_sharing_share: number; // docs_sharing / corpus_docs
  eval_ngrams: number; // distinct n-grams of the eval split
  eval_ngrams_in_corpus: number; // of them, those that occur in the corpus split
  eval_ngrams_share: number;
}
export const OVERLAP_COLUMNS = [
  'corpus_split', 'eval_split', 'n', 'status', 'corpus_docs', 'docs_sharing', 'docs_sharing_share', 'eval_ngrams', 'eval_ngrams_in_corpus', 'eval_ngrams_share',
] as const;

/** The overlap of every corpus split (its documents) with every eval split (null = absent). */
export function overlapReport(
  splits: Record<Split, readonly string[]>,
  evals: readonly { split: EvalSplit; ngrams: EvalNgrams | null }[],
  n = NGRAM_DEFAULT,
): OverlapRow[] {
  const rows: OverlapRow[] = [];
  for (const [split, docs] of Object.entries(splits) as [Split, readonly string[]][]) {
    const docHashes = docs.map((d) => ngramHashes(words(d), n));
    const all = new Set(docHashes.flat());
    for (const { split: es, ngrams } of evals) {
      if (!ngrams) {
        rows.push({ corpus_split: split, eval_split: es.name, status: `absent: ${es.files.join(' | ')}`, corpus_docs: docs.length, docs_sharing: NaN, docs_sharing_share: NaN, eval_ngrams: NaN, eval_ngrams_in_corpus: NaN, eval_ngrams_share: NaN });
        continue;
      }
      const sharing = docHashes.filter((hs) => hs.some((h) => ngrams.ngrams.has(h))).length;
      let inCorpus = 0;
      for (const h of ngrams.ngrams) if (all.has(h)) inCorpus++;
      rows.push({
        corpus_split: split, eval_split: es.name, status: 'ok', corpus_docs: docs.length,
        docs_sharing: sharing, docs_sharing_share: docs.length ? sharing / docs.length : 0,
        eval_ngrams: ngrams.ngrams.size, eval_ngrams_in_corpus: inCorpus, eval_ngrams_share: ngrams.ngrams.size ? inCorpus / ngrams.ngrams.size : 0,
      });
    }
  }
  return rows;
}

/** Every eval split of evalSplits() with its n-grams under dataRoot (null where its data is absent). */
export function loadEvals(dataRoot: string, n = NGRAM_DEFAULT): { split: EvalSplit; ngrams: EvalNgrams | null }[] {
  if (!fs.existsSync(dataRoot)) throw new Error(`datasets folder ${dataRoot} does not exist (pass --data DIR, or set LLMCB_SHARED)`);
  return evalSplits().map((split) => ({ split, ngrams: loadEvalNgrams(dataRoot, split, n) }));
}

function num(x: number, digits = 6): string {
  return Number.isNaN(x) ? '' : Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

export const REPORT_CSV = 'contamination.csv';
export const REPORT_MD = 'contamination.md';

/**
 * The contamination report of a built corpus directory against the datasets under dataRoot: the
 * CSV (OVERLAP_COLUMNS, one row per corpus split x eval split) and a short markdown card.
 */
export function contaminationReport(corpusDir: string, dataRoot: string, n = NGRAM_DEFAULT): { rows: OverlapRow[]; csv: string; md: string } {
  const manifest = readCorpusManifest(corpusDir);
  if (!manifest) throw new Error(`${corpusDir}: no corpus.json (build the corpus with scripts/build-corpus.ts first)`);
  const splits = Object.fromEntries(SPLITS.map((s) => [s, splitDocuments(readCorpusSplit(corpusDir, s))])) as Record<Split, string[]>;
  const evals = loadEvals(dataRoot, n);
  const rows = overlapReport(splits, evals, n);
  const csv = formatCsv(OVERLAP_COLUMNS, rows.map((r) => [
    r.corpus_split, r.eval_split, String(n), r.status, String(r.corpus_docs), num(r.docs_sharing), num(r.docs_sharing_share),
    num(r.eval_ngrams), num(r.eval_ngrams_in_corpus), num(r.eval_ngrams_share),
  ]));
  const ok = rows.filter((r) => r.status === 'ok');
  const sharing = ok.filter((r) => r.docs_sharing > 0);
  const absent = [...new Set(rows.filter((r) => r.status !== 'ok').map((r) => r.eval_split))];
  const dropped = manifest.decontamination?.dropped ?? [];
  const lines = [
    `# Contamination report: corpus '${manifest.name}'`,
    '',
    `Word ${n}-gram overlap (lower-case runs of letters and digits) of each corpus split with each evaluation split`,
    `(\`${REPORT_CSV}\`: documents sharing any ${n}-gram, and the share of the evaluation split's distinct ${n}-grams found in the corpus split).`,
    `Written by \`npx tsx scripts/contamination-report.ts --corpus ${path.relative(REPO_ROOT, path.resolve(corpusDir))}\`.`,
    '',
    `- Corpus: ${SPLITS.map((s) => `${s} ${splits[s].length} documents`).join(', ')}.`,
    `- Evaluation splits compared: ${[...new Set(ok.map((r) => r.eval_split))].join(', ') || 'none'}.`,
    `- Absent here (not compared): ${absent.join(', ') || 'none'}.`,
    `- Corpus documents sharing an n-gram with an evaluation split: ${sharing.length === 0 ? 'none' : sharing.map((r) => `${r.corpus_split}/${r.eval_split} ${r.docs_sharing}`).join(', ')}.`,
    `- Dropped when the corpus was built (${manifest.decontamination ? manifest.decontamination.rule : 'no decontamination recorded'}): ${dropped.length} documents` +
      (dropped.length ? ` (${summariseDropped(dropped)}); the ids are in corpus.json.` : '.'),
    '',
  ];
  return { rows, csv, md: lines.join('\n') };
}

/** "wikitext2-test 12, mmlu 3" from the dropped list: documents per eval split met. */
function summariseDropped(dropped: readonly { id: string; evals: string[] }[]): string {
  const count = new Map<string, number>();
  for (const d of dropped) for (const e of d.evals) count.set(e, (count.get(e) ?? 0) + 1);
  return [...count].map(([e, c]) => `${e} ${c}`).join(', ');
}
