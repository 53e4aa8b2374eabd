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
import {
  type ContinuationRequest,
  type ContinuationResult,
  type NextTokenRequest,
  type NextTokenResult,
  type Progress,
  RecordingScorer,
  type Scorer,
  TensorScorer,
} from '../lib/eval/scorer';
import {
  type BatchingOptions,
  collectTask,
  compareTask,
  longestFirst,
  planBatches,
  planCall,
  type PlanRule,
  readTorchResults,
  rowLength,
  sizesByBudget,
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
const RULE: PlanRule = { kind: 'tensor-scorer', options: BATCHING };

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

/** A black-box scorer in the executor's manner: rows packed longest first while their summed
 * lengths stay within `budget` (no padding), one progress report per packed batch. */
class PackingScorer implements Scorer {
  constructor(
    private readonly inner: TensorScorer,
    private readonly budget: number,
    private readonly report = true,
  ) {}
  get maxLength() {
    return this.inner.maxLength;
  }
  private async packed<R, Q>(reqs: readonly Q[], len: (q: Q) => number, run: (qs: Q[]) => Promise<R[]>, onProgress?: Progress): Promise<R[]> {
    const lengths = reqs.map(len);
    const order = longestFirst(lengths);
    const out: R[] = new Array(reqs.length);
    let i = 0;
    for (const n of sizesByBudget(lengths, this.budget)) {
      const idx = order.slice(i, i + n);
      const got = await run(idx.map((k) => reqs[k]));
      idx.forEach((k, j) => (out[k] = got[j]));
      i += n;
      if (this.report) onProgress?.(i, reqs.length);
    }
    return out;
  }
  continuations(reqs: readonly ContinuationRequest[], onProgress?: Progress): Promise<ContinuationResult[]> {
    return this.packed(reqs, (r) => rowLength({ kind: 'continuation', ...r }, MAX_LEN), (qs) => this.inner.continuations(qs), onProgress);
  }
  nextToken(reqs: readonly NextTokenRequest[], onProgress?: Progress): Promise<NextTokenResult[]> {
    return this.packed(reqs, (r) => rowLength({ kind: 'next_token', ...r }, MAX_LEN), (qs) => this.inner.nextToken(qs), onProgress);
  }
}

/** Runs score_torch.py with the bigram table on an export; returns its results. */
function runPython(exp: string, tasks: Parameters<typeof readTorchResults>[1]) {
  const table = path.join(dir, 'table.json');
  fs.writeFileSync(table, JSON.stringify(W));
  const out = path.join(dir, 'torch.json');
  execFileSync(PYTHON, [SCRIPT, '--export', exp, '--out', out, '--fake-bigram', table], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readTorchResults(out, tasks);
}

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

describe('planCall', () => {
  const lengths = [5, 9, 9, 2, 7, 3];
  it('takes the batches an unknown scorer reported over the longest-first order, each at its longest row', () => {
    expect(planCall(lengths, [2, 3, 1], { kind: 'observed', maxLength: 16, vocabSize: V, budgetTokens: 100 })).toEqual({
      plan: { order: [1, 2, 4, 0, 5, 3], batches: [[9, 2], [7, 3], [2, 1]] },
      source: 'observed',
    });
  });
  it('falls back to the token budget when the scorer reported no batches', () => {
    expect(sizesByBudget(lengths, 18)).toEqual([2, 4]); // 9+9 | 7+5+3+2
    expect(sizesByBudget(lengths, 8)).toEqual([1, 1, 1, 2, 1]); // a row over the budget still runs alone
    expect(planCall(lengths, [], { kind: 'observed', maxLength: 16, vocabSize: V, budgetTokens: 18 })).toEqual({
      plan: { order: [1, 2, 4, 0, 5, 3], batches: [[9, 2], [7, 4]] },
      source: 'budget',
    });
  });
  it('refuses a TensorScorer whose reported batches are not its rule', () => {
    const rule = planBatches(lengths, BATCHING).batches.map(([, b]) => b);
    expect(planCall(lengths, rule, RULE).source).toBe('tensor-scorer');
    expect(() => planCall(lengths, [1, ...rule.slice(0, -1), rule[rule.length - 1] - 1].filter((b) => b > 0), RULE)).toThrow(/reported batches/);
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
    const a = collectTask('mc', rec, timed, RULE)!;
    await rec.nextToken(nexts);
    const b = collectTask('letters', rec, timed, RULE)!;
    expect(collectTask('none', rec, timed, RULE)).toBeNull();
    expect(a.exported.requests.length).toBe(conts.length);
    const longest = conts[conts.length - 1];
    expect(a.scoredTokens).toBe(conts.reduce((s, r) => s + Math.min(r.continuation.length, MAX_LEN), 0));
    expect(a.exported.requests[conts.length - 1]).toEqual({ kind: 'continuation', context: [], continuation: longest.continuation }); // truncated as the model read it
    expect(b.scoredTokens).toBe(nexts.length);
    expect(a.kit.kind === 'continuation' && a.kit.greedy.filter(Boolean).length).toBeGreaterThan(5);

    const exp = path.join(dir, 'export');
    writeExport(exp, { model: 'bigram', rule: RULE, torch: null, warmup }, [a.exported, b.exported]);
    const run = () => runPython(exp, [a.exported, b.exported]);
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
  it.skipIf(!python)('a black-box scorer: its reported batches become the plan, and the Python side matches it', async () => {
    const { conts, nexts } = requests(3);
    const rule: PlanRule = { kind: 'observed', maxLength: MAX_LEN, vocabSize: V, budgetTokens: 1000 };
    for (const report of [true, false]) {
      const timed = new TimingScorer(new PackingScorer(scorer(), 40, report));
      const rec = new RecordingScorer(timed);
      await rec.continuations(conts);
      const a = collectTask('mc', rec, timed, rule)!;
      await rec.nextToken(nexts);
      const b = collectTask('letters', rec, timed, rule)!;
      const lengths = a.exported.requests.map((r) => rowLength(r, MAX_LEN));
      if (report) {
        expect(a.planSource).toBe('observed');
        expect(a.exported.plan.batches.map(([, n]) => n)).toEqual(sizesByBudget(lengths, 40));
        expect(a.exported.plan.batches.every(([T, n], j) => T === lengths[a.exported.plan.order[a.exported.plan.batches.slice(0, j).reduce((s, [, m]) => s + m, 0)]] && n >= 1)).toBe(true);
      } else {
        expect(a.planSource).toBe('budget');
        expect(a.exported.plan.batches.map(([, n]) => n)).toEqual(sizesByBudget(lengths, 1000));
      }
      const exp = path.join(dir, `export-observed-${report}`);
      writeExport(exp, { model: 'bigram', rule, torch: null, warmup: { context: [1], continuation: [2] } }, [a.exported, b.exported]);
      const ref = runPython(exp, [a.exported, b.exported]);
      expect(ref.tasks[0].batches).toBe(a.exported.plan.batches.length);
      for (const [kit, t] of [[a.kit, ref.tasks[0]], [b.kit, ref.tasks[1]]] as const) {
        const c = compareTask(kit, t);
        expect(c.maxAbsDiff).toBeLessThan(1e-5);
        expect(c.greedyAgree).toBe(1);
      }
    }
  });
});
