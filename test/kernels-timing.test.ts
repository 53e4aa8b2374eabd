// profileGpu (lib/kernels/timing.ts) on a WebGPU adapter (lavapipe here): every dispatch of a
// region is timed under its kernel's name and grid (tfjs's ops, the kit's kernels, a replayed step
// graph), across more dispatches than one query set holds; the results are those of the unprofiled
// run; a region that throws, or a nested profile, leaves no query set, buffer or hook behind. With
// LLMCB_PROFILE_GPU=1 a method's block phases print their profiles and learn the same parameters.
import * as tf from '@tensorflow/tfjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { swiglu } from '../lib/kernels/fused';
import { captureStep, slotOf } from '../lib/kernels/step-graph';
import { KernelTimes, profileGpu } from '../lib/kernels/timing';
import * as omniquant from '../lib/methods/omniquant';
import { disposeModel, loadModel } from '../lib/models/load';
import { webgpuDevice } from '../lib/runtime/backend';
import { gpuBytesInUse } from '../lib/runtime/residency';
import { AdamW } from '../lib/train/optim';
import { webgpuAdapterReason } from './kernels-helpers';
import { STORIES_BIN, textCalib } from './model-helpers';

const reason = await webgpuAdapterReason();

/** Counts the query sets the device makes and destroys while the spy is on. */
function spyQuerySets(device: GPUDevice) {
  const create = device.createQuerySet;
  const count = { made: 0, live: 0 };
  device.createQuerySet = (desc: GPUQuerySetDescriptor) => {
    const q = create.call(device, desc);
    count.made++;
    count.live++;
    const destroy = q.destroy.bind(q);
    q.destroy = () => (count.live--, destroy());
    return q;
  };
  return { count, restore: () => (device.createQuerySet = create) };
}

/** Calls per kernel name (grid included). */
const calls = (t: KernelTimes) => Object.fromEntries([...t.byName].map(([n, e]) => [n, e.calls]));

describe.skipIf(reason !== null)('profileGpu on webgpu', () => {
  afterEach(() => {
    delete process.env.LLMCB_PROFILE_GPU;
  });

  it('times every dispatch of tfjs ops and kit kernels past one query set, the same values, nothing left behind', async () => {
    const device = webgpuDevice()!;
    const create = device.createCommandEncoder;
    const spy = spyQuerySets(device);
    const n0 = tf.memory().numTensors;
    const bytes = gpuBytesInUse();
    const g = tf.randomNormal([64, 32], 0, 1, 'float32', 1);
    const u = tf.randomNormal([64, 32], 0, 1, 'float32', 2);
    try {
      const region = () => {
        const y = [swiglu(g, u), swiglu(u, g), swiglu(g, g)];
        let x = tf.zeros([64, 64]);
        for (let i = 0; i < 2100; i++) {
          const next = tf.add(x, 1); // 2100 dispatches: more than the 2048 of one query set
          x.dispose();
          x = next;
        }
        return [...y, x];
      };
      const plain = region();
      const times = new KernelTimes();
      const timed = await profileGpu(region, times);
      for (let i = 0; i < plain.length; i++) expect(Array.from(await timed[i].data()), `output ${i}`).toEqual(Array.from(await plain[i].data()));
      tf.dispose([...plain, ...timed]);
      expect(times.steps).toBe(1);
      const byName = calls(times);
      const swigluRuns = Object.entries(byName).filter(([n]) => /^swiglu/.test(n));
      expect(swigluRuns.reduce((k, [, c]) => k + c, 0)).toBe(3);
      expect(Object.values(byName)).toContain(2100); // the adds: one name, every one of them timed
      for (const [name, e] of times.byName) expect(Number.isFinite(e.ms) && e.ms >= 0, name).toBe(true);
      expect(times.ms()).toBeGreaterThan(0);
      expect(spy.count.made).toBeGreaterThanOrEqual(2);
      expect(spy.count.live).toBe(0);
      expect(device.createCommandEncoder).toBe(create);
    } finally {
      spy.restore();
      tf.dispose([g, u]);
    }
    expect(tf.memory().numTensors).toBe(n0);
    expect(gpuBytesInUse()).toBe(bytes);
  });

  it('times a step graph: its replay dispatches what its capture did, and the replays give the unprofiled values', async () => {
    const train = async (profile: boolean) => {
      const w = tf.tidy(() => tf.variable(tf.randomNormal([16, 8], 0, 1, 'float32', 1)));
      const xs = [0, 1, 2].map((s) => tf.randomNormal([4, 16], 0, 1, 'float32', 10 + s));
      const opt = new AdamW(new Map([[w.name, w]]), { weightDecay: 0 });
      const step = (x: tf.Tensor) => {
        const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.matMul(x, w))) as tf.Scalar, [w]);
        opt.step(grads, 0.05);
        tf.dispose(Object.values(grads));
        return value;
      };
      const slot = slotOf(xs[0]);
      const [captureTimes, replayTimes] = [new KernelTimes(), new KernelTimes()];
      const maybe = <T>(times: KernelTimes, fn: () => T) => (profile ? profileGpu(fn, times) : Promise.resolve(fn()));
      const { graph, result } = await maybe(captureTimes, () => captureStep(() => step(slot), () => [w, ...opt.moments()]));
      for (const i of [1, 2, 0]) await maybe(replayTimes, () => graph.replay([{ from: xs[i], to: slot }]));
      const out = { w: Array.from(await w.data()), loss: (await result.data())[0], captureTimes, replayTimes };
      graph.dispose();
      tf.dispose([w, result, slot, ...xs]);
      opt.dispose();
      return out;
    };
    const plain = await train(false);
    const timed = await train(true);
    expect(timed.w).toEqual(plain.w);
    expect(timed.loss).toBe(plain.loss);
    expect(timed.replayTimes.steps).toBe(3);
    const once = Object.fromEntries(Object.entries(calls(timed.replayTimes)).map(([n, c]) => [n, c / 3]));
    expect(once).toEqual(calls(timed.captureTimes));
    expect(Object.keys(once).some((n) => /^matMul/.test(n))).toBe(true);
  });

  it('a region that throws and a nested profile leave no query set or hook behind', async () => {
    const device = webgpuDevice()!;
    const create = device.createCommandEncoder;
    const spy = spyQuerySets(device);
    const n0 = tf.memory().numTensors;
    try {
      const x = tf.ones([8]);
      await expect(
        profileGpu(() => {
          tf.add(x, 1).dispose();
          throw new Error('boom in the region');
        }, new KernelTimes()),
      ).rejects.toThrow('boom in the region');
      await expect(profileGpu(() => profileGpu(() => tf.add(x, 1).dispose(), new KernelTimes()), new KernelTimes())).rejects.toThrow(/do not nest/);
      expect(spy.count.live).toBe(0);
      expect(device.createCommandEncoder).toBe(create);
      const y = tf.add(x, 2); // the device works unhooked
      expect(Array.from(await y.data())).toEqual(Array(8).fill(3));
      tf.dispose([x, y]);
    } finally {
      spy.restore();
    }
    expect(tf.memory().numTensors).toBe(n0);
  });

  it('LLMCB_PROFILE_GPU=1: OmniQuant prints each block phase by kernel and learns the same parameters', async () => {
    const calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside. '.repeat(12), { name: 'toy-text' });
    const run = async (env: string) => {
      process.env.LLMCB_PROFILE_GPU = env;
      const m = await loadModel(STORIES_BIN);
      try {
        return (await omniquant.compress(m, calib, { bits: 4, epochs: 2, lwcLr: 0.05 })).artifacts.omniquant;
      } finally {
        disposeModel(m);
      }
    };
    const plain = await run('0');
    const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    let timed: unknown;
    let printed = '';
    try {
      timed = await run('1');
      printed = err.mock.calls.map((c) => String(c[0])).join('\n');
    } finally {
      err.mockRestore();
    }
    expect(timed).toEqual(plain);
    for (const phase of ['targets', 'train']) expect(printed).toMatch(new RegExp(`\\[profile\\] block 0, ${phase}\\n\\[profile\\]   GPU time: [0-9.]+ ms in [1-9][0-9]* dispatches`));
    expect(printed).toMatch(/\[profile\] block 1, train/);
    await expect(run('yes')).rejects.toThrow(/LLMCB_PROFILE_GPU='yes'/);
  });
});
