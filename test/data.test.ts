// Dataset loaders: every format parsed from tiny literal files, malformed files rejected with the
// file and line, absent datasets reported as 'no data', and the local copies in ../shared/datasets
// read in full (skipped with a reason when that directory is absent).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import * as d from '../lib/data';

function tree(files: Record<string, string>): d.DataOptions {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-data-'));
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  }
  return d.dataOptions({ dataDir: root, hub: false });
}

const ok = <T>(r: d.LoadResult<T>): T[] => {
  if (r.status !== 'ok') throw new Error(r.reason);
  return r.docs;
};

describe('parsing each format', () => {
  it('WikiText-2: lines without the final empty one, joined with a blank line', async () => {
    const docs = ok(await d.loadWikiText2(tree({ 'wikitext-2-raw/wiki.test.raw': ' \n = A = \n\n x\n' })));
    expect(docs).toEqual([{ text: ' \n\n = A = \n\n\n\n x', rows: 4 }]);
  });
  it('MMLU: subjects sorted, quoted CSV fields, answer letter → index', async () => {
    const docs = ok(
      await d.loadMmlu(tree({ 'mmlu/test/b_test.csv': 'q2,1,2,3,4,D\n', 'mmlu/test/a_test.csv': '"q1, with comma","x ""y""",b,c,d,A\n' })),
    );
    expect(docs).toEqual([
      { subject: 'a', question: 'q1, with comma', choices: ['x "y"', 'b', 'c', 'd'], answer: 0 },
      { subject: 'b', question: 'q2', choices: ['1', '2', '3', '4'], answer: 3 },
    ]);
  });
  it('ARC: numeric labels, answerKey → index', async () => {
    const line = { id: 'i', question: { stem: 'S', choices: ['a', 'b', 'c'].map((t, k) => ({ text: t, label: String(k + 1) })) }, answerKey: '3' };
    expect(ok(await d.loadArc(tree({ 'arc/ARC-Easy-Test.jsonl': JSON.stringify(line) + '\n' }), 'ARC-Easy'))).toEqual([
      { id: 'i', question: 'S', choices: ['a', 'b', 'c'], answer: 2 },
    ]);
  });
  it('HellaSwag text dump: 6 lines per item', async () => {
    const docs = ok(await d.loadHellaSwag(tree({ 'hellaswag/hellaswag_val_full.txt': 'Act: ctx\n2\ne0\ne1\ne2\ne3\n' })));
    expect(docs).toEqual([{ query: 'Act: ctx', endings: ['e0', 'e1', 'e2', 'e3'], answer: 2 }]);
  });
  it('HellaSwag hub preprocessing as lm-eval', () => {
    // Python: strip, replace every ' [title]', drop [tags], then one pass of '  ' → ' ' (3 spaces leave 2)
    expect(d.hellaswagPreprocess(' Foo [title] bar [step]  baz [title]x ')).toBe('Foo. bar  baz. x');
  });
  it('PIQA: jsonl + labels', async () => {
    const docs = ok(await d.loadPiqa(tree({ 'piqa/valid.jsonl': '{"goal":"g","sol1":"a","sol2":"b"}\n', 'piqa/valid-labels.lst': '1\n' })));
    expect(docs).toEqual([{ goal: 'g', choices: ['a', 'b'], answer: 1 }]);
  });
  it('WinoGrande: local jsonl', async () => {
    const docs = ok(await d.loadWinogrande(tree({ 'winogrande/dev.jsonl': '{"sentence":"A _ b.","option1":"x","option2":"y","answer":"2"}\n' })));
    expect(docs).toEqual([{ sentence: 'A _ b.', options: ['x', 'y'], answer: 1 }]);
  });
  it('QNLI tsv and MNLI tsv/jsonl (items without gold label dropped and counted)', async () => {
    expect(ok(await d.loadQnli(tree({ 'qnli/dev.tsv': 'index\tquestion\tsentence\tlabel\n0\tq\ts\tnot_entailment\n' })))).toEqual([
      { question: 'q', sentence: 's', label: 1 },
    ]);
    const r = await d.loadMnli(
      tree({
        'mnli/multinli_1.0_dev_mismatched.jsonl':
          '{"gold_label":"neutral","sentence1":"p","sentence2":"h"}\n{"gold_label":"-","sentence1":"p2","sentence2":"h2"}\n',
      }),
      'mismatched',
    );
    expect(r.status === 'ok' && r.docs).toEqual([{ premise: 'p', hypothesis: 'h', label: 1 }]);
    expect(r.status === 'ok' && r.notes).toEqual(["1 items without a gold label ('-') dropped"]);
    const t = await d.loadMnli(tree({ 'mnli/dev_matched.tsv': 'sentence1\tsentence2\tgold_label\np\th\tcontradiction\n' }), 'matched');
    expect(t.status === 'ok' && t.docs[0].label).toBe(2);
  });
  it('AdvGLUE: adversarial and original text per field', async () => {
    const json = { rte: [{ idx: 0, sentence1: 'adv', original_sentence1: 'orig', sentence2: 's2', label: 0 }], sst2: [{ sentence: 's', label: 1 }] };
    const docs = ok(await d.loadAdvGlue(tree({ 'advglue/dev_ann.json': JSON.stringify(json) })));
    expect(docs.map((x) => [x.subtask, x.adv, x.orig, x.hasOriginal, x.label])).toEqual([
      ['sst2', { sentence: 's' }, { sentence: 's' }, false, 1],
      ['rte', { sentence1: 'adv', sentence2: 's2' }, { sentence1: 'orig', sentence2: 's2' }, true, 0],
    ]);
  });
  it("TruthfulQA CSV: BOM, answers split on ';' and closed with '.'", async () => {
    const csv = '\ufeffType,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\nA,B,Q?,Yes,Yes; Sure.,No; Never ;,s\n';
    expect(ok(await d.loadTruthfulQA(tree({ 'truthfulqa/TruthfulQA.csv': csv })))).toEqual([
      { question: 'Q?', mc1: ['Yes.', 'No.', 'Never.'], mc2True: ['Yes.', 'Sure.'], mc2False: ['No.', 'Never.'] },
    ]);
  });
});

describe('malformed files name the file and line', () => {
  const expectError = async (p: Promise<unknown>, re: RegExp) => {
    await expect(p).rejects.toThrow(d.DatasetError);
    await expect(p).rejects.toThrow(re);
  };
  it('bad CSV row (MMLU: wrong field count, bad answer letter)', async () => {
    await expectError(d.loadMmlu(tree({ 'mmlu/test/x_test.csv': 'q,a,b,c,d,A\nq,a,b,c,A\n' })), /x_test\.csv:2: 5 fields, expected 6/);
    await expectError(d.loadMmlu(tree({ 'mmlu/test/x_test.csv': 'q,a,b,c,d,E\n' })), /x_test\.csv:1: answer "E" is not one of A, B, C, D/);
  });
  it('missing or short label file (PIQA)', async () => {
    await expectError(d.loadPiqa(tree({ 'piqa/valid.jsonl': '{"goal":"g","sol1":"a","sol2":"b"}\n' })), /valid-labels\.lst: missing label file/);
    await expectError(
      d.loadPiqa(tree({ 'piqa/valid.jsonl': '{"goal":"g","sol1":"a","sol2":"b"}\n{"goal":"g","sol1":"a","sol2":"b"}\n', 'piqa/valid-labels.lst': '0\n' })),
      /valid-labels\.lst:2: 1 labels for 2 items/,
    );
    await expectError(d.loadPiqa(tree({ 'piqa/valid.jsonl': '{"goal":"g","sol1":"a","sol2":"b"}\n', 'piqa/valid-labels.lst': '2\n' })), /valid-labels\.lst:1: label "2"/);
  });
  it('wrong JSON shape (ARC jsonl, AdvGLUE json)', async () => {
    await expectError(d.loadArc(tree({ 'arc/ARC-Challenge-Test.jsonl': '{"id":"a"}\n' }), 'ARC-Challenge'), /ARC-Challenge-Test\.jsonl:1: field 'question' must be an object/);
    await expectError(d.loadArc(tree({ 'arc/ARC-Challenge-Test.jsonl': '{"id":\n' }), 'ARC-Challenge'), /ARC-Challenge-Test\.jsonl:1: invalid JSON/);
    await expectError(d.loadArc(tree({ 'arc/ARC-Challenge-Test.jsonl': '{"id":"a"}\n[1]\n' }), 'ARC-Challenge'), /ARC-Challenge-Test\.jsonl:2: expected a JSON object/);
    const q = { stem: 's', choices: [{ text: 'a', label: 'A' }, { text: 'b', label: 'B' }] };
    await expectError(d.loadArc(tree({ 'arc/ARC-Challenge-Test.jsonl': `\n${JSON.stringify({ question: q, answerKey: 'C' })}\n` }), 'ARC-Challenge'), /:2: answerKey 'C' is not a choice label/);
    await expectError(d.loadAdvGlue(tree({ 'advglue/dev_ann.json': '[1,2]' })), /dev_ann\.json: expected a JSON object keyed by subtask/);
    await expectError(d.loadAdvGlue(tree({ 'advglue/dev_ann.json': '{"sst2":[{"sentence":"s","label":7}]}' })), /sst2\[0\].*'label' must be an integer in \[0, 1\]/);
    await expectError(d.loadAdvGlue(tree({ 'advglue/dev_ann.json': '{"cola":[]}' })), /unknown subtask key\(s\) cola/);
  });
  it('bad TSV row and labels (QNLI, MNLI)', async () => {
    await expectError(d.loadQnli(tree({ 'qnli/dev.tsv': 'index\tquestion\tsentence\tlabel\n0\tq\ts\n' })), /dev\.tsv:2: 3 tab-separated fields, header has 4/);
    await expectError(d.loadQnli(tree({ 'qnli/dev.tsv': 'index\tquestion\tsentence\tlabel\n0\tq\ts\tmaybe\n' })), /dev\.tsv:2: label "maybe"/);
    await expectError(d.loadQnli(tree({ 'qnli/dev.tsv': 'index\tq\tsentence\tlabel\n0\tq\ts\tentailment\n' })), /dev\.tsv:1: missing column\(s\) question/);
  });
  it('HellaSwag dump with a broken item, WinoGrande without a blank, TruthfulQA with a bad row', async () => {
    await expectError(d.loadHellaSwag(tree({ 'hellaswag/hellaswag_val_full.txt': 'c\n9\na\nb\nc\nd\n' })), /hellaswag_val_full\.txt:2: gold label "9"/);
    await expectError(d.loadHellaSwag(tree({ 'hellaswag/hellaswag_val_full.txt': 'c\n1\na\nb\nc\n' })), /5 lines is not a multiple of 6/);
    await expectError(d.loadWinogrande(tree({ 'winogrande/dev.jsonl': '{"sentence":"no blank","option1":"x","option2":"y","answer":"1"}\n' })), /dev\.jsonl:1: sentence must contain exactly one '_'/);
    const hdr = 'Type,Category,Question,Best Answer,Correct Answers,Incorrect Answers,Source\n';
    await expectError(d.loadTruthfulQA(tree({ 'truthfulqa/TruthfulQA.csv': `${hdr}A,B,Q,Best,Other,Wrong,s\n` })), /TruthfulQA\.csv:2: Best Answer "Best\." is not among/);
    await expect(d.loadTruthfulQA(tree({ 'truthfulqa/TruthfulQA.csv': `${hdr}A,B,Q,"unterminated\n` }))).rejects.toThrow(/TruthfulQA\.csv:2: unterminated quoted field/);
  });
});

describe('absent data is reported, not invented', () => {
  it('every loader returns no_data with the places it tried', async () => {
    const o = tree({});
    for (const r of [await d.loadWinogrande(o), await d.loadMnli(o, 'matched'), await d.loadPiqa(o), await d.loadMmlu(o), await d.loadAdvGlue(o)]) {
      expect(r.status).toBe('no_data');
      if (r.status === 'no_data') expect(r.reason).toMatch(/not found \(local: no .+; hub/);
    }
  });
  it('an unreachable hub is a no_data reason, not a crash', async () => {
    const o = { ...tree({}), hub: true, hubTimeoutMs: 2000 };
    const saved = globalThis.fetch;
    globalThis.fetch = (async () => {
      throw new Error('getaddrinfo ENOTFOUND huggingface.co');
    }) as typeof fetch;
    try {
      const r = await d.loadMnli(o, 'mismatched');
      expect(r.status).toBe('no_data');
      if (r.status === 'no_data') expect(r.reason).toMatch(/hub:nyu-mll\/glue@refs\/convert\/parquet\/mnli\/validation_mismatched\/0000\.parquet: .*ENOTFOUND|fetch failed/);
    } finally {
      globalThis.fetch = saved;
    }
  });
  it('no data directory at all', async () => {
    const r = await d.loadQnli(d.dataOptions({ dataDir: null, hub: false }));
    expect(r.status === 'no_data' && r.reason).toMatch(/local: no data directory given/);
  });
});

const SHARED = path.resolve(process.env.LLMCB_SHARED ?? path.resolve(__dirname, '../../shared'), 'datasets');
const haveShared = fs.existsSync(SHARED);

describe.skipIf(!haveShared)(`the local copies in ${SHARED}`, () => {
  const o = d.dataOptions({ dataDir: SHARED, hub: false });
  it('item counts match the datasets README', async () => {
    const n = async (p: Promise<d.LoadResult<unknown>>) => {
      const r = await p;
      return r.status === 'ok' ? r.docs.length : r.status;
    };
    expect(await n(d.loadMmlu(o))).toBe(14042);
    expect(await n(d.loadMmlu(o, 'dev'))).toBe(285);
    expect(await n(d.loadArc(o, 'ARC-Challenge'))).toBe(1172);
    expect(await n(d.loadArc(o, 'ARC-Easy'))).toBe(2376);
    expect(await n(d.loadHellaSwag(o))).toBe(10042);
    expect(await n(d.loadPiqa(o))).toBe(1838);
    expect(await n(d.loadQnli(o))).toBe(5463);
    expect(await n(d.loadAdvGlue(o))).toBe(738);
    expect(await n(d.loadTruthfulQA(o))).toBe(817);
    expect(await n(d.loadWinogrande(o))).toBe('no_data');
    expect(await n(d.loadMnli(o, 'matched'))).toBe('no_data');
    const wt = await d.loadWikiText2(o);
    expect(wt.status === 'ok' && wt.docs[0].rows).toBe(4358);
  });
});
if (!haveShared) console.warn(`data.test: ${SHARED} absent, local-copy checks skipped`);
