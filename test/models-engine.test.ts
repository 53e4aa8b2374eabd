// The forward pass and generation: stories260K's reference continuation from both sources,
// layer-by-layer = forward, the linear-input hook, padded batches, KV cache = no cache, seeded
// sampling, row-split weights, saving as an HF directory and reading it back. No tensor leaks.
import * as tf from '@tensorflow/tfjs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { blockLinears, linearName } from '../lib/models/arch';
import { loadHfDir, saveModel } from '../lib/models/hf';
import { disposeModel, loadModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { readSafetensorsHeader } from '../lib/models/safetensors';
import { embed, forward, generate, head, runBlock } from '../lib/models/transformer';
import type { Model } from '../lib/models/types';
import { getWeight } from '../lib/quant/weights';

const repoRoot = path.resolve(__dirname, '..');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const ckpt = path.join(repoRoot, 'models/stories260K/stories260K.bin');
const tokFile = path.join(repoRoot, 'models/stories260K/tok512.bin');
const sharedHf = path.join(shared, 'reference/stories260K/hf');
const hasShared = existsSync(sharedHf);
if (!hasShared) console.warn(`skipping shared-data tests: ${sharedHf} not found (set LLMCB_SHARED)`);
const REFERENCE = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

const TINY_LLAMA = {
  model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 2, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 300, max_position_embeddings: 64, rms_norm_eps: 1e-5, rope_theta: 500000,
  rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};
const TINY_OPT = {
  model_type: 'opt', hidden_size: 32, ffn_dim: 48, num_hidden_layers: 2, num_attention_heads: 4, vocab_size: 300,
  max_position_embeddings: 64, word_embed_proj_dim: 16, do_layer_norm_before: true, activation_function: 'relu',
  bos_token_id: 2, eos_token_id: 2,
};

let stories: Model;
let tmp: string;
beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
  stories = await loadModel(ckpt);
  tmp = mkdtempSync(path.join(os.tmpdir(), 'llmcb-models-'));
});
afterAll(() => {
  disposeModel(stories);
  rmSync(tmp, { recursive: true, force: true });
});

const maxDiff = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

async function greedyText(m: Model, n: number): Promise<{ ids: number[]; text: string }> {
  const prompt = m.tokenizer.encode('Once upon a time', { bos: true });
  const before = tf.memory().numTensors;
  const ids = await generate(m, prompt, { maxNewTokens: n });
  expect(tf.memory().numTensors).toBe(before);
  return { ids, text: m.tokenizer.decode([...prompt, ...ids]) };
}

describe('stories260K generation', () => {
  it('greedy from the llama2.c files reproduces the reference continuation', async () => {
    const { text } = await greedyText(stories, 40);
    expect(text.startsWith(REFERENCE)).toBe(true);
  });

  it.skipIf(!hasShared)('greedy from the shared HF directory (tok512 tokenizer) gives the same tokens', async () => {
    const hf = await loadModel(sharedHf, { tokenizer: tokFile });
    const a = await greedyText(stories, 40);
    const b = await greedyText(hf, 40);
    expect(b.ids).toEqual(a.ids);
    expect(b.text.startsWith(REFERENCE)).toBe(true);
    disposeModel(hf);
  });

  it('KV-cache generation equals greedy argmax over full forwards', async () => {
    const prompt = stories.tokenizer.encode('The dog', { bos: true });
    const ids = await generate(stories, prompt, { maxNewTokens: 8, stopAtEos: false });
    const seq = [...prompt];
    for (let s = 0; s < 8; s++) {
      const next = tf.tidy(() => {
        const l = forward(stories, tf.tensor2d(seq, [1, seq.length], 'int32'));
        return tf.argMax(tf.reshape(tf.slice(l, [0, seq.length - 1, 0], [1, 1, 512]), [512])).dataSync()[0];
      });
      seq.push(next);
    }
    expect(ids).toEqual(seq.slice(prompt.length));
  });

  it('seeded sampling repeats per seed and differs across seeds', async () => {
    const prompt = stories.tokenizer.encode('Once', { bos: true });
    const s1 = await generate(stories, prompt, { greedy: false, temperature: 1, seed: 7, maxNewTokens: 20, stopAtEos: false });
    const s2 = await generate(stories, prompt, { greedy: false, temperature: 1, seed: 7, maxNewTokens: 20, stopAtEos: false });
    const s3 = await generate(stories, prompt, { greedy: false, temperature: 1, seed: 8, maxNewTokens: 20, stopAtEos: false });
    expect(s2).toEqual(s1);
    expect(s3).not.toEqual(s1);
    // A tiny temperature concentrates the distribution on the argmax.
    const cold = await generate(stories, prompt, { greedy: false, temperature: 1e-4, seed: 3, maxNewTokens: 10, stopAtEos: false });
    expect(cold).toEqual(await generate(stories, prompt, { maxNewTokens: 10, stopAtEos: false }));
  });
});

describe('layer-by-layer API', () => {
  it("runBlock half 'attention': x + attention(x), the MLP never runs (LLaMA: the block with a zero down input); forward refuses it", () => {
    const m = randomModel(TINY_LLAMA, { seed: 3, std: 0.2 });
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d([[1, 5, 9, 200, 17, 3]], [1, 6], 'int32');
    const e = embed(m, ids);
    const seen: string[] = [];
    const att = runBlock(m, 0, e, { half: 'attention', onLinearInput: (name) => void seen.push(name) });
    const down = linearName('llama', 0, 'down');
    const noMlp = runBlock(m, 0, e, { onLinearInput: (name, inp) => (name === down ? tf.zerosLike(inp) : undefined) });
    const full = runBlock(m, 0, e);
    expect(maxDiff(att, noMlp)).toBe(0);
    expect(maxDiff(att, full)).toBeGreaterThan(1e-3);
    expect(seen).toEqual(['q', 'k', 'v', 'o'].map((s) => linearName('llama', 0, s)));
    expect(() => forward(m, ids, { half: 'attention' })).toThrow(/runBlock only/);
    tf.dispose([ids, e, att, noMlp, full]);
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(m);
  });

  it("runBlock half 'mlp': the MLP alone on its input (the gate's input in a full block) gives that block's MLP output (x + attention + MLP − the attention half); no linear of the attention runs", () => {
    const m = randomModel(TINY_LLAMA, { seed: 4, std: 0.2 });
    const before = tf.memory().numTensors;
    const ids = tf.tensor2d([[1, 5, 9, 200, 17, 3], [4, 4, 8, 1, 0, 2]], [2, 6], 'int32');
    const e = embed(m, ids); // [2, 6, D]
    const gate = linearName('llama', 0, 'gate');
    let mlpIn: tf.Tensor2D | null = null;
    const full = runBlock(m, 0, e, { onLinearInput: (name, x) => void (name === gate && (mlpIn = tf.keep(x.clone()))) });
    const att = runBlock(m, 0, e, { half: 'attention' });
    const seen: string[] = [];
    const mlpIn3 = tf.reshape(mlpIn!, e.shape) as tf.Tensor3D;
    const out = runBlock(m, 0, mlpIn3, { half: 'mlp', onLinearInput: (name) => void seen.push(name) });
    const want = tf.sub(full, att);
    expect(out.shape).toEqual(e.shape);
    expect(maxDiff(out, want)).toBeLessThan(1e-5);
    expect(Math.max(...out.dataSync().map(Math.abs))).toBeGreaterThan(1e-3);
    expect(seen).toEqual(['gate', 'up', 'down'].map((s) => linearName('llama', 0, s)));
    tf.dispose([ids, e, full, att, out, want, mlpIn!, mlpIn3]);
    expect(tf.memory().numTensors).toBe(before);
    disposeModel(m);
  });

  for (const [label, hf] of [['llama (GQA, llama3 rope)', TINY_LLAMA], ['opt (project_in/out)', TINY_OPT]] as const) {
    it(`${label}: embed → runBlock → head equals forward; hook sees every linear input`, () => {
      const m = randomModel(hf, { seed: 1, std: 0.2 });
      const before = tf.memory().numTensors;
      const ids = tf.tensor2d([[1, 5, 9, 200, 17, 3], [4, 4, 8, 299, 0, 12]], [2, 6], 'int32');
      const seen: { name: string; shape: number[] }[] = [];
      const logits = forward(m, ids);
      let x = embed(m, ids);
      for (let i = 0; i < m.config.numLayers; i++) {
        const y = runBlock(m, i, x, { onLinearInput: (name, inp) => void seen.push({ name, shape: inp.shape }) });
        x.dispose();
        x = y;
      }
      const l2 = head(m, x);
      expect(l2.shape).toEqual([2, 6, 300]);
      expect(maxDiff(logits, l2)).toBeLessThan(1e-6);
      const names = [0, 1].flatMap((i) => blockLinears(m.config.arch).map((s) => linearName(m.config.arch, i, s)));
      expect(seen.map((s) => s.name)).toEqual(names);
      for (const s of seen) {
        const inDim = m.weights.get(s.name)!.shape[1];
        expect(s.shape).toEqual([12, inDim]);
      }
      // Replacing an input changes the output: zeroing the down/fc2 input removes the MLP's contribution.
      const down = linearName(m.config.arch, 0, m.config.arch === 'llama' ? 'down' : 'fc2');
      const e = embed(m, ids);
      const zeroed = runBlock(m, 0, e, { onLinearInput: (name, inp) => (name === down ? tf.zerosLike(inp) : undefined) });
      const normal = runBlock(m, 0, e);
      expect(maxDiff(zeroed, normal)).toBeGreaterThan(1e-3);
      tf.dispose([ids, logits, x, l2, e, zeroed, normal]);
      expect(tf.memory().numTensors).toBe(before);
      disposeModel(m);
    });

    it(`${label}: right-padded batch rows equal unpadded forwards; KV cache equals forward`, async () => {
      const m = randomModel(hf, { seed: 2, std: 0.2 });
      const before = tf.memory().numTensors;
      const a = [1, 7, 42, 9, 100, 3];
      const b = [1, 250, 6];
      const ids = tf.tensor2d([a, [...b, 0, 0, 0]], [2, 6], 'int32');
      const mask = tf.tensor2d([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]], [2, 6], 'int32');
      const [da, db] = tf.tidy(() => {
        const batched = forward(m, ids, { attentionMask: mask });
        const la = forward(m, tf.tensor2d([a], [1, 6], 'int32'));
        const lb = forward(m, tf.tensor2d([b], [1, 3], 'int32'));
        return [maxDiff(tf.slice(batched, [0, 0, 0], [1, 6, 300]), la), maxDiff(tf.slice(batched, [1, 0, 0], [1, 3, 300]), lb)];
      });
      expect(da).toBeLessThan(1e-5);
      expect(db).toBeLessThan(1e-5);
      // Greedy with the cache = argmax of full forwards.
      const gen = await generate(m, a, { maxNewTokens: 5, stopAtEos: false });
      const seq = [...a];
      for (let s = 0; s < 5; s++) {
        seq.push(tf.tidy(() => tf.argMax(tf.reshape(tf.slice(forward(m, tf.tensor2d(seq, [1, seq.length], 'int32')), [0, seq.length - 1, 0], [1, 1, 300]), [300])).dataSync()[0]));
      }
      expect(gen).toEqual(seq.slice(a.length));
      tf.dispose([ids, mask]);
      expect(tf.memory().numTensors).toBe(before);
      disposeModel(m);
    });
  }
});

describe('weights larger than one binding', () => {
  it('row-split embedding and head give the same logits', () => {
    const whole = randomModel(TINY_LLAMA, { seed: 3 });
    // 300 × 32 × 4 = 38,400 bytes: a 10,000-byte limit splits embed and lm_head into 4 blocks.
    const split = randomModel(TINY_LLAMA, { seed: 3, maxBindingBytes: 10_000 });
    expect(split.weights.has('model.embed_tokens.weight')).toBe(false);
    expect(split.splitWeights!.get('model.embed_tokens.weight')!.map((t) => t.shape[0])).toEqual([78, 78, 78, 66]);
    const ids = tf.tensor2d([[0, 77, 78, 155, 156, 299]], [1, 6], 'int32');
    const a = forward(whole, ids);
    const b = forward(split, ids);
    expect(maxDiff(a, b)).toBe(0);
    tf.dispose([ids, a, b]);
    disposeModel(whole);
    disposeModel(split);
  });

  it('a block linear past the binding is named as split, not as missing, by the forward and by the methods', () => {
    const m = randomModel(TINY_LLAMA, { seed: 3, maxBindingBytes: 2_000 });
    const name = [...m.splitWeights!.keys()].find((n) => n.startsWith('model.layers.'))!;
    expect(name).toBeDefined();
    const ids = tf.tensor2d([[0, 1, 2]], [1, 3], 'int32');
    expect(() => forward(m, ids)).toThrow(/weight 'model\.layers\.0\.[a-z_.]+' is held as \d+ row blocks.*larger than one GPU storage binding/);
    expect(() => getWeight(m, name)).toThrow(`weight '${name}' is held as`);
    expect(() => getWeight(m, 'model.layers.9.mlp.up_proj.weight')).toThrow("has no weight 'model.layers.9.mlp.up_proj.weight'");
    ids.dispose();
    disposeModel(m);
  });
});

describe('saving as an HF directory', () => {
  it('stories260K round-trips through saveModel and loadModel (llama2.c tokenizer kept)', async () => {
    const dir = path.join(tmp, 'stories');
    await saveModel(stories, dir);
    const cfg = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(cfg.model_type).toBe('llama');
    expect(cfg.num_key_value_heads).toBe(4);
    expect(readSafetensorsHeader(path.join(dir, 'model.safetensors')).entries.length).toBe(47);
    const back = await loadModel(dir);
    for (const [k, t] of stories.weights) expect(maxDiff(t, back.weights.get(k)!), k).toBe(0);
    expect(back.tokenizer.encode('Once upon a time', { bos: true })).toEqual([1, 403, 407, 261, 378]);
    disposeModel(back);
  });

  it('sharded save of an OPT model with split weights reloads equal', async () => {
    const m = randomModel(TINY_OPT, { seed: 4, maxBindingBytes: 8_000 });
    const dir = path.join(tmp, 'opt');
    await saveModel(m, dir, { maxShardBytes: 20_000 });
    expect(existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
    const back = loadHfDir(dir, { tokenizer: tokFile });
    const ids = tf.tensor2d([[2, 5, 6, 7]], [1, 4], 'int32');
    const a = forward(m, ids);
    const b = forward(back, ids);
    expect(maxDiff(a, b)).toBe(0);
    tf.dispose([ids, a, b]);
    disposeModel(m);
    disposeModel(back);
  });
});
