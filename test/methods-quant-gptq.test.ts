// GPTQ layer math on random layers: lower layer-output error than RTN on the calibration inputs,
// act-order / static groups / group remainder, leak-free accumulation.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { gptqQuantize, gptqSolve, defaults as gptqDefaults } from '../lib/methods/gptq';
import { HessianAccumulator } from '../lib/methods/hessian';
import { rtnMatrix, defaults as rtnDefaults } from '../lib/methods/rtn';
import { dequantizeMatrix } from '../lib/quant/quantizer';
import { correlatedInputs, outputError, randn } from '../lib/methods/solver-cases';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('GPTQ layer', () => {
  const rows = 24, cols = 96, tokens = 512;
  const W = randn(rows * cols, 11);
  const X = correlatedInputs(tokens, cols, 5);

  async function solved(opts: Partial<typeof gptqDefaults>) {
    const before = tf.memory().numTensors;
    const h = new HessianAccumulator(cols);
    // two batches of 256 tokens, each "one sequence"
    for (let b = 0; b < 2; b++) {
      const x = tf.tensor2d(X.subarray(b * 256 * cols, (b + 1) * 256 * cols), [256, cols]);
      h.addBatch(x, 1);
      x.dispose();
    }
    expect(h.nsamples).toBe(2);
    const w = tf.tensor2d(W, [rows, cols]);
    const res = await gptqSolve(w, h, opts);
    const weight = (await res.weight.data()) as Float32Array;
    h.dispose();
    tf.dispose([w, res.weight]);
    expect(tf.memory().numTensors).toBe(before);
    return { ...res, weight };
  }

  for (const [bits, groupSize] of [[4, -1], [3, -1], [4, 32], [2, 32], [8, -1]] as const) {
    it(`W${bits} g${groupSize}: output error below RTN's`, async () => {
      const g = await solved({ bits, groupSize, blocksize: 32 });
      const r = rtnMatrix(W, rows, cols, { ...rtnDefaults, bits, groupSize });
      const eg = outputError(X, tokens, W, g.weight, rows, cols);
      const er = outputError(X, tokens, W, r.weight, rows, cols);
      expect(eg).toBeLessThan(er * (bits === 8 || bits === 2 ? 1 : 0.9));
      // the returned codes decode to exactly the returned weights
      expect(Array.from(dequantizeMatrix(g.quantized))).toEqual(Array.from(g.weight));
    });
  }

  it('act-order and static groups also beat RTN; act-order codes decode through gIdx', async () => {
    const r = rtnMatrix(W, rows, cols, { ...rtnDefaults, bits: 4, groupSize: 32 });
    const er = outputError(X, tokens, W, r.weight, rows, cols);
    for (const o of [{ actOrder: true }, { actOrder: true, staticGroups: true }, { staticGroups: true }]) {
      const g = await solved({ bits: 4, groupSize: 32, blocksize: 32, ...o });
      expect(outputError(X, tokens, W, g.weight, rows, cols)).toBeLessThan(er);
      const q = g.quantized;
      for (let rr = 0; rr < rows; rr++) for (let c = 0; c < cols; c++) {
        const gi = q.gIdx ? q.gIdx[c] : Math.floor(c / 32);
        const G = q.scales.length / rows;
        const v = Math.fround(q.scales[rr * G + gi] * Math.fround(q.codes[rr * cols + c] - q.zeros[rr * G + gi]));
        expect(v).toBe(g.weight[rr * cols + c]);
      }
    }
  });

  it('blocksize does not change the result (lazy updates are exact up to rounding)', async () => {
    const a = await solved({ bits: 4, blocksize: 128 });
    const b = await solved({ bits: 4, blocksize: 16 });
    let diff = 0;
    for (let i = 0; i < a.weight.length; i++) if (a.weight[i] !== b.weight[i]) diff++;
    expect(diff / a.weight.length).toBeLessThan(0.01);
  });

  it('a dead input column gets zero weight', () => {
    const H = new Float64Array(4 * 4);
    [2, 1, 0, 3].forEach((d, i) => (H[i * 4 + i] = d)); // column 2 never active
    const res = gptqQuantize(Float32Array.from([1, 2, 3, 4, -1, -2, -3, -4]), 2, 4, H, { ...gptqDefaults, bits: 8 });
    expect(res.weight[2]).toBe(0);
    expect(res.weight[6]).toBe(0);
  });

  it('rejects bad options before work', () => {
    expect(() => gptqQuantize(W, rows, cols, new Float64Array(cols * cols), { ...gptqDefaults, percdamp: -1 })).toThrow(/percdamp/);
    expect(() => gptqQuantize(W, rows, 90, new Float64Array(90 * 90), { ...gptqDefaults, groupSize: 32 })).toThrow(/does not divide the input dimension 90/);
    expect(() => gptqQuantize(W, rows, cols, new Float64Array(cols * cols), { ...gptqDefaults, bits: 5 + 4 })).toThrow(/bits/);
  });
});
