// Meters and the resumable runner on the embedded stories260K (wasm).
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { countMacs } from '../lib/efficiency/macs';
import { measureMacs, measureStoredSize, meterCompression, meterGeneration } from '../lib/efficiency/meters';
import { smokeMatrix, STORIES260K, type MatrixConfig } from '../lib/matrix';
import { getMethod } from '../lib/methods/index';
import { disposeModel, loadModel } from '../lib/models/load';
import { readResults, trackFile } from '../lib/results';
import { initRuntime } from '../lib/runtime';
import { runMatrix } from '../lib/tracks/runner';

const MODEL = 'models/stories260K/stories260K.bin';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  expect(tf.getBackend()).toBe('wasm');
});

describe('Track 4 meters', () => {
  it('measures generation memory (weights included) without leaking', async () => {
    const model = await loadModel(MODEL);
    const before = tf.memory().numTensors;
    const g = await meterGeneration(model, { promptTokens: 8, newTokens: 4, batch: 1 });
    expect(tf.memory().numTensors).toBe(before);
    expect(g.path).toBe('kv-cache');
    expect(g.tokens).toBe(4);
    expect(g.peakBytes).toBeGreaterThan(g.weightBytes); // the KV cache and activations come on top
    const b = await meterGeneration(model, { promptTokens: 8, newTokens: 3, batch: 2 });
    expect(b.path).toBe('recompute');
    expect(b.tokens).toBe(6);
    expect(tf.memory().numTensors).toBe(before);
    await expect(meterGeneration(model, { promptTokens: 510, newTokens: 8 })).rejects.toThrow(/exceed stories260K's context of 512/);
    disposeModel(model);
  });

  it('counts MACs per token from the weights: dense = countMacs, 2:4 halves the linears, INT8 paper = 1/4', async () => {
    const model = await loadModel(MODEL);
    const dense = await measureMacs(model, null, 64, 'paper');
    const ref = await countMacs(model, { seqlen: 64 });
    expect(dense.total).toBe(ref.dense);
    expect(dense.perToken).toBe(ref.dense / 64);
    const q = await getMethod('rtn').compress(model, null, { bits: 8 });
    const qm = await measureMacs(model, q, 64, 'paper');
    const qc = await measureMacs(model, q, 64, 'count');
    const linearNz = ref.linearNonZero;
    expect(qm.total).toBeCloseTo(ref.attention + ref.head + (await countMacs(model, { seqlen: 64 })).linearNonZero * 0.25, 0);
    expect(qc.total).toBe((await countMacs(model, { seqlen: 64 })).skipZeros);
    expect(linearNz).toBeGreaterThan(0);
    disposeModel(model);
  });

  it('stores models on disk in their packed formats: 2:4 and INT8 are smaller than dense', async () => {
    const dense = await loadModel(MODEL);
    const d = await measureStoredSize(dense, null, {}, null);
    expect(d.format).toMatch(/^GGUF F32/);
    const sparse = await loadModel(MODEL);
    const r = await getMethod('magnitude').compress(sparse, null, { pattern: '2:4' } as never);
    const s = await measureStoredSize(sparse, 'sparsity', { pattern: '2:4' }, r);
    expect(s.format).toMatch(/2:4/);
    const quant = await loadModel(MODEL);
    const qr = await getMethod('rtn').compress(quant, null, { bits: 8 });
    const q = await measureStoredSize(quant, 'quantization', { bits: 8 }, qr);
    expect(q.format).toMatch(/GGUF/);
    // linears are ~60% of stories260K's weights (embeddings stay fp32): both must shrink the file
    expect(s.bytes).toBeLessThan(0.85 * d.bytes);
    expect(q.bytes).toBeLessThan(0.75 * d.bytes);
    [dense, sparse, quant].forEach(disposeModel);
  });
});

describe('Track 3 meter', () => {
  it('times and measures a compression that allocates', async () => {
    const { result, measurement } = await meterCompression(async (sample) => {
      const t = tf.zeros([256, 1024]); // 1 MiB live
      sample();
      await new Promise((r) => setTimeout(r, 60));
      const s = (await t.sum().data())[0];
      t.dispose();
      return s;
    });
    expect(result).toBe(0);
    expect(measurement.wallS).toBeGreaterThanOrEqual(0.05);
    expect(measurement.peakBytes).toBeGreaterThanOrEqual(256 * 1024 * 4);
  });
});

describe('runner', () => {
  function matrix(): MatrixConfig {
    const mx = smokeMatrix();
    mx.models = [STORIES260K];
    mx.tracks = [3, 4];
    mx.methods = [
      { id: 'dense', method: 'dense', config: {} },
      { id: 'magnitude-2:4', method: 'magnitude', config: { pattern: '2:4' } },
    ];
    mx.inference = { ...mx.inference, promptTokens: 8, newTokens: 4, macSeqlen: 32 };
    return mx;
  }

  it('writes rows per cell and skips finished cells on a rerun', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-run-'));
    const log = () => undefined;
    const before = tf.memory().numTensors;
    const first = await runMatrix(matrix(), { out, log });
    expect(tf.memory().numTensors).toBe(before);
    expect(first.cells).toBe(3); // T4 × 2 methods, T3 × the compressed method
    expect(first.pending).toBe(3);
    expect(first.failed).toEqual([]);
    const t3 = readResults(trackFile(3, out));
    const t4 = readResults(trackFile(4, out));
    expect(t3.filter((r) => r.status === 'ok').map((r) => r.metric).sort()).toEqual(['peak_memory_bytes', 'wall_time_s']);
    expect(t4.filter((r) => r.status === 'ok').length).toBe(6); // dense + magnitude × (memory, size, MACs)
    expect([...t3, ...t4].every((r) => r.status === 'ok' && /^cell=[0-9a-f]{16}/.test(r.note))).toBe(true);
    const dense = t4.find((r) => r.method === 'dense' && r.metric === 'macs_per_token')!;
    const mag = t4.find((r) => r.method === 'magnitude' && r.metric === 'macs_per_token')!;
    expect(mag.value!).toBeLessThan(dense.value!);

    const second = await runMatrix(matrix(), { out, log });
    expect(second.pending).toBe(0);
    expect(readResults(trackFile(4, out)).filter((r) => r.status === 'ok').length).toBe(6); // nothing redone
    fs.rmSync(out, { recursive: true, force: true });
  }, 120_000);

  it('refuses an unknown method or option key before any work, naming it', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-run-'));
    const mx = matrix();
    mx.methods.push({ id: 'nosuch', method: 'nosuchmethod', config: {} });
    await expect(runMatrix(mx, { out, log: () => undefined })).rejects.toThrow(/unknown method 'nosuchmethod' \(known: dense, magnitude/);
    const my = matrix();
    my.methods[1] = { id: 'magnitude-2:4', method: 'magnitude', config: { patern: '2:4' } };
    await expect(runMatrix(my, { out, log: () => undefined })).rejects.toThrow(/unknown option 'patern' for method 'magnitude' \(valid: pattern\)/);
    expect(fs.existsSync(trackFile(3, out))).toBe(false);
    fs.rmSync(out, { recursive: true, force: true });
  });
});
