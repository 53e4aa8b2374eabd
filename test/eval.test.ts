// The evaluator without a model: the batched TensorScorer against a hand-computed bigram model,
// perplexity window accounting, lm-eval pair encoding, statistics, evaluate() end to end on tiny
// datasets with a scripted scorer, and 'no data' outcomes becoming valid rows.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dataOptions } from '../lib/data/common';
import { encodePair, evaluate, letterToken, outcomeRows } from '../lib/eval/evaluate';
import { pplRequests } from '../lib/eval/perplexity';
import { type ContinuationRequest, type NextTokenRequest, type Scorer, TensorScorer } from '../lib/eval/scorer';
import { bootstrapPplStderr, meanStderr, perplexity, rng, subsample } from '../lib/eval/stats';
import type { Tokenizer } from '../lib/models/types';
import { validateRow } from '../lib/results';
import { initRuntime } from '../lib/runtime';
import { TASKS } from '../lib/tasks';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

// A bigram "model": logits[b, t, :] = W[ids[b, t], :].
const V = 11;
const W = Array.from({ length: V }, (_, i) => Array.from({ length: V }, (_, j) => Math.sin(1.7 * i + 0.3 * j * j) * 3 + (i === j ? 0.5 : 0)));
const logSoftmaxRow = (row: number[]) => {
  const m = Math.max(...row);
  const z = Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0)) + m;
  return row.map((x) => x - z);
};
const LP = W.map(logSoftmaxRow);

function bigramScorer(maxLength: number, opts: ConstructorParameters<typeof TensorScorer>[3] = {}, seenMasks?: (number[][] | null)[]) {
  const Wt = tf.tensor2d(W);
  const scorer = new TensorScorer(
    (ids, mask) => {
      if (seenMasks) seenMasks.push(mask ? (mask.arraySync() as number[][]) : null);
      return tf.gather(Wt, ids) as unknown as tf.Tensor3D; // [B, T, V]
    },
    V,
    maxLength,
    opts,
  );
  return { scorer, dispose: () => Wt.dispose() };
}

/** The same log-likelihood computed directly on the host. */
function refContinuation(r: ContinuationRequest, maxLength: number) {
  const full = [...r.context, ...r.continuation];
  const kept = full.slice(Math.max(0, full.length - 1 - maxLength));
  let s = 0;
  let greedy = true;
  for (let t = kept.length - r.continuation.length; t < kept.length; t++) {
    const row = LP[kept[t - 1]];
    s += row[kept[t]];
    if (row[kept[t]] < Math.max(...row)) greedy = false;
  }
  return { logprob: s, greedy };
}

describe('TensorScorer (batched, padded, masked, gathered on the device)', () => {
  const r = rng(7);
  const tok = () => Math.floor(r() * V);
  const reqs: ContinuationRequest[] = Array.from({ length: 23 }, (_, k) => ({
    context: Array.from({ length: 1 + ((k * 7) % 13) }, tok),
    continuation: Array.from({ length: 1 + ((k * 5) % 6) }, tok),
  }));

  it('matches the host computation for every request, whatever the batching', async () => {
    for (const o of [{ maxBatchTokens: 32, padMultiple: 1 }, { maxBatchTokens: 64, padMultiple: 8 }, { maxBatchTokens: 100000 }]) {
      const { scorer, dispose } = bigramScorer(32, o);
      const before = tf.memory().numTensors;
      const got = await scorer.continuations(reqs);
      expect(tf.memory().numTensors).toBe(before); // nothing leaked
      dispose();
      got.forEach((g, k) => {
        const ref = refContinuation(reqs[k], 32);
        expect(g.logprob).toBeCloseTo(ref.logprob, 4);
        expect(g.greedy).toBe(ref.greedy);
        expect(g.tokens).toBe(reqs[k].continuation.length);
        expect(g.truncated).toBe(0);
      });
    }
  });

  it('right-pads with a mask that marks exactly the real tokens', async () => {
    const masks: (number[][] | null)[] = [];
    const { scorer, dispose } = bigramScorer(16, { maxBatchTokens: 1000, padMultiple: 8 }, masks);
    await scorer.continuations([
      { context: [1, 2, 3], continuation: [4] },
      { context: [5], continuation: [6, 7, 8, 9, 10, 1, 2, 3, 4] },
    ]);
    dispose();
    // one batch, longest first (input lengths 9 and 3), T padded to 16
    expect(masks).toHaveLength(1);
    expect(masks[0]!.map((row) => row.join(''))).toEqual(['1111111110000000', '1110000000000000']);
  });

  it('runs equal-length batches unpadded and without a mask', async () => {
    const masks: (number[][] | null)[] = [];
    const shapes: number[][] = [];
    const Wt = tf.tensor2d(W);
    const scorer = new TensorScorer((ids, mask) => {
      masks.push(mask ? (mask.arraySync() as number[][]) : null);
      shapes.push(ids.shape);
      return tf.gather(Wt, ids) as unknown as tf.Tensor3D;
    }, V, 16, { maxBatchTokens: 1000, padMultiple: 8 });
    const reqs = [{ context: [1], continuation: [2, 3, 4, 5, 6] }, { context: [7], continuation: [8, 9, 10, 0, 3] }];
    const got = await scorer.continuations(reqs);
    Wt.dispose();
    expect(masks).toEqual([null]);
    expect(shapes).toEqual([[2, 5]]); // 5 inputs each, not padded up to 8
    got.forEach((g, k) => expect(g.logprob).toBeCloseTo(refContinuation(reqs[k], 16).logprob, 4));
  });

  it('bounds batches by attention-score elements (B·heads·T·T)', async () => {
    const shapes: number[][] = [];
    const Wt = tf.tensor2d(W);
    // 2^10 elements with 4 heads and T = 8: at most 4 sequences per batch.
    const scorer = new TensorScorer((ids) => {
      shapes.push(ids.shape);
      return tf.gather(Wt, ids) as unknown as tf.Tensor3D;
    }, V, 8, { maxBatchTokens: 1 << 20, maxAttentionElements: 1 << 10, heads: 4 });
    const reqs = Array.from({ length: 10 }, (_, k) => ({ context: [k % V], continuation: [1, 2, 3, 4, 5, 6, 7] }));
    const got = await scorer.continuations(reqs);
    Wt.dispose();
    expect(shapes).toEqual([[4, 7], [4, 7], [2, 7]]);
    got.forEach((g, k) => expect(g.logprob).toBeCloseTo(refContinuation(reqs[k], 8).logprob, 4));
    expect(() => new TensorScorer(() => tf.zeros([1, 1, 1]) as tf.Tensor3D, V, 8, { heads: 0 })).toThrow(/heads 0/);
  });

  it('finds greedy continuations', async () => {
    const { scorer, dispose } = bigramScorer(8);
    const argmax = (i: number) => LP[i].indexOf(Math.max(...LP[i]));
    const a = 3;
    const b = argmax(a);
    const c = argmax(b);
    const other = (c + 1) % V;
    const [g1, g2] = await scorer.continuations([
      { context: [a], continuation: [b, c] },
      { context: [a], continuation: [b, other] },
    ]);
    dispose();
    expect(g1.greedy).toBe(true);
    expect(g2.greedy).toBe(false);
    expect(g1.logprob).toBeCloseTo(LP[a][b] + LP[b][c], 5);
  });

  it('truncates long contexts on the left and scores an over-long continuation on its last maxLength tokens', async () => {
    const { scorer, dispose } = bigramScorer(4);
    const req = { context: [1, 2, 3, 4, 5, 6], continuation: [7, 8] };
    const [g] = await scorer.continuations([req]);
    expect(g.truncated).toBe(3); // 8 tokens, the model reads 4 + predicts from them
    expect(g.logprob).toBeCloseTo(LP[6][7] + LP[7][8], 5);
    expect(g.unscored).toBe(0);
    const [long] = await scorer.continuations([{ context: [1], continuation: [1, 2, 3, 4, 5] }]);
    // the window holds 4 inputs (1,1,2,3,4 → reads 1..4 after dropping the first): 4 tokens scored, 1 not
    expect(long.tokens).toBe(4);
    expect(long.unscored).toBe(1);
    expect(long.truncated).toBe(1);
    expect(long.logprob).toBeCloseTo(LP[1][2] + LP[2][3] + LP[3][4] + LP[4][5], 5);
    await expect(scorer.continuations([{ context: [1], continuation: [V] }])).rejects.toThrow(/outside the vocabulary/);
    dispose();
  });

  it('next-token log-probabilities at the last context position', async () => {
    const { scorer, dispose } = bigramScorer(8, { maxBatchTokens: 8, padMultiple: 1 });
    const reqs: NextTokenRequest[] = [
      { context: [1, 2, 9], candidates: [0, 5, 10] },
      { context: [4], candidates: [4] },
      { context: [1, 2, 3, 4, 5, 6, 7, 8, 2], candidates: [1, 2] },
    ];
    const before = tf.memory().numTensors;
    const got = await scorer.nextToken(reqs);
    expect(tf.memory().numTensors).toBe(before);
    dispose();
    expect(got[0].logprobs.map((x) => +x.toFixed(4))).toEqual([0, 5, 10].map((j) => +LP[9][j].toFixed(4)));
    expect(got[1].logprobs[0]).toBeCloseTo(LP[4][4], 5);
    expect(got[2].truncated).toBe(1);
    expect(got[2].logprobs[1]).toBeCloseTo(LP[2][2], 5);
  });

  it('reports progress over all requests', async () => {
    const { scorer, dispose } = bigramScorer(32, { maxBatchTokens: 32, padMultiple: 1 });
    const seen: number[] = [];
    await scorer.continuations(reqs, (done, total) => {
      expect(total).toBe(reqs.length);
      seen.push(done);
    });
    dispose();
    expect(seen[seen.length - 1]).toBe(reqs.length);
    expect(seen.length).toBeGreaterThan(3);
  });
});

describe('perplexity window accounting', () => {
  const tokens = Array.from({ length: 23 }, (_, i) => i);
  it('without BOS: non-overlapping windows, first token of each is context, remainder dropped', () => {
    const reqs = pplRequests(tokens, 5, null);
    expect(reqs).toHaveLength(4); // floor(23 / 5); tokens 20..22 dropped
    const predicted = reqs.flatMap((r) => r.continuation);
    expect(predicted).toHaveLength(4 * 4);
    expect(new Set(predicted).size).toBe(predicted.length); // each token predicted at most once
    expect(reqs.map((r) => r.context)).toEqual([[0], [5], [10], [15]]);
    // every token of every window is predicted except the window's first
    expect(predicted.sort((a, b) => a - b)).toEqual(tokens.slice(0, 20).filter((t) => t % 5 !== 0));
  });
  it('with BOS: every token of every window predicted exactly once', () => {
    const reqs = pplRequests(tokens, 5, 99);
    const predicted = reqs.flatMap((r) => r.continuation);
    expect(predicted).toEqual(tokens.slice(0, 20));
    expect(reqs.every((r) => r.context.length === 1 && r.context[0] === 99)).toBe(true);
  });
  it('the reference protocol: 813,645 tokens at 512 make 1589 windows of 511 predictions', () => {
    const reqs = pplRequests(new Array(813645).fill(0), 512, null);
    expect(reqs).toHaveLength(1589);
    expect(reqs.reduce((s, r) => s + r.continuation.length, 0)).toBe(1589 * 511);
  });
  it('PPL = exp(total NLL / total predicted tokens)', () => {
    expect(perplexity([2, 4], [1, 3])).toBeCloseTo(Math.exp(6 / 4), 12);
    expect(() => pplRequests(tokens, 1, null)).toThrow(/seqlen 1/);
  });
});

describe('statistics', () => {
  it('mean and stderr (sample stddev / sqrt n): binomial for 0/1 scores', () => {
    const s = meanStderr([1, 0, 1, 1]);
    expect(s.mean).toBe(0.75);
    expect(s.stderr).toBeCloseTo(0.25, 12); // sqrt(p(1-p)/(n-1)) = sqrt(0.1875/3)
    expect(meanStderr([1]).stderr).toBeNull();
  });
  it('seeded subsampling is deterministic, sorted and of the requested size', () => {
    const a = subsample(100, 10, 3);
    expect(a).toEqual(subsample(100, 10, 3));
    expect(a).not.toEqual(subsample(100, 10, 4));
    expect(a).toHaveLength(10);
    expect([...a].sort((x, y) => x - y)).toEqual(a);
    expect(new Set(a).size).toBe(10);
    expect(subsample(5, null, 0)).toEqual([0, 1, 2, 3, 4]);
    expect(subsample(5, 9, 0)).toEqual([0, 1, 2, 3, 4]);
  });
  it('bootstrap PPL stderr: zero for identical windows, close to the delta-method value otherwise', () => {
    expect(bootstrapPplStderr([3, 3, 3], [2, 2, 2], 200, 0)).toBeCloseTo(0, 12);
    const r = rng(1);
    const nll = Array.from({ length: 400 }, () => 500 + 100 * r());
    const cnt = nll.map(() => 100);
    const se = bootstrapPplStderr(nll, cnt, 500, 0)!;
    const ppl = perplexity(nll, cnt);
    const m = meanStderr(nll.map((x) => x / 100));
    expect(se / (ppl * m.stderr!)).toBeGreaterThan(0.85); // delta method: se(ppl) ≈ ppl · se(mean nll/token)
    expect(se / (ppl * m.stderr!)).toBeLessThan(1.15);
    expect(bootstrapPplStderr(nll, cnt, 500, 0)).toBe(se);
  });
});

// A character tokenizer: one id per character, BOS 1, with a dummy-prefix-free encoding.
const ALPHABET = ' abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;?!\'"-_()\n|';
const charTok: Tokenizer = {
  vocabSize: ALPHABET.length + 3,
  bosId: 1,
  eosId: 2,
  encode(text, o) {
    const ids = [...text].map((c) => {
      const i = ALPHABET.indexOf(c);
      if (i < 0) throw new Error(`char ${JSON.stringify(c)}`);
      return i + 3;
    });
    return o?.bos ? [1, ...ids] : ids;
  },
  decode: (ids) => ids.map((i) => ALPHABET[i - 3] ?? '').join(''),
};

describe('lm-eval pair encoding', () => {
  it('moves trailing context spaces into the continuation and splits the whole encoding', () => {
    const r = encodePair(charTok, 'ab ', 'c', null);
    expect(charTok.decode(r.context)).toBe('ab');
    expect(charTok.decode(r.continuation)).toBe(' c');
    const b = encodePair(charTok, 'ab', ' c', 1);
    expect(b.context[0]).toBe(1);
    expect(charTok.decode(b.context.slice(1))).toBe('ab');
  });
  it('letter tokens are the last id of encode(letter)', () => {
    expect(letterToken(charTok, 'A')).toBe(ALPHABET.indexOf('A') + 3);
  });
});

/** A scripted scorer: continuation log-prob = -(number of characters that are not 'x'); next-token
 * scores favour candidate 0 unless the prompt ends in "Q1?\nA. ...Answer:" style cues (see tests). */
function scriptedScorer(maxLength = 10_000): Scorer & { seen: { cont: ContinuationRequest[]; next: NextTokenRequest[] } } {
  const seen = { cont: [] as ContinuationRequest[], next: [] as NextTokenRequest[] };
  return {
    maxLength,
    seen,
    async continuations(reqs) {
      seen.cont.push(...reqs);
      return reqs.map((r) => ({
        logprob: -charTok.decode(r.continuation).replace(/x/g, '').length,
        greedy: false,
        truncated: 0,
        tokens: r.continuation.length,
        unscored: 0,
      }));
    },
    async nextToken(reqs) {
      seen.next.push(...reqs);
      // Prefer the candidate whose letter appears right after "pick " in the prompt (default A).
      return reqs.map((r) => {
        const text = charTok.decode(r.context);
        const m = /pick ([A-D])[^]*$/.exec(text);
        const want = m ? m[1] : 'A';
        return { logprobs: r.candidates.map((c) => (charTok.decode([c]) === want ? -0.1 : -3)), truncated: 0 };
      });
    },
  };
}

function writeTree(root: string, files: Record<string, string>) {
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    fs.writeFileSync(path.join(root, rel), text);
  }
}

describe('evaluate() end to end on tiny local datasets', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-eval-'));
  writeTree(root, {
    'arc/ARC-Challenge-Test.jsonl': [
      JSON.stringify({ id: 'a', question: { stem: 'q', choices: [{ text: 'yes', label: 'A' }, { text: 'no', label: 'B' }] }, answerKey: 'B' }),
      JSON.stringify({ id: 'b', question: { stem: 'q', choices: [{ text: 'xxxxxxxxa', label: '1' }, { text: 'b', label: '2' }] }, answerKey: '1' }),
    ].join('\n'),
    'mmlu/test/anatomy_test.csv': 'Q1 pick B,a,b,c,d,B\nQ2,a,b,c,d,A\nQ3 pick C,a,b,c,d,D\n',
    'mmlu/test/virology_test.csv': 'Q4,a,b,c,d,A\n',
    'mmlu/dev/anatomy_dev.csv': 'D1,a,b,c,d,A\n',
    'wikitext-2-raw/wiki.test.raw': 'abcdefghij\nklmnopq\n',
  });
  const data = dataOptions({ dataDir: root, hub: false });

  it('ARC: acc and acc_norm with binomial stderr, BOS by default (lm-eval)', async () => {
    const s = scriptedScorer();
    const o = await evaluate(s, charTok, TASKS.arc_challenge, { data });
    expect(o.status).toBe('ok');
    expect(o.bos).toBe(true);
    const by = Object.fromEntries(o.results.map((r) => [r.metric, r]));
    // The scripted log-prob is minus the non-'x' characters of ' ' + choice.
    // item a: ' yes' -4, ' no' -3 → acc picks 'no' (gold ✓); per character of the choice: -4/3 > -3/2 → 'yes' (✗)
    // item b: ' xxxxxxxxa' -2, ' b' -2 → tie → first (gold ✓); per character: -2/9 > -2/1 → first (✓)
    expect(by.acc.value).toBe(1);
    expect(by.acc_norm.value).toBe(1 / 2);
    expect(by.acc_norm.stderr).toBeCloseTo(Math.sqrt(0.25 / 1), 12);
    expect(by.acc.n).toBe(2);
    expect(s.seen.cont.every((r) => r.context[0] === 1)).toBe(true); // BOS first
    expect(s.seen.cont.map((r) => charTok.decode(r.continuation))).toEqual([' yes', ' no', ' xxxxxxxxa', ' b']);
    const noBos = await evaluate(scriptedScorer(), charTok, TASKS.arc_challenge, { data, bos: false });
    expect(noBos.bos).toBe(false);
  });

  it('MMLU: letter argmax, per-category and per-subject groups, 0-shot and 1-shot from dev', async () => {
    const s = scriptedScorer();
    const o = await evaluate(s, charTok, TASKS.mmlu, { data });
    const get = (task: string) => o.results.find((r) => r.task === task && r.metric === 'acc')!;
    // predictions: Q1 → B (gold B ✓), Q2 → A (✓), Q3 → C (gold D ✗), Q4 → A (✓)
    expect(get('mmlu').value).toBe(3 / 4);
    expect(get('mmlu/anatomy').value).toBe(2 / 3);
    expect(get('mmlu/virology').value).toBe(1);
    expect(get('mmlu/other').value).toBe(3 / 4); // both subjects are 'health' → other
    expect(o.bos).toBe(false);
    expect(s.seen.next[0].candidates.map((c) => charTok.decode([c]))).toEqual(['A', 'B', 'C', 'D']);
    const one = await evaluate(scriptedScorer(), charTok, TASKS.mmlu, { data, shots: 1 });
    expect(one.notes.some((n) => n.startsWith('fewshot=first 1 of local:'))).toBe(true);
    expect(one.results.find((r) => r.task === 'mmlu')!.n).toBe(4);
  });

  it('WikiText-2: windows of seqlen, PPL from summed NLL, limit subsamples windows', async () => {
    const s = scriptedScorer(8);
    // text 'abcdefghij\n\nklmnopq' = 19 chars → seqlen 4: 4 windows, 3 predictions each
    const o = await evaluate(s, charTok, TASKS.wikitext2, { data, seqlen: 4 });
    expect(o.seqlen).toBe(4);
    expect(o.results[0].n).toBe(4);
    const nll = s.seen.cont.map((r) => charTok.decode(r.continuation).length);
    expect(o.results[0].value).toBeCloseTo(Math.exp(nll.reduce((a, b) => a + b, 0) / 12), 12);
    expect(o.notes).toContain('predicted=12');
    const lim = await evaluate(scriptedScorer(8), charTok, TASKS.wikitext2, { data, seqlen: 4, limit: 2, seed: 5 });
    expect(lim.results[0].n).toBe(2);
    expect(lim.notes).toContain('windows=2/4');
    await expect(evaluate(scriptedScorer(3), charTok, TASKS.wikitext2, { data, seqlen: 4 })).rejects.toThrow(/seqlen 4 exceeds the model's context 3/);
    // default seqlen: min(2048, context)
    const d = await evaluate(scriptedScorer(8), charTok, TASKS.wikitext2, { data });
    expect(d.seqlen).toBe(8);
  });

  it('shots on a task without demonstrations is an error, not silently ignored', async () => {
    await expect(evaluate(scriptedScorer(), charTok, TASKS.arc_challenge, { data, shots: 2 })).rejects.toThrow(/few-shot demonstrations are not supported/);
  });

  it('absent data becomes a no_data outcome and valid rows, never an exception', async () => {
    const o = await evaluate(scriptedScorer(), charTok, TASKS.winogrande, { data });
    expect(o.status).toBe('no_data');
    expect(o.notes[0]).toMatch(/winogrande: not found \(local: no winogrande\/dev\.jsonl.*hub disabled/);
    const ctx = { run_id: 'r', git_sha: 'abcdef0', started_at: new Date().toISOString(), backend: 'wasm', device: 'cpu' };
    const rows = outcomeRows(ctx, o, { model: 'm', model_family: 'llama', model_params: 1, method: 'dense', method_config: {} }, 0);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ status: 'no_data', value: null, task: 'winogrande', metric: 'acc', bos: true, track: 1 });
    rows.forEach((r) => validateRow(r));
    const ok = await evaluate(scriptedScorer(), charTok, TASKS.mmlu, { data });
    const okRows = outcomeRows(ctx, ok, { model: 'm', model_family: 'llama', model_params: 1, method: 'dense', method_config: {} }, 0);
    okRows.forEach((r) => validateRow(r));
    expect(okRows[0].note).toMatch(/^source=local:.*; shots=0; v1/);
    expect(okRows.every((r) => r.bos === false && r.seqlen === null)).toBe(true);
  });
});
