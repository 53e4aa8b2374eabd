// scripts/bench-eval.ts's machinery without a GPU or torch: the batch plan against the batches a
// TensorScorer really runs, the timing + recording wrappers, the request export read back by
// scripts/py/score_torch.py (with its pure-Python bigram stand-in for the model, so the rows,
// padding, plan and gathers of the Python side run), and the per-request comparison, which must
// notice a changed token or a flipped answer.
import * as tf from '@tensorflow/tfjs';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RecordingScorer, type ContinuationRequest, type NextTokenRequest, TensorScorer } from '../lib/eval/scorer';
import {
  type BatchingOptions,
  collectTask,
  compareTask,
  planBatches,
  readTorchResults,
  rowLength,
  TimingScorer,
  writeExport,
} from '../lib/eval/scorer-bench';
import { rng } from '../lib/eval/stats';
import { initRuntime } from '../lib/runtime';

const PYTHON = process.env.PYTHON ?? 'python3';
const SCRIPT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../scripts/py/score_torch.py');
const V = 13;
const W = Array.from({ length: V }, (_, i) => Array.from({ length: V }, (_, j) => Math.sin(1.3 * i + 0.7 * j * j) * 2.5 + (j === (i + 1) % V ? 1 : 0)));
const MAX_LEN = 24;
const OPTS = { maxBatchTokens: 64, padMultiple: 8, heads: 2, maxAttentionElements: 2 * 16 * 16 * 3, maxLogitElements: 1 << 20, padId: 0 };
const BATCHING: BatchingOptions = { ...OPTS, maxLength: MAX_LEN, vocabSize: V };

let dir: string;
let Wt: tf.Tensor2D;
const shapes: [number, number, boolean][] = []; // [B, T, masked] of every batch the scorer ran

function scorer() {
  return new TensorScorer(
    (ids, mask) => {
      shapes.push([ids.shape[0], ids.shape[1], mask !== undefined]);
      return tf.gather(Wt, ids) as unknown as tf.Tensor3D; // [B, T, V]
    },
    V,
    MAX_LEN,
    OPTS,
  );
}

const argmaxRow = (i: number) => W[i].reduce((b, x, j) => (x > W[i][b] ? j : b), 0);

/** Requests of many lengths (some longer than MAX_LEN, some greedy continuations, equal-length runs). */
function requests(seed: number) {
  const r = rng(seed);
  const tok = () => 1 + Math.floor(r() * (V - 1));
  const conts: ContinuationRequest[] = [];
  for (let k = 0; k < 40; k++) {
    const context = Array.from({ length: 1 + Math.floor(r() * (k % 7 === 0 ? 30 : 12)) }, tok);
    let continuation = Array.from({ length: 1 + Math.floor(r() * 5) }, tok);
    if (k % 3 === 0) {
      continuation = [];
      let last = context[context.length - 1];
      for (let j = 0; j < 3; j++) continuation.push((last = argmaxRow(last))); // greedy by construction
    }
    conts.push({ context, continuation });
  }
  for (let k = 0; k < 6; k++) conts.push({ context: [tok()], continuation: Array.from({ length: 15 }, tok) }); // equal lengths: unpadded batches
  conts.push({ context: [tok(), tok()], continuation: Array.from({ length: 30 }, tok) }); // continuation longer than MAX_LEN
  const nexts: NextTokenRequest[] = Array.from({ length: 25 }, (_, k) => ({
    context: Array.from({ length: 1 + Math.floor(r() * (k % 5 === 0 ? 40 : 15)) }, tok),
    candidates: [1, 2, 3, 4].map((c) => (c * (k + 3)) % V),
  }));
  return { conts, nexts };
}

beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  Wt = tf.tensor2d(W);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-eval-'));
});

afterAll(() => {
  Wt.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('planBatches', () => {
  it('is the batching a TensorScorer runs (lengths, batch sizes, padding)', async () => {
    const { conts, nexts } = requests(1);
    const s = scorer();
    for (const [kind, run] of [
      ['continuation', () => s.continuations(conts)],
      ['next_token', () => s.nextToken(nexts)],
    ] as const) {
      shapes.length = 0;
      const out = await run();
      expect(out.length).toBeGreaterThan(0);
      // Lengths from the requests as recorded (truncated context), as collectTask plans them.
      const rec = kind === 'continuation' ? conts.map((r) => ({ kind, ...r })) : nexts.map((r) => ({ kind, ...r }));
      const plan = planBatches(rec.map((r) => rowLength(r, MAX_LEN)), BATCHING);
      expect(plan.batches.map(([T, B]) => [B, T])).toEqual(shapes.map(([B, T]) => [B, T]));
      expect(shapes.some(([, , m]) => m)).toBe(true);
      if (kind === 'continuation') expect(shapes.some(([, , m]) => !m)).toBe(true); // the equal-length run is unpadded
      expect(plan.batches.length).toBeGreaterThan(3);
      expect([...plan.order].sort((a, b) => a - b)).toEqual(rec.map((_, i) => i));
    }
  });
});

describe('compareTask', () => {
  it('reports the largest difference and the agreeing greedy flags or letters', () => {
    expect(compareTask({ kind: 'continuation', logprob: [-1, -2, -3], greedy: [true, false, false] }, { kind: 'continuation', logprobs: [-1.5, -2, -3.25], greedy: [true, true, false] })).toEqual({
      maxAbsDiff: 0.5,
      greedyAgree: 2 / 3,
      n: 3,
    });
    expect(compareTask({ kind: 'next_token', logprobs: [[-1, -2], [-3, -0.5]] }, { kind: 'next_token', logprobs: [[-1.25, -2], [-0.25, -0.5]] })).toEqual({ maxAbsDiff: 2.75, greedyAgree: 0.5, n: 2 });
    expect(compareTask({ kind: 'continuation', logprob: [-1], greedy: [false] }, { kind: 'continuation', logprobs: [null], greedy: [false] }).maxAbsDiff).toBe(Infinity);
    expect(() => compareTask({ kind: 'continuation', logprob: [-1, -2], greedy: [false, false] }, { kind: 'continuation', logprobs: [-1], greedy: [false] })).toThrow(/1 reference answers/);
  });
});

describe('export → score_torch.py → compare', () => {
  const python = (() => {
    try {
      execFileSync(PYTHON, ['-c', 'import json, array'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!python)('the Python side reads the export, runs the kit plan and matches the kit request by request', async () => {
    const { conts, nexts } = requests(2);
    const timed = new TimingScorer(scorer());
    const rec = new RecordingScorer(timed);
    const warmup = { context: [1], continuation: [2, 3, 4] };
    await rec.continuations(conts.slice(0, 20));
    await rec.continuations(conts.slice(20)); // two calls in one task: two plans, offset
    const a = collectTask('mc', rec, timed, BATCHING)!;
    await rec.nextToken(nexts);
    const b = collectTask('letters', rec, timed, BATCHING)!;
    expect(collectTask('none', rec, timed, BATCHING)).toBeNull();
    expect(a.exported.requests.length).toBe(conts.length);
    const longest = conts[conts.length - 1];
    expect(a.scoredTokens).toBe(conts.reduce((s, r) => s + Math.min(r.continuation.length, MAX_LEN), 0));
    expect(a.exported.requests[conts.length - 1]).toEqual({ kind: 'continuation', context: [], continuation: longest.continuation }); // truncated as the model read it
    expect(b.scoredTokens).toBe(nexts.length);
    expect(a.kit.kind === 'continuation' && a.kit.greedy.filter(Boolean).length).toBeGreaterThan(5);

    const exp = path.join(dir, 'export');
    writeExport(exp, { model: 'bigram', batching: BATCHING, torch: null, warmup }, [a.exported, b.exported]);
    const table = path.join(dir, 'table.json');
    fs.writeFileSync(table, JSON.stringify(W));
    const run = () => {
      const out = path.join(dir, 'torch.json');
      execFileSync(PYTHON, [SCRIPT, '--export', exp, '--out', out, '--fake-bigram', table], { stdio: ['ignore', 'ignore', 'pipe'] });
      return readTorchResults(out, [a.exported, b.exported]);
    };
    const ref = run();
    const [ra, rb] = ref.tasks;
    expect(ra.scored_tokens).toBe(a.scoredTokens);
    expect(rb.scored_tokens).toBe(b.scoredTokens);
    expect(ra.batches).toBe(a.exported.plan.batches.length);
    const ca = compareTask(a.kit, ra);
    const cb = compareTask(b.kit, rb);
    expect(ca.maxAbsDiff).toBeLessThan(1e-5); // fp32 on the kit side, float64 in Python
    expect(ca.greedyAgree).toBe(1);
    expect(cb.maxAbsDiff).toBeLessThan(1e-5);
    expect(cb.greedyAgree).toBe(1);

    // One token changed in the export: the comparison must see it.
    const i32 = path.join(exp, '0-mc.i32');
    const ids = new Int32Array(new Uint8Array(fs.readFileSync(i32)).buffer);
    const k = a.exported.requests[0].context.length; // first continuation token of request 0
    ids[k] = (ids[k] % (V - 1)) + 1;
    fs.writeFileSync(i32, new Uint8Array(ids.buffer));
    const bad = compareTask(a.kit, run().tasks[0]);
    expect(bad.maxAbsDiff).toBeGreaterThan(1e-3);

    // A plan that does not hold every request is refused by the Python side.
    const man = path.join(exp, 'manifest.json');
    const m = JSON.parse(fs.readFileSync(man, 'utf8'));
    m.tasks[1].batches.pop();
    fs.writeFileSync(man, JSON.stringify(m));
    expect(run).toThrow(/plan's batches hold/);
  });
});
