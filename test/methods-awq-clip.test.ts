// AWQ's clipping search on the tfjs backend (clipSearchDevice, used for big layers: no [tokens, cols]
// readback) against the host search it replaces there (clipSearch, the reference's loop): the same
// best maxima per (row, group) up to fp32 sums in another order, and nothing left allocated.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { clipSearch, clipSearchDevice, defaults, type AwqOptions } from '../lib/methods/awq';
import { correlatedInputs, randn } from '../lib/methods/solver-cases';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

describe('AWQ clipping search on the device', () => {
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
      const dev = await clipSearchDevice(W, rows, cols, x, o);
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

  it('refuses a partial last group', async () => {
    const x = tf.tensor2d(X, [tokens, cols]);
    await expect(clipSearchDevice(W, rows, cols, x, { ...defaults, groupSize: 96 })).rejects.toThrow(/not whole groups of 96/);
    x.dispose();
  });
});
