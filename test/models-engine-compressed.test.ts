// The engine on compressed models: no tensor leaked by load → forward → dispose; per-block widths
// (LLM-Pruner configs) run through the normal forward and round-trip as an HF directory; a model's
// activation quantization (W8A8) applies inside forward; sparse-storage directories load through
// loadModel; windowPerplexity does not depend on the batch size and equals a host computation.
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { windowPerplexity } from '../lib/eval/perplexity';
import { linearName } from '../lib/models/arch';
import { saveModel } from '../lib/models/hf';
import { disposeModel, isSparseDir, loadModel, saveSparseDir } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { embed, forward, head, runBlock } from '../lib/models/transformer';
import type { InferenceModel } from '../lib/engine/inference';
import type { Model } from '../lib/models/types';
import { expectedShapes, PER_LAYER_KEYS } from '../lib/models/weights';
import { actQuantHook } from '../lib/quant/act';
import { initRuntime } from '../lib/runtime';

const repoRoot = path.resolve(__dirname, '..');
const ckpt = path.join(repoRoot, 'models/stories260K/stories260K.bin');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin'); // random models carry no tokenizer file
const TINY_LLAMA = {
  model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 10000,
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
const IDS = [[1, 5, 9, 200, 17, 3, 44, 8], [4, 4, 8, 299, 0, 12, 7, 7]];

let tmp: string;
beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  tmp = mkdtempSync(path.join(os.tmpdir(), 'llmcb-compressed-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const logitsOf = (m: Model, opts = {}) => tf.tidy(() => forward(m, tf.tensor2d(IDS, [2, 8], 'int32'), opts).arraySync() as number[][][]);
const maxAbsDiff = (a: number[][][], b: number[][][]) => Math.max(...a.flat(2).map((x, i) => Math.abs(x - b.flat(2)[i])));

describe('forward leaks nothing', () => {
  it('load → forward (plain, masked, single token) → dispose returns to the starting tensor count', async () => {
    const before = tf.memory().numTensors;
    const m = await loadModel(ckpt);
    const ids = tf.tensor2d([[1, 2, 3, 4]], [1, 4], 'int32');
    const mask = tf.tensor2d([[1, 1, 1, 0]], [1, 4], 'int32');
    forward(m, ids).dispose();
    forward(m, ids, { attentionMask: mask }).dispose();
    const one = tf.tensor2d([[1]], [1, 1], 'int32');
    forward(m, one).dispose();
    tf.dispose([ids, mask, one]);
    disposeModel(m);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('a forward that throws frees what it made', () => {
    const m = randomModel(TINY_LLAMA, { seed: 1 });
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d(IDS, [2, 8], 'int32');
    // A hook that fails in block 1: embed output and block 0's output must not stay behind.
    expect(() => forward(m, ids, { onLinearInput: (name) => { if (name.includes('layers.1.')) throw new Error('hook failed'); } })).toThrow(/hook failed/);
    ids.dispose();
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(m);
  });
});

describe('per-block widths (structurally pruned configs)', () => {
  /** TINY_LLAMA with block 0 cut to KV group 0 (heads 0, 1) and the first 24 MLP channels. */
  function pruned(): Model {
    const m = randomModel(TINY_LLAMA, { seed: 3, std: 0.2 });
    const cut = (short: string, rows: number | null, cols: number | null) => {
      const n = linearName('llama', 0, short);
      const w = m.weights.get(n)!;
      const s = tf.slice(w, [0, 0], [rows ?? w.shape[0]!, cols ?? w.shape[1]!]);
      w.dispose();
      m.weights.set(n, s);
    };
    const hd = m.config.headDim;
    cut('q', 2 * hd, null);
    cut('k', hd, null);
    cut('v', hd, null);
    cut('o', null, 2 * hd);
    cut('gate', 24, null);
    cut('up', 24, null);
    cut('down', null, 24);
    m.config = { ...m.config, hf: { ...m.config.hf, [PER_LAYER_KEYS.numHeads]: [2, 4], [PER_LAYER_KEYS.numKvHeads]: [1, 2], [PER_LAYER_KEYS.intermediateSize]: [24, 48] } };
    return m;
  }

  it('expectedShapes lists each block its own shapes; bad lists are named', () => {
    const m = pruned();
    const shapes = expectedShapes(m.config);
    expect(shapes.get('model.layers.0.self_attn.q_proj.weight')).toEqual([16, 32]);
    expect(shapes.get('model.layers.0.self_attn.k_proj.weight')).toEqual([8, 32]);
    expect(shapes.get('model.layers.0.mlp.down_proj.weight')).toEqual([32, 24]);
    expect(shapes.get('model.layers.1.self_attn.q_proj.weight')).toEqual([32, 32]);
    expect(shapes.get('model.layers.1.mlp.up_proj.weight')).toEqual([48, 32]);
    expect(() => expectedShapes({ ...m.config, hf: { ...m.config.hf, [PER_LAYER_KEYS.numHeads]: [2] } })).toThrow(/num_attention_heads_per_layer/);
    expect(() => expectedShapes({ ...m.config, hf: { ...m.config.hf, [PER_LAYER_KEYS.numHeads]: [2, 3] } })).toThrow(/block 1: 3 attention heads/);
    disposeModel(m);
  });

  it('forward equals running each block with its own uniform config, and the HF directory round-trips', async () => {
    const m = pruned();
    const before = tf.memory().numTensors;
    const got = logitsOf(m);
    const want = tf.tidy(() => {
      const { [PER_LAYER_KEYS.numHeads]: _a, [PER_LAYER_KEYS.numKvHeads]: _b, [PER_LAYER_KEYS.intermediateSize]: _c, ...plain } = m.config.hf;
      let x = embed(m, tf.tensor2d(IDS, [2, 8], 'int32'));
      const widths = [[2, 1, 24], [4, 2, 48]];
      for (let i = 0; i < 2; i++) {
        const [h, kv, f] = widths[i];
        x = runBlock({ ...m, config: { ...m.config, numHeads: h, numKvHeads: kv, intermediateSize: f, hf: plain } }, i, x);
      }
      return head(m, x).arraySync() as number[][][];
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
    const dir = path.join(tmp, 'pruned-hf');
    await saveModel(m, dir);
    const back = await loadModel(dir, { tokenizer: tokFile });
    expect(maxAbsDiff(logitsOf(back), got)).toBe(0);
    disposeModel(back);
    disposeModel(m);
  });
});

describe('activation quantization on the model (W8A8)', () => {
  it('InferenceModel.actQuant fake-quantizes every linear input inside forward, before a caller hook', () => {
    const m = randomModel(TINY_LLAMA, { seed: 4, std: 0.2 });
    const plain = logitsOf(m);
    const spec = { bits: 4, granularity: 'per_token' as const, staticAbsmax: null };
    const want = tf.tidy(() => {
      let x = embed(m, tf.tensor2d(IDS, [2, 8], 'int32'));
      for (let i = 0; i < 2; i++) x = runBlock(m, i, x, { onLinearInput: actQuantHook(spec, i) });
      return head(m, x).arraySync() as number[][][];
    });
    const q: InferenceModel = { ...m, actQuant: spec };
    const seen: number[] = [];
    const got = tf.tidy(() => forward(q, tf.tensor2d(IDS, [2, 8], 'int32'), {
      onLinearInput: (_n, x) => void seen.push(tf.tidy(() => tf.max(tf.abs(tf.sub(x, tf.round(tf.div(x, tf.div(tf.max(tf.abs(x), 1, true), 7)))
        .mul(tf.div(tf.max(tf.abs(x), 1, true), 7))))).dataSync()[0])),
    }).arraySync() as number[][][]);
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-6);
    expect(maxAbsDiff(got, plain)).toBeGreaterThan(1e-3); // 4-bit inputs change the logits
    expect(seen).toHaveLength(14); // 7 linears × 2 blocks, each seeing an input already on the 4-bit grid
    for (const d of seen) expect(d).toBeLessThan(1e-5);
    disposeModel(m);
  });
});

describe('sparse-storage directories', () => {
  it('saveSparseDir (2:4) → loadModel gives the same logits', async () => {
    const m = randomModel(TINY_LLAMA, { seed: 5, std: 0.2 });
    // 2:4 pattern on every block linear: zero the last two of every four inputs.
    for (const [name, w] of [...m.weights]) {
      if (!/layers\.\d+\.(self_attn|mlp)\./.test(name)) continue;
      const keep = tf.tidy(() => tf.tile(tf.tensor2d([[1, 1, 0, 0]]), [w.shape[0]!, w.shape[1]! / 4]));
      m.weights.set(name, tf.mul(w, keep));
      tf.dispose([w, keep]);
    }
    const dir = path.join(tmp, 'sparse');
    await saveSparseDir(m, dir, { n: 2, m: 4 });
    expect(isSparseDir(dir)).toBe(true);
    const before = tf.memory().numTensors;
    const back = await loadModel(dir, { tokenizer: tokFile });
    expect(back.weights.size).toBe(m.weights.size);
    expect(maxAbsDiff(logitsOf(back), logitsOf(m))).toBe(0);
    disposeModel(back);
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(m);
  });
});

describe('windowPerplexity', () => {
  it('is independent of the batch size and equals a float64 host computation (stories260K)', async () => {
    const m = await loadModel(ckpt);
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day she saw a big red ball. ';
    const ids = m.tokenizer.encode(text.repeat(6));
    const seqlen = 32;
    const windows = 5;
    const before = tf.memory().numTensors;
    const runs = [];
    for (const batch of [1, 2, 5]) runs.push(await windowPerplexity(m, ids, { seqlen, windows, batch }));
    expect(tf.memory().numTensors).toBe(before);
    for (const r of runs) {
      expect(r.windows).toBe(windows);
      expect(r.predicted).toBe(windows * (seqlen - 1));
      expect(Math.abs(r.ppl / runs[0].ppl - 1)).toBeLessThan(1e-6);
    }
    // Host reference: log-softmax in float64 over the forward's logits, window by window.
    let nll = 0;
    for (let w = 0; w < windows; w++) {
      const win = ids.slice(w * seqlen, (w + 1) * seqlen);
      const logits = tf.tidy(() => forward(m, tf.tensor2d([win], [1, seqlen], 'int32')).arraySync() as number[][][])[0];
      for (let t = 0; t < seqlen - 1; t++) {
        const row = logits[t];
        const mx = Math.max(...row);
        const lse = Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0)) + mx;
        nll -= row[win[t + 1]] - lse;
      }
    }
    expect(Math.abs(runs[0].meanNll - nll / (windows * (seqlen - 1)))).toBeLessThan(1e-5);
    expect(runs[0].ppl).toBeGreaterThan(1);
    await expect(windowPerplexity(m, ids.slice(0, 10), { seqlen })).rejects.toThrow(/make no window of 32/);
    disposeModel(m);
  });
});
