// The kernel policy (lib/kernels/index.ts) and the model engine with kernels on: plain path
// unchanged by default, logits and greedy tokens of a small GQA LLaMA equal to the plain path's on
// a WebGPU adapter (lavapipe here; skipped without one), and under a gradient tape the GEMM's and
// the fused ops' backward kernels giving the plain ops' gradients through a whole forward.
import { spawnSync } from 'node:child_process';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ATTENTION_ON_GEMM_MIN_HD, kernelMatMulT, kernelPolicy, setKernels, withKernels, KERNEL_DEFAULTS } from '../lib/kernels';
import { maxRelError } from '../lib/kernels/cases';
import { kernelDispatches } from '../lib/kernels/gpu';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { forward, generate } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { webgpuAdapterReason } from './kernels-helpers';

describe('kernel policy', () => {
  it("defaults to 'off' and restores the previous policy after withKernels", async () => {
    expect(kernelPolicy()).toEqual(KERNEL_DEFAULTS);
    const inside = await withKernels({ mode: 'auto', gemm: 'medium' }, () => kernelPolicy());
    expect(inside).toMatchObject({ mode: 'auto', gemm: 'medium' });
    expect(kernelPolicy()).toEqual(KERNEL_DEFAULTS);
  });
  it('takes the attention and GEMM defaults from LLMCB_KERNEL_ATTENTION and LLMCB_KERNEL_GEMM and names a bad value', () => {
    const policyWith = (key: 'attention' | 'gemm', v: string) =>
      spawnSync(process.execPath, ['--import', 'tsx', '-e', `import('./lib/kernels/index.ts').then((m) => console.log(m.kernelPolicy().${key}))`], {
        env: { ...process.env, [key === 'attention' ? 'LLMCB_KERNEL_ATTENTION' : 'LLMCB_KERNEL_GEMM']: v },
        encoding: 'utf8',
      });
    expect(policyWith('attention', 'auto').stdout.trim()).toBe('auto');
    expect(policyWith('attention', 'q32kv32').stdout.trim()).toBe('q32kv32');
    expect(policyWith('gemm', 'tallVPC').stdout.trim()).toBe('tallVPC');
    expect(policyWith('gemm', 'off').stdout.trim()).toBe('off');
    for (const [key, bad, msg] of [['attention', 'q7kv7', /attention tiles 'q7kv7'/], ['gemm', '7x7', /gemm tiles '7x7'/]] as const) {
      const r = policyWith(key, bad);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(msg);
    }
  });
  it('rejects unknown modes and tiles by name', () => {
    expect(() => setKernels({ mode: 'on' as 'auto' })).toThrow(/kernel mode 'on'/);
    expect(() => setKernels({ gemm: '7x7' as 'off' })).toThrow(/gemm tiles '7x7'/);
    expect(() => setKernels({ fusedOps: 'yes' as 'on' })).toThrow(/fusedOps 'yes'/);
    expect(() => setKernels({ gradGemm: 'yes' as 'on' })).toThrow(/gradGemm 'yes'/);
    expect(kernelPolicy()).toEqual(KERNEL_DEFAULTS);
  });
});

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('model engine with kernels on webgpu', () => {
  let model: Model;
  beforeAll(() => {
    model = randomModel(
      { model_type: 'llama', hidden_size: 128, intermediate_size: 200, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
      { seed: 3, dist: 'uniform', name: 'tiny-gqa' },
    );
  });
  afterAll(() => disposeModel(model));
  const ids = () => tf.tensor2d(Array.from({ length: 2 * 37 }, (_, i) => (i * 31) % 300), [2, 37], 'int32');
  /** Σ logits² of a forward with kernels allowed, as a function of the named weights (for tf.grads). */
  const sumSquaredLogits = (m: Model, names: string[]) => (...ws: tf.Tensor[]): tf.Scalar => {
    const saved = names.map((n) => m.weights.get(n)!);
    names.forEach((n, i) => m.weights.set(n, ws[i]));
    try {
      const x = ids();
      const y = tf.sum(tf.square(forward(m, x, { kernels: true }))) as tf.Scalar;
      x.dispose();
      return y;
    } finally {
      names.forEach((n, i) => m.weights.set(n, saved[i]));
    }
  };

  it('forward logits match the plain path (GEMM on every linear and the head, fused attention, RMSNorm, RoPE and SwiGLU), no leaks', async () => {
    const x = ids();
    const plain = forward(model, x);
    const before = tf.memory().numTensors;
    const fused = await withKernels({ mode: 'auto', gemmMinRows: 1 }, () => forward(model, x, { kernels: true }));
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(await maxRelError(fused, plain)).toBeLessThan(1e-5);
    tf.dispose([x, plain, fused]);
  });

  it('generate (KV cache, split-key decode) gives the plain path greedy tokens', async () => {
    const prompt = Array.from({ length: 11 }, (_, i) => 3 + i);
    const plain = await generate(model, prompt, { maxNewTokens: 8, stopAtEos: false, kernels: false });
    const fused = await withKernels({ mode: 'auto', gemmMinRows: 1 }, () => generate(model, prompt, { maxNewTokens: 8, stopAtEos: false }));
    expect(fused).toEqual(plain);
  });

  it('under a gradient tape the fused ops run their backward kernels, with the plain ops\' gradients', async () => {
    const names = [...model.weights.keys()].filter((n) => /layers\.1\.(post_attention_layernorm|mlp\.up_proj|self_attn\.q_proj)/.test(n));
    const params = names.map((n) => model.weights.get(n)!);
    const loss = sumSquaredLogits(model, names);
    const plain = tf.grads(loss)(params);
    const policy = { mode: 'auto', gemm: 'off', attention: 'off' } as const;
    const k0 = kernelDispatches();
    await withKernels(policy, () => tf.dispose(loss(...params))); // the forward's kernels
    const k1 = kernelDispatches();
    const fused = await withKernels(policy, () => tf.grads(loss)(params));
    // backward kernels: the final norm and block 1's MLP norm (dx, dw each), q's RoPE, the SwiGLU
    expect(kernelDispatches() - k1 - (k1 - k0)).toBe(6);
    for (let i = 0; i < names.length; i++) expect(await maxRelError(fused[i], plain[i]), names[i]).toBeLessThan(1e-4);
    tf.dispose([...plain, ...fused]);
  });

  it('under a gradient tape attention runs on the GEMM with its gradients (attentionOnGemm), and with gradGemm on every linear and the head too (gemmWithGrad)', async () => {
    // heads of 64 (ATTENTION_ON_GEMM_MIN_HD), one KV group of two
    const model = randomModel(
      { model_type: 'llama', hidden_size: 128, intermediate_size: 200, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 300, max_position_embeddings: 256, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2 },
      { seed: 4, dist: 'uniform', name: 'tiny-hd64' },
    );
    expect(model.config.headDim).toBe(ATTENTION_ON_GEMM_MIN_HD);
    const names = [...model.weights.keys()].filter((n) => /layers\.0\.(self_attn\.(q|k)_proj|mlp\.down_proj)|lm_head/.test(n));
    const params = names.map((n) => model.weights.get(n)!);
    const loss = sumSquaredLogits(model, names);
    const off = { mode: 'auto', gemm: 'off', attention: 'off', fusedOps: 'off' } as const;
    const plain = await withKernels(off, () => tf.grads(loss)(params));
    // 2 blocks × 7 linears and the head: a GEMM forward each, two backward (dx, dW) for all but block
    // 0's v_proj, which reads nothing that depends on the parameters (tfjs skips its backward); with
    // attention, per block and each of the 2 (batch) × 1 (KV head) groups two products, each with two backward
    const linears = 15 + 14 * 2;
    const attn = 2 * 2 * (2 + 2 * 2);
    // The policy around the whole gradient computation, or around the forward only (as an entry point's
    // withCalibKernels in OmniQuant's tf.variableGrads): the backward's products take the forward's policy.
    const cases = [['on', 'off', linears], ['on', 'auto', linears + attn], ['off', 'auto', attn]] as const;
    for (const [[gradGemm, attention, gemms], forwardOnly] of cases.flatMap((c) => [[c, false], [c, true]] as const)) {
      const policy = { ...off, attention, gradGemm, gemm: KERNEL_DEFAULTS.gemm, gemmMinRows: 1 } as const;
      const k0 = kernelDispatches();
      const before = tf.memory().numTensors;
      const fused = forwardOnly
        ? tf.grads((...p: tf.Tensor[]) => {
            const prev = setKernels(policy);
            try {
              return loss(...p);
            } finally {
              setKernels(prev);
            }
          })(params)
        : await withKernels(policy, () => tf.grads(loss)(params));
      const label = `gradGemm ${gradGemm}, attention ${attention}, the policy around ${forwardOnly ? 'the forward only' : 'forward and backward'}`;
      expect(tf.memory().numTensors, 'the gradients only').toBe(before + names.length);
      expect(kernelDispatches() - k0, label).toBe(gemms);
      for (let i = 0; i < names.length; i++) expect(await maxRelError(fused[i], plain[i]), `${names[i]}, ${label}`).toBeLessThan(1e-5);
      tf.dispose(fused);
    }
    tf.dispose(plain);
    disposeModel(model);
  });

  it('kernelMatMulT keeps tfjs\'s matMul while a gradient tape records (it has no gradient)', async () => {
    const w = tf.randomNormal([8, 16]) as tf.Tensor2D;
    const x = tf.randomNormal([80, 16]) as tf.Tensor2D;
    await withKernels({ mode: 'auto', gemmMinRows: 1 }, async () => {
      const onTape: boolean[] = [];
      const g = tf.grad((a: tf.Tensor) => {
        const y = kernelMatMulT(a as tf.Tensor2D, w);
        onTape.push(y !== null);
        return tf.sum(y ?? tf.matMul(a, w, false, true));
      })(x);
      expect(onTape).toEqual([false]);
      const direct = kernelMatMulT(x, w);
      expect(direct).not.toBeNull();
      tf.dispose([g, direct!]);
    });
    tf.dispose([w, x]);
  });
});
