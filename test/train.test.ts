import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { WindowLoader, evalWindows, type BatchSource } from '../lib/train/data';
import { AdamW, clipFactor, cosineLr } from '../lib/train/optim';
import { Rng } from '../lib/train/rng';
import { train } from '../lib/train/trainer';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  expect(tf.getBackend()).toBe('wasm');
});

describe('schedule', () => {
  const o = { lr: 1, warmupSteps: 4, totalSteps: 14, minLrRatio: 0.1 };
  it('warms up linearly, then follows the cosine to the floor', () => {
    expect([0, 1, 2, 3].map((s) => cosineLr(s, o))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(cosineLr(4, o)).toBeCloseTo(1, 12);
    expect(cosineLr(9, o)).toBeCloseTo(0.55, 12); // halfway: (1 + 0.1) / 2
    expect(cosineLr(14, o)).toBeCloseTo(0.1, 12);
    expect(cosineLr(100, o)).toBeCloseTo(0.1, 12);
  });
});

describe('AdamW', () => {
  it('matches the torch.optim.AdamW update computed by hand (3 steps, with decay)', () => {
    const before = tf.memory().numTensors;
    const p = tf.tidy(() => tf.variable(tf.tensor1d([1, -2])));
    const opt = new AdamW(new Map([['w', p]]), { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 });
    const gs = [[0.5, -1], [0.25, 2], [-1, 0.5]];
    const lrs = [0.1, 0.05, 0.02];
    // reference in float64
    let w = [1, -2];
    let m = [0, 0];
    let v = [0, 0];
    gs.forEach((g, k) => {
      const t = k + 1;
      const lr = lrs[k];
      w = w.map((x) => x * (1 - lr * 0.1));
      m = m.map((x, i) => 0.9 * x + 0.1 * g[i]);
      v = v.map((x, i) => 0.99 * x + 0.01 * g[i] * g[i]);
      const bc1 = 1 - 0.9 ** t;
      const bc2 = 1 - 0.99 ** t;
      w = w.map((x, i) => x - (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + 1e-8)));
      const grad = tf.tensor1d(g);
      opt.step(new Map([['w', grad]]), lr);
      grad.dispose();
    });
    const got = Array.from(p.dataSync());
    expect(got[0]).toBeCloseTo(w[0], 6);
    expect(got[1]).toBeCloseTo(w[1], 6);
    expect(opt.t).toBe(3);
    opt.dispose();
    p.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('skips decay where the mask says so and names a missing gradient', () => {
    const p = tf.tidy(() => tf.variable(tf.tensor1d([2])));
    const opt = new AdamW(new Map([['norm', p]]), { weightDecay: 0.5 }, () => false);
    const g = tf.tensor1d([0]);
    opt.step(new Map([['norm', g]]), 0.1);
    expect(p.dataSync()[0]).toBe(2); // zero gradient, no decay: unchanged
    expect(() => opt.step(new Map(), 0.1)).toThrow(/no gradient for parameter 'norm'/);
    g.dispose();
    opt.dispose();
    p.dispose();
  });

  it('global-norm clipping: ‖(3,4)‖ = 5', () => {
    const g = [tf.tensor1d([3]), tf.tensor1d([4])];
    const [n, f] = clipFactor(g, 1);
    expect(n.dataSync()[0]).toBeCloseTo(5, 6);
    expect(f.dataSync()[0]).toBeCloseTo(0.2, 6);
    const [n2, f2] = clipFactor(g, 10);
    expect(f2.dataSync()[0]).toBe(1);
    tf.dispose([...g, n, f, n2, f2]);
  });
});

describe('Rng', () => {
  it('is deterministic, resumable from its state, and shuffles to a permutation', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    expect([a.nextU32(), a.nextU32()]).toEqual([b.nextU32(), b.nextU32()]);
    const c = new Rng(a.state());
    expect([a.uniform(), a.normal(), a.int(7)]).toEqual([c.uniform(), c.normal(), c.int(7)]);
    expect(new Rng(1).nextU32()).not.toBe(new Rng(2).nextU32());
    const p = new Rng(3).permutation(50);
    expect([...p].sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    let s = 0;
    const r = new Rng(9);
    for (let i = 0; i < 20000; i++) s += r.normal();
    expect(Math.abs(s / 20000)).toBeLessThan(0.03);
    expect(() => new Rng(0.5)).toThrow(/integer/);
  });
});

describe('WindowLoader', () => {
  const tokens = Int32Array.from({ length: 21 }, (_, i) => i); // windows of 4+1: starts 0,4,8,12,16
  it('yields shifted input/target windows, every window once per epoch', () => {
    const dl = new WindowLoader(tokens, 4, 2, 0);
    expect(dl.numWindows).toBe(5);
    const starts: number[] = [];
    for (let k = 0; k < 5; k++) {
      const b = dl.next();
      for (let r = 0; r < 2; r++) {
        const inp = Array.from(b.inputs.subarray(r * 4, r * 4 + 4));
        const tgt = Array.from(b.targets.subarray(r * 4, r * 4 + 4));
        expect(tgt).toEqual(inp.map((x) => x + 1));
        expect(inp[0] % 4).toBe(0);
        starts.push(inp[0]);
      }
    }
    // 10 windows drawn = two full epochs of the 5 windows
    expect(starts.slice(0, 5).sort((x, y) => x - y)).toEqual([0, 4, 8, 12, 16]);
    expect(starts.slice(5).sort((x, y) => x - y)).toEqual([0, 4, 8, 12, 16]);
    expect(dl.epochs).toBe(2);
  });

  it('restores its position exactly', () => {
    const a = new WindowLoader(tokens, 4, 2, 7);
    a.next();
    a.next();
    a.next(); // crosses into epoch 1
    const st = a.getState();
    const b = new WindowLoader(tokens, 4, 2, 7);
    b.setState(JSON.parse(JSON.stringify(st)));
    for (let k = 0; k < 4; k++) expect(Array.from(b.next().inputs)).toEqual(Array.from(a.next().inputs));
    expect(() => b.setState({ epoch: 0, cursor: 99 })).toThrow(/bad state/);
    expect(() => new WindowLoader(tokens, 8, 4, 0)).toThrow(/fewer than one batch/);
  });

  it('cuts evaluation windows without overlap', () => {
    expect(evalWindows(tokens, 8).map((w) => Array.from(w))).toEqual([[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 12, 13, 14, 15]]);
  });
});

/** A toy regression task: y = x·w* with noise-free targets; batches drawn from a seeded RNG. */
class ToyData implements BatchSource<{ x: Float32Array; y: Float32Array }> {
  private rng: Rng;
  constructor(seed: number) {
    this.rng = new Rng(seed);
  }
  next() {
    const x = new Float32Array(8 * 3);
    for (let i = 0; i < x.length; i++) x[i] = this.rng.normal();
    const y = new Float32Array(8);
    for (let r = 0; r < 8; r++) y[r] = 2 * x[r * 3] - x[r * 3 + 1] + 0.5 * x[r * 3 + 2] + 1;
    return { x, y };
  }
  getState() {
    return this.rng.state();
  }
  setState(s: unknown) {
    this.rng = new Rng(s as [number, number, number, number]);
  }
}

function toyTask() {
  const w = tf.tidy(() => tf.variable(tf.zeros([3, 1])));
  const b = tf.tidy(() => tf.variable(tf.zeros([1])));
  const params = new Map<string, tf.Variable>([['w', w], ['b', b]]);
  return {
    params,
    data: new ToyData(5),
    tokensPerBatch: 8,
    loss: (batch: { x: Float32Array; y: Float32Array }) =>
      tf.tidy(() => tf.losses.meanSquaredError(tf.tensor2d(batch.y, [8, 1]), tf.tensor2d(batch.x, [8, 3]).matMul(w).add(b)) as tf.Scalar),
  };
}

describe('trainer', () => {
  const opts = { steps: 40, lr: 0.1, warmupSteps: 4, logEvery: 5, weightDecay: 0, gradClip: 1 };

  it('learns, leaks nothing, and a resumed run has exactly the losses of an uninterrupted one', async () => {
    const before = tf.memory().numTensors;
    const full = toyTask();
    const a = await train(full, opts);
    expect(a.curve.length).toBe(8);
    expect(a.curve[7].trainLoss).toBeLessThan(a.curve[0].trainLoss / 20);
    const wFull = Array.from(full.params.get('w')!.dataSync());
    expect(Math.abs(wFull[0] - 2)).toBeLessThan(0.2);
    tf.dispose([...full.params.values()]);
    expect(tf.memory().numTensors).toBe(before);

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-resume-'));
    const first = toyTask();
    const b1 = await train(first, { ...opts, checkpointDir: dir, stopAfter: 15 });
    expect(b1.step).toBe(15);
    tf.dispose([...first.params.values()]);
    // A fresh process would rebuild the task from scratch: new variables, data at its start.
    const second = toyTask();
    const b2 = await train(second, { ...opts, checkpointDir: dir, resume: true });
    expect(b2.resumedFrom).toBe(15);
    expect(b2.curve.map((p) => p.step)).toEqual(a.curve.map((p) => p.step));
    expect(b2.curve.map((p) => p.trainLoss)).toEqual(a.curve.map((p) => p.trainLoss));
    expect(Array.from(second.params.get('w')!.dataSync())).toEqual(wFull);
    tf.dispose([...second.params.values()]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses to resume with different trajectory options, and bad options', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'train-bad-'));
    const t = toyTask();
    await train(t, { ...opts, checkpointDir: dir, stopAfter: 5 });
    await expect(train(t, { ...opts, lr: 0.2, checkpointDir: dir, resume: true })).rejects.toThrow(/option 'lr' was 0.1, now 0.2/);
    await expect(train(t, { ...opts, checkpointEvery: 7 })).rejects.toThrow(/multiple of 'logEvery'/);
    await expect(train(t, { ...opts, resume: true })).rejects.toThrow(/need 'checkpointDir'/);
    tf.dispose([...t.params.values()]);
  });

  it('names parameters the loss does not use', async () => {
    const t = toyTask();
    const unused = tf.tidy(() => tf.variable(tf.zeros([2])));
    t.params.set('unused', unused);
    await expect(train(t, opts)).rejects.toThrow(/does not depend on parameter\(s\) unused/);
    tf.dispose([...t.params.values()]);
  });
});
