// Quantization methods on the embedded stories260K model: the sequential driver, GPTQ vs RTN on
// real layers with real calibration inputs, exactness of SmoothQuant's and AWQ's equivalent
// transformations, W8A8 and leak checks.
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { loadModel, disposeModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import type { InferenceModel } from '../lib/engine/inference';
import type { Model } from '../lib/models/types';
import type { CalibSet } from '../lib/methods/calib';
import { runSequential } from '../lib/methods/sequential';
import { gptqSolve } from '../lib/methods/gptq';
import { HessianAccumulator } from '../lib/methods/hessian';
import { rtnMatrix, defaults as rtnDefaults } from '../lib/methods/rtn';
import * as rtn from '../lib/methods/rtn';
import * as gptq from '../lib/methods/gptq';
import * as smoothquant from '../lib/methods/smoothquant';
import * as awq from '../lib/methods/awq';
import { hostValues, readLinear, type HostMatrix } from '../lib/quant/weights';
import { STORIES_BIN as modelFile, textCalib } from './model-helpers';

let calib: CalibSet;
let ids: tf.Tensor2D;

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  // A fixed, model-generated-free calibration set: tokens of a short text, 4 windows of 64.
  calib = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside in the park. '.repeat(12), { name: 'toy-text' });
  ids = tf.tensor2d(calib.windows.slice(0, 2), [2, 64], 'int32');
});
afterAll(() => ids.dispose());

const fresh = () => loadModel(modelFile);
function logits(model: InferenceModel): Float32Array {
  return tf.tidy(() => forward(model, ids)).dataSync() as Float32Array;
}
function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('sequential driver', () => {
  it('visits every block, sees every linear input, and leaks nothing', async () => {
    const model = await fresh();
    const before = tf.memory().numTensors;
    const seen: string[] = [];
    const shapes = new Map<string, number[]>();
    await runSequential(model, calib, {
      propagate: 'compressed',
      batchSize: 3,
      perBlock(ctx) {
        expect(ctx.inputs.map((x) => x.shape)).toEqual([[3, 64, 64], [1, 64, 64]]);
        ctx.observe((l, x) => {
          seen.push(`${ctx.block}.${l}`);
          if (!shapes.has(l)) shapes.set(l, x.shape);
        });
      },
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(seen.length).toBe(5 * 7 * 2); // blocks × linears × batches
    expect(shapes.get('q')).toEqual([3 * 64, 64]);
    expect(shapes.get('down')).toEqual([3 * 64, 172]);
    disposeModel(model);
  });
  it('capturing ends each forward at the last wanted linear input: no down projection, no product at all for q alone', async () => {
    const model = await fresh();
    const before = tf.memory().numTensors;
    const matMuls = async (f: () => void) => (await tf.profile(() => (f(), []))).kernels.filter((k) => k.name.includes('MatMul')).length;
    const counts: number[] = [];
    await runSequential(model, calib, {
      propagate: 'compressed',
      batchSize: 4,
      blocks: [0],
      async perBlock(ctx) {
        counts.push(await matMuls(() => ctx.run(ctx.inputs[0]).dispose())); // the whole block
        counts.push(await matMuls(() => ctx.observe(() => {})));
        counts.push(await matMuls(() => ctx.observe(() => {}, { linears: ['q', 'k'] })));
        counts.push(await matMuls(() => ctx.observe(() => {}, { linears: ['q'] })));
      },
    });
    expect(counts[0]).toBeGreaterThanOrEqual(7); // the 7 linears (and the attention products off its fused kernel)
    expect(counts).toEqual([counts[0], counts[0] - 1, 1, 0]); // all: no down projection; q and k: q's only; q: none
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(model);
  });
  it('dense propagation equals the forward pass: block 4 sees the same linear inputs', async () => {
    const model = await fresh();
    let viaDriver: Float32Array | null = null;
    await runSequential(model, calib, {
      propagate: 'dense',
      batchSize: 2,
      blocks: [4],
      perBlock(ctx) {
        ctx.observe((l, x, info) => {
          if (l === 'down' && info.batch === 0) viaDriver = Float32Array.from(x.dataSync());
        });
      },
    });
    let viaForward: Float32Array | null = null;
    tf.tidy(() => forward(model, ids, { onLinearInput: (name, x) => {
      if (name.startsWith('model.layers.4.mlp.down_proj')) viaForward = Float32Array.from(x.dataSync());
    } }));
    expect(viaDriver).not.toBeNull();
    expect(viaForward).not.toBeNull();
    expect(maxAbsDiff(viaDriver!, viaForward!)).toBeLessThan(1e-4);
    disposeModel(model);
  });
});

describe('GPTQ vs RTN on real layers (stories260K block 0 and 2, real calibration inputs)', () => {
  it('layer output error on the calibration inputs is below RTN for every linear (W4 and W3)', async () => {
    const model = await fresh();
    const results: string[] = [];
    await runSequential(model, calib, {
      propagate: 'dense',
      blocks: [0, 2],
      async perBlock(ctx) {
        const layers = new Map<string, HessianAccumulator>();
        const xs = new Map<string, tf.Tensor2D[]>();
        const mats = new Map<string, HostMatrix>();
        for (const l of ctx.linears) mats.set(l, await readLinear(model, ctx.block, l));
        for (const l of ctx.linears) layers.set(l, new HessianAccumulator(mats.get(l)!.cols));
        ctx.observe((l, x, info) => {
          layers.get(l)!.addBatch(x, info.samples);
          xs.set(l, [...(xs.get(l) ?? []), x.clone()]); // observers run outside tidy: no keep needed
        });
        for (const l of ctx.linears) {
          const m = mats.get(l)!;
          const X = tf.concat(xs.get(l)!) as tf.Tensor2D;
          const W = tf.tensor2d(m.data, [m.rows, m.cols]);
          const err = async (Q: Float32Array) => (await hostValues(() => tf.sum(tf.square(tf.matMul(X, tf.sub(W, tf.tensor2d(Q, [m.rows, m.cols])), false, true)))))[0];
          for (const bits of [4, 3]) {
            const g = await gptqSolve(W, layers.get(l)!, { bits });
            const r = rtnMatrix(m.data, m.rows, m.cols, { ...rtnDefaults, bits });
            const eg = await err((await g.weight.data()) as Float32Array);
            g.weight.dispose();
            const er = await err(r.weight);
            results.push(`${ctx.block}.${l} W${bits}: gptq ${eg.toExponential(3)} rtn ${er.toExponential(3)}`);
            expect(eg, `${ctx.block}.${l} W${bits}`).toBeLessThan(er);
          }
          X.dispose();
          W.dispose();
          xs.get(l)!.forEach((t) => t.dispose());
          layers.get(l)!.dispose();
        }
      },
    });
    expect(results.length).toBe(2 * 7 * 2);
    disposeModel(model);
  });
});

describe('equivalent transformations keep the FP function', () => {
  it('SmoothQuant smoothing (alpha 0.5 and 0.85) changes logits by < 1e-5 relative', async () => {
    for (const alpha of [0.5, 0.85]) {
      const model = await fresh();
      const ref = logits(model);
      const scales = await smoothquant.collectActScales(model, calib, 4);
      const used = await smoothquant.applySmoothing(model, scales, alpha);
      expect(Object.keys(used).length).toBe(5 * 2); // two norm-fed groups per block
      const out = logits(model);
      const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxAbsDiff(ref, out) / scale).toBeLessThan(1e-5);
      // and the smoothing did something: weights changed
      expect(used['0.q'].some((s) => Math.abs(s - 1) > 0.05)).toBe(true);
      disposeModel(model);
    }
  });
  it('AWQ scales (searched) and their application keep logits within 1e-5 relative', async () => {
    const model = await fresh();
    const ref = logits(model);
    const art = await awq.search(model, calib, { bits: 4, groupSize: -1, clip: false, nGrid: 5, batchSize: 4 });
    // gqa: v→o is skipped (v_proj 32×64 vs o_proj 64×64), other three groups per block are scaled
    expect(Object.keys(art.scales).sort()).toEqual(['0.down', '0.gate', '0.q', '1.down', '1.gate', '1.q', '2.down', '2.gate', '2.q', '3.down', '3.gate', '3.q', '4.down', '4.gate', '4.q']);
    const out = logits(model);
    const scale = ref.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxAbsDiff(ref, out) / scale).toBeLessThan(1e-5);
    // applying the saved artifact to a fresh model gives the same weights
    const m2 = await fresh();
    await awq.applyArtifact(m2, JSON.parse(JSON.stringify(art)), { groupSize: -1 });
    const a = (await readLinear(model, 3, 'up')).data;
    const b = (await readLinear(m2, 3, 'up')).data;
    expect(maxAbsDiff(a, b)).toBe(0);
    disposeModel(model);
    disposeModel(m2);
  });
});

describe('compress() end to end (tiny calibration)', () => {
  it('RTN, GPTQ, AWQ W4, SmoothQuant W8A8 run, leak nothing, and change the logits by a bounded amount', async () => {
    for (const [name, mod, opts] of [
      ['rtn', rtn, { bits: 4 }],
      ['gptq', gptq, { bits: 4, groupSize: 32, groupRemainder: 'partial' }],
      ['awq', awq, { bits: 4, groupSize: -1, clip: true, nGrid: 4, batchSize: 4 }],
      ['smoothquant', smoothquant, { alpha: 0.5, batchSize: 4 }],
    ] as const) {
      const model = await fresh();
      const ref = logits(model);
      const before = tf.memory().numTensors;
      const res = await (mod.compress as (m: Model, c: CalibSet, o: object) => Promise<import('../lib/methods/types').CompressResult>)(model, calib, opts);
      expect(tf.memory().numTensors, name).toBe(before);
      expect(res.quantized.size, name).toBe(35);
      const out = res.actQuant ? logits({ ...model, actQuant: res.actQuant }) : logits(model);
      const d = maxAbsDiff(ref, out);
      expect(d, name).toBeGreaterThan(0);
      expect(d, name).toBeLessThan(name === 'smoothquant' ? 2 : 20);
      disposeModel(model);
    }
  });
  it('bad configurations fail before any work', async () => {
    const model = await fresh();
    expect(() => gptq.validate({ ...gptq.defaults, groupSize: 32 }, model)).toThrow(/down: group size 32 does not divide the input dimension 172/);
    expect(() => smoothquant.validate({ ...smoothquant.defaults, alpha: 1.5 })).toThrow(/smoothquant: option 'alpha' must be number in \[0, 1\], got 1.5/);
    expect(() => rtn.validate({ ...rtn.defaults, bits: 9 })).toThrow(/bits/);
    await expect(gptq.compress(model, null, {})).rejects.toThrow(/calibration/);
    disposeModel(model);
  });
});
