// AWQ's searches on the tfjs backend, used for big layers (solverKind 'device'), against the host
// code they replace there: the scale search's fake quantization of W·diag(s) (scaledFakeQuantDevice:
// the same fp32 element-wise operations, so equal values) and the clipping search (clipSearchDevice:
// no [tokens, cols] readback; the same best maxima up to fp32 sums in another order); nothing left
// allocated.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { awqFakeQuant, chunkMean, clipSearch, clipSearchDevice, defaults, scaledFakeQuantDevice, type AwqOptions } from '../lib/methods/awq';
import { correlatedInputs, randn } from '../lib/methods/solver-cases';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

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
