// Sparse storage layouts (N:M values + bit-packed positions, bitmask) on literal matrices, size
// accounting, model files that load back bit-identical, and MAC accounting on a tiny model.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countMacs, countParams, macCounter } from '../lib/efficiency/macs';
import type { Model, ModelConfig } from '../lib/models/types';
import {
  decodeBitmask,
  decodeNM,
  encodeBitmask,
  encodeNM,
  loadSparseWeights,
  packedSize,
  saveSparseWeights,
  sparsityReport,
} from '../lib/quant/sparse';
import { maskNM } from '../lib/quant/sparse-pattern';
import { initRuntime } from '../lib/runtime';

let dir: string;
beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-sparse-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648 - 0.5;
  });
}

/** Zeroes entries of w by an N:M mask of |w|. */
function nmSparse(w: Float32Array, rows: number, cols: number, n: number, m: number): Float32Array {
  const mask = maskNM(Array.from(w, Math.abs), rows, cols, n, m);
  return w.map((v, i) => (mask[i] ? 0 : v));
}

describe('N:M layout', () => {
  it('packs 2:4 kept values with 2-bit positions (literal)', () => {
    const w = [0, 1.5, 0, -2, 3, 0, 0, 4];
    const p = encodeNM(w, 1, 8, 2, 4);
    expect(Array.from(p.values)).toEqual([1.5, -2, 3, 4]);
    // positions 1, 3, 0, 3 → 1 | 3<<2 | 0<<4 | 3<<6
    expect(Array.from(p.indices)).toEqual([1 + 12 + 0 + 192]);
    expect(Array.from(decodeNM(p))).toEqual(w);
    expect(packedSize(p)).toEqual({ valueBytes: 16, indexBytes: 1, totalBytes: 17, denseBytes: 32 });
  });

  it('fills groups with extra zeros and refuses groups with too many non-zeros', () => {
    const p = encodeNM([0, 0, 0, 5], 1, 4, 2, 4);
    expect(Array.from(p.values)).toEqual([0, 5]);
    expect(Array.from(decodeNM(p))).toEqual([0, 0, 0, 5]);
    expect(() => encodeNM([1, 2, 0, 3], 1, 4, 2, 4, 'q.weight')).toThrow(/'q.weight': row 0, columns 0..3 have 3 non-zeros, a 2:4 pattern allows 2/);
  });

  it('round-trips 2:4 and 4:8 (3-bit positions) bit-exactly; 2:4 stores 17/32 of fp32', () => {
    for (const [n, m] of [[2, 4], [4, 8], [1, 4]]) {
      const rows = 7;
      const cols = 64;
      const w = nmSparse(rand(rows * cols, n * 10 + m), rows, cols, n, m);
      const p = encodeNM(w, rows, cols, n, m);
      expect(Array.from(decodeNM(p))).toEqual(Array.from(w));
      const kept = (rows * cols * (m - n)) / m;
      expect(p.values.length).toBe(kept);
      expect(p.indices.length).toBe(Math.ceil((kept * Math.ceil(Math.log2(m))) / 8));
    }
    const p = encodeNM(nmSparse(rand(64 * 64, 1), 64, 64, 2, 4), 64, 64, 2, 4);
    expect(packedSize(p).totalBytes / packedSize(p).denseBytes).toBe(17 / 32);
  });
});

describe('bitmask layout', () => {
  it('stores non-zeros and one bit per weight (literal)', () => {
    const w = [0, 2, 0, 0, 3, 0, 0, 0, 1];
    const p = encodeBitmask(w, 3, 3);
    expect(Array.from(p.values)).toEqual([2, 3, 1]);
    expect(Array.from(p.mask)).toEqual([0b00010010, 0b00000001]);
    expect(Array.from(decodeBitmask(p))).toEqual(w);
    expect(packedSize(p)).toEqual({ valueBytes: 12, indexBytes: 2, totalBytes: 14, denseBytes: 36 });
  });
});

function tinyConfig(): ModelConfig {
  return {
    arch: 'llama', vocabSize: 10, hiddenSize: 4, intermediateSize: 8, numLayers: 1, numHeads: 2, numKvHeads: 1,
    headDim: 2, maxPositions: 16, normEps: 1e-5, tieWordEmbeddings: false, bosTokenId: 1, eosTokenId: 2,
    ropeTheta: 10000, ropeScaling: null, doLayerNormBefore: true, wordEmbedProjDim: 4, activation: 'silu', bias: false, hf: {},
  };
}

/** A one-block LLaMA-shaped weight set (no forward needed): q,o [4,4]; k,v [2,4]; gate,up [8,4]; down [4,8]. */
function tinyModel(sparse: 'nm' | 'half' | 'none'): Model {
  const shapes: Record<string, [number, number]> = {
    'model.embed_tokens.weight': [10, 4], 'lm_head.weight': [10, 4],
    'model.layers.0.self_attn.q_proj.weight': [4, 4], 'model.layers.0.self_attn.k_proj.weight': [2, 4],
    'model.layers.0.self_attn.v_proj.weight': [2, 4], 'model.layers.0.self_attn.o_proj.weight': [4, 4],
    'model.layers.0.mlp.gate_proj.weight': [8, 4], 'model.layers.0.mlp.up_proj.weight': [8, 4],
    'model.layers.0.mlp.down_proj.weight': [4, 8],
  };
  const weights = new Map<string, tf.Tensor>();
  let seed = 1;
  for (const [name, [r, c]] of Object.entries(shapes)) {
    let w = rand(r * c, seed++);
    if (sparse !== 'none' && name.includes('layers')) w = sparse === 'nm' ? nmSparse(w, r, c, 2, 4) : w.map((v, i) => (i % 2 ? 0 : v));
    weights.set(name, tf.tensor2d(w, [r, c]));
  }
  weights.set('model.layers.0.input_layernorm.weight', tf.ones([4]));
  return { name: 'tiny', family: 'llama', config: tinyConfig(), weights, tokenizer: null as never, source: 'test' };
}

describe('sparse model files', () => {
  for (const layout of ['nm', 'bitmask'] as const) {
    it(`${layout}: weights load back bit-identical; size is accounted`, async () => {
      const model = tinyModel(layout === 'nm' ? 'nm' : 'half');
      const file = path.join(dir, `${layout}.safetensors`);
      const rep = await saveSparseWeights(model, file, layout === 'nm' ? { n: 2, m: 4 } : 'bitmask');
      const loaded = loadSparseWeights(file);
      expect([...loaded.keys()].sort()).toEqual([...model.weights.keys()].sort());
      for (const [name, t] of model.weights) {
        expect(loaded.get(name)!.shape, name).toEqual(t.shape);
        expect(Array.from(loaded.get(name)!.dataSync()), name).toEqual(Array.from(t.dataSync()));
      }
      const linearWeights = 16 + 8 + 8 + 16 + 32 + 32 + 32; // 144
      const dense = 4 * (40 + 40 + 4 + linearWeights);
      expect(rep.denseBytes).toBe(dense);
      // linears: half of the values in fp32 + 2 bits (N:M) or 1 bit (bitmask) per weight, per tensor rounded up
      const idx = Object.values(rep.packed).reduce((a, s) => a + s.indexBytes, 0);
      expect(idx).toBe(144 / 8); // 2:4: 72 kept × 2 bits; bitmask: 144 × 1 bit
      expect(rep.tensorBytes).toBe(4 * (40 + 40 + 4) + 4 * (linearWeights / 2) + idx);
      const header = Number(fs.readFileSync(file).readBigUInt64LE(0));
      expect(fs.statSync(file).size).toBe(8 + header + rep.tensorBytes);
      loaded.forEach((t) => t.dispose());
      model.weights.forEach((t) => t.dispose());
    });
  }

  it('refuses a non-N:M matrix for the N:M layout', async () => {
    const model = tinyModel('none');
    await expect(saveSparseWeights(model, path.join(dir, 'bad.safetensors'), { n: 2, m: 4 })).rejects.toThrow(/non-zeros, a 2:4 pattern allows 2/);
    model.weights.forEach((t) => t.dispose());
  });
});

describe('MAC accounting', () => {
  it('dense, zero-skipping and hook counts on a tiny model (literal)', async () => {
    const model = tinyModel('half');
    const r = await countMacs(model, { seqlen: 3 });
    expect(r.linearDense).toBe(3 * 144);
    expect(r.linearNonZero).toBe(3 * 72);
    expect(r.attention).toBe(2 * 9 * 4); // scores + values, 3×3 pairs, 2 heads × headDim 2
    expect(r.head).toBe(3 * 10 * 4);
    expect(r.dense).toBe(432 + 72 + 120);
    expect(r.skipZeros).toBe(216 + 72 + 120);
    expect((await countMacs(model, { seqlen: 3, attention: 'causal' })).attention).toBe(2 * 6 * 4);
    const counter = macCounter(model);
    const x = tf.zeros([3, 4]) as tf.Tensor2D;
    for (const name of Object.keys(r.perLinear)) counter.hook(name, name.includes('down') ? (tf.zeros([3, 8]) as tf.Tensor2D) : x);
    expect(counter.dense()).toBe(r.linearDense);
    expect(await counter.nonZero()).toBe(r.linearNonZero);
    expect(() => counter.hook('nope', x)).toThrow(/does not name a weight/);
    expect(countParams(model)).toBe(40 + 40 + 4 + 144);
    const s = await sparsityReport(model);
    expect(s.global).toBe(0.5);
    x.dispose();
    model.weights.forEach((t) => t.dispose());
  });
});
