// Every registered compression method on a tiny random GLM model (fused q|k|v with bias, 2 KV
// groups, fused gate|up): it runs, the fused linears are compressed as one linear each (one
// quantized matrix, one sparsity pattern), LLM-Pruner removes whole KV groups from q|k|v, and the
// compressed model's logits stay finite and differ from the dense ones.
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { getMethod, methodNames } from '../lib/methods';
import { sampleCalibration, type CalibSet } from '../lib/methods/calib';
import { ARCHS, linearName } from '../lib/models/arch';
import * as awq from '../lib/methods/awq';
import { loadHfDir, saveModel } from '../lib/models/hf';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { forward } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { blockWidths } from '../lib/models/weights';
import { initRuntime } from '../lib/runtime';
import { GLM_TINY } from './model-helpers';

/** Options that fit the tiny model's widths (32-wide inputs), by option key; a method takes those it has. */
const FIT: Record<string, unknown> = { groupSize: 16, layerStart: 0, layerEnd: 2, nsamples: 4, seqlen: 32, batchSize: 4 };

let calib: CalibSet;
let ids: tf.Tensor2D;

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  let a = 7;
  const stream = Array.from({ length: 2000 }, () => (a = (a * 1103515245 + 12345) % 2147483648) % 509 + 3);
  calib = sampleCalibration(stream, 'random-ids', { nsamples: 4, seqlen: 32, seed: 0 });
  ids = tf.tensor2d(calib.windows.slice(0, 2), [2, 32], 'int32');
});

const tiny = (): Model => randomModel(GLM_TINY, { seed: 11, std: 0.2 });
const logits = (m: Model) => tf.tidy(() => forward(m, ids)).dataSync() as Float32Array;

describe('every method on the GLM block', () => {
  for (const name of methodNames()) {
    it(`${name} runs on fused q|k|v and gate|up`, async () => {
      const mod = getMethod(name);
      const opts = Object.fromEntries(Object.entries(FIT).filter(([k]) => k in mod.options));
      const m = tiny();
      try {
        const dense = logits(m);
        const qkv = linearName('glm', 0, 'qkv');
        const rowsBefore = m.weights.get(qkv)!.shape[0];
        const r = await mod.compress(m, mod.needsCalib ? calib : null, opts);
        const got = logits(m);
        expect(got.every(Number.isFinite)).toBe(true);
        expect(Math.max(...got.map((v, k) => Math.abs(v - dense[k])))).toBeGreaterThan(1e-3);
        const w = m.weights.get(qkv)!;
        if (mod.kind === 'quantization' && r.quantized.size > 0) {
          // the fused linear is one quantized matrix; no q/k/v pieces
          expect(r.quantized.has(qkv)).toBe(true);
          expect([...r.quantized.keys()].every((k) => !/q_proj|k_proj|v_proj/.test(k))).toBe(true);
        }
        if (mod.kind === 'sparsity') {
          const zeros = (w.dataSync() as Float32Array).filter((v) => v === 0).length / w.size;
          expect(zeros).toBeGreaterThan(0.3);
        }
        if (mod.kind === 'structured') {
          // whole KV groups leave q|k|v: (H' + 2·KV')·hd rows with H' = KV' · H/KV
          const wd = blockWidths(m.config, 0);
          expect(wd.numKvHeads).toBeLessThan(2);
          expect(wd.numHeads).toBe(wd.numKvHeads * 2);
          expect(w.shape[0]).toBe((wd.numHeads + 2 * wd.numKvHeads) * 8);
          expect(w.shape[0]).toBeLessThan(rowsBefore);
          expect(m.weights.get(linearName('glm', 0, 'qkv', 'bias'))!.shape[0]).toBe(w.shape[0]);
          // the pruned model saves in the native layout with per-block widths and reloads to the same logits
          const dir = mkdtempSync(path.join(os.tmpdir(), 'llmcb-glm-pruned-'));
          try {
            await saveModel(m, dir);
            const back = loadHfDir(dir, { tokenizer: path.resolve(__dirname, '..', 'models/stories260K/tok512.bin') });
            try {
              const again = logits(back);
              expect(Math.max(...again.map((v, k) => Math.abs(v - got[k])))).toBe(0);
            } finally {
              disposeModel(back);
            }
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        }
      } finally {
        disposeModel(m);
      }
    });
  }
});

describe('AWQ scale groups of the GLM table', () => {
  it('are exact transformations: norm → q|k|v, norm → gate|up, up rows → down, v rows → o (no GQA)', async () => {
    const m = randomModel({ ...GLM_TINY, num_key_value_heads: 4 }, { seed: 4, std: 0.2 });
    try {
      const dense = logits(m);
      let a = 1;
      for (const g of ARCHS.glm.groups) {
        const inDim = m.weights.get(linearName('glm', 0, g.linears[0]))!.shape[1] as number;
        const s = Float32Array.from({ length: inDim }, () => 0.5 + ((a = (a * 48271) % 2147483647) / 2147483647) * 1.5);
        await awq.applyGroupScales(m, 0, g, s);
      }
      const got = logits(m);
      expect(Math.max(...got.map((v, k) => Math.abs(v - dense[k])))).toBeLessThan(1e-4);
    } finally {
      disposeModel(m);
    }
  });

  it('AWQ searches up → down always and v → o only without GQA', async () => {
    for (const [kv, want] of [[2, ['qkv', 'gate_up', 'down']], [4, ['qkv', 'o', 'gate_up', 'down']]] as const) {
      const m = randomModel({ ...GLM_TINY, num_key_value_heads: kv }, { seed: 4, std: 0.2 });
      try {
        const r = await awq.compress(m, calib, { groupSize: 16 });
        const art = r.artifacts.awq as awq.AwqArtifact;
        const keys = Object.keys(art.scales).filter((k) => k.startsWith('0.'));
        expect(keys.map((k) => k.slice(2)).sort()).toEqual([...want].sort());
        // clipping covers every linear, the fused q|k|v through its v rows: (4 + 2·kv)·8 rows × 2 groups of 16
        expect(Object.keys(art.clip).filter((k) => k.startsWith('0.')).sort()).toEqual(['0.down', '0.gate_up', '0.o', '0.qkv']);
        expect(art.clip['0.qkv'].length).toBe((4 + 2 * kv) * 8 * 2);
      } finally {
        disposeModel(m);
      }
    }
  });
});
