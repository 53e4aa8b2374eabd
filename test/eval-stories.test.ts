// Independent checks of the evaluator on the embedded stories260K (shared/reference/stories260K):
// the WikiText-2 test tokenization equals the reference test_ids; per-request log-likelihoods
// equal transformers' (fixture made by scripts/py/eval_mc_reference.py on the GPU host); the full
// 1589-window perplexity is within 0.1% of the reference dense value (LLMCB_FULL_EVAL=1: about a
// minute on one core with the wasm SIMD kernels, seconds on the GPU).
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCsvRecords } from '../lib/csv';
import { dataOptions } from '../lib/data/common';
import { loadWikiText2 } from '../lib/data/wikitext';
import { evaluate } from '../lib/eval/evaluate';
import { modelScorer } from '../lib/eval/model-scorer';
import type { ContinuationRequest, NextTokenRequest } from '../lib/eval/scorer';
import { disposeModel, loadModel } from '../lib/models/load';
import type { Model } from '../lib/models/types';
import { initRuntime } from '../lib/runtime';
import { TASKS } from '../lib/tasks';

const repo = path.resolve(__dirname, '..');
const SHARED = process.env.LLMCB_SHARED ?? path.resolve(repo, '../shared');
const REF = path.join(SHARED, 'reference/stories260K');
const DATA = path.join(SHARED, 'datasets');
const haveRef = fs.existsSync(path.join(REF, 'wikitext2_test_tok512.json')) && fs.existsSync(path.join(DATA, 'wikitext-2-raw'));
const REQS = path.join(repo, 'test/fixtures/eval/mc_requests_stories260K.json');
const HF = path.join(repo, 'test/fixtures/eval/mc_reference_stories260K.json');
const FULL = process.env.LLMCB_FULL_EVAL === '1';
const BACKEND = (process.env.LLMCB_TEST_BACKEND ?? 'wasm') as 'wasm' | 'webgpu' | 'cpu';

if (!haveRef) console.warn(`eval-stories.test: ${REF} or ${DATA} absent, reference checks skipped`);
if (!fs.existsSync(HF)) console.warn(`eval-stories.test: ${HF} absent (run scripts/py/eval_mc_reference.py on the GPU host), transformers comparison skipped`);
if (!FULL) console.warn('eval-stories.test: full 1589-window perplexity skipped (set LLMCB_FULL_EVAL=1)');

let model: Model;
beforeAll(async () => {
  const rt = await initRuntime({ backend: BACKEND });
  expect(rt.backend).toBe(BACKEND);
  model = await loadModel(path.join(repo, 'models/stories260K/stories260K.bin'));
});
afterAll(() => disposeModel(model));

interface Exported {
  continuations: (ContinuationRequest & { logprob: number; greedy: boolean })[];
  nextToken: (NextTokenRequest & { logprobs: number[] })[];
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);

describe.skipIf(!haveRef)('WikiText-2 under the reference protocol', () => {
  it('the kit tokenizes the test split to exactly test_ids', async () => {
    const ref = JSON.parse(fs.readFileSync(path.join(REF, 'wikitext2_test_tok512.json'), 'utf8')) as { test_ids: number[] };
    const data = await loadWikiText2(dataOptions({ dataDir: DATA, hub: false }));
    if (data.status !== 'ok') throw new Error(data.reason);
    expect(data.docs[0].rows).toBe(4358);
    const ids = model.tokenizer.encode(TASKS.wikitext2.docToText(data.docs[0]));
    expect(ids.length).toBe(813645);
    expect(ids.length).toBe(ref.test_ids.length);
    const firstDiff = ids.findIndex((x, i) => x !== ref.test_ids[i]);
    expect(firstDiff).toBe(-1);
  });

  it.skipIf(!FULL)(
    'perplexity over all 1589 windows of 512 is within 0.1% of the reference dense value',
    async () => {
      const refRows = parseCsvRecords(fs.readFileSync(path.join(REF, 'reference_ppl.csv'), 'utf8'), 'reference_ppl.csv');
      const dense = Number(refRows.find((r) => r.method === 'dense')!.wikitext2_ppl);
      const before = tf.memory().numTensors;
      const o = await evaluate(modelScorer(model), model.tokenizer, TASKS.wikitext2, { data: dataOptions({ dataDir: DATA, hub: false }), seqlen: 512 });
      expect(tf.memory().numTensors).toBe(before);
      const r = o.results[0];
      expect(r.n).toBe(1589);
      expect(o.notes).toContain('predicted=811979'); // 1589 × 511
      console.log(`stories260K WikiText-2 PPL ${r.value} (reference ${dense}), ${o.durationS.toFixed(1)} s on ${BACKEND}`);
      expect(relDiff(r.value!, dense)).toBeLessThan(1e-3);
    },
    3_600_000,
  );
});

describe('per-request log-likelihoods of the exported multiple-choice sample', () => {
  const exported = JSON.parse(fs.readFileSync(REQS, 'utf8')) as Exported;

  it('recomputing the exported requests in one batch gives the exported values (batching invariance)', async () => {
    const scorer = modelScorer(model, { maxBatchTokens: 4096 });
    const before = tf.memory().numTensors;
    const cont = await scorer.continuations(exported.continuations);
    const next = await scorer.nextToken(exported.nextToken);
    expect(tf.memory().numTensors).toBe(before);
    cont.forEach((c, k) => expect(relDiff(c.logprob, exported.continuations[k].logprob)).toBeLessThan(1e-5));
    next.forEach((n, k) => n.logprobs.forEach((x, j) => expect(relDiff(x, exported.nextToken[k].logprobs[j])).toBeLessThan(1e-5)));
    expect(exported.continuations.length).toBeGreaterThan(50);
    expect(exported.nextToken.length).toBeGreaterThan(10);
  });

  it.skipIf(!fs.existsSync(HF))('match transformers on the HF conversion (relative difference < 1e-4)', async () => {
    const hf = JSON.parse(fs.readFileSync(HF, 'utf8')) as { continuations: { logprob: number; greedy: boolean }[]; nextToken: { logprobs: number[] }[] };
    expect(hf.continuations).toHaveLength(exported.continuations.length);
    expect(hf.nextToken).toHaveLength(exported.nextToken.length);
    const scorer = modelScorer(model);
    const cont = await scorer.continuations(exported.continuations);
    const next = await scorer.nextToken(exported.nextToken);
    let worst = 0;
    cont.forEach((c, k) => {
      worst = Math.max(worst, relDiff(c.logprob, hf.continuations[k].logprob));
      expect(relDiff(c.logprob, hf.continuations[k].logprob)).toBeLessThan(1e-4);
    });
    next.forEach((n, k) =>
      n.logprobs.forEach((x, j) => {
        worst = Math.max(worst, relDiff(x, hf.nextToken[k].logprobs[j]));
        expect(relDiff(x, hf.nextToken[k].logprobs[j])).toBeLessThan(1e-4);
      }),
    );
    console.log(`kit vs transformers: worst relative difference ${worst.toExponential(2)} over ${cont.length} + ${next.length} requests`);
  });
});
