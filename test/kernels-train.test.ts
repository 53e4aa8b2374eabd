// Training kernels (lib/kernels/train.ts): on a WebGPU adapter (lavapipe here) OmniQuant's LWC
// fake quantization and its gradients, and the AdamW update, against their tfjs ops with poisoned
// outputs; then AdamW and OmniQuant's lwcFakeQuant take the kernels end to end, and OmniQuant's
// weight-activation mode (LET through the kernels' dW and the fused RMSNorm's dw) learns block 0's
// parameters as the tfjs ops on wasm do. (Later blocks see a stream that depends on where block
// 0's final rounding lands, so they may part by a few percent between backends.)
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { trainChecks } from '../lib/kernels/train-cases';
import { kernelDispatches } from '../lib/kernels/gpu';
import { AdamW } from '../lib/train/optim';
import { initRuntime } from '../lib/runtime';
import { disposeModel, loadModel } from '../lib/models/load';
import * as omniquant from '../lib/methods/omniquant';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';
import { STORIES_BIN, textCalib } from './model-helpers';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('training kernels on webgpu', () => {
  itPassesChecks(trainChecks(TEST_SEED));

  it('lwcFakeQuant trains γ, β through the kernels to what the ops reach; AdamW steps by kernel', async () => {
    const before = tf.memory().numTensors;
    const W = tf.tensor2d(Array.from({ length: 8 * 32 }, (_, i) => Math.sin(i * 1.7) * 0.1), [8, 32]);
    const target = tf.tidy(() => tf.mul(W, 0.97));
    const train = async (fq: typeof omniquant.lwcFakeQuant) => {
      const gamma = tf.tidy(() => tf.variable(tf.fill([16, 1], 4)));
      const beta = tf.tidy(() => tf.variable(tf.fill([16, 1], 4)));
      const opt = new AdamW(new Map([[gamma.name, gamma], [beta.name, beta]]), { beta2: 0.999, weightDecay: 0 });
      const k0 = kernelDispatches();
      for (let s = 0; s < 20; s++) {
        const { grads, value } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(fq(W, gamma, beta, 3, 16), target))) as tf.Scalar, [gamma, beta]);
        opt.step(grads, 0.05);
        tf.dispose([value, ...Object.values(grads)]);
      }
      const out = [await gamma.data(), await beta.data(), kernelDispatches() - k0] as const;
      tf.dispose([gamma, beta]);
      opt.dispose();
      return out;
    };
    const [g1, b1, kernels] = await train(omniquant.lwcFakeQuant);
    const [g2, b2] = await train(omniquant.lwcFakeQuantOps);
    expect(kernels).toBe(20 * 4); // a step: LWC forward and backward, the two parameters' Adam updates
    for (const [a, b] of [[g1, g2], [b1, b2]]) for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i], 4);
    expect(Array.from(g1).some((x) => Math.abs(x - 4) > 0.05)).toBe(true); // it moved
    tf.dispose([W, target]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("OmniQuant weight-activation mode (LWC + LET) on the kernels learns block 0's parameters as the ops on wasm do", async () => {
    const calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside. '.repeat(12), { name: 'toy-text' });
    const run = async () => {
      const m = await loadModel(STORIES_BIN);
      try {
        const r = await omniquant.compress(m, calib, { bits: 4, mode: 'weight-act', actBits: 8, epochs: 2, lwcLr: 0.05, letLr: 0.01, batchSize: 2 });
        return r.artifacts.omniquant as omniquant.OmniQuantArtifact;
      } finally {
        disposeModel(m);
      }
    };
    const block0 = (a: omniquant.OmniQuantArtifact) => [...a.let['0.q'].scales, ...a.let['0.gate'].scales, ...a.lwc['0.q'].gamma, ...a.lwc['0.down'].beta];
    const gpu = block0(await run());
    await initRuntime({ backend: 'wasm' });
    try {
      const cpu = block0(await run());
      expect(gpu.length).toBe(cpu.length);
      let moved = 0;
      gpu.forEach((x, i) => {
        expect(Math.abs(x - cpu[i])).toBeLessThan(1e-4 * Math.max(1, Math.abs(cpu[i])));
        if (Math.abs(x - 4) > 1e-3) moved++;
      });
      expect(moved).toBeGreaterThan(gpu.length / 2); // trained, not the init
    } finally {
      await initRuntime({ backend: 'webgpu' });
    }
  });
});
