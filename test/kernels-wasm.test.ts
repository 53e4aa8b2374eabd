// WebAssembly SIMD kernels of the tfjs-wasm backend (lib/kernels/wasm-simd.ts): each against the
// plain tfjs ops it replaces, on shapes that exercise grouped-query heads, a KV prefix, odd head
// dims and lengths; then stories260K's forward on the wasm plan against the plain plan, and the
// scorer's log-probabilities against a float64 host log-softmax. No tensor may leak.
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { modelScorer } from '../lib/eval/model-scorer';
import { attentionPlain, causalMask } from '../lib/kernels/attention';
import { wasmAttention, wasmGatherRows, wasmKernelsAvailable, wasmRmsNorm, wasmSwiglu } from '../lib/kernels/wasm-simd';
import { disposeModel, loadModel } from '../lib/models/load';
import { disposeForwardPrep, FORWARD_PLANS, forward, generate, prepareForward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { initRuntime } from '../lib/runtime';
import { STORIES_BIN } from './model-helpers';

const maxAbs = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

/** HF RoPE on x [B, n, T, hd] with the tables' rows from `from` on (split/concat: the reference form). */
function ropeRef(x: tf.Tensor4D, cos: tf.Tensor2D, sin: tf.Tensor2D, from: number): tf.Tensor4D {
  const [, , T, hd] = x.shape;
  const c = tf.slice(cos, [from, 0], [T, hd]);
  const s = tf.slice(sin, [from, 0], [T, hd]);
  const [x1, x2] = tf.split(x, 2, 3);
  return tf.add(tf.mul(x, c), tf.mul(tf.concat([tf.neg(x2), x1], 3), s)) as tf.Tensor4D;
}

let model: Model;
beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  model = await loadModel(STORIES_BIN);
});
afterAll(() => disposeModel(model));

describe('wasm SIMD kernels against the tfjs ops', () => {
  it('are available on wasm outside a gradient tape, not inside one', () => {
    expect(wasmKernelsAvailable()).toBe(true);
    let inside = true;
    tf.grad((x: tf.Tensor) => {
      inside = wasmKernelsAvailable();
      return tf.sum(x);
    })(tf.ones([2]));
    expect(inside).toBe(false);
  });

  const shapes = [
    { B: 1, H: 4, KV: 2, T: 5, past: 0, hd: 8 },
    { B: 2, H: 8, KV: 4, T: 37, past: 0, hd: 8 },
    { B: 1, H: 6, KV: 2, T: 1, past: 40, hd: 8 },
    { B: 2, H: 4, KV: 1, T: 7, past: 9, hd: 16 },
    { B: 1, H: 2, KV: 2, T: 70, past: 3, hd: 20 },
    { B: 1, H: 3, KV: 3, T: 9, past: 2, hd: 8 }, // odd heads per KV head: the one-row path at hd 8
    { B: 2, H: 8, KV: 4, T: 130, past: 0, hd: 8 },
  ];
  for (const s of shapes) {
    it(`causal attention B=${s.B} H=${s.H} KV=${s.KV} T=${s.T} past=${s.past} hd=${s.hd}, with and without RoPE`, () => {
      const before = tf.memory().numTensors;
      tf.tidy(() => {
        const S = s.past + s.T;
        const q = tf.randomNormal([s.B, s.T, s.H, s.hd], 0, 2, 'float32', 1) as tf.Tensor4D; // [B, T, H, hd]
        const k = tf.randomNormal([s.B, S, s.KV, s.hd], 0, 2, 'float32', 2) as tf.Tensor4D;
        const v = tf.randomNormal([s.B, S, s.KV, s.hd], 0, 1, 'float32', 3) as tf.Tensor4D;
        const cos = tf.randomUniform([S, s.hd], -1, 1, 'float32', 4) as tf.Tensor2D;
        const sin = tf.randomUniform([S, s.hd], -1, 1, 'float32', 5) as tf.Tensor2D;
        const heads = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D; // [B, n, T, hd]
        const mask = causalMask(s.T, s.past);
        const plain = attentionPlain(heads(q), heads(k), heads(v), mask);
        expect(maxAbs(wasmAttention(q, k, v, s.past), plain)).toBeLessThan(1e-5);
        const roped = attentionPlain(ropeRef(heads(q), cos, sin, s.past), ropeRef(heads(k), cos, sin, 0), heads(v), mask);
        expect(maxAbs(wasmAttention(q, k, v, s.past, { cos, sin }), roped)).toBeLessThan(1e-5);
      });
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('attention: rows of keys far below the max get probability 0, not subnormals (same result)', () => {
    tf.tidy(() => {
      const T = 40;
      // Scores spanning hundreds of nats: most p would be subnormal or 0 in fp32.
      const q = tf.mul(tf.randomNormal([1, T, 2, 8], 0, 1, 'float32', 7), 40) as tf.Tensor4D;
      const k = tf.mul(tf.randomNormal([1, T, 1, 8], 0, 1, 'float32', 8), 40) as tf.Tensor4D;
      const v = tf.randomNormal([1, T, 1, 8], 0, 1, 'float32', 9) as tf.Tensor4D;
      const heads = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D;
      expect(maxAbs(wasmAttention(q, k, v, 0), attentionPlain(heads(q), heads(k), heads(v), causalMask(T, 0)))).toBeLessThan(1e-5);
    });
  });

  it('attention names inconsistent shapes', () => {
    tf.tidy(() => {
      const q = tf.zeros([1, 3, 4, 8]) as tf.Tensor4D;
      const k = tf.zeros([1, 5, 2, 8]) as tf.Tensor4D;
      expect(() => wasmAttention(q, k, k, 0)).toThrow(/past \+ T/);
      expect(() => wasmAttention(q, k, k, 2, { cos: tf.zeros([3, 8]) as tf.Tensor2D, sin: tf.zeros([3, 8]) as tf.Tensor2D })).toThrow(/RoPE tables/);
    });
  });

  it('SwiGLU, RMSNorm and the row gather equal their tfjs ops (odd sizes: the scalar tails)', () => {
    const before = tf.memory().numTensors;
    tf.tidy(() => {
      const g = tf.mul(tf.randomNormal([7, 33], 0, 1, 'float32', 11), 6);
      const u = tf.randomNormal([7, 33], 0, 1, 'float32', 12);
      expect(maxAbs(wasmSwiglu(g, u), tf.mul(tf.mul(g, tf.sigmoid(g)), u))).toBeLessThan(1e-5);
      const x = tf.randomNormal([3, 5, 70], 0, 3, 'float32', 13);
      const w = tf.randomNormal([70], 0, 1, 'float32', 14);
      const ref = tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-5))), w);
      expect(maxAbs(wasmRmsNorm(x, w, 1e-5), ref)).toBeLessThan(1e-5);
      const table = tf.randomNormal([11, 6], 0, 1, 'float32', 15) as tf.Tensor2D;
      const ids = tf.tensor2d([[0, 10, 3], [3, 7, 1]], [2, 3], 'int32');
      expect(maxAbs(wasmGatherRows(table, ids), tf.gather(table, ids))).toBe(0);
      expect(() => wasmGatherRows(table, tf.tensor1d([2, 11], 'int32'))).toThrow(/1 id\(s\) outside \[0, 11\)/);
    });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('models on the wasm plan', () => {
  it('forward equals the plain plan (with and without prepared weights), and leaks nothing', () => {
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d(Array.from({ length: 2 * 100 }, (_, i) => (i * 37 + 11) % 512), [2, 100], 'int32');
    const plain = forward(model, ids, { plan: FORWARD_PLANS.cpu });
    const wasm = forward(model, ids, { plan: FORWARD_PLANS.wasm });
    const prep = prepareForward(model, FORWARD_PLANS.wasm);
    expect(prep?.weightsT.size).toBe(5 * 7 + 1); // every block linear and the tied head
    const prepared = forward(model, ids, { plan: FORWARD_PLANS.wasm, prep });
    disposeForwardPrep(prep);
    expect(maxAbs(wasm, plain)).toBeLessThan(1e-4);
    expect(maxAbs(prepared, plain)).toBeLessThan(1e-4);
    tf.dispose([ids, plain, wasm, prepared]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('with right padding (rightPadding) the wasm plan gives the logits of the plain plan on every real position', () => {
    const before = tf.memory().numTensors;
    const lens = [37, 50, 12];
    const T = 50;
    const ids = tf.tensor2d(lens.flatMap((n, b) => Array.from({ length: T }, (_, t) => (t < n ? (t * 31 + 7 * b + 1) % 512 : 0))), [3, T], 'int32');
    const mask = tf.tensor2d(lens.flatMap((n) => Array.from({ length: T }, (_, t) => (t < n ? 1 : 0))), [3, T]);
    const plainT = forward(model, ids, { attentionMask: mask, plan: FORWARD_PLANS.cpu });
    const wasmT = forward(model, ids, { attentionMask: mask, rightPadding: true, plan: FORWARD_PLANS.wasm });
    const [plain, wasm] = [plainT.arraySync(), wasmT.arraySync()];
    tf.dispose([plainT, wasmT]);
    let worst = 0;
    lens.forEach((n, b) => {
      for (let t = 0; t < n; t++) for (let v = 0; v < 512; v++) worst = Math.max(worst, Math.abs(plain[b][t][v] - wasm[b][t][v]));
    });
    expect(worst).toBeLessThan(1e-4);
    tf.dispose([ids, mask]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('forward of an OPT model (biases, LayerNorm, learned positions, no RoPE) equals the plain plan', async () => {
    const opt = await loadModel(path.resolve(path.dirname(STORIES_BIN), '../zoo/opt-700k'));
    try {
      const before = tf.memory().numTensors;
      const ids = tf.tensor2d(Array.from({ length: 2 * 50 }, (_, i) => (i * 29 + 3) % opt.config.vocabSize), [2, 50], 'int32');
      const plain = forward(opt, ids, { plan: FORWARD_PLANS.cpu });
      const prep = prepareForward(opt, FORWARD_PLANS.wasm);
      const wasm = forward(opt, ids, { plan: FORWARD_PLANS.wasm, prep });
      disposeForwardPrep(prep);
      expect(maxAbs(wasm, plain)).toBeLessThan(1e-4);
      tf.dispose([ids, plain, wasm]);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      disposeModel(opt);
    }
  });

  it("the scorer's log-probabilities and greedy flags equal a float64 log-softmax of the logits", async () => {
    const prompt = Array.from({ length: 40 }, (_, i) => (i * 53 + 5) % 512);
    const tokens = [...prompt, ...(await generate(model, prompt, { maxNewTokens: 20, stopAtEos: false }))]; // 60: the last 20 greedy
    const reqs = [
      { context: tokens.slice(0, 1), continuation: tokens.slice(1, 60) },
      { context: tokens.slice(0, 20), continuation: tokens.slice(20, 31) },
      { context: tokens.slice(0, 40), continuation: tokens.slice(40, 60) }, // greedy
    ];
    const got = await modelScorer(model).continuations(reqs);
    const logits = forward(model, tf.tensor2d([tokens.slice(0, 59)], [1, 59], 'int32'), { plan: FORWARD_PLANS.cpu });
    const rows = (await logits.array())[0];
    logits.dispose();
    const lp = (t: number, tok: number) => {
      const r = rows[t];
      const m = Math.max(...r);
      return r[tok] - m - Math.log(r.reduce((s, x) => s + Math.exp(x - m), 0));
    };
    const greedy = (t: number, tok: number) => rows[t][tok] === Math.max(...rows[t]);
    reqs.forEach((r, k) => {
      const start = r.context.length - 1;
      let want = 0;
      let allGreedy = true;
      r.continuation.forEach((tok, j) => {
        want += lp(start + j, tok);
        allGreedy &&= greedy(start + j, tok);
      });
      expect(Math.abs(got[k].logprob - want) / Math.abs(want)).toBeLessThan(1e-5);
      expect(got[k].greedy).toBe(allGreedy);
    });
    expect(got[2].greedy).toBe(true);
  });
});
