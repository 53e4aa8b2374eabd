// Non-finite logits, log-likelihoods, losses and weights are errors naming model, method and step;
// a model with NaN/Inf weights never gets an ok row through the runner.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dataOptions } from '../lib/data/common';
import { evaluate } from '../lib/eval/evaluate';
import { assertFinite, assertFiniteWeights, NonFiniteError } from '../lib/eval/finite';
import { type Scorer, TensorScorer } from '../lib/eval/scorer';
import { REPO_ROOT } from '../lib/cli';
import { smokeMatrix, type MatrixConfig } from '../lib/matrix';
import type { Tokenizer } from '../lib/models/types';
import { readResults, trackFile, type Track } from '../lib/results';
import { initRuntime } from '../lib/runtime';
import { TASKS } from '../lib/tasks';
import { runMatrix } from '../lib/tracks/runner';
import { train } from '../lib/train/trainer';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('assertFinite', () => {
  it('passes finite values and names where, how many and the first bad one', () => {
    expect(() => assertFinite([0, -1e30, 3], 'm × x: step')).not.toThrow();
    expect(() => assertFinite(new Float32Array([1, NaN, Infinity, 2]), 'm × x: step')).toThrow(/^m × x: step: 2 of 4 value\(s\) not finite \(first at index 1: NaN\)$/);
    expect(() => assertFinite([-Infinity], 'w')).toThrow(NonFiniteError);
  });
  it('finds the weight holding a NaN or Infinity', async () => {
    const ok = tf.tensor1d([1, 2, 3]);
    const bad = tf.tensor2d([[1, 2], [Infinity, 4]]);
    await expect(assertFiniteWeights({ weights: new Map([['a', ok]]) }, 'm × x: loaded weights')).resolves.toBeUndefined();
    await expect(assertFiniteWeights({ weights: new Map<string, tf.Tensor>([['a', ok], ['b.weight', bad]]) }, 'm × x: loaded weights')).rejects.toThrow(
      /^m × x: loaded weights: weight 'b.weight': 1 of 4 value\(s\) not finite \(first at index 2: Infinity\)$/,
    );
    tf.dispose([ok, bad]);
  });
});

describe('scoring', () => {
  it('TensorScorer: NaN logits are an error naming the label and the step, not a log-probability', async () => {
    const V = 5;
    const table = tf.tensor2d(Array.from({ length: V }, (_, i) => Array.from({ length: V }, (_, j) => (i === 3 && j === 1 ? NaN : Math.sin(i + 2 * j)))));
    const scorer = new TensorScorer((ids) => tf.gather(table, ids) as unknown as tf.Tensor3D, V, 16, { label: 'tiny × nan' });
    const good = await scorer.continuations([{ context: [0], continuation: [1, 2] }]);
    expect(Number.isFinite(good[0].logprob)).toBe(true);
    await expect(scorer.continuations([{ context: [0], continuation: [3, 4] }])).rejects.toThrow(/^tiny × nan: scoring 1 sequence\(s\) of 2 tokens: logits \(sum per scored position\): 1 of 2 value\(s\) not finite \(first at index 1: NaN\)$/);
    await expect(scorer.nextToken([{ context: [2, 3], candidates: [0, 1] }])).rejects.toThrow(NonFiniteError);
    table.dispose();
  });

  const ALPHABET = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;?!\'"-_()\n|';
  const charTok: Tokenizer = {
    vocabSize: ALPHABET.length + 3,
    bosId: 1,
    eosId: 2,
    encode: (text, o) => [...(o?.bos ? [1] : []), ...[...text].map((c) => ALPHABET.indexOf(c) + 3)],
    decode: (ids) => ids.map((i) => ALPHABET[i - 3] ?? '').join(''),
  };
  /** A scorer whose every log-probability is NaN (what a NaN model gives through any backend). */
  const nanScorer: Scorer = {
    maxLength: 1000,
    continuations: async (reqs) => reqs.map((r) => ({ logprob: NaN, greedy: false, truncated: 0, tokens: r.continuation.length, unscored: 0 })),
    nextToken: async (reqs) => reqs.map((r) => ({ logprobs: r.candidates.map(() => NaN), truncated: 0 })),
  };
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-finite-'));
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  };
  put('mmlu/test/anatomy_test.csv', 'Q1,a,b,c,d,A\nQ2,a,b,c,d,B\n');
  put('arc/ARC-Easy-Test.jsonl', JSON.stringify({ id: 'a', question: { stem: 'q', choices: [{ text: 'yes', label: 'A' }, { text: 'no', label: 'B' }] }, answerKey: 'A' }) + '\n');
  put('wikitext-2-raw/wiki.test.raw', 'abcdefghij\nklmnopq\n');
  const data = dataOptions({ dataDir: root, hub: false });

  it('evaluate(): NaN log-probabilities from any scorer fail the task (a NaN letter score would still give an accuracy)', async () => {
    const label = 'stories260K × wanda-50%';
    await expect(evaluate(nanScorer, charTok, TASKS.mmlu, { data, label })).rejects.toThrow(/^stories260K × wanda-50%: mmlu letter log-probabilities: 8 of 8 value\(s\) not finite/);
    await expect(evaluate(nanScorer, charTok, TASKS.arc_easy, { data, label })).rejects.toThrow(/^stories260K × wanda-50%: arc_easy choice log-likelihoods/);
    await expect(evaluate(nanScorer, charTok, TASKS.wikitext2, { data, label, seqlen: 4 })).rejects.toThrow(/^stories260K × wanda-50%: wikitext2 window log-likelihoods/);
  });

  it('evaluate(): an infinite perplexity (finite but huge log-likelihoods) fails the aggregation', async () => {
    const huge: Scorer = { ...nanScorer, continuations: async (reqs) => reqs.map((r) => ({ logprob: -1e308, greedy: false, truncated: 0, tokens: r.continuation.length, unscored: 0 })) };
    await expect(evaluate(huge, charTok, TASKS.wikitext2, { data, label: 'm × x', seqlen: 4 })).rejects.toThrow(/^m × x: wikitext2 metrics: /);
  });
});

describe('training', () => {
  it('a NaN loss stops training with an error naming the label and the steps', async () => {
    const w = tf.variable(tf.tensor1d([1, 2]));
    const before = tf.memory().numTensors;
    let calls = 0;
    const task = {
      params: new Map([['w', w]]),
      tokensPerBatch: 1,
      data: { next: () => calls++, getState: () => calls, setState: () => undefined },
      // finite for three steps, then NaN
      loss: (k: number) => tf.tidy(() => (k < 3 ? tf.sum(tf.square(w)) : tf.mul(tf.sum(w), NaN)) as tf.Scalar),
    };
    await expect(train(task, { steps: 10, logEvery: 2, lr: 0.01, warmupSteps: 0, label: 'toy × pretraining' })).rejects.toThrow(
      /^toy × pretraining: training loss over steps 3-4: 1 of 1 value\(s\) not finite \(first at index 0: NaN\)$/,
    );
    expect(tf.memory().numTensors).toBe(before);
    w.dispose();
  });
});

describe('runner', () => {
  /** A copy of stories260K (llama2.c, tokenizer beside it) with NaN in the first block's norm and an Infinity in a linear. */
  function nanModel(dir: string): string {
    const src = path.join(REPO_ROOT, 'models/stories260K');
    const buf = fs.readFileSync(path.join(src, 'stories260K.bin'));
    const f = new Float32Array(buf.buffer, buf.byteOffset + 28, (buf.length - 28) / 4);
    f[512 * 64] = NaN; // after the 512 × 64 embedding: the first block's attention RMSNorm
    f[512 * 64 + 5 * 64 + 7] = Infinity; // the first block's wq
    fs.writeFileSync(path.join(dir, 'stories-nan.bin'), buf);
    fs.copyFileSync(path.join(src, 'tok512.bin'), path.join(dir, 'tok512.bin'));
    return path.join(dir, 'stories-nan.bin');
  }

  it('a model with NaN/Inf weights gets no ok row on any track; every cell fails with the reason', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-nanrun-'));
    const mx: MatrixConfig = smokeMatrix();
    mx.models = [{ id: 'stories-nan', path: nanModel(out) }];
    mx.tracks = [1, 2, 3, 4];
    mx.tasks = ['wikitext2'];
    mx.methods = [
      { id: 'dense', method: 'dense', config: {} },
      { id: 'rtn-w8', method: 'rtn', config: { bits: 8 } },
    ];
    mx.inference = { ...mx.inference, promptTokens: 8, newTokens: 4, macSeqlen: 32 };
    const before = tf.memory().numTensors;
    const s = await runMatrix(mx, { out, log: () => undefined, dataDir: null, hub: false });
    expect(tf.memory().numTensors).toBe(before);
    expect(s.failed.map((f) => f.cell)).toEqual(['stories-nan × dense (loading and compressing)', 'stories-nan × rtn-w8 (loading and compressing)']);
    const rows = ([1, 2, 3, 4] as Track[]).flatMap((t) => readResults(trackFile(t, out)));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((r) => r.status === 'ok')).toEqual([]);
    expect(rows.every((r) => r.status === 'not_run' && /stories-nan × (dense|rtn-w8): loaded weights: weight '[^']+': 1 of \d+ value\(s\) not finite/.test(r.note))).toBe(true);
    fs.rmSync(out, { recursive: true, force: true });
  }, 120_000);
});
