// Layer streaming (lib/methods/sequential.ts, lib/runtime/residency.ts) on webgpu (lavapipe in CI):
// with LLMCB_STREAM=on the compressed weights are exactly those of a run with every weight kept on
// the GPU, no weight is left on the GPU afterwards, and the peak GPU bytes in use drop (one block
// plus activations instead of the whole model). Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import type { CalibSet } from '../lib/methods/calib';
import { getMethod } from '../lib/methods';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import type { Model } from '../lib/models/types';
import { measurePeakMemory, offloadToHost, onDevice } from '../lib/runtime';
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

async function compressed(method: string, opts: Record<string, unknown>, stream: 'on' | 'off'): Promise<{ weights: Map<string, Float32Array>; peak: number; leftOnGpu: number }> {
  const old = process.env.LLMCB_STREAM;
  process.env.LLMCB_STREAM = stream;
  const model: Model = randomModel(CONFIG, { seed: 7, name: 'random-256x2' });
  try {
    const { peak } = await measurePeakMemory((probe) => getMethod(method).compress(model, calib, opts, { sample: () => probe.sample() }));
    const leftOnGpu = [...model.weights.values()].filter((t) => onDevice(t)).length;
    const weights = new Map<string, Float32Array>();
    for (const [k, t] of model.weights) weights.set(k, Float32Array.from((await t.data()) as Float32Array));
    return { weights, peak: peak.peakGpuInUseBytes!, leftOnGpu };
  } finally {
    disposeModel(model);
    if (old === undefined) delete process.env.LLMCB_STREAM;
    else process.env.LLMCB_STREAM = old;
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
});
