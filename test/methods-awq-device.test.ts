// AWQ's searches on the tfjs backend, used for big layers (solverKind 'device'), against the host
// code they replace there: the scale search's fake quantization of W·diag(s) (scaledFakeQuantDevice:
// the same fp32 element-wise operations, so equal values) and the clipping search (clipSearchDevice:
// no [tokens, cols] readback; the same best maxima up to fp32 sums in another order); nothing left
// allocated. And the host's clipping search against the loss taken term by term.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { awqFakeQuant, chunkMean, clipSearch, clipSearchDevice, defaults, divideChunks, gramCheaper, gramLoss, inputGram, scaledFakeQuantDevice, squaredError, type AwqOptions } from '../lib/methods/awq';
import { correlatedInputs, randn } from '../lib/methods/solver-cases';
import { awqQuantizeMatrix, dequantizeMatrix } from '../lib/quant/quantizer';
import { awqQuantizeDevice } from '../lib/quant/quantizer-device';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

/** The reference auto_clip_layer's loss, term by term: mean over the sampled tokens of (x·w' − x·w)² per (row, group, candidate). */
function clipSearchDirect(W: Float32Array, rows: number, cols: number, X: Float32Array, tokens: number, o: AwqOptions): Float32Array {
  const gs = o.groupSize === -1 ? cols : o.groupSize;
  const ng = Math.ceil(cols / gs);
  const step = Math.max(1, Math.floor(tokens / o.clipSampleTokens));
  const idx = Array.from({ length: Math.ceil(tokens / step) }, (_, i) => i * step);
  const best = new Float32Array(rows * ng);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < ng; g++) {
      const [c0, c1] = [g * gs, Math.min(g * gs + gs, cols)];
      const w = W.subarray(r * cols + c0, r * cols + c1);
      const dot = (v: ArrayLike<number>, t: number) => Array.from(v).reduce((a, x, c) => a + X[t * cols + c0 + c] * x, 0);
      const orgMax = Math.max(...Array.from(w, Math.abs));
      let [minErr, bestMax] = [1e9, orgMax];
      for (let i = 0; i < Math.floor(o.clipMaxShrink * o.clipGrid); i++) {
        const maxVal = Math.fround(orgMax * (1 - i / o.clipGrid));
        const q = awqFakeQuant(Float32Array.from(w, (v) => Math.min(Math.max(v, -maxVal), maxVal)), 1, w.length, { ...o, groupSize: -1 });
        const err = idx.reduce((a, t) => a + (dot(q, t) - dot(w, t)) ** 2, 0) / idx.length;
        if (err < minErr) [minErr, bestMax] = [err, maxVal];
      }
      best[r * ng + g] = bestMax;
    }
  }
  return best;
}

describe('AWQ searches on the device', () => {
  const rows = 40;
  const cols = 256;
  const tokens = 700;
  const W = randn(rows * cols, 11); // [rows, cols]
  for (let i = 0; i < W.length; i += 37) W[i] *= 6; // outliers, so that clipping pays off
  const X = correlatedInputs(tokens, cols, 12); // [tokens, cols]

  for (const [label, o] of [
    ['W4 g64, 100 sampled tokens', { ...defaults, bits: 4, groupSize: 64, clipSampleTokens: 100 }],
    ['W3 per channel, every token', { ...defaults, bits: 3, groupSize: -1, clipSampleTokens: 1000 }],
  ] as [string, AwqOptions][]) {
    it(`${label}: the host's maxima, nothing leaked`, async () => {
      const host = clipSearch(W, rows, cols, X, tokens, o);
      const n0 = tf.memory().numTensors;
      const x = tf.tensor2d(X, [tokens, cols]);
      const dev = await clipSearchDevice(W, rows, cols, [x], o);
      x.dispose();
      expect(tf.memory().numTensors).toBe(n0);
      expect(dev.length).toBe(host.length);
      // A near-tie between two grid points may resolve the other way under another summation order.
      const differ = dev.filter((v, i) => Math.abs(v - host[i]) > 1e-6 * Math.abs(host[i])).length;
      expect(differ / host.length).toBeLessThanOrEqual(0.02);
      // Clipping happened somewhere (the search is not trivially the unclipped maxima).
      const unclipped = clipSearch(W, rows, cols, X, tokens, { ...o, clipMaxShrink: 0.05 });
      expect(host.some((v, i) => v < unclipped[i])).toBe(true);
    });
  }

  it('the host search (XᵀX form) picks the maxima of the loss taken term by term, a short last group included', () => {
    for (const o of [{ ...defaults, bits: 4, groupSize: 96, clipSampleTokens: 100 }, { ...defaults, bits: 3, groupSize: -1, clipSampleTokens: 300 }]) {
      const host = clipSearch(W, rows, cols, X, tokens, o);
      const direct = clipSearchDirect(W, rows, cols, X, tokens, o);
      expect(host.length).toBe(direct.length);
      const differ = host.filter((v, i) => v !== direct[i]).length; // a float64 near-tie at most
      expect(differ / host.length).toBeLessThanOrEqual(0.01);
      const unclipped = clipSearch(W, rows, cols, X, tokens, { ...o, clipMaxShrink: 0.05 });
      expect(host.some((v, i) => v < unclipped[i])).toBe(true); // the search clipped somewhere
    }
  });

  for (const [label, o] of [
    ['W4 g64', { ...defaults, bits: 4, groupSize: 64 }],
    ['W8 per channel', { ...defaults, bits: 8, groupSize: -1 }],
  ] as [string, AwqOptions][]) {
    it(`${label}: Q(W·diag(s))/diag(s) equals the host's`, async () => {
      const s = Float32Array.from(randn(cols, 13), (v) => Math.fround(Math.exp(v / 2)));
      const scaled = Float32Array.from(W, (v, i) => Math.fround(v * s[i % cols]));
      const host = Float32Array.from(awqFakeQuant(scaled, rows, cols, o), (v, i) => Math.fround(v / s[i % cols]));
      const n0 = tf.memory().numTensors;
      const [w, st] = [tf.tensor2d(W, [rows, cols]), tf.tensor1d(s)];
      const q = scaledFakeQuantDevice(w, st, o);
      const dev = (await q.data()) as Float32Array;
      tf.dispose([w, st, q]);
      expect(tf.memory().numTensors).toBe(n0);
      expect(dev).toEqual(host);
      expect(new Set(dev.subarray(0, 64)).size).toBeGreaterThan(4); // quantized, not zeroed
    });
  }

  it("a lone linear's loss through its inputs' Gram matrix equals the loss token by token, inputs in chunks; Gram only where cheaper", async () => {
    const n0 = tf.memory().numTensors;
    const cut = 301;
    const xs = [tf.tensor2d(X.subarray(0, cut * cols), [cut, cols]), tf.tensor2d(X.subarray(cut * cols), [tokens - cut, cols])];
    const w = tf.tensor2d(W, [rows, cols]);
    const G = inputGram(xs);
    for (const seed of [13, 14]) {
      const st = tf.tensor1d(Float32Array.from(randn(cols, seed), (v) => Math.fround(Math.exp(v / 2))));
      const wq = scaledFakeQuantDevice(w, st, { ...defaults, bits: 3, groupSize: 64 });
      const viaGram = gramLoss(w, wq, G, tokens);
      const org = xs.map((x) => tf.matMul(x, w, false, true));
      const direct = squaredError(org, (each) =>
        xs.forEach((x, i) => {
          const y = tf.matMul(x, wq, false, true);
          each(i, y);
          y.dispose();
        }),
      );
      const [a, b] = [(await viaGram.data())[0], (await direct.data())[0]];
      expect(b).toBeGreaterThan(0);
      expect(Math.abs(a - b) / b).toBeLessThan(1e-5);
      tf.dispose([st, wq, viaGram, direct, ...org]);
    }
    tf.dispose([G, w, ...xs]);
    expect(tf.memory().numTensors).toBe(n0);
    // A 7B down projection (out 4096, in 11008) at 128 × 2048 tokens: through G; at 4 × 1024 tokens: token by token.
    expect(gramCheaper(128 * 2048, 4096, 11008, 20)).toBe(true);
    expect(gramCheaper(4 * 1024, 4096, 11008, 20)).toBe(false);
  });

  it("the final quantizer on the backend (awqQuantizeDevice) gives the host's codes, scales, zeros and weights", async () => {
    for (const spec of [{ bits: 4, groupSize: 64 }, { bits: 3, groupSize: -1 }].map((o) => ({ ...o, sym: false, groupRemainder: 'error' as const }))) {
      const host = awqQuantizeMatrix(W, rows, cols, spec);
      const n0 = tf.memory().numTensors;
      const w = tf.tensor2d(W, [rows, cols]);
      const dev = await awqQuantizeDevice(w, spec);
      const label = `W${spec.bits} g${spec.groupSize}`;
      expect(dev.quantized.scales, label).toEqual(host.scales);
      expect(dev.quantized.zeros, label).toEqual(host.zeros);
      expect(dev.quantized.codes, label).toEqual(host.codes);
      expect(new Set(host.codes).size, label).toBe(2 ** spec.bits); // every level used
      expect(Float32Array.from(await dev.weight.data()), label).toEqual(dequantizeMatrix(host));
      tf.dispose([w, dev.weight]);
      expect(tf.memory().numTensors, label).toBe(n0);
    }
  });

  it('means over chunks (per column and over everything) equal tf.mean of the whole, and are tf.mean itself on one chunk', async () => {
    const x = tf.tensor2d(X, [tokens, cols]);
    const parts = [tf.slice(x, [0, 0], [301, cols]), tf.slice(x, [301, 0], [tokens - 301, cols])];
    for (const axis of [0, undefined] as const) {
      const [whole, chunked, one] = tf.tidy(() => [tf.mean(x, axis), chunkMean(parts, axis), chunkMean([x], axis)]);
      const [w, c, o1] = (await Promise.all([whole.data(), chunked.data(), one.data()])) as Float32Array[];
      expect(o1).toEqual(w);
      w.forEach((v, i) => expect(Math.abs(c[i] - v)).toBeLessThan(1e-6 * Math.max(1, Math.abs(v))));
      tf.dispose([whole, chunked, one]);
    }
    tf.dispose([x, ...parts]);
  });

  it("chunkMean of |x| and divideChunks hold one chunk's temporaries at a time, with the values of the whole-list forms", async () => {
    const cut = [0, 175, 350, 525, tokens];
    const chunks = () => cut.slice(1).map((e, i) => tf.tensor2d(X.subarray(cut[i] * cols, e * cols), [e - cut[i], cols])); // fresh data each
    const chunkBytes = Math.max(...cut.slice(1).map((e, i) => e - cut[i])) * cols * 4;
    /** Peak live bytes above those live before, while f runs (tfjs's profile: after every kernel). */
    const extraPeak = async (f: () => tf.Tensor | tf.Tensor[]) => {
      const before = tf.memory().numBytes;
      const info = await tf.profile(f);
      return { extra: info.peakBytes - before, result: info.result as tf.Tensor | tf.Tensor[] };
    };
    const parts = chunks();
    const mean = await extraPeak(() => chunkMean(parts, 0, tf.abs));
    expect(mean.extra).toBeLessThanOrEqual(2 * chunkBytes + 4 * cols * 4); // one |x| and its quotient, and the [cols] terms
    const listed = tf.tidy(() => parts.map((p) => tf.sum(tf.div(tf.abs(p), tokens), 0)).reduce((a, b) => tf.add(a, b))); // Σ |x_i| / n in chunk order
    expect(await (mean.result as tf.Tensor).data()).toEqual(await listed.data());
    tf.dispose([listed, mean.result as tf.Tensor]);

    const s = Float32Array.from({ length: cols }, (_, i) => 0.5 + (i % 7) / 4);
    const want = await Promise.all(parts.map((p) => tf.tidy(() => tf.div(p, tf.tensor1d(s))).data()));
    tf.dispose(parts);
    const n0 = tf.memory().numTensors;
    const fresh = chunks();
    const div = await extraPeak(() => divideChunks(fresh as tf.Tensor2D[], s));
    expect(div.extra).toBeLessThanOrEqual(chunkBytes + cols * 4); // one quotient beside its input, and s
    const got = div.result as tf.Tensor[];
    expect(fresh.every((x) => x.isDisposed)).toBe(true);
    expect(await Promise.all(got.map((g) => g.data()))).toEqual(want);
    tf.dispose(got);
    expect(tf.memory().numTensors).toBe(n0);
  });

  it('the inputs in chunks (one per calibration batch) give the one-tensor result, sampled tokens in both chunks', async () => {
    const o = { ...defaults, bits: 4, groupSize: 64, clipSampleTokens: 100 };
    const x = tf.tensor2d(X, [tokens, cols]);
    const parts = [tf.slice(x, [0, 0], [301, cols]), tf.slice(x, [301, 0], [tokens - 301, cols])] as tf.Tensor2D[];
    const n0 = tf.memory().numTensors;
    const one = await clipSearchDevice(W, rows, cols, [x], o);
    const chunked = await clipSearchDevice(W, rows, cols, parts, o);
    expect(tf.memory().numTensors).toBe(n0);
    tf.dispose([x, ...parts]);
    expect(chunked).toEqual(one);
  });

  it('refuses a partial last group', async () => {
    const x = tf.tensor2d(X, [tokens, cols]);
    await expect(clipSearchDevice(W, rows, cols, [x], { ...defaults, groupSize: 96 })).rejects.toThrow(/not whole groups of 96/);
    const one = tf.ones([cols]) as tf.Tensor1D;
    expect(() => scaledFakeQuantDevice(x, one, { ...defaults, groupSize: 96 })).toThrow(/not whole groups of 96/);
    tf.dispose([x, one]);
  });
});
