// The zoo's English corpus (data/zoo/corpus-en): Brown parsing and normalisation, the hash split,
// decontamination on a tiny synthetic case, and the committed contamination report equal to what
// the script writes on the committed corpus (where ../shared has the datasets).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sharedDir } from '../lib/cli';
import { initRuntime } from '../lib/runtime';
import { pretrain, readZooSummary } from '../lib/train/pretrain';
import {
  DEFAULT_CORPUS_DIR, EN_CORPUS_DIR, HASH_SPLIT_DEFAULTS, SPLITS, hashSplitOf, kjvDocsFromCorpus, normaliseText, parseBrownFile,
  hashSplitRule, nlpCorpusDocs, readCorpusManifest, readCorpusSplit, splitDocuments, type CorpusDoc,
} from '../lib/train/corpus';
import {
  REPORT_CSV, REPORT_MD, contaminationReport, decontaminate, ngramHashes, overlapReport, words, type EvalNgrams,
} from '../lib/train/contamination';

const repo = path.resolve(__dirname, '..');
const enDir = path.join(repo, EN_CORPUS_DIR);

describe('Brown and normalisation', () => {
  it('strips the tags, keeps one sentence mark, detokenises, one paragraph a line', () => {
    const raw = "\n\n\t``/`` Only/rb a/at handful/nn ,/, the/at jury/nn said/vbd ''/'' ;/. ;/.\n\tIt/pps won/vbd 1/2/cd (/( of/in it/ppo )/) ?/. ?/.\n\n\n\tAtlanta's/np$ vote/nn ./.\n";
    const doc = parseBrownFile(raw, 'brown/x');
    expect(doc.text).toBe('"Only a handful, the jury said"; It won 1/2 (of it)?\nAtlanta\'s vote.');
  });

  it('names the file and token that is not word/tag', () => {
    expect(() => parseBrownFile('\tThe/at jury\n', 'brown/bad')).toThrow(/brown\/bad: "jury" is not word\/tag/);
  });

  it('normalises quotes, spaces, control characters and blank lines', () => {
    expect(normaliseText('\u201CHi\u201D,\t  he\u2019s  \r\n\r\n  ``here\'\'\u0007 \n')).toBe('"Hi", he\'s\n"here"');
  });
});

describe('nlp-corpus', () => {
  it('cuts a build file into documents of perDoc sentences, ids by file and chunk', () => {
    const sentences = Array.from({ length: 120 }, (_, i) => `Sentence\n number  ${i}.`);
    const docs = nlpCorpusDocs('/x/builds/doc-7.json', sentences, 50);
    expect(docs.map((d) => d.id)).toEqual(['nlp/doc-7/0', 'nlp/doc-7/1', 'nlp/doc-7/2']);
    expect(docs.map((d) => d.text.split('\n').length)).toEqual([50, 50, 20]);
    expect(docs[2].text.split('\n')[0]).toBe('Sentence number 100.');
    expect(() => nlpCorpusDocs('doc-1.json', { a: 1 })).toThrow(/doc-1\.json: not a JSON array of sentences/);
  });
});

describe('hash split', () => {
  it('follows the stated rule (first 4 bytes of sha256(id) mod 100) and gives about 4% / 4% / 92%', () => {
    const ids = Array.from({ length: 5000 }, (_, i) => `doc/${i}`);
    const count = { train: 0, valid: 0, test: 0 };
    for (const id of ids) {
      const b = createHash('sha256').update(id).digest().readUInt32BE(0) % 100;
      const want = b < HASH_SPLIT_DEFAULTS.validPercent ? 'valid' : b < HASH_SPLIT_DEFAULTS.validPercent + HASH_SPLIT_DEFAULTS.testPercent ? 'test' : 'train';
      expect(hashSplitOf(id)).toBe(want);
      count[want]++;
    }
    expect(count.valid / ids.length).toBeGreaterThan(0.03);
    expect(count.valid / ids.length).toBeLessThan(0.05);
    expect(count.test / ids.length).toBeGreaterThan(0.03);
    expect(count.test / ids.length).toBeLessThan(0.05);
  });
});

describe('decontamination', () => {
  const n = 5;
  const evalText = 'The quick brown fox jumps over the lazy dog near the river bank.';
  const ev: EvalNgrams = { name: 'toy-eval', files: [], ngrams: new Set(ngramHashes(words(evalText), n)) };
  const docs: CorpusDoc[] = [
    { id: 'a', text: 'Once upon a time THE QUICK, brown fox -- jumps over a fence.' }, // shares "the quick brown fox jumps" (case and punctuation differ)
    { id: 'b', text: 'A quick brown fox jumps over the moon.' }, // "quick brown fox jumps over" is a 5-gram of the eval text too
    { id: 'c', text: 'the quick brown fox sleeps; the lazy dog near' }, // 4-word runs only
  ];

  it('drops exactly the documents sharing an n-gram, naming the eval split', () => {
    const r = decontaminate(docs, [ev], n);
    expect(r.dropped).toEqual([{ id: 'a', evals: ['toy-eval'] }, { id: 'b', evals: ['toy-eval'] }]);
    expect(r.kept.map((d) => d.id)).toEqual(['c']);
  });

  it('the report counts them before the drop and none after', () => {
    const evals = [{ split: { name: 'toy-eval', files: [] }, ngrams: ev }];
    const before = overlapReport({ train: docs.map((d) => d.text), valid: [], test: [] }, evals, n);
    expect(before[0]).toMatchObject({ corpus_split: 'train', eval_split: 'toy-eval', status: 'ok', corpus_docs: 3, docs_sharing: 2 });
    expect(before[0].eval_ngrams_in_corpus).toBe(3); // "the quick brown fox jumps", "quick brown fox jumps over", "brown fox jumps over the"
    const kept = decontaminate(docs, [ev], n).kept;
    const after = overlapReport({ train: kept.map((d) => d.text), valid: [], test: [] }, evals, n);
    expect(after[0]).toMatchObject({ corpus_docs: 1, docs_sharing: 0, eval_ngrams_in_corpus: 0 });
  });
});

describe('the committed English corpus', () => {
  const m = readCorpusManifest(enDir)!;

  it('has its splits as corpus.json says (sha256 checked on read), no tag residue, no blank line in a document', () => {
    expect(m.name).toBe('en');
    for (const s of SPLITS) {
      const text = readCorpusSplit(enDir, s);
      const docs = splitDocuments(text);
      expect(docs.length).toBe(m.files[s].docs);
      expect(docs.every((d) => d.trim() !== '' && !d.includes('\n\n'))).toBe(true);
      expect(text).not.toMatch(/[A-Za-z]\/(at|nn|nns|np|in|jj|vbd|vbn|cc|rb|pps)(-tl|-hl)?\b/);
      expect(text).not.toMatch(/``|''/);
    }
    const dropped = m.decontamination!.dropped.length;
    const read = m.sources!.reduce((a, s) => a + s.docs, 0);
    expect(SPLITS.reduce((a, s) => a + m.files[s].docs, 0)).toBe(read - dropped);
  });

  it('reads the KJV chapters back from the kjv corpus in canonical order', () => {
    const ch = kjvDocsFromCorpus(path.join(repo, DEFAULT_CORPUS_DIR));
    expect(ch.length).toBe(1189);
    expect(ch[0].text.startsWith('In the beginning God created the heaven and the earth.')).toBe(true);
    expect(ch[1188].text).toMatch(/The grace of our Lord Jesus Christ be with you all\. Amen\.$/);
  });

  const datasets = path.join(sharedDir(), 'datasets');
  it.skipIf(!fs.existsSync(datasets))(`the committed report is what scripts/contamination-report.ts writes (needs ${datasets})`, () => {
    const r = contaminationReport(enDir, datasets);
    expect(fs.readFileSync(path.join(enDir, REPORT_CSV), 'utf8')).toBe(r.csv);
    expect(fs.readFileSync(path.join(enDir, REPORT_MD), 'utf8')).toBe(r.md);
    const ok = r.rows.filter((x) => x.status === 'ok');
    expect(ok.length).toBeGreaterThan(0);
    expect(ok.filter((x) => x.docs_sharing > 0)).toEqual([]);
  }, 120_000);

  it('the report refuses a folder without corpus.json, naming it', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-nocorpus-'));
    expect(() => contaminationReport(dir, dir)).toThrow(new RegExp(`${dir}: no corpus.json`));
  });
});

describe('the English corpus feeds the trainer (tiny, wasm)', () => {
  it('trains a fresh tokenizer and a tiny LLaMA a few steps; the card names the corpus split and the command', async () => {
    const rt = await initRuntime({ backend: 'wasm' });
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'zoo-en-'));
    const V = 320;
    const r = await pretrain(rt, {
      model: 'llama-tiny', corpusDir: enDir, tokenizerDir: path.join(root, 'tok'), outRoot: root, vocab: V, seqLen: 32, steps: 20, batch: 4,
      logEvery: 10, evalPoints: 1, evalWindows: 2, finalEvalWindows: 16, checkpointEvery: 0, checkpointDir: path.join(root, 'ckpt'),
    }, () => {});
    const first = r.train.curve[0].trainLoss;
    const last = r.train.curve[r.train.curve.length - 1].trainLoss;
    expect(first).toBeLessThan(Math.log(V) + 0.5); // about uniform at the start
    expect(last).toBeLessThan(first); // it learns from the corpus
    expect(r.valid!.ppl).toBeLessThan(V);
    const card = fs.readFileSync(path.join(r.dir!, 'README.md'), 'utf8');
    expect(card).toContain(`Split ${hashSplitRule()}`);
    expect(card).toContain(`--corpus ${enDir}`);
    expect(Number(readZooSummary(root).find((x) => x.metric === 'valid_ppl')!.value)).toBe(r.valid!.ppl);
  }, 180_000);
});
