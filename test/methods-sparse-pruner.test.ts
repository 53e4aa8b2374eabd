// LLM-Pruner on the embedded stories260K (5 blocks, 8 heads in 4 KV groups, MLP 172): the paper's
// policy keeps the first and last blocks, removes half the KV groups and MLP channels of blocks
// 1-3; the pruned model is genuinely smaller, runs, and its parameter count matches the ratio.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { countParams } from '../lib/efficiency/macs';
import type { CalibSet } from '../lib/methods/calib';
import { accumulateGrads, compress, forwardPruned, keptCount, lossGradients, prunedBlocks, topKeep, validate, defaults } from '../lib/methods/llm-pruner';
import { linearName } from '../lib/models/arch';
import { saveModel } from '../lib/models/hf';
import { disposeModel, loadModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { initRuntime } from '../lib/runtime';
import { STORIES_BIN as bin, textCalib } from './model-helpers';

let calib: CalibSet;

beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. '.repeat(20), { seqlen: 32 });
});

const shape = (m: Model, b: number, l: string) => m.weights.get(linearName('llama', b, l))!.shape;

describe('LLM-Pruner options', () => {
  it('scales the paper policy to the depth: first and last blocks kept', () => {
    expect(prunedBlocks(defaults, 5)).toEqual([1, 2, 3]);
    expect(prunedBlocks(defaults, 32)).toEqual(Array.from({ length: 26 }, (_, i) => 4 + i)); // 4..29 as the paper's LLaMA-7B
    expect(keptCount(4, 0.5)).toBe(2);
    expect(keptCount(172, 0.5)).toBe(86);
    expect(topKeep([0.1, 5, 3, 5], 2)).toEqual([1, 3]);
  });

  it('rejects bad ratios and pruning that removes every head of a layer before any work', async () => {
    const m = await loadModel(bin);
    expect(() => validate({ ratio: 0 }, m)).toThrow(/llm-pruner: option 'ratio' must be number in \(0, 1\)/);
    expect(() => validate({ ratio: 1 }, m)).toThrow(/llm-pruner: option 'ratio' must be number in \(0, 1\)/);
    expect(() => validate({ ratio: 0.8 }, m)).toThrow(/ratio 0.8 would remove every attention head of layer 1 \(4 KV group\(s\) of 2 head\(s\)/);
    expect(() => validate({ ratio: 0.8, pruneAttention: false }, m)).not.toThrow();
    expect(() => validate({ layerStart: 3, layerEnd: 3 }, m)).toThrow(/layer range \[3, 3\) is empty/);
    await expect(compress(m, calib, { ratio: 0.9 })).rejects.toThrow(/would remove every attention head/);
    expect(shape(m, 1, 'q')).toEqual([64, 64]); // nothing was touched
    disposeModel(m);
  });
});

describe('LLM-Pruner gradient accumulation', () => {
  const grads = (v: number) => [0, 1, 2, 3].map((k) => tf.fill([1000], v + k)); // 4 KB each

  it('sums share·g, frees each input as its sum exists, and holds at most two gradients more', async () => {
    const a = grads(1);
    const start = tf.memory().numBytes;
    const first = accumulateGrads(null, a, 0.25);
    expect(a.every((g) => g.isDisposed)).toBe(true);
    const b = grads(10);
    const before = tf.memory().numBytes;
    const p = await tf.profile(() => accumulateGrads(first, b, 0.75));
    expect(p.peakBytes - before).toBeLessThanOrEqual(2 * 4000); // one product and one sum at a time
    expect(tf.memory().numBytes).toBe(start); // the four sums replace the four inputs
    const sums = p.result as tf.Tensor[];
    expect(first.every((g) => g.isDisposed) && b.every((g) => g.isDisposed)).toBe(true);
    sums.forEach((s, k) => expect(Array.from(s.dataSync().slice(0, 2))).toEqual([(1 + k) * 0.25 + (10 + k) * 0.75, (1 + k) * 0.25 + (10 + k) * 0.75]));
    sums.forEach((s) => s.dispose());
  });

  it('keeps the gradients of a single whole batch as they are', () => {
    const a = grads(1);
    const tensors = tf.memory().numTensors;
    const out = accumulateGrads(null, a, 1);
    expect(out.every((g, k) => g === a[k])).toBe(true);
    expect(tf.memory().numTensors).toBe(tensors);
    out.forEach((g) => g.dispose());
  });
});

describe('LLM-Pruner on stories260K', () => {
  it('gradients do not depend on the batch size (mean loss over all sequences)', async () => {
    const m = await loadModel(bin);
    const names = [linearName('llama', 2, 'up'), linearName('llama', 1, 'k')];
    const a = await lossGradients(m, calib.windows, names, 4);
    const b = await lossGradients(m, calib.windows, names, 1);
    for (const n of names) {
      const da = a.get(n)!.dataSync();
      const db = b.get(n)!.dataSync();
      let maxAbs = 0;
      for (let i = 0; i < da.length; i++) maxAbs = Math.max(maxAbs, Math.abs(da[i]));
      expect(maxAbs).toBeGreaterThan(0);
      for (let i = 0; i < da.length; i++) expect(Math.abs(da[i] - db[i])).toBeLessThan(1e-4 * maxAbs + 1e-7);
    }
    [...a.values(), ...b.values()].forEach((t) => t.dispose());
    disposeModel(m);
  });

  it('paper policy at 50%: blocks 1-3 lose half their KV groups and channels; params match; model runs', async () => {
    const m = await loadModel(bin);
    const before = countParams(m);
    const ids = tf.tensor2d([calib.windows[0]], [1, 32], 'int32');
    const tensors = tf.memory().numTensors;
    const r = await compress(m, calib, { ratio: 0.5, nsamples: 4, seqlen: 32 });
    expect(tf.memory().numTensors).toBe(tensors); // weights replaced one for one, nothing leaked
    for (const b of [1, 2, 3]) {
      expect(shape(m, b, 'q')).toEqual([32, 64]); // 2 KV groups × 2 heads × headDim 8
      expect(shape(m, b, 'k')).toEqual([16, 64]);
      expect(shape(m, b, 'v')).toEqual([16, 64]);
      expect(shape(m, b, 'o')).toEqual([64, 32]);
      expect(shape(m, b, 'gate')).toEqual([86, 64]);
      expect(shape(m, b, 'up')).toEqual([86, 64]);
      expect(shape(m, b, 'down')).toEqual([64, 86]);
    }
    for (const b of [0, 4]) expect(shape(m, b, 'q')).toEqual([64, 64]);
    // block linears: attention 64·64·2 + 32·64·2 = 12288, MLP 3·172·64 = 33024; half of each in 3 blocks
    const removed = 3 * 0.5 * (12288 + 33024);
    expect(countParams(m)).toBe(before - removed);
    expect(r.stats.params_after).toBe(before - removed);
    expect(m.config.hf.num_attention_heads_per_layer).toEqual([8, 4, 4, 4, 8]);
    expect(m.config.hf.num_key_value_heads_per_layer).toEqual([4, 2, 2, 2, 4]);
    expect(m.config.hf.intermediate_size_per_layer).toEqual([172, 86, 86, 86, 172]);
    const logits = forwardPruned(m, ids);
    expect(logits.shape).toEqual([1, 32, 512]);
    expect(Array.from(logits.dataSync()).every(Number.isFinite)).toBe(true);
    tf.dispose([logits, ids]);
    disposeModel(m);
  });

  it('importance is informative: Taylor-pruned model beats pruning the least important half inverted', async () => {
    // Keep the most important half vs the least important half of MLP channels in block 2 only.
    const nll = async (m: Model) => {
      const ids = tf.tensor2d(calib.windows, [4, 32], 'int32');
      const v = tf.tidy(() => {
        const lg = forwardPruned(m, ids);
        const p = tf.reshape(tf.slice(lg, [0, 0, 0], [4, 31, 512]), [124, 512]);
        const t = tf.reshape(tf.slice(ids, [0, 1], [4, 31]), [-1]);
        return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(p), tf.oneHot(t, 512)), 1)));
      });
      const x = (await v.data())[0];
      tf.dispose([v, ids]);
      return x;
    };
    const good = await loadModel(bin);
    const r = await compress(good, calib, { ratio: 0.5, layerStart: 2, layerEnd: 3, pruneAttention: false, nsamples: 4, seqlen: 32 });
    const kept = (r.artifacts.plans as { keptChannels: number[] }[])[0].keptChannels;
    const bad = await loadModel(bin);
    const dropped = Array.from({ length: 172 }, (_, i) => i).filter((i) => !kept.includes(i));
    for (const [l, axis] of [['gate', 0], ['up', 0], ['down', 1]] as const) {
      const n = linearName('llama', 2, l);
      const w = bad.weights.get(n)!;
      bad.weights.set(n, tf.gather(w, tf.tensor1d(dropped, 'int32'), axis));
      w.dispose();
    }
    bad.config = { ...bad.config, hf: { ...bad.config.hf, intermediate_size_per_layer: [172, 172, 86, 172, 172] } };
    expect(await nll(good)).toBeLessThan(await nll(bad));
    disposeModel(good);
    disposeModel(bad);
  });

  it('uniform widths (all blocks pruned) give a standard HF config that forward(), saving and loading use', async () => {
    const m = await loadModel(bin);
    await compress(m, calib, { ratio: 0.5, layerStart: 0, layerEnd: 5, nsamples: 4, seqlen: 32 });
    expect([m.config.numHeads, m.config.numKvHeads, m.config.intermediateSize]).toEqual([4, 2, 86]);
    expect(m.config.hf.num_attention_heads_per_layer).toBeUndefined();
    const ids = tf.tensor2d([calib.windows[1]], [1, 32], 'int32');
    const a = forward(m, ids);
    const b = forwardPruned(m, ids);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b.dataSync()));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-pruned-'));
    try {
      await saveModel(m, dir);
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      expect([cfg.num_attention_heads, cfg.num_key_value_heads, cfg.intermediate_size]).toEqual([4, 2, 86]);
      const back = await loadModel(dir);
      const c = forward(back, ids);
      expect(Array.from(c.dataSync())).toEqual(Array.from(a.dataSync()));
      c.dispose();
      disposeModel(back);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    tf.dispose([a, b, ids]);
    disposeModel(m);
  });
});
