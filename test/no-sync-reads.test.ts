// Guard: no compression method or save path reads a tensor synchronously. tfjs-webgpu in Node
// implements dataSync/arraySync/bufferSync with an OffscreenCanvas it does not have, so every
// path that runs on the GPU must use await t.data()/t.array(). Here, on wasm, the three sync
// readers are patched to throw while each method (cheap settings, stories260K) and each writer
// (packed, sparse, HF safetensors F32/F16, GGUF) runs; the originals are restored afterwards.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportLlamaGguf, readGguf } from '../lib/efficiency/gguf';
import { loadCalibIds, type CalibSet } from '../lib/methods/calib';
import { METHODS, type CompressResult, type MethodName } from '../lib/methods';
import { saveModel } from '../lib/models/hf';
import { disposeModel, loadModel } from '../lib/models/load';
import { readSafetensorsHeader } from '../lib/models/safetensors';
import type { Model } from '../lib/models/types';
import { loadPacked, savePacked } from '../lib/quant/pack';
import { loadSparseWeights, saveSparseWeights } from '../lib/quant/sparse';
import { initRuntime } from '../lib/runtime';
import { STORIES_BIN as bin, textCalib, withModel } from './model-helpers';

const repoRoot = path.resolve(__dirname, '..');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const refCalib = path.join(shared, 'reference/stories260K/calib_wikitext2_valid_128x512.json');

const SYNC_READERS = ['dataSync', 'arraySync', 'bufferSync'] as const;

/** Runs fn with Tensor.prototype.{dataSync, arraySync, bufferSync} throwing (Variables included), then restores them. */
async function withoutSyncReads<T>(fn: () => Promise<T>): Promise<T> {
  const proto = tf.Tensor.prototype as unknown as Record<string, unknown>;
  const saved = SYNC_READERS.map((k) => [k, proto[k]] as const);
  for (const k of SYNC_READERS) {
    proto[k] = function (this: tf.Tensor) {
      throw new Error(`synchronous read ${k}() of a [${this.shape}] tensor (WebGPU in Node cannot do it)`);
    };
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) proto[k] = v;
  }
}

/** Host values of a tensor (async, so it also works inside the guard). */
const host = async (t: tf.Tensor) => Array.from((await t.data()) as Float32Array);

let calib: CalibSet;
let tmp: string;

beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  if (fs.existsSync(refCalib)) {
    calib = loadCalibIds(refCalib, { nsamples: 4, seqlen: 64, vocabSize: 512 });
  } else {
    console.warn(`no-sync-reads: ${refCalib} absent, calibrating on a short text instead`);
    calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. '.repeat(20));
  }
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-nosync-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('the guard itself', () => {
  it('makes every synchronous reader throw inside, and restores them outside', async () => {
    const t = tf.tensor1d([1, 2, 3]);
    const v = tf.variable(tf.zeros([2]));
    await withoutSyncReads(async () => {
      expect(() => t.dataSync()).toThrow(/synchronous read dataSync/);
      expect(() => t.arraySync()).toThrow(/synchronous read arraySync/);
      expect(() => t.bufferSync()).toThrow(/synchronous read bufferSync/);
      expect(() => v.dataSync()).toThrow(/synchronous read dataSync/);
      expect(await host(t)).toEqual([1, 2, 3]);
      expect(await t.array()).toEqual([1, 2, 3]);
    });
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3]);
    await expect(withoutSyncReads(async () => t.dataSync())).rejects.toThrow(/synchronous/);
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3]); // restored after a failure too
    tf.dispose([t, v]);
  });
});

/** Every registered method at a cheap setting (several for the paths a method has). */
const CASES: { method: MethodName; label: string; opts: Record<string, unknown> }[] = [
  { method: 'rtn', label: 'rtn W4 sym g32', opts: { bits: 4, groupSize: 32, sym: true, groupRemainder: 'partial' } },
  { method: 'gptq', label: 'gptq W4 act-order', opts: { bits: 4, actOrder: true, batchSize: 2 } },
  { method: 'awq', label: 'awq W4 with clipping', opts: { bits: 4, groupSize: -1, nGrid: 2, clipGrid: 4, clipSampleTokens: 64, batchSize: 2 } },
  { method: 'smoothquant', label: 'smoothquant dynamic', opts: { alpha: 0.5, batchSize: 2 } },
  { method: 'smoothquant', label: 'smoothquant static per-tensor', opts: { alpha: 0.5, actGranularity: 'per_tensor', actStatic: true, batchSize: 2 } },
  { method: 'omniquant', label: 'omniquant weight-only, 1 epoch', opts: { bits: 4, epochs: 1, batchSize: 2 } },
  { method: 'omniquant', label: 'omniquant weight-act (LET), 1 epoch', opts: { bits: 4, mode: 'weight-act', actBits: 8, epochs: 1, batchSize: 2 } },
  { method: 'magnitude', label: 'magnitude 50%', opts: { pattern: '50%' } },
  { method: 'wanda', label: 'wanda 50%', opts: { pattern: '50%', batchSize: 2 } },
  { method: 'sparsegpt', label: 'sparsegpt 50%', opts: { pattern: '50%', batchSize: 2 } },
  { method: 'sparsegpt', label: 'sparsegpt 2:4', opts: { pattern: '2:4', batchSize: 2 } },
  { method: 'llm-pruner', label: 'llm-pruner 50%', opts: { ratio: 0.5, nsamples: 2, seqlen: 32, batchSize: 2 } },
];

describe('every method runs without synchronous reads', () => {
  it('METHODS has no method this test does not run', () => {
    expect([...new Set(CASES.map((c) => c.method))].sort()).toEqual(Object.keys(METHODS).sort());
  });

  for (const c of CASES) {
    it(c.label, () => withModel(bin, async (model) => {
      const before = await host(model.weights.get('model.layers.1.mlp.down_proj.weight')!);
      const tensors = tf.memory().numTensors;
      const mod = METHODS[c.method] as unknown as { needsCalib: boolean; compress(m: Model, c: CalibSet | null, o: object): Promise<CompressResult> };
      const res = await withoutSyncReads(() => mod.compress(model, mod.needsCalib ? calib : null, c.opts));
      expect(tf.memory().numTensors, 'tensors leaked').toBe(tensors);
      expect(res.method).toBe(c.method);
      // the method changed the weights (down_proj of block 1 is compressed by every method)
      const after = await host(model.weights.get('model.layers.1.mlp.down_proj.weight')!);
      expect(after.length === before.length && after.every((v, i) => v === before[i])).toBe(false);
      expect(after.every(Number.isFinite)).toBe(true);
    }), 120_000);
  }
});

describe('writers and readers run without synchronous reads', () => {
  it('packed save (GPTQ codes) and load give the fake-quantized weights', () => withModel(bin, async (model) => {
    const res = await METHODS.gptq.compress(model, calib, { bits: 4, groupSize: 32, groupRemainder: 'partial', batchSize: 2 });
    const dir = path.join(tmp, 'packed');
    const files = await withoutSyncReads(() => savePacked(model, res.quantized, dir, { method: res.method, methodConfig: res.config, calib: res.calib, actQuant: res.actQuant }));
    expect(files['model.safetensors']).toBeGreaterThan(0);
    const { model: back } = await withoutSyncReads(async () => loadPacked(dir));
    try {
      for (const name of ['model.layers.0.self_attn.q_proj.weight', 'model.layers.4.mlp.down_proj.weight', 'model.norm.weight']) {
        expect(await host(back.weights.get(name)!), name).toEqual(await host(model.weights.get(name)!));
      }
    } finally {
      disposeModel(back);
    }
  }), 120_000);

  it('sparse storage (SparseGPT 2:4) saves and loads back the same weights', () => withModel(bin, async (model) => {
    await METHODS.sparsegpt.compress(model, calib, { pattern: '2:4', batchSize: 2 });
    const file = path.join(tmp, 'sparse.safetensors');
    const rep = await withoutSyncReads(() => saveSparseWeights(model, file, { n: 2, m: 4 }));
    expect(rep.tensorBytes).toBeLessThan(rep.denseBytes);
    const weights = await withoutSyncReads(async () => loadSparseWeights(file));
    try {
      for (const [name, t] of model.weights) expect(await host(weights.get(name)!), name).toEqual(await host(t));
    } finally {
      weights.forEach((t) => t.dispose());
    }
  }), 120_000);

  it('saveModel F32 (exact) and F16 (rounded, half the bytes) reload', () => withModel(bin, async (model) => {
    const d32 = path.join(tmp, 'hf32');
    const d16 = path.join(tmp, 'hf16');
    await withoutSyncReads(() => saveModel(model, d32));
    await withoutSyncReads(() => saveModel(model, d16, { dtype: 'F16' }));
    const h32 = readSafetensorsHeader(path.join(d32, 'model.safetensors'));
    const h16 = readSafetensorsHeader(path.join(d16, 'model.safetensors'));
    expect(new Set(h32.entries.map((e) => e.dtype))).toEqual(new Set(['F32']));
    expect(new Set(h16.entries.map((e) => e.dtype))).toEqual(new Set(['F16']));
    const b32 = await loadModel(d32);
    const b16 = await loadModel(d16);
    try {
      for (const [name, t] of model.weights) {
        const v = await host(t);
        expect(await host(b32.weights.get(name)!), name).toEqual(v);
        const w = await host(b16.weights.get(name)!);
        // fp16 keeps 11 significant bits: relative error at most 2^-11 (values here are far from fp16's range limits)
        w.forEach((x, i) => expect(Math.abs(x - v[i]), `${name}[${i}]`).toBeLessThanOrEqual(Math.abs(v[i]) * 2 ** -11 + 2 ** -24));
      }
      await expect(saveModel(model, path.join(tmp, 'bad'), { dtype: 'F8' as 'F16' })).rejects.toThrow(/dtype must be 'F32' or 'F16', got 'F8'/);
    } finally {
      disposeModel(b32);
      disposeModel(b16);
    }
  }), 120_000);

  it('GGUF export (RTN codes as Q4_0, and F32)', () => withModel(bin, async (model) => {
    const res = await METHODS.rtn.compress(model, null, { bits: 4, groupSize: 32, sym: true, groupRemainder: 'partial' });
    const fq = path.join(tmp, 'q.gguf');
    const rep = await withoutSyncReads(() => exportLlamaGguf(model, fq, { type: 'auto', quantized: res.quantized }));
    expect(rep.fileType).toBe('Q4_0');
    expect(rep.tensors.some((t) => t.how === 'codes')).toBe(true);
    const ff = path.join(tmp, 'f.gguf');
    const r32 = await withoutSyncReads(() => exportLlamaGguf(model, ff, { type: 'f32' }));
    expect(r32.fileType).toBe('F32');
    expect(readGguf(ff).tensors.length).toBe(readGguf(fq).tensors.length);
  }), 120_000);
});
