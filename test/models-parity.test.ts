// Parity with Hugging Face transformers: logits of tiny random LLaMA/OPT models (fixtures made by
// scripts/hf_reference.py on the GPU host) within 1e-4 max absolute, and transformers' greedy
// stories260K continuation token for token. Backend: LLMCB_PARITY_BACKEND (default wasm; the GPU
// host runs it with webgpu), asserted.
import * as tf from '@tensorflow/tfjs';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime, type BackendName } from '../lib/runtime';
import { disposeModel, loadModel } from '../lib/models/load';
import { readSafetensorsHeader, readTensor } from '../lib/models/safetensors';
import { forward, generate } from '../lib/models/transformer';

const repoRoot = path.resolve(__dirname, '..');
const fixtures = path.join(repoRoot, 'test/fixtures/models');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const backend = (process.env.LLMCB_PARITY_BACKEND ?? 'wasm') as BackendName;
const TOLERANCE = 1e-4; // max |logit difference| in fp32

const dirs = existsSync(fixtures)
  ? readdirSync(fixtures).filter((d) => existsSync(path.join(fixtures, d, 'reference.safetensors'))).sort()
  : [];
if (dirs.length === 0) console.warn(`skipping HF parity: no fixtures in ${fixtures} (run scripts/hf_reference.py on the GPU host)`);
const greedyFile = path.join(fixtures, 'stories260K_greedy.json');

beforeAll(async () => {
  const rt = await initRuntime({ backend });
  expect(rt.backend).toBe(backend);
});

function reference(dir: string) {
  const file = path.join(dir, 'reference.safetensors');
  const h = readSafetensorsHeader(file);
  const get = (n: string) => {
    const e = h.entries.find((x) => x.name === n);
    if (!e) throw new Error(`${file}: no tensor '${n}'`);
    return { data: readTensor(file, e), shape: e.shape };
  };
  return { ids: get('input_ids'), mask: get('attention_mask'), logits: get('logits') };
}

describe(`transformers parity on ${backend}`, () => {
  it.skipIf(dirs.length === 0)('fixtures cover LLaMA (GQA, tied, llama3 and linear rope) and OPT', () => {
    expect(dirs).toEqual(expect.arrayContaining(['llama_gqa', 'llama_tied', 'llama_rope_llama3', 'opt_pre_proj', 'opt_post_ln']));
  });

  for (const d of dirs) {
    it(`${d}: logits within ${TOLERANCE} of transformers at every real position`, async () => {
      const dir = path.join(fixtures, d);
      const ref = reference(dir);
      const m = await loadModel(dir, { tokenizer: tokFile });
      const before = tf.memory().numTensors;
      const [B, T] = ref.ids.shape;
      const V = ref.logits.shape[2];
      const ours = tf.tidy(() => {
        const ids = tf.tensor2d(Int32Array.from(ref.ids.data), [B, T], 'int32');
        const mask = tf.tensor2d(Int32Array.from(ref.mask.data), [B, T], 'int32');
        return forward(m, ids, { attentionMask: mask });
      });
      expect(ours.shape).toEqual([B, T, V]);
      const got = ours.dataSync();
      ours.dispose();
      expect(tf.memory().numTensors).toBe(before);
      let worst = 0;
      let compared = 0;
      for (let b = 0; b < B; b++) {
        for (let t = 0; t < T; t++) {
          if (ref.mask.data[b * T + t] === 0) continue;
          for (let v = 0; v < V; v++) {
            const k = (b * T + t) * V + v;
            worst = Math.max(worst, Math.abs(got[k] - ref.logits.data[k]));
            compared++;
          }
        }
      }
      expect(compared).toBeGreaterThan(V * T);
      expect(worst).toBeLessThan(TOLERANCE);
      disposeModel(m);
    });
  }

  const sources: [string, string, string | undefined][] = [
    ['llama2.c files', path.join(repoRoot, 'models/stories260K/stories260K.bin'), undefined],
    ['shared HF directory', path.join(shared, 'reference/stories260K/hf'), tokFile],
  ];
  for (const [label, src, tok] of sources) {
    it.skipIf(!existsSync(greedyFile) || !existsSync(src))(`stories260K from the ${label}: greedy = transformers token for token`, async () => {
      const ref = JSON.parse(readFileSync(greedyFile, 'utf8')) as { prompt_ids: number[]; new_ids: number[] };
      const m = await loadModel(src, { tokenizer: tok });
      expect(m.tokenizer.encode('Once upon a time', { bos: true })).toEqual(ref.prompt_ids);
      const ids = await generate(m, ref.prompt_ids, { maxNewTokens: ref.new_ids.length, stopAtEos: false });
      expect(ids).toEqual(ref.new_ids);
      disposeModel(m);
    });
  }
});
