// Layer streaming (lib/methods/sequential.ts, lib/runtime/residency.ts) on webgpu (lavapipe in CI):
// with LLMCB_STREAM=on the compressed weights are exactly those of a run with every weight kept on
// the GPU, no weight is left on the GPU afterwards, and the peak GPU bytes in use drop (one block
// plus activations instead of the whole model). The driver's calibration forward on the WGSL
// kernels (LLMCB_CALIB_KERNELS) dispatches them and gives the weights of tfjs's ops. Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import type { CalibSet } from '../lib/methods/calib';
import { getMethod } from '../lib/methods';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { measurePeakMemory, offloadToHost, onDevice } from '../lib/runtime';
import { kernelDispatches } from '../lib/kernels/gpu';
import { runSequential } from '../lib/methods/sequential';
import { HessianAccumulator } from '../lib/methods/hessian';
import { withKernels } from '../lib/kernels';
import { webgpuAdapterReason } from './kernels-helpers';

const reason = await webgpuAdapterReason();

// hidden 256, 2 layers; a 4096-token vocabulary so that the embedding outweighs a block
const CONFIG = {
  model_type: 'llama', hidden_size: 256, intermediate_size: 512, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 4, vocab_size: 4096, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000,
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
const calib: CalibSet = {
  corpus: 'random-ids', nsamples: 4, seqlen: 32, seed: 0,
  windows: Array.from({ length: 4 }, (_, i) => Array.from({ length: 32 }, (_, t) => (i * 977 + t * 131) % 4096)),
};

async function compressed(method: string, opts: Record<string, unknown>, stream: 'on' | 'off', calibKernels: 'auto' | 'off' = 'auto'): Promise<{ weights: Map<string, Float32Array>; peak: number; leftOnGpu: number; dispatches: number }> {
  const old = { LLMCB_STREAM: process.env.LLMCB_STREAM, LLMCB_CALIB_KERNELS: process.env.LLMCB_CALIB_KERNELS };
  process.env.LLMCB_STREAM = stream;
  process.env.LLMCB_CALIB_KERNELS = calibKernels;
  const d0 = kernelDispatches();
  const model: Model = randomModel(CONFIG, { seed: 7, name: 'random-256x2' });
  try {
    const { peak } = await measurePeakMemory((probe) => getMethod(method).compress(model, calib, opts, { sample: () => probe.sample() }));
    const leftOnGpu = [...model.weights.values()].filter((t) => onDevice(t)).length;
    const weights = new Map<string, Float32Array>();
    for (const [k, t] of model.weights) weights.set(k, Float32Array.from((await t.data()) as Float32Array));
    return { weights, peak: peak.peakGpuInUseBytes!, leftOnGpu, dispatches: kernelDispatches() - d0 };
  } finally {
    disposeModel(model);
    for (const [k, v] of Object.entries(old)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

describe.skipIf(reason !== null)('layer streaming on webgpu', () => {
  it('offloadToHost moves values off the GPU, keeps them, and follows aliases', async () => {
    const before = tf.memory().numTensors;
    const values = Float32Array.from({ length: 128 * 128 }, (_, i) => i); // large enough that tfjs runs ops on it on the GPU
    const a = tf.tensor2d(values, [128, 128]);
    const m = new Map<string, tf.Tensor>([['a', a], ['alias', a]]);
    expect(onDevice(a)).toBe(false); // a new tensor stays on the host until used
    const doubled = tf.mul(a, 2); // uses a: uploaded
    expect(onDevice(a)).toBe(true);
    expect(await offloadToHost(m)).toBe(4 * 128 * 128);
    expect(a.isDisposed).toBe(true);
    expect(m.get('alias')).toBe(m.get('a'));
    expect(onDevice(m.get('a')!)).toBe(false);
    expect(await m.get('a')!.data()).toEqual(values);
    tf.dispose([doubled, m.get('a')!]);
    expect(tf.memory().numTensors).toBe(before);
  });

  // (AWQ and OmniQuant stream through the same driver; on lavapipe they take minutes, so not here)
  for (const [method, opts] of [['gptq', { bits: 4, groupSize: 128 }], ['sparsegpt', { pattern: '2:4' }], ['wanda', { pattern: '50%' }]] as const) {
    it(`${method}: the same weights streamed or not, nothing left on the GPU, a lower peak`, async () => {
      const on = await compressed(method, opts, 'on');
      const off = await compressed(method, opts, 'off');
      for (const [k, v] of off.weights) expect(on.weights.get(k), k).toEqual(v);
      expect(on.leftOnGpu).toBe(0);
      expect(off.leftOnGpu).toBeGreaterThan(0);
      expect(on.peak).toBeLessThan(off.peak);
      console.log(`${method}: peak GPU bytes in use streamed ${on.peak}, not streamed ${off.peak}`);
    });
  }

  // GPTQ's column sweep amplifies fp32 differences of its Hessian (one flipped code changes the rest of
  // the row), so the forward is compared where it ends: the linears' inputs of every block.
  it('the calibration forward on the kernels dispatches them and captures the inputs of tfjs\'s ops (1e-5)', async () => {
    const capture = async (calibKernels: 'auto' | 'off') => {
      const old = process.env.LLMCB_CALIB_KERNELS;
      process.env.LLMCB_CALIB_KERNELS = calibKernels;
      const model: Model = randomModel(CONFIG, { seed: 7, name: 'random-256x2' });
      const kept: tf.Tensor2D[] = [];
      const d0 = kernelDispatches();
      try {
        await runSequential(model, calib, { propagate: 'compressed', perBlock: (ctx) => ctx.observe((_, x) => void kept.push(x.clone())) });
        const dispatches = kernelDispatches() - d0;
        return { inputs: await Promise.all(kept.map((t) => t.data() as Promise<Float32Array>)), dispatches };
      } finally {
        tf.dispose(kept);
        disposeModel(model);
        if (old === undefined) delete process.env.LLMCB_CALIB_KERNELS;
        else process.env.LLMCB_CALIB_KERNELS = old;
      }
    };
    const kern = await capture('auto');
    const plain = await capture('off');
    expect(plain.dispatches).toBe(0);
    expect(kern.dispatches).toBeGreaterThan(0);
    expect(kern.inputs.length).toBe(plain.inputs.length);
    let worst = 0;
    plain.inputs.forEach((v, j) => {
      const w = kern.inputs[j];
      const scale = v.reduce((m, a) => Math.max(m, Math.abs(a)), 0);
      for (let i = 0; i < v.length; i++) worst = Math.max(worst, Math.abs(w[i] - v[i]) / scale);
    });
    expect(worst).toBeLessThan(1e-5);
    console.log(`calibration forward: ${kern.dispatches} kernel dispatches; linear inputs within ${worst.toExponential(2)} of tfjs's ops (relative to each input's max)`);
  });

  it("wanda: the calibration forward on the kernels gives the weights of tfjs's ops", async () => {
    const kern = await compressed('wanda', { pattern: '50%' }, 'on', 'auto');
    const plain = await compressed('wanda', { pattern: '50%' }, 'on', 'off');
    expect(kern.dispatches).toBeGreaterThan(plain.dispatches);
    for (const [k, v] of plain.weights) expect(kern.weights.get(k), k).toEqual(v);
  });

  it("the Hessian's XᵀX on the GEMM kernel (policy auto) equals tfjs's transposed matMul (1e-5)", async () => {
    const x = tf.randomNormal([300, 96], 0, 1, 'float32', 3) as tf.Tensor2D; // [tokens, cols]
    const hessian = async (mode: 'auto' | 'off') => {
      const h = new HessianAccumulator(96);
      const d0 = kernelDispatches();
      try {
        await withKernels({ mode }, () => {
          h.addBatch(x, 2);
          h.addBatch(x, 1);
        });
        return { H: (await h.toFloat64()), dispatches: kernelDispatches() - d0 };
      } finally {
        h.dispose();
      }
    };
    const n0 = tf.memory().numTensors;
    const kern = await hessian('auto');
    const plain = await hessian('off');
    x.dispose();
    expect(tf.memory().numTensors).toBe(n0 - 1);
    expect(plain.dispatches).toBe(0);
    expect(kern.dispatches).toBe(2);
    const scale = plain.H.reduce((m, a) => Math.max(m, Math.abs(a)), 0);
    expect(Math.max(...kern.H.map((v, i) => Math.abs(v - plain.H[i]) / scale))).toBeLessThan(1e-5);
  });
});
