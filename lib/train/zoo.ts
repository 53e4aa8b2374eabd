// The kit's own model zoo: LLaMA-style and OPT-style configurations at three sizes, as Hugging Face
// config.json objects (parsed by the engine's configFromHf, so the saved directories are plain HF
// directories), and a seeded, backend-independent weight initialization.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { ARCHS } from '../models/arch';
import { configFromHf } from '../models/hf';
import type { Arch, Model, ModelConfig, Tokenizer } from '../models/types';
import { expectedShapes } from '../models/weights';
import { Rng } from './rng';

export interface ZooSpec {
  name: string; // directory name under models/zoo
  arch: Arch;
  hidden: number; // d_model
  layers: number;
  heads: number;
  /** KV heads (GLM's multi-query groups); default: heads (no grouping). */
  kvHeads?: number;
  ffn: number; // intermediate size (LLaMA ≈ 8/3·d for SwiGLU, OPT 4·d)
  lr: number; // peak learning rate (smaller models tolerate larger rates)
  batch: number; // sequences per step
}

export const ZOO_VOCAB = 4096; // BPE vocabulary of the zoo tokenizer
export const ZOO_CONTEXT = 256; // max positions and training sequence length

/** The zoo. Sizes are total parameters with tied embeddings (embeddings included). */
export const ZOO = {
  // Sizes are bounded by what a device call can carry (64 MiB with the GPU bundle's ~40 MiB):
  // the six models together stay near 16 MB in fp16.
  'llama-700k': { name: 'llama-700k', arch: 'llama', hidden: 96, layers: 3, heads: 4, ffn: 256, lr: 3e-3, batch: 16 },
  'llama-1m': { name: 'llama-1m', arch: 'llama', hidden: 128, layers: 3, heads: 4, ffn: 352, lr: 3e-3, batch: 16 },
  'llama-2m': { name: 'llama-2m', arch: 'llama', hidden: 160, layers: 5, heads: 5, ffn: 432, lr: 2e-3, batch: 16 },
  'opt-700k': { name: 'opt-700k', arch: 'opt', hidden: 96, layers: 3, heads: 4, ffn: 384, lr: 3e-3, batch: 16 },
  'opt-1m': { name: 'opt-1m', arch: 'opt', hidden: 128, layers: 3, heads: 4, ffn: 512, lr: 3e-3, batch: 16 },
  'opt-2m': { name: 'opt-2m', arch: 'opt', hidden: 160, layers: 5, heads: 5, ffn: 640, lr: 2e-3, batch: 16 },
} satisfies Record<string, ZooSpec>;
export type ZooName = keyof typeof ZOO;

/** The GLM family at the zoo's sizes (untied output layer; 2 KV groups as ChatGLM's multi-query
 * attention): trainable with scripts/train.ts, joining ZOO once trained (on the GPU host). */
export const ZOO_GLM = {
  'glm-700k': { name: 'glm-700k', arch: 'glm', hidden: 64, layers: 3, heads: 4, kvHeads: 2, ffn: 320, lr: 3e-3, batch: 16 },
  'glm-1m': { name: 'glm-1m', arch: 'glm', hidden: 96, layers: 3, heads: 4, kvHeads: 2, ffn: 288, lr: 3e-3, batch: 16 },
  'glm-2m': { name: 'glm-2m', arch: 'glm', hidden: 144, layers: 4, heads: 4, kvHeads: 2, ffn: 416, lr: 2e-3, batch: 16 },
} satisfies Record<string, ZooSpec>;

export interface SpecialIds {
  pad: number;
  bos: number;
  eos: number;
}
export const ZOO_SPECIAL: SpecialIds = { pad: 0, bos: 1, eos: 2 }; // as the zoo tokenizer's special tokens

/** The HF config.json of a zoo spec (transformers' LlamaForCausalLM / OPTForCausalLM keys). */
export function zooHfConfig(s: ZooSpec, vocab = ZOO_VOCAB, context = ZOO_CONTEXT, ids: SpecialIds = ZOO_SPECIAL): Record<string, unknown> {
  if (s.hidden % s.heads !== 0) throw new Error(`zoo spec '${s.name}': hidden ${s.hidden} is not divisible by heads ${s.heads}`);
  const common = {
    vocab_size: vocab,
    hidden_size: s.hidden,
    num_hidden_layers: s.layers,
    num_attention_heads: s.heads,
    max_position_embeddings: context,
    tie_word_embeddings: true,
    bos_token_id: ids.bos,
    eos_token_id: ids.eos,
    pad_token_id: ids.pad,
    torch_dtype: 'float32',
  };
  if (s.arch === 'glm') {
    // The GLM block as transformers' GlmForCausalLM writes it: q/k/v biases, KV groups, rotary on
    // half of each head, fused gate/up, and ChatGLM's untied output layer.
    const kv = s.kvHeads ?? s.heads;
    if (s.heads % kv !== 0) throw new Error(`zoo spec '${s.name}': heads ${s.heads} are not a multiple of KV heads ${kv}`);
    return {
      architectures: ['GlmForCausalLM'], model_type: 'glm', ...common, tie_word_embeddings: false,
      intermediate_size: s.ffn, num_key_value_heads: kv, head_dim: s.hidden / s.heads, partial_rotary_factor: 0.5,
      hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000, attention_bias: true, attention_dropout: 0, initializer_range: 0.02,
    };
  }
  if (s.arch === 'llama') {
    return {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common,
      intermediate_size: s.ffn, num_key_value_heads: s.heads, head_dim: s.hidden / s.heads,
      hidden_act: 'silu', rms_norm_eps: 1e-5, rope_theta: 10000, rope_scaling: null,
      attention_bias: false, mlp_bias: false, attention_dropout: 0, initializer_range: 0.02,
    };
  }
  return {
    architectures: ['OPTForCausalLM'], model_type: 'opt', ...common,
    ffn_dim: s.ffn, word_embed_proj_dim: s.hidden, do_layer_norm_before: true, activation_function: 'relu',
    enable_bias: true, layer_norm_elementwise_affine: true, dropout: 0, attention_dropout: 0, activation_dropout: 0,
    layerdrop: 0, init_std: 0.02,
  };
}

export function zooConfig(s: ZooSpec, vocab = ZOO_VOCAB, context = ZOO_CONTEXT): ModelConfig {
  return configFromHf(zooHfConfig(s, vocab, context), `zoo spec '${s.name}'`);
}

/** Parameter count of a config (tied embeddings counted once). */
export function countParams(config: ModelConfig): number {
  let n = 0;
  for (const shape of expectedShapes(config).values()) n += shape.reduce((a, d) => a * d, 1);
  return n;
}

export interface InitOptions {
  std: number; // normal std of embeddings and linear weights (GPT-2/OPT/LLaMA use 0.02)
  seed: number; // weight-init seed
  scaleResidual: boolean; // divide the std of the linears that write into the residual stream by sqrt(2·layers) (GPT-2)
}
export const INIT_DEFAULTS: InitOptions = { std: 0.02, seed: 0, scaleResidual: true };

/**
 * Fresh weights for a config, drawn on the host from a seeded RNG in name order, so every backend
 * starts from the same numbers. Norm weights are 1, biases 0.
 */
export function initWeights(config: ModelConfig, opts: Partial<InitOptions> = {}): Map<string, Float32Array> {
  const o = { ...INIT_DEFAULTS, ...opts };
  const spec = ARCHS[config.arch];
  const rng = new Rng(o.seed);
  const residualOut = new Set([spec.linears[spec.attention.o], spec.linears[spec.mlp.down]].map((s) => `.${s}.weight`));
  const normSuffixes = [...Object.values(spec.norms), spec.finalNorm].map((s) => `${s}.weight`);
  const out = new Map<string, Float32Array>();
  for (const [name, shape] of [...expectedShapes(config)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const n = shape.reduce((a, d) => a * d, 1);
    const data = new Float32Array(n);
    if (name.endsWith('.bias')) {
      // zeros
    } else if (normSuffixes.some((s) => name.endsWith(s))) {
      data.fill(1);
    } else {
      const std = o.scaleResidual && [...residualOut].some((s) => name.endsWith(s)) ? o.std / Math.sqrt(2 * config.numLayers) : o.std;
      for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    }
    out.set(name, data);
  }
  return out;
}

/** A trainable Model: weights as tf.Variables (HF names, HF layout) built from host arrays. */
export function makeTrainableModel(
  name: string,
  config: ModelConfig,
  tokenizer: Tokenizer,
  weights: Map<string, Float32Array>,
  source = 'trained by the kit',
): Model {
  const shapes = expectedShapes(config);
  const w = new Map<string, tf.Tensor>();
  for (const [k, shape] of shapes) {
    const data = weights.get(k);
    if (!data) throw new Error(`model '${name}': no initial value for weight '${k}'`);
    if (data.length !== shape.reduce((a, d) => a * d, 1)) throw new Error(`model '${name}': weight '${k}' has ${data.length} values for shape [${shape}]`);
    w.set(k, tf.tidy(() => tf.variable(tf.tensor(data, shape, 'float32'), true))); // tidy frees the initial value
  }
  return { name, family: config.arch, config, weights: w, tokenizer, source };
}

/** The model's weights as the trainer's parameter map (they must be tf.Variables). */
export function trainableParams(model: Model): Map<string, tf.Variable> {
  const params = new Map<string, tf.Variable>();
  for (const [k, t] of model.weights) {
    if (!(t instanceof tf.Variable)) throw new Error(`model '${model.name}': weight '${k}' is not a tf.Variable (build it with makeTrainableModel)`);
    params.set(k, t);
  }
  return params;
}

/** Weight decay on matrices (embeddings, linears), not on norms or biases. */
export function decayMatrices(params: Map<string, tf.Variable>): (name: string) => boolean {
  return (name) => (params.get(name)?.rank ?? 0) >= 2;
}

/** Zoo models present under root (directories with a config.json), in ZOO order: what the tracks run on. */
export function zooDirs(root = 'models/zoo'): { name: ZooName; dir: string; spec: ZooSpec }[] {
  return (Object.keys(ZOO) as ZooName[])
    .map((name) => ({ name, dir: path.join(root, name), spec: ZOO[name] as ZooSpec }))
    .filter((z) => fs.existsSync(path.join(z.dir, 'config.json')));
}
