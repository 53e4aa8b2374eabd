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
});
