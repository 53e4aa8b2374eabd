// The inference executor (lib/engine) against the tfjs path, the exact reference: per-request
// log-likelihoods, greedy flags and next-token log-probabilities of stories260K, the zoo's smallest
// LLaMA and OPT models, a GQA model, a pruned model with per-block widths, a W8A8 model with
// activation fake quantization and W8A8 models on the INT8 kernels; logits of the transformers fixtures; every buffer freed, none made per step (1,000 steps); unsupported
// configurations and bad inputs refused before any work. Needs a WebGPU adapter (lavapipe or a
// GPU); the configuration checks run everywhere.
import * as tf from '@tensorflow/tfjs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Executor, executorKernelGroups, executorUnsupported, gemmFamily, type ExecutorOptions } from '../lib/engine/executor';
import { attachPackedLinears, type InferenceModel } from '../lib/engine/inference';
import { packLinears } from '../lib/kernels/packed-linear';
import { METHODS } from '../lib/methods';
import { actQuantDefaults } from '../lib/quant/act';
import { Arena, engineDevice } from '../lib/engine/gpu';
import { KernelTimes } from '../lib/kernels/timing';
import { Decoder } from '../lib/engine/generate';
import { EngineScorer } from '../lib/engine/scorer';
import { generate } from '../lib/models/transformer';
import { fixtureLogitParity, gemmTileError, scorerAgreement } from '../lib/engine/check';
import { GEMM_TILES } from '../lib/engine/kernels';
import { parityFixtures } from '../lib/models/parity';
import { disposeModel, loadModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { webgpuAdapterReason } from './kernels-helpers';
import { GLM_TINY, STORIES_BIN } from './model-helpers';
import { modelScorer } from '../lib/eval/model-scorer';
import { initRuntime } from '../lib/runtime';

/** The executor's decoder (one of `cache` positions, or the one given) generates the tfjs path's `n` tokens after `prompt`. */
async function expectDecodesTfjsTokens(model: InferenceModel, cache: number | Decoder, prompt: number[], n: number, o: { greedy: boolean; temperature?: number; seed?: number } = { greedy: true }): Promise<void> {
  const dec = typeof cache === 'number' ? Decoder.create(model, cache) : cache;
  try {
    const want = await generate(model, prompt, { maxNewTokens: n, stopAtEos: false, kernels: false, ...o });
    expect(await dec.generate(prompt, { maxNewTokens: n, stopAtEos: false, ...o })).toEqual(want);
  } finally {
    if (dec !== cache) await dec.dispose();
  }
}

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const FIXTURES = path.join(repo, 'test/fixtures/models');
const TINY = { model_type: 'llama', hidden_size: 64, intermediate_size: 96, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 200, max_position_embeddings: 128, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 };

describe('executor configuration checks (no GPU needed)', () => {
  it('names what it cannot run', () => {
    const m = randomModel(TINY, { seed: 1 });
    try {
      expect(executorUnsupported(m)).toBeNull();
      expect(executorUnsupported({ ...m, config: { ...m.config, activation: 'gelu' } })).toMatch(/activation 'gelu'/);
      const q = 'model.layers.0.self_attn.q_proj.weight';
      expect(executorUnsupported({ ...m, packedLinears: new Map([[q, { kind: 'wq' } as never]]) })).toMatch(/weight-only packed linears \(model\.layers\.0\.self_attn\.q_proj\.weight/);
      expect(executorUnsupported({ ...m, packedLinears: new Map([[q, { kind: 'w8a8' } as never]]) })).toMatch(/without per-token INT8 activation quantization/);
      expect(executorUnsupported({ ...m, actQuant: actQuantDefaults, packedLinears: new Map([[q, { kind: 'w8a8' } as never]]) })).toBeNull();
      expect(executorUnsupported({ ...m, actQuant: { bits: 8, granularity: 'per_tensor', staticAbsmax: null } })).toMatch(/dynamic per-tensor/);
    } finally {
      disposeModel(m);
    }
  });
});

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('executor on webgpu', () => {
  /** TINY with RTN W8 per-channel weights and per-token INT8 activations, its linears packed for the INT8 GEMM. */
  const w8a8Packed = async (seed: number, hf: Record<string, unknown> = TINY): Promise<InferenceModel> => {
    const m: InferenceModel = randomModel(hf, { seed, name: 'w8a8-packed' });
    const r = await METHODS.rtn.compress(m, null, { bits: 8, groupSize: -1, sym: true });
    m.actQuant = actQuantDefaults;
    expect([...attachPackedLinears(m, packLinears(r.quantized, m.actQuant))]).toEqual([]);
    return m;
  };
  const models: [string, () => Promise<InferenceModel>, Partial<ExecutorOptions>?][] = [
    ['stories260K', () => loadModel(STORIES_BIN)],
    ['zoo llama-700k', () => loadModel(path.join(repo, 'models/zoo/llama-700k'))],
    ['zoo opt-700k', () => loadModel(path.join(repo, 'models/zoo/opt-700k'))],
    // Widths as LLM-Pruner leaves them, one not a multiple of 4 (the GEMV's and GEMM's scalar loads).
    ['pruned per-block widths', async () => randomModel({ ...TINY, num_attention_heads_per_layer: [4, 2], num_key_value_heads_per_layer: [2, 2], intermediate_size_per_layer: [96, 43] }, { seed: 5, name: 'pruned' })],
    // GLM: fused q|k|v with bias split by the RoPE kernel, half-head interleaved RoPE, fused gate|up, untied output layer
    ['GLM block', async () => randomModel(GLM_TINY, { seed: 3, std: 0.1, name: 'glm' })],
    ['GLM W8A8 packed linears (fused q|k|v and gate|up on the INT8 GEMM)', () => w8a8Packed(13, GLM_TINY), { int8Path: 'dot4' }],
    ['Qwen2 q/k/v biases', async () => randomModel({ ...TINY, model_type: 'qwen2' }, { seed: 7, std: 0.1, name: 'qwen2' })],
    ['W8A8 activation fake quantization', async () => ({ ...randomModel(TINY, { seed: 6, name: 'w8a8' }), actQuant: { bits: 8, granularity: 'per_token' as const, staticAbsmax: null } })],
    // K of 256 and 512: split-K GEMMs (2 and 4 chunks) with bias-free epilogues store, add and silu-mul.
    ['split-K GEMMs (hidden 256, MLP 512)', async () => randomModel({ ...TINY, hidden_size: 256, intermediate_size: 512 }, { seed: 11, name: 'split-k' }), { splitK: 8 }],
    // The INT8 kernels against the fake-quantized tfjs path (the reference): the dot4 GEMM, and the
    // subgroup-matrix GEMM's tiling, staging and epilogue (emulated: lavapipe has no subgroup matrices).
    ['W8A8 packed linears, INT8 GEMM dot4', () => w8a8Packed(8), { int8Path: 'dot4' }],
    ['W8A8 packed linears, INT8 GEMM subgroup-matrix tiling (emulated)', () => w8a8Packed(9), { int8Path: 'sm-emulated' }],
  ];
  for (const [name, make, opts] of models) {
    it(`${name}: per-request log-likelihoods, greedy flags and next-token log-probs equal the tfjs path's within 1e-4`, async () => {
      const model = await make();
      try {
        const a = await scorerAgreement(model, undefined, opts);
        expect(a.maxRel).toBeLessThan(1e-4);
        expect(a.mismatches).toBe(0);
      } finally {
        disposeModel(model);
      }
    }, 300_000); // lavapipe compiles each new kernel shape on first use
  }

  it('families without executor kernels (sliding windows) score on tfjs, the others (GLM included) on the executor', async () => {
    expect((await initRuntime({ backend: 'webgpu' })).backend).toBe('webgpu');
    const ms = [randomModel(TINY, { seed: 1 }), randomModel(GLM_TINY, { seed: 1 }), randomModel({ ...TINY, model_type: 'mistral', sliding_window: 4 }, { seed: 1 })];
    try {
      expect(ms.map((m) => modelScorer(m) instanceof EngineScorer)).toEqual([true, true, false]);
    } finally {
      ms.forEach(disposeModel);
    }
  });

  for (const d of parityFixtures(FIXTURES)) {
    it(`logits of the transformers fixture ${d} within 1e-4, or the reason the executor refuses it`, async () => {
      const r = await fixtureLogitParity(path.join(FIXTURES, d), path.join(repo, 'models/stories260K/tok512.bin'));
      const refusals: Record<string, RegExp> = { opt_post_ln: /post-LayerNorm/, opt_pre_proj: /project_in/, mistral_window: /sliding-window/ };
      if ('unsupported' in r) expect(r.unsupported).toMatch(refusals[d] ?? /^never$/);
      else {
        expect(r.compared).toBeGreaterThan(0);
        expect(r.worst).toBeLessThan(1e-4);
      }
    }, 300_000);
  }

  it('GLM decodes the tfjs path tokens (fused q|k|v into the KV cache, half-head pair RoPE at each position)', { timeout: 300_000 }, async () => {
    const model = randomModel(GLM_TINY, { seed: 12, std: 0.1, name: 'glm' });
    try {
      await expectDecodesTfjsTokens(model, 32, Array.from({ length: 9 }, (_, i) => 3 + ((i * 37) % 500)), 8);
    } finally {
      disposeModel(model);
    }
  });

  it('W8A8 packed linears decode the tfjs path tokens (the INT8 GEMV of decode steps)', { timeout: 300_000 }, async () => {
    const model = await w8a8Packed(10);
    try {
      await expectDecodesTfjsTokens(model, 64, Array.from({ length: 20 }, (_, i) => 3 + ((i * 11) % 150)), 10);
    } finally {
      disposeModel(model);
    }
  });

  it('every fp32 GEMM tiling equals a float64 product on odd shapes (vector and scalar loads)', { timeout: 300_000 }, async () => {
    for (const t of Object.values(GEMM_TILES)) {
      for (const [M, K, N] of [[77, 68, 130], [33, 67, 70]]) expect(await gemmTileError(t, M, K, N)).toBeLessThan(1e-5);
    }
  });

  it('split-K GEMMs equal a float64 product: ragged last chunks, empty chunks, scalar and vector tilings, prefetched and padded staging', { timeout: 300_000 }, async () => {
    for (const t of [GEMM_TILES.medium, GEMM_TILES.tallV, GEMM_TILES.tallVP, GEMM_TILES.tallVPC, GEMM_TILES.mediumVPC]) {
      for (const [M, K, N, splits] of [[77, 300, 130, 3], [77, 300, 130, 4], [33, 68, 70, 8], [40, 257, 64, 2]]) {
        expect(await gemmTileError(t, M, K, N, splits), `${t.BM}x${t.BN} ${M}x${K}x${N} in ${splits} chunks`).toBeLessThan(1e-5);
      }
    }
  });

  describe('buffers and steps', () => {
    let model: Model;
    beforeAll(() => {
      model = randomModel(TINY, { seed: 7, name: 'tiny' });
    });
    afterAll(() => disposeModel(model));

    it('runs GEMM tilings spelled out (tiling:workgroups) and the scalar family to the default family\'s results, and names a bad spelling', { timeout: 300_000 }, async () => {
      expect(gemmFamily('vectorC')).toEqual([['tallVPC', 128], ['mediumV', 0]]);
      expect(gemmFamily('largeV:256+mediumVPC:0')).toEqual([['largeV', 256], ['mediumVPC', 0]]);
      expect(() => gemmFamily('tallVPC:128')).toThrow(/last tiling must take every shape/);
      expect(() => gemmFamily('nope:0')).toThrow(/unknown tiling 'nope'/);
      expect(() => gemmFamily('tallVPC')).toThrow(/'tallVPC' is neither a family/);
      // 13 tokens: past the GEMV rows, so that the GEMMs run
      const step = { seqs: [{ ids: [3, 4, 9, 11, 5, 6, 1, 8], pos0: 0, kvBase: 0 }, { ids: [7, 8, 2, 12, 3], pos0: 0, kvBase: 8 }], scoreRows: [1, 2, 6, 9, 12], items: [0, 9, 1, 2, 2, 4, 3, 5, 4, 7] };
      const results: Float32Array[] = [];
      for (const gemm of ['vectorC', 'largeV:0', 'mediumVPC:0', 'scalar']) {
        const exec = Executor.create(model, { maxTokens: 64, gemm });
        try {
          results.push((await exec.run(step)).logprobs);
        } finally {
          exec.dispose();
        }
      }
      for (const r of results.slice(1)) for (let i = 0; i < r.length; i++) expect(Math.abs(r[i] - results[0][i])).toBeLessThan(1e-4);
      expect(() => Executor.create(model, { gemm: 'tallVPC:1' })).toThrow(/GEMM tilings 'tallVPC:1'/);
    });

    it('makes no buffer per step (1,000 steps) and frees every one it made', { timeout: 300_000 }, async () => {
      const live = Arena.live;
      const tensors = tf.memory().numTensors;
      const exec = Executor.create(model, { maxTokens: 64 });
      const made = Arena.live - live;
      expect(made).toBeGreaterThan(10);
      const step = { seqs: [{ ids: [3, 4], pos0: 0, kvBase: 0 }, { ids: [7], pos0: 0, kvBase: 2 }], scoreRows: [1, 2], items: [0, 9, 1, 2] };
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

    it('a profiled step times every dispatch (timestamp queries), gives the same outputs and frees its queries', { timeout: 300_000 }, async () => {
      const exec = Executor.create(model, { maxTokens: 64 });
      try {
        const step = { seqs: [{ ids: [3, 4, 5], pos0: 0, kvBase: 0 }], scoreRows: [0, 2], items: [1, 9] };
        const plain = await exec.run(step);
        if (!engineDevice().features.has('timestamp-query')) {
          await expect(exec.run(step, { times: new KernelTimes() })).rejects.toThrow(/timestamp-query/);
          return;
        }
        const times = new KernelTimes();
        const timed = await exec.run(step, { times });
        await exec.run(step, { times });
        expect(Array.from(timed.logprobs)).toEqual(Array.from(plain.logprobs));
        expect(Array.from(timed.argmax)).toEqual(Array.from(plain.argmax));
        expect(times.steps).toBe(2);
        // Both steps timed the same dispatches: embedding, norms, attention, the linears, the row statistics.
        for (const [name, e] of times.byName) expect(e.calls % 2, name).toBe(0);
        for (const re of [/^embed/, /^norm/, /^attn/, /^gem/, /^row-stats/]) expect([...times.byName.keys()].some((n) => re.test(n)), String(re)).toBe(true);
        for (const [name, e] of times.byName) expect(Number.isFinite(e.ms) && e.ms >= 0, name).toBe(true);
        expect(times.ms(/^attn/)).toBeGreaterThan(0);
        const report = times.report(executorKernelGroups(model.config.vocabSize)).join('\n');
        expect(report).toMatch(/attention/);
      } finally {
        await exec.idle();
        exec.dispose();
      }
    });

    it('generates the tfjs path tokens with its KV cache, greedy and sampled (split-key decode)', { timeout: 300_000 }, async () => {
      const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 7) % 150));
      const dec = Decoder.create(model, 64);
      try {
        for (const o of [{ greedy: true }, { greedy: false, temperature: 0.8, seed: 4 }]) await expectDecodesTfjsTokens(model, dec, prompt, 12, o);
        await expect(dec.generate(Array(70).fill(3), { maxNewTokens: 2 })).rejects.toThrow(/70 tokens exceeds the decoder's cache of 64/);
      } finally {
        await dec.dispose();
      }
    });

    it('generates the tfjs path tokens with the register-blocked attention and the scalar one (head dim 32, split-key decode)', { timeout: 300_000 }, async () => {
      const wide = randomModel({ ...TINY, hidden_size: 128 }, { seed: 12, name: 'hd32' }); // 4 heads of 32, 2 KV heads
      const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 5) % 150));
      try {
        for (const attention of ['registers', 'scalar'] as const) {
          const dec = Decoder.create(wide, 96, { attention });
          try {
            await expectDecodesTfjsTokens(wide, dec, prompt, 12, { greedy: true });
          } finally {
            await dec.dispose();
          }
        }
        expect(() => Executor.create(wide, { attention: 'fast' as 'scalar' })).toThrow(/attention 'fast' \(registers or scalar\)/);
      } finally {
        disposeModel(wide);
      }
    });

    it('a NaN weight makes scoring fail naming the model, never a result', { timeout: 300_000 }, async () => {
      const bad = randomModel(TINY, { seed: 8, name: 'nan-model' });
      try {
        const norm = bad.weights.get('model.norm.weight')!;
        bad.weights.set('model.norm.weight', tf.fill(norm.shape, NaN));
        norm.dispose();
        await expect(new EngineScorer(bad, 64, { label: 'nan-model × rtn' }).continuations([{ context: [3, 4, 5], continuation: [6, 7] }])).rejects.toThrow(/nan-model × rtn: scoring .* not finite/);
      } finally {
        disposeModel(bad);
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
        expect(() => exec.run({ seqs: [{ ids: [1], pos0: 0, kvBase: 0 }], scoreRows: [0], items: [] }, { chained: true })).toThrow(/a chained step is one token of one sequence after an earlier step/);
        expect(() => exec.run({ seqs: [{ ids: [1, 2], pos0: 0, kvBase: 0 }], scoreRows: [2], items: [] })).toThrow(/score row 2 outside/);
        expect(() => exec.run({ seqs: [{ ids: [1, 2], pos0: 0, kvBase: 0 }], scoreRows: [1], items: [0, -1] })).toThrow(/scored token -1/);
        expect(() => exec.run({ seqs: [{ ids: [1, 2], pos0: 2, kvBase: -2, prefix: { kvBase: 0, length: 2 } }], scoreRows: [], items: [] })).toThrow(/prefix must be ≥ 1 rows of earlier tokens/);
      } finally {
        exec.dispose();
      }
      expect(Arena.live).toBe(live);
    });
  });
});
