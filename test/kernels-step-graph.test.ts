// Step graphs (lib/kernels/step-graph.ts) on a WebGPU adapter (lavapipe here): a captured training
// step replayed gives bit for bit what the same steps give eagerly (parameters, Adam moments,
// losses), also while other tfjs work churns the buffer pool between replays; a step that reads back
// is refused; a disposed graph leaves no tensor, buffer or withheld byte behind. OmniQuant, which
// replays its gradient steps on webgpu, learns the same parameters with graphs on and off.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { captureStep, liveStepGraphs, setStepGraphs, slotOf } from '../lib/kernels/step-graph';
import { disposeModel, loadModel } from '../lib/models/load';
import * as omniquant from '../lib/methods/omniquant';
import { gpuBytesInUse } from '../lib/runtime/residency';
import { AdamW } from '../lib/train/optim';
import { webgpuAdapterReason } from './kernels-helpers';
import { STORIES_BIN, textCalib } from './model-helpers';

const reason = await webgpuAdapterReason();

/** A small regression trained with AdamW: eager, or captured once and replayed. */
async function train(graphed: boolean, churn = false) {
  const w = tf.tidy(() => tf.variable(tf.randomNormal([16, 8], 0, 1, 'float32', 1)));
  const b = tf.tidy(() => tf.variable(tf.zeros([8])));
  const xs = [0, 1, 2].map((s) => tf.randomNormal([4, 16], 0, 1, 'float32', 10 + s));
  const ys = [0, 1, 2].map((s) => tf.randomNormal([4, 8], 0, 1, 'float32', 20 + s));
  const shift = tf.randomNormal([4, 8], 0, 1, 'float32', 30); // a constant the step reads
  const opt = new AdamW(new Map([[w.name, w], [b.name, b]]), { weightDecay: 0.1 });
  const step = (x: tf.Tensor, y: tf.Tensor) => {
    const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(tf.add(tf.add(tf.matMul(x, w), b), shift), y))) as tf.Scalar, [w, b]);
    opt.step(grads, 0.05);
    tf.dispose(Object.values(grads));
    return value;
  };
  const losses: number[] = [];
  const slotX = slotOf(xs[0]);
  const slotY = slotOf(ys[0]);
  let captured: ReturnType<typeof captureStep<tf.Scalar>> | null = null;
  for (let s = 0; s < 9; s++) {
    const i = s % 3;
    if (!graphed) {
      const l = step(xs[i], ys[i]);
      losses.push((await l.data())[0]);
      l.dispose();
    } else if (!captured) {
      captured = captureStep(() => step(slotX, slotY), () => [w, b, ...opt.moments()]);
      losses.push((await captured.result.data())[0]);
      if (churn) shift.dispose(); // the graph keeps its buffer: tfjs must not hand it out again
    } else {
      captured.graph.replay([{ from: xs[i], to: slotX }, { from: ys[i], to: slotY }]);
      losses.push((await captured.result.data())[0]);
    }
    if (churn) {
      // eager work of the step's shapes: with the graph's buffers pooled, these would overwrite them
      const junk = tf.tidy(() => [tf.add(tf.matMul(xs[0], w), 1e3), tf.mul(w, -1e3), tf.add(tf.fill([4, 8], 7), 0), tf.scalar(9).add(1)]);
      await Promise.all(junk.map((t) => t.data()));
      tf.dispose(junk);
    }
  }
  const out = { losses, w: await w.data(), b: await b.data(), m: await Promise.all(opt.moments().map((t) => t.data())), t: opt.t };
  captured?.graph.dispose();
  captured?.result.dispose();
  tf.dispose([w, b, shift, ...xs, ...ys, slotX, slotY]);
  opt.dispose();
  return out;
}

describe.skipIf(reason !== null)('step graphs on webgpu', () => {
  it('replays a training step bit for bit as the eager steps, pool churn between replays included, and leaves nothing behind', async () => {
    const tensors = tf.memory().numTensors;
    const bytes = gpuBytesInUse();
    const eager = await train(false);
    for (const churn of [false, true]) {
      const graph = await train(true, churn);
      expect(graph.t).toBe(9);
      expect(graph.losses).toEqual(eager.losses);
      expect(Array.from(graph.w)).toEqual(Array.from(eager.w));
      expect(Array.from(graph.b)).toEqual(Array.from(eager.b));
      graph.m.forEach((m, i) => expect(Array.from(m)).toEqual(Array.from(eager.m[i])));
    }
    expect(new Set(eager.losses).size).toBe(9); // every step's loss is its own
    expect(liveStepGraphs()).toBe(0);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(gpuBytesInUse()).toBe(bytes);
  });

  it('refuses a step that reads back, and keeps nothing of it', async () => {
    const bytes = gpuBytesInUse();
    const x = tf.randomNormal([64]);
    let made: tf.Tensor | null = null;
    expect(() => captureStep(() => {
      made = tf.mul(x, 2);
      made.dataSync();
      return made;
    }, () => [])).toThrow(/readback \(readSync\)/);
    (made as tf.Tensor | null)?.dispose();
    x.dispose();
    expect(liveStepGraphs()).toBe(0);
    expect(gpuBytesInUse()).toBe(bytes);
  });

  it('OmniQuant learns the same parameters and losses with its steps replayed as without', async () => {
    const calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside. '.repeat(12), { name: 'toy-text' });
    const run = async (graphs: boolean) => {
      const old = setStepGraphs(graphs);
      const m = await loadModel(STORIES_BIN);
      try {
        const r = await omniquant.compress(m, calib, { bits: 4, epochs: 3, lwcLr: 0.05 });
        return { art: r.artifacts.omniquant as omniquant.OmniQuantArtifact, stats: r.stats };
      } finally {
        disposeModel(m);
        setStepGraphs(old);
      }
    };
    const eager = await run(false);
    const graph = await run(true);
    expect(graph.stats).toEqual(eager.stats);
    expect(graph.stats!.last_epoch_loss_mean).not.toBe(graph.stats!.first_epoch_loss_mean);
    expect(graph.art).toEqual(eager.art);
    expect(Object.values(graph.art.lwc).some((p) => p.gamma.some((g) => Math.abs(g - 4) > 1e-3))).toBe(true); // trained
    expect(liveStepGraphs()).toBe(0);
  });
});
