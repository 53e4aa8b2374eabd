// RTN on the tfjs backend (rtnDevice, used for big layers: solverKind 'device') against the host
// quantizer it replaces there (rtnMatrix): on wasm the same fp32 operations give the same codes,
// group parameters and fake-quantized weights; nothing left allocated.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { defaults, rtnDevice, rtnMatrix, type RtnOptions } from '../lib/methods/rtn';
import { randn } from '../lib/methods/solver-cases';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

describe('RTN on the device', () => {
  const rows = 24;
  const cols = 256;
  const W = randn(rows * cols, 5);
  W.fill(0, 3 * cols, 3 * cols + 64); // an all-zero group (range [-1, 1]) in row 3
  for (let i = 0; i < cols; i++) W[5 * cols + i] = Math.abs(W[5 * cols + i]); // a row without negatives
  for (const o of [
    { ...defaults, bits: 4, groupSize: 64 },
    { ...defaults, bits: 3, groupSize: -1 },
    { ...defaults, bits: 4, groupSize: 128, sym: true },
    { ...defaults, bits: 8, groupSize: 32 },
  ] as RtnOptions[]) {
    it(`W${o.bits} group ${o.groupSize}${o.sym ? ' sym' : ''}: the host's codes, parameters and weights`, async () => {
      const host = rtnMatrix(W, rows, cols, o);
      const n0 = tf.memory().numTensors;
      const w = tf.tensor2d(W, [rows, cols]);
      const dev = await rtnDevice(w, o);
      const weight = (await dev.weight.data()) as Float32Array;
      tf.dispose([w, dev.weight]);
      expect(tf.memory().numTensors).toBe(n0);
      expect(dev.quantized.codes).toEqual(host.quantized.codes);
      expect(dev.quantized.scales).toEqual(host.quantized.scales);
      expect(dev.quantized.zeros).toEqual(host.quantized.zeros);
      expect(Float32Array.from(weight)).toEqual(host.weight);
      let sq = 0;
      for (let i = 0; i < W.length; i++) sq += (W[i] - host.weight[i]) ** 2;
      expect(Math.abs(dev.sqErr - sq) / sq).toBeLessThan(1e-5);
    });
  }
  it('refuses a partial last group', async () => {
    const w = tf.tensor2d(W, [rows, cols]);
    await expect(rtnDevice(w, { ...defaults, groupSize: 96 })).rejects.toThrow(/not whole groups of 96/);
    w.dispose();
  });
});
