// Randomly initialised models (benchmarks, tests of architecture paths without weights): any
// config.json-style dict, weights drawn from a seeded normal, norms at 1 and biases small.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { mulberry32Fill } from '../rng';
import { configFromHf } from './hf';
import { writeSafetensorsSharded, type AsyncWriteTensor } from './safetensors';
import { Llama2cTokenizer } from './tokenizer-llama2c';
import type { Model, ModelConfig, Tokenizer } from './types';
import { expectedShapes, uploadSources, type TensorSource, type UploadOptions } from './weights';

export interface RandomModelOptions extends UploadOptions {
  /** Seed of the weights. */
  seed?: number;
  /** Standard deviation of matrix entries (transformers' initializer_range default). */
  std?: number;
  /** Name for result rows. */
  name?: string;
  /** 'uniform' (same std, ~10× faster to draw) for large benchmark models. */
  dist?: 'normal' | 'uniform';
}

/** LLaMA-3.2-1B's shape (hidden 2048, 16 layers, GQA 32/8 heads, SwiGLU 8192, 128k tied vocabulary):
 * the "~1B" random model of the speed benchmarks (scripts/bench-forward.ts, scripts/bench-eval.ts). */
export const CONFIG_1B = {
  model_type: 'llama', hidden_size: 2048, intermediate_size: 8192, num_hidden_layers: 16, num_attention_heads: 32,
  num_key_value_heads: 8, vocab_size: 128256, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 500000,
  tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
};
/** A tiny model of the same family for trying the benchmarks on wasm. */
export const CONFIG_SMALL = {
  ...CONFIG_1B, hidden_size: 128, intermediate_size: 384, num_hidden_layers: 4, num_attention_heads: 4,
  num_key_value_heads: 2, vocab_size: 1024,
};

const DEFAULTS = {
  seed: 0, // reproducible weights
  std: 0.02, // transformers' initializer_range
  name: 'random',
  dist: 'normal' as 'normal' | 'uniform', // Gaussian, as transformers initialises
};

/** A byte-level placeholder tokenizer for random models: id = UTF-8 byte + 3 (BOS 1, EOS 2). */
export class ByteTokenizer implements Tokenizer {
  readonly bosId = 1;
  readonly eosId = 2;
  constructor(readonly vocabSize: number) {}
  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids = [...Buffer.from(text, 'utf8')].map((b) => b + 3);
    const bad = ids.find((i) => i >= this.vocabSize);
    if (bad !== undefined) throw new Error(`ByteTokenizer: byte ${bad - 3} needs id ${bad}, beyond the vocabulary of ${this.vocabSize}`);
    return opts.bos ? [this.bosId, ...ids] : ids;
  }
  decode(ids: readonly number[]): string {
    return Buffer.from(ids.filter((i) => i >= 3 && i < 259).map((i) => i - 3)).toString('utf8');
  }
}

/**
 * out[i] = scale × a standard normal sample, i = 0, 1, …: Box–Muller on mulberry32's stream (two
 * uniforms per sample, moved off 0 by 2⁻³³ so the log is finite), drawn in bulk.
 */
function fillNormal(out: Float32Array, seed: number, scale: number): void {
  const chunk = Math.min(out.length, 1 << 16);
  const u = new Float64Array(2 * chunk); // [chunk, 2] uniforms
  let state = seed;
  for (let i0 = 0; i0 < out.length; i0 += chunk) {
    const m = Math.min(chunk, out.length - i0);
    state = mulberry32Fill(u.subarray(0, 2 * m), state);
    for (let j = 0; j < m; j++) {
      const r = Math.sqrt(-2 * Math.log(u[2 * j] + 2 ** -33)) * Math.cos(2 * Math.PI * (u[2 * j + 1] + 2 ** -33));
      out[i0 + j] = r * scale;
    }
  }
}

/** out[i] = scale × a uniform sample on [-√3, √3] (unit variance) from a 32-bit LCG: cheap for billions of values. */
function fillUniform(out: Float32Array, seed: number, scale: number): void {
  let a = (seed * 2654435761) >>> 0;
  const width = 2 * Math.sqrt(3);
  for (let i = 0; i < out.length; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = (a / 4294967296 - 0.5) * width * scale;
  }
}

/** A model with the weights `hf` (a config.json object) implies, randomly initialised. */
export function randomModel(hf: Record<string, unknown>, opts: RandomModelOptions = {}): Model {
  const o = { ...DEFAULTS, ...opts };
  const config = configFromHf(hf, `${o.name} config`);
  const { weights, splitWeights } = uploadSources(randomSources(config, opts), opts);
  return { name: o.name, family: config.arch, config, weights, splitWeights, tokenizer: new ByteTokenizer(config.vocabSize), source: `random(seed=${o.seed})` };
}

/** The weights a config implies, each drawn when read (seeded per tensor: the same values whatever reads them). */
export function randomSources(config: ModelConfig, opts: Omit<RandomModelOptions, keyof UploadOptions> = {}): TensorSource[] {
  const o = { ...DEFAULTS, ...opts };
  const shapes = [...expectedShapes(config)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const sources: TensorSource[] = shapes.map(([name, shape], k) => ({
    name,
    shape,
    origin: `${o.name} (random)`,
    read() {
      const n = shape.reduce((x, y) => x * y, 1);
      const data = new Float32Array(n);
      const isNorm = /norm|layernorm/.test(name);
      if (isNorm && name.endsWith('.weight')) data.fill(1);
      else (o.dist === 'normal' ? fillNormal : fillUniform)(data, o.seed * 100003 + k, name.endsWith('.bias') ? o.std / 2 : o.std);
      return data;
    },
  }));
  return sources;
}

/** LLaMA-2-7B's shape (hidden 4096, 32 layers, 32 heads, SwiGLU 11008, 32000-token vocabulary,
 * untied head, 4096 context): Track 3's cost of compression at real scale (scripts/build-random-model.ts). */
export const CONFIG_LLAMA2_7B = {
  model_type: 'llama', hidden_size: 4096, intermediate_size: 11008, num_hidden_layers: 32, num_attention_heads: 32,
  num_key_value_heads: 32, vocab_size: 32000, max_position_embeddings: 4096, rms_norm_eps: 1e-5, rope_theta: 10000,
  tie_word_embeddings: false, bos_token_id: 1, eos_token_id: 2,
};

export interface RandomDirOptions {
  seed: number; // seed of the weights
  std: number; // standard deviation of matrix entries
  dist: 'normal' | 'uniform'; // 'uniform' draws ~10× faster (7B: billions of values)
  dtype: 'BF16' | 'F16'; // stored dtype of the shards
  maxShardBytes: number; // largest shard (more than one: model.safetensors.index.json)
}

export const randomDirDefaults: RandomDirOptions = {
  seed: 0,
  std: 0.02, // transformers' initializer_range
  dist: 'uniform',
  dtype: 'BF16', // LLaMA-2's released dtype
  maxShardBytes: 4 * 1024 ** 3,
};

/** The placeholder tokenizer of a random model directory: llama2.c pieces <unk>, <s>, </s>, the 256 byte pieces, then fillers. */
export function placeholderTokenizer(vocabSize: number): Llama2cTokenizer {
  if (vocabSize < 259) throw new Error(`placeholder tokenizer: vocabulary ${vocabSize} is smaller than 3 specials + 256 bytes`);
  const pieces = ['<unk>', '\n<s>\n', '\n</s>\n'];
  for (let b = 0; b < 256; b++) pieces.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  while (pieces.length < vocabSize) pieces.push(`<random${pieces.length}>`);
  return new Llama2cTokenizer(pieces, new Float32Array(vocabSize));
}

/**
 * Writes a randomly initialised model as an HF directory: config.json (marked random in
 * `llmcb_random` and `_name_or_path`), generation_config.json, bf16/fp16 safetensors shards (with an
 * index when more than one) and a placeholder tokenizer.bin. Tensors are drawn and encoded one at a
 * time while the shard is written, so the host holds one tensor (fp32 and its 16-bit copy), never
 * the model. The directory's name must say 'random' (it becomes the model name of every row).
 */
export async function writeRandomModelDir(hf: Record<string, unknown>, dir: string, opts: Partial<RandomDirOptions> = {}): Promise<string[]> {
  const o = { ...randomDirDefaults, ...opts };
  if (!/random/i.test(path.basename(path.resolve(dir)))) throw new Error(`random model directory '${dir}': its name must contain 'random' (it names the model in result rows)`);
  if (o.dtype !== 'BF16' && o.dtype !== 'F16') throw new Error(`random model: dtype must be BF16 or F16, got '${String(o.dtype)}'`);
  const marked = { ...hf, _name_or_path: `random weights (seed ${o.seed}, ${o.dist}, std ${o.std}): a shape for cost measurements, not a trained model`, llmcb_random: { seed: o.seed, dist: o.dist, std: o.std } };
  const config = configFromHf(marked, `${dir}/config.json`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(marked, null, 2)}\n`);
  writeFileSync(path.join(dir, 'generation_config.json'), `${JSON.stringify({ bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId }, null, 2)}\n`);
  writeFileSync(path.join(dir, 'tokenizer.bin'), placeholderTokenizer(config.vocabSize).toBinary());
  const sources = randomSources(config, { seed: o.seed, std: o.std, dist: o.dist, name: path.basename(dir) });
  const tensors: AsyncWriteTensor[] = sources.map((s) => ({ name: s.name, shape: s.shape, dtype: o.dtype, chunks: () => [s.read()] }));
  return writeSafetensorsSharded(dir, tensors, { maxShardBytes: o.maxShardBytes, metadata: { format: 'pt' } });
}
