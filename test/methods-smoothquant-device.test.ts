// SmoothQuant's weight quantization on the tfjs backend (absmaxQuantizeDevice, used for big layers:
// solverKind 'device') against the host quantizer it replaces there (absmaxQuantizeMatrix): on wasm
// the same fp32 operations give the same codes, scales and fake-quantized weights, and compress()
// with LLMCB_SOLVER=device gives the host path's codes and weights on stories260K.
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { absmaxQuantizeMatrix, absmaxQuantizeWeight } from '../lib/quant/act';
import { absmaxQuantizeDevice } from '../lib/quant/quantizer-device';
import { randn } from '../lib/methods/solver-cases';
import * as smoothquant from '../lib/methods/smoothquant';
import type { CalibSet } from '../lib/methods/calib';
import { disposeModel, loadModel } from '../lib/models/load';
import { STORIES_BIN, textCalib } from './model-helpers';

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

describe('absmax weight quantization on the device', () => {
  const rows = 24;
  const cols = 96;
  const W = randn(rows * cols, 9);
  W.fill(0, 2 * cols, 3 * cols); // an all-zero row: scale 1e-5 / qmax
  for (const [bits, granularity] of [[8, 'per_channel'], [8, 'per_tensor'], [4, 'per_channel']] as const) {
    it(`W${bits} ${granularity}: the host's codes, scales and weights, nothing left allocated`, async () => {
      const host = absmaxQuantizeMatrix(W, rows, cols, bits, granularity);
      const n0 = tf.memory().numTensors;
      const w = tf.tensor2d(W, [rows, cols]);
      const dev = await absmaxQuantizeDevice(w, bits, granularity);
      const weight = Float32Array.from((await dev.weight.data()) as Float32Array);
      tf.dispose([w, dev.weight]);
      expect(tf.memory().numTensors).toBe(n0);
      expect(dev.quantized).toEqual(host);
      expect(weight).toEqual(absmaxQuantizeWeight(W, rows, cols, bits, granularity));
    });
  }
});

describe('SmoothQuant with the device quantizer', () => {
  it("LLMCB_SOLVER=device gives the host path's codes and weights (stories260K)", { timeout: 120_000 }, async () => {
    const calib: CalibSet = await textCalib('Once upon a time, there was a little girl named Lily. She loved to play outside in the park. '.repeat(12), { name: 'toy-text' });
    const old = process.env.LLMCB_SOLVER;
    const run = async (solver: string) => {
      process.env.LLMCB_SOLVER = solver;
      const model = await loadModel(STORIES_BIN);
      try {
        const res = await smoothquant.compress(model, calib, { batchSize: 4 });
        const weights = new Map<string, Float32Array>();
        for (const name of res.quantized.keys()) weights.set(name, Float32Array.from((await model.weights.get(name)!.data()) as Float32Array));
        return { quantized: res.quantized, weights };
      } finally {
        disposeModel(model);
      }
    };
    try {
      const host = await run('host');
      const dev = await run('device');
      expect([...dev.quantized.keys()]).toEqual([...host.quantized.keys()]);
      for (const [name, q] of host.quantized) {
        expect(dev.quantized.get(name), name).toEqual(q);
        expect(dev.weights.get(name), name).toEqual(host.weights.get(name));
      }
    } finally {
      if (old === undefined) delete process.env.LLMCB_SOLVER;
      else process.env.LLMCB_SOLVER = old;
    }
  });
});
