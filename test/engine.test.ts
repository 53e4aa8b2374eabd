// The inference executor (lib/engine) against the tfjs path, the exact reference: per-request
// log-likelihoods, greedy flags and next-token log-probabilities of stories260K, the zoo's smallest
// LLaMA and OPT models, a GQA model, a pruned model with per-block widths and a W8A8 model with
// activation fake quantization; every buffer freed, none made per step (1,000 steps); unsupported
// configurations and bad inputs refused before any work. Needs a WebGPU adapter (lavapipe or a
// GPU); the configuration checks run everywhere.
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineScorer } from '../lib/engine/scorer';
import { Executor, executorUnsupported } from '../lib/engine/executor';
import { Arena } from '../lib/engine/gpu';
import { Decoder } from '../lib/engine/generate';
import { generate } from '../lib/models/transformer';
import { tensorScorer } from '../lib/eval/model-scorer';
import type { ContinuationRequest, NextTokenRequest } from '../lib/eval/scorer';
import { disposeModel, loadModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { webgpuAdapterReason } from './kernels-helpers';
import { STORIES_BIN } from './model-helpers';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const TINY = { model_type: 'llama', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 200, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 };

describe('executor configuration checks (no GPU needed)', () => {
  it('names what it cannot run', () => {
    const m = randomModel(TINY, { seed: 1 });
    try {
      expect(executorUnsupported(m)).toBeNull();
      expect(executorUnsupported({ ...m, config: { ...m.config, activation: 'gelu' } })).toMatch(/activation 'gelu'/);
      expect(executorUnsupported({ ...m, packedLinears: new Map([['model.layers.0.self_attn.q_proj.weight', {} as never]]) })).toMatch(/packed quantized linears \(model\.layers\.0\.self_attn\.q_proj\.weight/);
      expect(executorUnsupported({ ...m, actQuant: { bits: 8, granularity: 'per_tensor', staticAbsmax: null } })).toMatch(/dynamic per-tensor/);
    } finally {
      disposeModel(m);
    }
  });
});

/** Requests of every shape the evaluator sends: short and long contexts, long continuations, truncation past maxLength. */
function requests(V: number, maxLength: number): { cont: ContinuationRequest[]; next: NextTokenRequest[] } {
  const ids = (n: number, s: number) => Array.from({ length: n }, (_, i) => (i * 31 + s * 17 + 5) % V);
  const cont = [
    { context: ids(20, 1), continuation: ids(5, 2) },
    { context: ids(3, 3), continuation: ids(40, 4) },
    { context: ids(70, 5), continuation: ids(1, 6) },
    { context: ids(1, 7), continuation: ids(Math.min(100, maxLength - 2), 8) },
    { context: ids(maxLength, 9), continuation: ids(3, 10) }, // left-truncated
    { context: ids(2, 11), continuation: ids(maxLength + 5, 12) }, // continuation longer than the window
  ];
  const next = [
    { context: ids(30, 13), candidates: [1, 2, 3, 4] },
    { context: ids(7, 14), candidates: [5, 6] },
    { context: ids(maxLength + 3, 15), candidates: [7, 8, 9, 10] },
  ];
  return { cont, next };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-6);

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('executor on webgpu', () => {
  const models: [string, () => Promise<Model>][] = [
    ['stories260K', () => loadModel(STORIES_BIN)],
    ['zoo llama-700k', () => loadModel(path.join(repo, 'models/zoo/llama-700k'))],
    ['zoo opt-700k', () => loadModel(path.join(repo, 'models/zoo/opt-700k'))],
    ['pruned per-block widths', async () => randomModel({ ...TINY, num_attention_heads_per_layer: [4, 2], num_key_value_heads_per_layer: [2, 2], intermediate_size_per_layer: [96, 40] }, { seed: 5, name: 'pruned' })],
    ['W8A8 activation fake quantization', async () => ({ ...randomModel(TINY, { seed: 6, name: 'w8a8' }), actQuant: { bits: 8, granularity: 'per_token' as const, staticAbsmax: null } })],
  ];
  for (const [name, make] of models) {
    it(`${name}: per-request log-likelihoods, greedy flags and next-token log-probs equal the tfjs path's within 1e-4`, async () => {
      const model = await make();
      try {
        const maxLength = Math.min(128, model.config.maxPositions);
        const { cont, next } = requests(model.config.vocabSize, maxLength);
        const ref = tensorScorer(model, {}, maxLength);
        const eng = new EngineScorer(model, maxLength);
        const [a, b] = [await ref.continuations(cont), await eng.continuations(cont)];
        for (let k = 0; k < cont.length; k++) {
          expect(rel(b[k].logprob, a[k].logprob), `request ${k}`).toBeLessThan(1e-4);
          expect(b[k].greedy).toBe(a[k].greedy);
          expect([b[k].tokens, b[k].truncated, b[k].unscored]).toEqual([a[k].tokens, a[k].truncated, a[k].unscored]);
        }
        const [c, d] = [await ref.nextToken(next), await eng.nextToken(next)];
        for (let k = 0; k < next.length; k++) {
          expect(d[k].truncated).toBe(c[k].truncated);
          d[k].logprobs.forEach((v, j) => expect(rel(v, c[k].logprobs[j])).toBeLessThan(1e-4));
        }
      } finally {
        disposeModel(model);
      }
    }, 300_000); // lavapipe compiles each new kernel shape on first use
  }

  describe('buffers and steps', () => {
    let model: Model;
    beforeAll(() => {
      model = randomModel(TINY, { seed: 7, name: 'tiny' });
    });
    afterAll(() => disposeModel(model));

    it('makes no buffer per step (1,000 steps) and frees every one it made', { timeout: 300_000 }, async () => {
      const live = Arena.live;
      const tensors = tf.memory().numTensors;
      const exec = Executor.create(model, { maxTokens: 64 });
      const made = Arena.live - live;
      expect(made).toBeGreaterThan(10);
      const step = { seqs: [{ ids: [3, 4], pos0: 0, kvBase: 0 }, { ids: [7], pos0: 0, kvBase: 2 }], scoreRows: [1, 2], items: [{ row: 0, token: 9 }, { row: 1, token: 2 }] };
      const first = await exec.run(step);
      for (let s = 0; s < 1000; s++) {
        const o = await exec.run(step);
        if (s % 250 === 0) expect(Array.from(o.logprobs)).toEqual(Array.from(first.logprobs));
        expect(Arena.live - live).toBe(made);
      }
      await exec.idle();
      exec.dispose();
      expect(Arena.live).toBe(live);
      expect(tf.memory().numTensors).toBe(tensors);
    });

    it('generates the tfjs path tokens with its KV cache, greedy and sampled (split-key decode)', { timeout: 300_000 }, async () => {
      const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 7) % 150));
      const dec = Decoder.create(model, 64);
      try {
        for (const o of [{ greedy: true }, { greedy: false, temperature: 0.8, seed: 4 }]) {
          const want = await generate(model, prompt, { maxNewTokens: 12, stopAtEos: false, kernels: false, ...o });
          expect(await dec.generate(prompt, { maxNewTokens: 12, stopAtEos: false, ...o })).toEqual(want);
        }
        await expect(dec.generate(Array(70).fill(3), { maxNewTokens: 2 })).rejects.toThrow(/70 tokens exceeds the decoder's cache of 64/);
      } finally {
        await dec.dispose();
      }
    });

    it('refuses an unsupported model and bad steps with the reason, before any work', async () => {
      const live = Arena.live;
      expect(() => Executor.create({ ...model, config: { ...model.config, activation: 'gelu' } })).toThrow(/not supported: LLaMA with activation 'gelu'/);
      expect(Arena.live).toBe(live);
      const exec = Executor.create(model, { maxTokens: 16 });
      try {
        expect(() => exec.run({ seqs: [{ ids: Array(17).fill(1), pos0: 0, kvBase: 0 }], scoreRows: [], items: [] })).toThrow(/17 tokens exceeds maxTokens 16/);
        expect(() => exec.run({ seqs: [{ ids: [1, 200], pos0: 0, kvBase: 0 }], scoreRows: [], items: [] })).toThrow(/token id 200 outside the vocabulary/);
        expect(() => exec.run({ seqs: [{ ids: [1, 2], pos0: 0, kvBase: 0 }], scoreRows: [2], items: [] })).toThrow(/score row 2 outside/);
        expect(() => exec.run({ seqs: [{ ids: [1, 2], pos0: 0, kvBase: 0 }], scoreRows: [1], items: [{ row: 0, token: -1 }] })).toThrow(/scored token -1/);
      } finally {
        exec.dispose();
      }
      expect(Arena.live).toBe(live);
    });
  });
});
