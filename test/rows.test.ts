import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { byRows, initRuntime, logSoftmaxRows, maxRows, meanRows } from '../lib/runtime';

beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
});

describe('row-chunked kernels', () => {
  it('give the same result in chunks as in one launch, for any leading shape', () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor3d([1, 5, 2, 0, -3, 4, 7, 7, 1, 2, 9, -1, 0, 0, 8, 3, 2, 6, 5, 4, 1, -2, 3, 3], [2, 4, 3]);
    for (const chunk of [1, 3, 5]) {
      const whole = tf.softmax(x, -1);
      const parts = byRows(x, (r) => tf.softmax(r, -1), chunk);
      expect(parts.shape).toEqual([2, 4, 3]);
      expect(Array.from(parts.dataSync())).toEqual(Array.from(whole.dataSync()));
      const m = byRows(x, (r) => tf.max(r, -1, true), chunk);
      expect(m.shape).toEqual([2, 4, 1]);
      expect(Array.from(m.dataSync())).toEqual([5, 4, 7, 9, 8, 6, 5, 3]);
      tf.dispose([whole, parts, m]);
    }
    const ls = logSoftmaxRows(x);
    const mean = meanRows(x);
    const mx = maxRows(x);
    expect(Array.from(mean.dataSync())[0]).toBeCloseTo(8 / 3, 6);
    expect(Math.exp(ls.dataSync()[0]) + Math.exp(ls.dataSync()[1]) + Math.exp(ls.dataSync()[2])).toBeCloseTo(1, 6);
    tf.dispose([x, ls, mean, mx]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
