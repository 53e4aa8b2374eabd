// scripts/build-random-model.ts's writer (lib/models/random.ts writeRandomModelDir): a sharded bf16
// directory that loadModel reads back to the seeded values rounded to bf16, named and marked random.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { disposeModel, loadModel } from '../lib/models/load';
import { CONFIG_LLAMA2_7B, randomSources, writeRandomModelDir } from '../lib/models/random';
import { bf16ToF32, f32ToBf16 } from '../lib/models/safetensors';
import { configFromHf } from '../lib/models/hf';
import { initRuntime } from '../lib/runtime';
import { mulberry32, mulberry32Fill } from '../lib/rng';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

const SMALL = { ...CONFIG_LLAMA2_7B, num_hidden_layers: 2, hidden_size: 64, num_attention_heads: 4, num_key_value_heads: 4, intermediate_size: 172, vocab_size: 300 };

describe('random model directories', () => {
  it('write bf16 shards that load back to the seeded values (bf16-rounded), marked random', async () => {
    const dir = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-')), 'random-small');
    const shards = await writeRandomModelDir(SMALL, dir, { seed: 3, maxShardBytes: 100_000 });
    expect(shards.length).toBeGreaterThan(1);
    expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfg.llmcb_random.seed).toBe(3);
    expect(cfg._name_or_path).toMatch(/^random weights/);
    const model = await loadModel(dir);
    try {
      expect(model.name).toBe('random-small');
      const want = randomSources(configFromHf(SMALL, 'small'), { seed: 3, dist: 'uniform' });
      expect(model.weights.size).toBe(want.length);
      for (const s of want) {
        const got = (await model.weights.get(s.name)!.data()) as Float32Array;
        expect(got, s.name).toEqual(bf16ToF32(f32ToBf16(s.read())));
      }
      expect(model.tokenizer.vocabSize).toBe(300);
    } finally {
      disposeModel(model);
      fs.rmSync(path.dirname(dir), { recursive: true, force: true });
    }
  });

  it('refuses a directory whose name does not say random, and another seed gives other weights', async () => {
    await expect(writeRandomModelDir(SMALL, path.join(os.tmpdir(), 'llama-small'))).rejects.toThrow(/must contain 'random'/);
    const a = randomSources(configFromHf(SMALL, 'a'), { seed: 0 })[0].read();
    const b = randomSources(configFromHf(SMALL, 'b'), { seed: 1 })[0].read();
    expect(a).not.toEqual(b);
  });

  it('draws in bulk the streams drawn one number at a time (normal: mulberry32 + Box–Muller; uniform: the LCG)', () => {
    // A 300 × 512 embedding: 153,600 samples, over two of fillNormal's 65,536-sample chunks.
    const cfg = configFromHf({ ...SMALL, hidden_size: 512, num_hidden_layers: 1 }, 'big');
    const k = randomSources(cfg).findIndex((s) => s.name === 'model.embed_tokens.weight');
    const seedK = 5 * 100003 + k; // randomSources seeds tensor k with seed * 100003 + k
    const u = mulberry32(seedK);
    const normal = Float32Array.from({ length: 300 * 512 }, () => Math.sqrt(-2 * Math.log(u() + 2 ** -33)) * Math.cos(2 * Math.PI * (u() + 2 ** -33)) * 0.02);
    // The index of the first difference (-1: none): a failing toEqual would diff 153,600 numbers for minutes.
    const firstDiff = (a: Float32Array, b: Float32Array) => (a.length !== b.length ? 0 : a.findIndex((x, i) => x !== b[i]));
    expect(firstDiff(randomSources(cfg, { seed: 5, dist: 'normal' })[k].read(), normal)).toBe(-1);
    let a = (seedK * 2654435761) >>> 0;
    const uniform = Float32Array.from({ length: 300 * 512 }, () => {
      a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
      return (a / 4294967296 - 0.5) * 2 * Math.sqrt(3) * 0.02;
    });
    expect(firstDiff(randomSources(cfg, { seed: 5, dist: 'uniform' })[k].read(), uniform)).toBe(-1);
  });

  it('mulberry32Fill continues the stream from the state it returns', () => {
    const one = mulberry32(42);
    const want = Float64Array.from({ length: 10 }, () => one());
    const got = new Float64Array(10);
    const state = mulberry32Fill(got.subarray(0, 3), 42);
    mulberry32Fill(got.subarray(3), state);
    expect(got).toEqual(want);
  });
});
