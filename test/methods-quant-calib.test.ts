// Calibration sampling (Python-identical windows), the calib-ids reader and the Hessian helpers.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { CalibError, PyRandom, calibBatches, describeCalib, loadCalibIds, sampleCalibration } from '../lib/methods/calib';
import { BlockHessians, HessianAccumulator, choleskyInverse, choleskyLower, prepareHessian } from '../lib/methods/hessian';

const repoRoot = path.resolve(__dirname, '..');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const calibFile = path.join(shared, 'reference/stories260K/calib_wikitext2_valid_128x512.json');

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('PyRandom', () => {
  it('matches CPython random.seed/randint/random', () => {
    // python3 -c "import random; random.seed(0); print([random.randint(0, 1000) for _ in range(5)])"
    let r = new PyRandom(0);
    expect(Array.from({ length: 5 }, () => r.randint(0, 1000))).toEqual([864, 394, 776, 911, 430]);
    r = new PyRandom(0);
    expect(Array.from({ length: 3 }, () => r.randint(0, 813645 - 513))).toEqual([403958, 794772, 441001]);
    r = new PyRandom(7);
    expect(Array.from({ length: 3 }, () => r.randint(0, 2 ** 31))).toEqual([1390851128, 647892279, 1695753998]);
    expect(new PyRandom(0).random()).toBe(0.8444218515250481);
  });
});

describe('sampleCalibration', () => {
  it('draws windows at randint(0, n - L - 1) offsets', () => {
    const ids = Array.from({ length: 1000 }, (_, i) => i);
    const c = sampleCalibration(ids, 'toy', { nsamples: 3, seqlen: 10, seed: 0 });
    const r = new PyRandom(0);
    const starts = [0, 1, 2].map(() => r.randint(0, 1000 - 10 - 1));
    expect(c.windows.map((w) => w[0])).toEqual(starts);
    expect(c.windows[1]).toEqual(Array.from({ length: 10 }, (_, k) => starts[1] + k));
    expect(describeCalib(c)).toBe('toy:3x10:seed0');
  });
  it('rejects a calibration window longer than the corpus before any work', () => {
    expect(() => sampleCalibration([1, 2, 3, 4], 'tiny', { nsamples: 1, seqlen: 8 })).toThrow(CalibError);
    expect(() => sampleCalibration([1, 2, 3, 4], 'tiny', { nsamples: 1, seqlen: 8 })).toThrow(/corpus 'tiny' has 4 tokens/);
    expect(() => sampleCalibration(new Array(100).fill(0), 'x', { nsamples: 0, seqlen: 8 })).toThrow(/nsamples/);
    expect(() => sampleCalibration(new Array(100).fill(0), 'x', { nsamples: 13, seqlen: 8 })).toThrow(/104 tokens is longer than corpus 'x' \(100 tokens\)/);
  });
  it('batches windows as int32 tensors without leaks', () => {
    const c = sampleCalibration(Array.from({ length: 100 }, (_, i) => i), 'toy', { nsamples: 5, seqlen: 4, seed: 1 });
    const before = tf.memory().numTensors;
    const b = calibBatches(c, 2);
    expect(b.map((t) => t.shape)).toEqual([[2, 4], [2, 4], [1, 4]]);
    expect(b[2].dtype).toBe('int32');
    expect(Array.from(b[2].dataSync())).toEqual(c.windows[4]);
    b.forEach((t) => t.dispose());
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.skipIf(!fs.existsSync(calibFile))('loadCalibIds (needs ../shared/reference)', () => {
  it('reads the reference windows', () => {
    const c = loadCalibIds(calibFile);
    expect(c.nsamples).toBe(128);
    expect(c.seqlen).toBe(512);
    expect(c.seed).toBe(0);
    const c2 = loadCalibIds(calibFile, { nsamples: 4, seqlen: 16 });
    expect(c2.windows.length).toBe(4);
    expect(c2.windows[3]).toEqual(c.windows[3].slice(0, 16));
    expect(() => loadCalibIds(calibFile, { nsamples: 129 })).toThrow(/128 windows, 129 asked/);
    expect(() => loadCalibIds(calibFile, { vocabSize: 10 })).toThrow(/token id \d+ >= vocab size 10/);
  });
});

describe('Hessian', () => {
  it('accumulates H = 2/nseq Σ XᵀX as the reference add_batch', async () => {
    const before = tf.memory().numTensors;
    const h = new HessianAccumulator(2);
    h.addBatch(tf.tensor2d([[1, 2], [3, 4]]), 1); // XᵀX = [[10,14],[14,20]]
    h.addBatch(tf.tensor2d([[1, 0]]), 1); // + [[1,0],[0,0]]
    expect(h.nsamples).toBe(2);
    const H = await h.toFloat64();
    // 2/2 * ([[10,14],[14,20]] + [[1,0],[0,0]])
    [11, 14, 14, 20].forEach((v, i) => expect(H[i]).toBeCloseTo(v, 4));
    h.dispose();
    // the two literal inputs above are not disposed by the accumulator
    expect(tf.memory().numTensors - before).toBe(2);
  });
  it('BlockHessians: one accumulator per input group, each captured input added once', async () => {
    const before = tf.memory().numTensors;
    const linears = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
    const cols = (l: string) => (l === 'down' ? 3 : 2);
    const hs = new BlockHessians('llama', linears, cols);
    expect(hs.get('k')).toBe(hs.get('q'));
    expect(hs.get('v')).toBe(hs.get('q'));
    expect(hs.get('up')).toBe(hs.get('gate'));
    expect(hs.get('o')).not.toBe(hs.get('q'));
    const xs = [tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[0.5, -1]])];
    const xo = tf.tensor2d([[2, 1]]);
    const xd = tf.tensor2d([[1, 0, 2]]);
    const alone = new HessianAccumulator(2);
    for (const [b, x] of xs.entries()) {
      // the driver hands every linear of a group the same input, in the block's order
      for (const l of linears) hs.add(l, l === 'o' ? xo : l === 'down' ? xd : x, { samples: b + 1 });
      alone.addBatch(x, b + 1);
    }
    expect(hs.get('q').nsamples).toBe(3); // 1 + 2 sequences, not three times that
    expect(await hs.get('v').toFloat64()).toEqual(await alone.toFloat64());
    expect(hs.get('down').nsamples).toBe(3);
    hs.dispose();
    alone.dispose();
    tf.dispose([...xs, xo, xd]);
    expect(() => new BlockHessians('llama', ['q', 'nope'], cols)).toThrow(/'nope' is in no input group/);
    expect(tf.memory().numTensors).toBe(before); // nothing allocated before the check either
  });
  it('Cholesky and inverse', () => {
    const A = Float64Array.from([4, 2, 2, 3]);
    const L = choleskyLower(Float64Array.from(A), 2);
    expect(Array.from(L)).toEqual([2, 0, 1, Math.sqrt(2)]);
    const inv = choleskyInverse(L, 2); // det 8: [[3,-2],[-2,4]]/8
    [3 / 8, -2 / 8, -2 / 8, 4 / 8].forEach((v, i) => expect(inv[i]).toBeCloseTo(v, 12));
    expect(() => choleskyLower(Float64Array.from([1, 2, 2, 1]), 2)).toThrow(/not positive definite/);
  });
  it('prepareHessian: dead columns, dampening, upper factor of the inverse', () => {
    const H = Float64Array.from([4, 0, 0, 0]); // column 1 dead
    const p = prepareHessian(H, 2, 0.01);
    expect(p.dead).toEqual([false, true]);
    expect(p.damp).toBeCloseTo(0.01 * (4 + 1) / 2, 12);
    // (diag(4.025, 1.025))⁻¹ → upper factor diag(1/sqrt(4.025), 1/sqrt(1.025))
    expect(p.hinv[0]).toBeCloseTo(1 / Math.sqrt(4.025), 12);
    expect(p.hinv[3]).toBeCloseTo(1 / Math.sqrt(1.025), 12);
    expect(p.hinv[1]).toBe(0);
  });
});
