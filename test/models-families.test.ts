// The GLM block, Qwen2's q/k/v biases and Mistral's sliding window against a float64 reference
// forward written here from each architecture's definition (plain loops over the weights, not the
// kit's forward), on random tiny models: logits within 1e-4 on cpu and wasm. Plus the loaders: a
// native GLM directory and a ChatGLM one give the same model, and a ChatGLM directory with only a
// Python tokenizer is an error naming tokenizer.json.
import * as tf from '@tensorflow/tfjs';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { exportLlamaGguf } from '../lib/efficiency/gguf';
import { countMacs } from '../lib/efficiency/macs';
import { executorUnsupported } from '../lib/engine/executor';
import { configFromHf, configToHf, loadHfDir, saveModel } from '../lib/models/hf';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import { writeSafetensors } from '../lib/models/safetensors';
import { disposeForwardPrep, forward, generate, prepareForward } from '../lib/models/transformer';
import { logitParity } from '../lib/models/parity';
import type { Model } from '../lib/models/types';
import { initRuntime } from '../lib/runtime';
import { GLM_TINY } from './model-helpers';

const QWEN2_TINY = { ...GLM_TINY, model_type: 'qwen2', attention_bias: undefined, partial_rotary_factor: undefined, use_sliding_window: false };
const MISTRAL_TINY = { ...GLM_TINY, model_type: 'mistral', attention_bias: undefined, partial_rotary_factor: undefined, sliding_window: 3 };

const T = 7;
const TOK = path.resolve(__dirname, '..', 'models/stories260K/tok512.bin'); // any tokenizer of 512 ids: only ids matter
const IDS = [5, 17, 3, 29, 11, 38, 7];

interface RefSpec {
  /** q, k, v weights and biases (null: none) of block i, each [rows, D] / [rows]. */
  qkv(i: number): { w: Float64Array; b: Float64Array | null; rows: number }[];
  o(i: number): Float64Array;
  /** gate and up [F, D] each. */
  gateUp(i: number): [Float64Array, Float64Array];
  down(i: number): Float64Array;
  norms(i: number): [Float64Array, Float64Array];
  embed: Float64Array;
  finalNorm: Float64Array;
  head: Float64Array;
  /** Rotated dims per head and their pairing: GLM 'pairs' (2j, 2j+1) on the first half, LLaMA 'halves' (j, j + hd/2). */
  rotary: number;
  layout: 'pairs' | 'halves';
  window: number | null;
}

/** Float64 logits [T, V] of ids: RMSNorm → q/k/v → RoPE → causal (windowed) GQA softmax → o → residual → RMSNorm → SwiGLU → residual; final norm; head. */
function referenceLogits(c: { D: number; H: number; KV: number; hd: number; F: number; V: number; L: number; eps: number; theta: number }, s: RefSpec, ids: number[]): Float64Array {
  const { D, H, KV, hd, F, V, L, eps, theta } = c;
  const n = ids.length;
  const matvec = (w: Float64Array, rows: number, x: Float64Array, b: Float64Array | null = null) => {
    const y = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let a = b ? b[r] : 0;
      for (let k = 0; k < x.length; k++) a += w[r * x.length + k] * x[k];
      y[r] = a;
    }
    return y;
  };
  const rms = (x: Float64Array, w: Float64Array) => {
    let ms = 0;
    for (const v of x) ms += v * v;
    const inv = 1 / Math.sqrt(ms / x.length + eps);
    return x.map((v, k) => v * inv * w[k]);
  };
  const rotate = (x: Float64Array, pos: number) => {
    const y = Float64Array.from(x);
    for (let j = 0; j < s.rotary / 2; j++) {
      const ang = pos / Math.pow(theta, (2 * j) / s.rotary);
      const [a, b] = s.layout === 'pairs' ? [2 * j, 2 * j + 1] : [j, j + s.rotary / 2];
      y[a] = x[a] * Math.cos(ang) - x[b] * Math.sin(ang);
      y[b] = x[b] * Math.cos(ang) + x[a] * Math.sin(ang);
    }
    return y;
  };
  let xs = ids.map((id) => s.embed.slice(id * D, (id + 1) * D));
  for (let i = 0; i < L; i++) {
    const [n1, n2] = s.norms(i);
    const proj = s.qkv(i);
    const qs: Float64Array[][] = [];
    const ks: Float64Array[][] = [];
    const vs: Float64Array[][] = [];
    xs.forEach((x, t) => {
      const h = rms(x, n1);
      const [q, k, v] = proj.map((p) => matvec(p.w, p.rows, h, p.b));
      qs.push([...Array(H).keys()].map((hh) => rotate(q.slice(hh * hd, (hh + 1) * hd), t)));
      ks.push([...Array(KV).keys()].map((g) => rotate(k.slice(g * hd, (g + 1) * hd), t)));
      vs.push([...Array(KV).keys()].map((g) => v.slice(g * hd, (g + 1) * hd)));
    });
    xs = xs.map((x, t) => {
      const merged = new Float64Array(H * hd);
      for (let hh = 0; hh < H; hh++) {
        const g = Math.floor(hh / (H / KV));
        const keys = [...Array(t + 1).keys()].filter((u) => s.window === null || u > t - s.window);
        const sc = keys.map((u) => qs[t][hh].reduce((a, q, d) => a + q * ks[u][g][d], 0) / Math.sqrt(hd));
        const mx = Math.max(...sc);
        const e = sc.map((v) => Math.exp(v - mx));
        const z = e.reduce((a, b) => a + b, 0);
        keys.forEach((u, j) => {
          for (let d = 0; d < hd; d++) merged[hh * hd + d] += (e[j] / z) * vs[u][g][d];
        });
      }
      const r = x.map((v, k) => v + matvec(s.o(i), D, merged)[k]);
      const m = rms(r, n2);
      const [gw, uw] = s.gateUp(i);
      const g = matvec(gw, F, m);
      const u = matvec(uw, F, m);
      const act = g.map((a, k) => (a / (1 + Math.exp(-a))) * u[k]);
      const down = matvec(s.down(i), D, act);
      return r.map((v, k) => v + down[k]);
    });
  }
  const out = new Float64Array(n * V);
  xs.forEach((x, t) => out.set(matvec(s.head, V, rms(x, s.finalNorm)), t * V));
  return out;
}

/** A weight of the model as float64 (throws naming a missing one). */
function w64(m: Model, name: string): Float64Array {
  const t = m.weights.get(name);
  if (!t) throw new Error(`no weight '${name}'`);
  return Float64Array.from(t.dataSync());
}

function dims(m: Model) {
  const c = m.config;
  return { D: c.hiddenSize, H: c.numHeads, KV: c.numKvHeads, hd: c.headDim, F: c.intermediateSize, V: c.vocabSize, L: c.numLayers, eps: c.normEps, theta: c.ropeTheta };
}

/** The GLM block from ChatGLM's tensor names: q|k|v rows of query_key_value, gate|up rows of dense_h_to_4h. */
function glmRef(m: Model): RefSpec {
  const d = dims(m);
  const p = (i: number) => `transformer.encoder.layers.${i}.`;
  const rows = [d.H * d.hd, d.KV * d.hd, d.KV * d.hd];
  const starts = [0, rows[0], rows[0] + rows[1]];
  return {
    qkv: (i) => {
      const w = w64(m, `${p(i)}self_attention.query_key_value.weight`);
      const b = w64(m, `${p(i)}self_attention.query_key_value.bias`);
      return rows.map((r, k) => ({ w: w.slice(starts[k] * d.D, (starts[k] + r) * d.D), b: b.slice(starts[k], starts[k] + r), rows: r }));
    },
    o: (i) => w64(m, `${p(i)}self_attention.dense.weight`),
    gateUp: (i) => {
      const w = w64(m, `${p(i)}mlp.dense_h_to_4h.weight`);
      return [w.slice(0, d.F * d.D), w.slice(d.F * d.D)];
    },
    down: (i) => w64(m, `${p(i)}mlp.dense_4h_to_h.weight`),
    norms: (i) => [w64(m, `${p(i)}input_layernorm.weight`), w64(m, `${p(i)}post_attention_layernorm.weight`)],
    embed: w64(m, 'transformer.embedding.word_embeddings.weight'),
    finalNorm: w64(m, 'transformer.encoder.final_layernorm.weight'),
    head: w64(m, 'transformer.output_layer.weight'),
    rotary: d.hd / 2,
    layout: 'pairs',
    window: null,
  };
}

/** The LLaMA block from HF names (Qwen2: q/k/v biases; Mistral: a sliding window). */
function llamaRef(m: Model): RefSpec {
  const d = dims(m);
  const p = (i: number) => `model.layers.${i}.`;
  const bias = (n: string) => (m.weights.has(n) ? w64(m, n) : null);
  return {
    qkv: (i) =>
      (['q', 'k', 'v'] as const).map((x) => ({
        w: w64(m, `${p(i)}self_attn.${x}_proj.weight`),
        b: bias(`${p(i)}self_attn.${x}_proj.bias`),
        rows: (x === 'q' ? d.H : d.KV) * d.hd,
      })),
    o: (i) => w64(m, `${p(i)}self_attn.o_proj.weight`),
    gateUp: (i) => [w64(m, `${p(i)}mlp.gate_proj.weight`), w64(m, `${p(i)}mlp.up_proj.weight`)],
    down: (i) => w64(m, `${p(i)}mlp.down_proj.weight`),
    norms: (i) => [w64(m, `${p(i)}input_layernorm.weight`), w64(m, `${p(i)}post_attention_layernorm.weight`)],
    embed: w64(m, 'model.embed_tokens.weight'),
    finalNorm: w64(m, 'model.norm.weight'),
    head: w64(m, 'lm_head.weight'),
    rotary: d.hd,
    layout: 'halves',
    window: m.config.slidingWindow ?? null,
  };
}

/** Largest |kit − reference| over every logit of IDS (batch of one). */
function worstDiff(m: Model, ref: RefSpec): number {
  const want = referenceLogits(dims(m), ref, IDS);
  const got = tf.tidy(() => forward(m, tf.tensor2d(IDS, [1, T], 'int32')).dataSync());
  let worst = 0;
  for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(got[k] - want[k]));
  return worst;
}

/** Random model with larger-than-default weights (std 0.2) so attention and every bias matter. */
function tiny(hf: Record<string, unknown>, seed = 3): Model {
  return randomModel(hf, { seed, std: 0.2 });
}

const tmp = mkdtempSync(path.join(os.tmpdir(), 'llmcb-families-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

for (const backend of ['cpu', 'wasm'] as const) {
  describe(`model families against a float64 reference on ${backend}`, () => {
    it('starts the backend', async () => {
      const rt = await initRuntime({ backend });
      expect(rt.backend).toBe(backend);
    });

    it('GLM: fused q|k|v with bias, 2 KV groups, rotary on half of each head in pairs, fused gate|up', () => {
      const m = tiny(GLM_TINY);
      try {
        expect(m.config.arch).toBe('glm');
        expect([...m.weights.keys()].some((n) => n.endsWith('query_key_value.bias'))).toBe(true);
        expect(worstDiff(m, glmRef(m))).toBeLessThan(1e-4);
        // the scorer's path: weights prepared for the backend (wasm: [in, out] copies), a right-padded batch
        const prep = prepareForward(m);
        try {
          const ids = tf.tensor2d([...IDS, ...IDS.slice(0, 4), 0, 0, 0], [2, T], 'int32');
          const mask = tf.tensor2d([...IDS.map(() => 1), 1, 1, 1, 1, 0, 0, 0], [2, T], 'int32');
          const [a, b] = [prep, null].map((p) => tf.tidy(() => forward(m, ids, { attentionMask: mask, rightPadding: true, prep: p }).dataSync()));
          tf.dispose([ids, mask]);
          const want = referenceLogits(dims(m), glmRef(m), IDS.slice(0, 4));
          const V = m.config.vocabSize;
          for (const got of [a, b]) {
            expect(Math.max(...want.map((v, k) => Math.abs(v - got[T * V + k])))).toBeLessThan(1e-4); // the padded row's real positions
          }
        } finally {
          disposeForwardPrep(prep);
        }
      } finally {
        disposeModel(m);
      }
    });

    it('Qwen2: q/k/v biases, none on o', () => {
      const m = tiny(QWEN2_TINY);
      try {
        expect(m.weights.has('model.layers.0.self_attn.k_proj.bias')).toBe(true);
        expect(m.weights.has('model.layers.0.self_attn.o_proj.bias')).toBe(false);
        expect(worstDiff(m, llamaRef(m))).toBeLessThan(1e-4);
      } finally {
        disposeModel(m);
      }
    });

    it(`Mistral: a sliding window of 3 over ${T} tokens (the reference drops keys at or before query − 3)`, () => {
      const m = tiny(MISTRAL_TINY);
      try {
        expect(m.config.slidingWindow).toBe(3);
        const ref = llamaRef(m);
        expect(worstDiff(m, ref)).toBeLessThan(1e-4);
        // the window changes the logits: full attention is far from them
        expect(worstDiff(m, { ...ref, window: null })).toBeGreaterThan(1e-3);
      } finally {
        disposeModel(m);
      }
    });

    it('GLM and Mistral (window 3): greedy generation with the KV cache = argmax of full forwards', async () => {
      for (const hf of [GLM_TINY, MISTRAL_TINY]) {
        const m = tiny(hf, 9);
        try {
          const prompt = IDS.slice(0, 4);
          const got = await generate(m, prompt, { maxNewTokens: 5, stopAtEos: false });
          const want: number[] = [];
          const seq = [...prompt];
          for (let k = 0; k < 5; k++) {
            const next = tf.tidy(() => {
              const l = forward(m, tf.tensor2d(seq, [1, seq.length], 'int32')); // [1, t, V]
              return tf.argMax(tf.reshape(tf.slice(l, [0, seq.length - 1, 0], [1, 1, m.config.vocabSize]), [-1])).dataSync()[0];
            });
            want.push(next);
            seq.push(next);
          }
          expect(got).toEqual(want);
        } finally {
          disposeModel(m);
        }
      }
    });
  });
}

describe('GLM directories', () => {
  it('a native GLM dir saved by the kit reloads; its ChatGLM-layout twin gives the same logits', async () => {
    const m = tiny(GLM_TINY, 5);
    const native = path.join(tmp, 'glm');
    const chat = path.join(tmp, 'chatglm');
    try {
      await saveModel(m, native);
      const hf = configToHf(m.config);
      expect(hf.model_type).toBe('glm');
      const a = loadHfDir(native, { tokenizer: TOK });
      // ChatGLM layout: the table's names as they are, with ChatGLM's config keys.
      mkdirSync(chat, { recursive: true });
      writeSafetensors(
        path.join(chat, 'model.safetensors'),
        [...m.weights].map(([name, t]) => ({ name, shape: t.shape, dtype: 'F32' as const, chunks: () => [t.dataSync() as Float32Array] })),
      );
      writeFileSync(path.join(chat, 'config.json'), JSON.stringify({
        model_type: 'chatglm', architectures: ['ChatGLMModel'], num_layers: 2, padded_vocab_size: 512, vocab_size: 512, hidden_size: 32,
        ffn_hidden_size: 48, kv_channels: 8, num_attention_heads: 4, multi_query_attention: true, multi_query_group_num: 2, seq_length: 64,
        layernorm_epsilon: 1e-5, rmsnorm: true, add_qkv_bias: true, add_bias_linear: false, post_layer_norm: true,
        apply_residual_connection_post_layernorm: false, original_rope: true, eos_token_id: 2, pad_token_id: 0,
      }));
      writeFileSync(path.join(chat, 'tokenizer.model'), '');
      expect(() => loadHfDir(chat)).toThrow(/missing tokenizer\.json .*tokenizer\.model/);
      const b = loadHfDir(chat, { tokenizer: TOK });
      try {
        expect(b.config).toMatchObject({ arch: 'glm', numKvHeads: 2, headDim: 8, intermediateSize: 48, qkvBias: true, vocabSize: 512 });
        const ids = tf.tensor2d(IDS, [1, T], 'int32');
        const [la, lb, lm] = [a, b, m].map((x) => forward(x, ids).dataSync());
        ids.dispose();
        expect(Math.max(...la.map((v, k) => Math.abs(v - lm[k])))).toBe(0);
        expect(Math.max(...lb.map((v, k) => Math.abs(v - lm[k])))).toBe(0);
      } finally {
        disposeModel(a);
        disposeModel(b);
      }
    } finally {
      disposeModel(m);
    }
  });
});

describe('configs the families cannot run are refused by name', () => {
  it('ChatGLM without RMSNorm or with linear biases, GLM with another rotary share, Qwen2 with sliding windows', () => {
    const chat = { model_type: 'chatglm', num_layers: 2, padded_vocab_size: 64, hidden_size: 32, ffn_hidden_size: 48, num_attention_heads: 4, seq_length: 64 };
    expect(configFromHf({ ...chat, multi_query_attention: true, multi_query_group_num: 2 }, 'c.json')).toMatchObject({ arch: 'glm', numKvHeads: 2, headDim: 8, ropeTheta: 10000 });
    expect(() => configFromHf({ ...chat, rmsnorm: false }, 'c.json')).toThrow(/c\.json: ChatGLM with rmsnorm = false/);
    expect(() => configFromHf({ ...chat, add_bias_linear: true }, 'c.json')).toThrow(/add_bias_linear = true/);
    expect(() => configFromHf({ ...GLM_TINY, partial_rotary_factor: 1 }, 'g.json')).toThrow(/partial_rotary_factor 1 is not supported/);
    expect(() => configFromHf({ ...GLM_TINY, head_dim: 6 }, 'g.json')).toThrow(/head_dim 6 rotates 3 dimensions/);
    expect(() => configFromHf({ ...QWEN2_TINY, use_sliding_window: true }, 'q.json')).toThrow(/use_sliding_window/);
  });
});

describe('Qwen2 and Mistral directories', () => {
  it('save and reload as themselves: model_type, q/k/v biases and the window kept, same logits', async () => {
    for (const [hf, type] of [[QWEN2_TINY, 'qwen2'], [MISTRAL_TINY, 'mistral']] as const) {
      const m = tiny(hf, 21);
      const dir = path.join(tmp, type);
      try {
        await saveModel(m, dir);
        const back = loadHfDir(dir, { tokenizer: TOK });
        try {
          expect(back.config.hf.model_type).toBe(type);
          expect([back.config.qkvBias ?? false, back.config.slidingWindow ?? null]).toEqual([m.config.qkvBias ?? false, m.config.slidingWindow ?? null]);
          const ids = tf.tensor2d(IDS, [1, T], 'int32');
          const [a, b] = [m, back].map((x) => forward(x, ids).dataSync());
          ids.dispose();
          expect(Math.max(...a.map((v, k) => Math.abs(v - b[k])))).toBe(0);
        } finally {
          disposeModel(back);
        }
      } finally {
        disposeModel(m);
      }
    }
  });
});

describe('the parity machinery on a GLM fixture', () => {
  it('a native GLM dir with a float64 reference.safetensors (padded batch, greedy ids) passes logitParity', async () => {
    const m = tiny(GLM_TINY, 13);
    const dir = path.join(tmp, 'glm-fixture');
    try {
      await saveModel(m, dir);
      const V = m.config.vocabSize;
      const rows = [IDS, [9, 4, 33, 21, 0, 0, 0]]; // the second row right-padded after 4 tokens
      const real = [T, 4];
      const logits = new Float32Array(2 * T * V);
      rows.forEach((r, b) => logits.set(referenceLogits(dims(m), glmRef(m), r.slice(0, real[b])), b * T * V)); // causal: a prefix's logits are the row's
      const prompt = IDS.slice(0, 3);
      const greedy: number[] = [];
      for (let k = 0; k < 4; k++) {
        const seq = [...prompt, ...greedy];
        const l = referenceLogits(dims(m), glmRef(m), seq).subarray((seq.length - 1) * V);
        greedy.push(l.indexOf(Math.max(...l)));
      }
      const f32 = (name: string, data: number[] | Float32Array, shape: number[]) => ({ name, shape, chunks: () => [Float32Array.from(data)] });
      writeSafetensors(path.join(dir, 'reference.safetensors'), [
        f32('input_ids', rows.flat(), [2, T]),
        f32('attention_mask', rows.flatMap((r, b) => r.map((_, t) => (t < real[b] ? 1 : 0))), [2, T]),
        f32('logits', logits, [2, T, V]),
        f32('greedy_prompt', prompt, [1, 3]),
        f32('greedy_ids', greedy, [1, 4]),
      ]);
      const r = await logitParity(dir, TOK);
      expect(r.compared).toBe((T + 4) * V);
      expect(r.worst).toBeLessThan(1e-4);
      expect(r.greedy?.got).toEqual(greedy);
    } finally {
      disposeModel(m);
    }
  });
});

describe('what cannot run a family says why', () => {
  it('the GGUF export refuses GLM, Qwen2 and Mistral naming the reason; the executor refuses the sliding window', async () => {
    const cases: [Record<string, unknown>, RegExp, RegExp | null][] = [
      [GLM_TINY, /GLM block .*'chatglm' graph/, null],
      [QWEN2_TINY, /q\/k\/v biases .*'qwen2' graph/, null],
      [MISTRAL_TINY, /sliding-window attention \(sliding_window 3\)/, /sliding-window attention/],
    ];
    for (const [hf, gguf, executor] of cases) {
      const m = tiny(hf);
      try {
        await expect(exportLlamaGguf(m, path.join(tmp, 'x.gguf'))).rejects.toThrow(gguf);
        if (executor) expect(executorUnsupported(m)).toMatch(executor);
        else expect(executorUnsupported(m)).toBeNull();
      } finally {
        disposeModel(m);
      }
    }
  });
});

describe('MACs of the families', () => {
  it('GLM counts attention from the q rows of q|k|v; Mistral counts the keys inside its window', async () => {
    const glm = tiny(GLM_TINY);
    const mistral = tiny(MISTRAL_TINY);
    try {
      // 2 blocks · 2 products (q·k, p·v) · (query, key) pairs · 4 heads · head dim 8
      const g = await countMacs(glm, { seqlen: 8, attention: 'causal', includeHead: false });
      expect(g.attention).toBe(2 * 2 * 36 * 32);
      // the fused q|k|v counts as one linear of (4 + 2 + 2)·8 rows
      expect(g.perLinear['transformer.encoder.layers.0.self_attention.query_key_value.weight'][0]).toBe(8 * 64 * 32);
      // window 3 over 8 tokens: 1 + 2 + 3 + 5·3 = 21 pairs per head
      expect((await countMacs(mistral, { seqlen: 8, attention: 'causal', includeHead: false })).attention).toBe(2 * 2 * 21 * 32);
    } finally {
      disposeModel(glm);
      disposeModel(mistral);
    }
  });
});
