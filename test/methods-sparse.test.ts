// Magnitude, Wanda and SparseGPT over the embedded stories260K through the sequential driver:
// exact sparsity per layer and globally, valid N:M groups in every layer, errors before any work,
// and the sparse model file giving identical logits.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { countMacs } from '../lib/efficiency/macs';
import type { CalibSet } from '../lib/methods/calib';
import * as magnitude from '../lib/methods/magnitude';
import * as sparsegpt from '../lib/methods/sparsegpt';
import * as wanda from '../lib/methods/wanda';
import { blockLinears, linearName } from '../lib/models/arch';
import { disposeModel, loadModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { loadSparseWeights, saveSparseWeights, sparsityReport } from '../lib/quant/sparse';
import { isValidNM } from '../lib/quant/sparse-pattern';
import { initRuntime } from '../lib/runtime';
import { STORIES_BIN as bin, textCalib } from './model-helpers';

let calib: CalibSet;

beforeAll(async () => {
  expect((await initRuntime({ backend: 'wasm' })).backend).toBe('wasm');
  calib = await textCalib('One day, a little boy named Tim went to the park. He saw a big red ball and wanted to play. '.repeat(20));
});

const METHODS = { magnitude: magnitude.module, wanda: wanda.module, sparsegpt: sparsegpt.module };

async function pruned(method: keyof typeof METHODS, pattern: string): Promise<Model> {
  const m = await loadModel(bin);
  const mod = METHODS[method];
  await mod.compress(m, mod.needsCalib ? calib : null, (mod.needsCalib ? { pattern, batchSize: 2 } : { pattern }) as never);
  return m;
}

describe('sparsity methods on stories260K', () => {
  for (const method of ['magnitude', 'wanda', 'sparsegpt'] as const) {
    it(`${method}: exact 50% per layer and globally, 2:4 valid in every layer, no leaks`, async () => {
      const before = tf.memory().numTensors;
      const m = await pruned(method, '50%');
      expect(tf.memory().numTensors).toBe(before + m.weights.size);
      const rep = await sparsityReport(m);
      // every linear of stories260K has an even number of weights per row (Wanda) / per matrix
      for (const [name, s] of Object.entries(rep.perLayer)) expect(s, name).toBe(0.5);
      expect(rep.global).toBe(0.5);
      disposeModel(m);
      const n = await pruned(method, '2:4');
      for (let b = 0; b < 5; b++) {
        for (const l of blockLinears('llama')) {
          const w = n.weights.get(linearName('llama', b, l))!;
          expect(isValidNM(w.dataSync(), w.shape[0] as number, w.shape[1] as number, 2, 4), `${b}.${l}`).toBe(true);
        }
      }
      expect((await sparsityReport(n)).global).toBe(0.5);
      disposeModel(n);
    });
  }

  it('an odd ratio is exact per layer too (floor of the layer size)', async () => {
    const m = await pruned('sparsegpt', '0.37');
    const rep = await sparsityReport(m);
    for (const [name, s] of Object.entries(rep.perLayer)) {
      const t = m.weights.get(name)!;
      expect(Math.round(s * t.size), name).toBe(Math.floor(t.size * 0.37 + 1e-9));
    }
    disposeModel(m);
  });

  it('4:8 is refused before any work: down_proj has 172 inputs', async () => {
    const m = await loadModel(bin);
    const q = m.weights.get(linearName('llama', 0, 'q'))!;
    for (const mod of Object.values(METHODS)) {
      await expect(mod.compress(m, calib, { pattern: '4:8' } as never)).rejects.toThrow(
        /4:8 does not fit 'model.layers.0.mlp.down_proj.weight': its input dimension 172 is not a multiple of 8/,
      );
      expect(() => mod.validate({ pattern: '3:2' } as never, m)).toThrow(/N must be smaller than M/);
      expect(() => mod.validate({ pattern: 1.2 } as never, m)).toThrow(/must be a ratio in \(0, 1\)/);
    }
    expect(m.weights.get(linearName('llama', 0, 'q'))).toBe(q); // untouched
    await expect(wanda.module.compress(m, null, {})).rejects.toThrow(/wanda needs a calibration set/);
    disposeModel(m);
  });

  it('sparse files (2:4 and bitmask) load back to identical logits; zero-skipping MACs halve the linears', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-sparse-model-'));
    const m = await pruned('wanda', '2:4');
    const ids = tf.tensor2d([calib.windows[0]], [1, 64], 'int32');
    const ref = forward(m, ids);
    try {
      for (const layout of [{ n: 2, m: 4 }, 'bitmask'] as const) {
        const file = path.join(dir, 'w.safetensors');
        const rep = await saveSparseWeights(m, file, layout);
        expect(rep.tensorBytes).toBeLessThan(rep.denseBytes);
        const weights = loadSparseWeights(file);
        const back: Model = { ...m, weights };
        const out = forward(back, ids);
        expect(Array.from(out.dataSync())).toEqual(Array.from(ref.dataSync()));
        out.dispose();
        weights.forEach((t) => t.dispose());
      }
      const macs = await countMacs(m, { seqlen: 64 });
      expect(macs.linearNonZero * 2).toBe(macs.linearDense);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      tf.dispose([ref, ids]);
      disposeModel(m);
    }
  });
});
