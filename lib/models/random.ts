// Randomly initialised models (benchmarks, tests of architecture paths without weights): any
// config.json-style dict, weights drawn from a seeded normal, norms at 1 and biases small.
import { mulberry32 } from '../rng';
import { configFromHf } from './hf';
import type { Model, Tokenizer } from './types';
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

/** mulberry32 → Box–Muller normal samples (uniforms moved off 0 by 2⁻³³ so the log is finite). */
function normals(seed: number): () => number {
  const u0 = mulberry32(seed);
  const u = () => u0() + 2 ** -33;
  return () => Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
}

/** Uniform samples on [-√3, √3] (unit variance) from a 32-bit LCG: cheap for billions of values. */
function uniforms(seed: number): () => number {
  let a = (seed * 2654435761) >>> 0;
  return () => {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    return (a / 4294967296 - 0.5) * 2 * Math.sqrt(3);
  };
}

/** A model with the weights `hf` (a config.json object) implies, randomly initialised. */
export function randomModel(hf: Record<string, unknown>, opts: RandomModelOptions = {}): Model {
  const o = { ...DEFAULTS, ...opts };
  const config = configFromHf(hf, `${o.name} config`);
  const shapes = [...expectedShapes(config)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const sources: TensorSource[] = shapes.map(([name, shape], k) => ({
    name,
    shape,
    origin: `${o.name} (random)`,
    read() {
      const n = shape.reduce((x, y) => x * y, 1);
      const rnd = o.dist === 'normal' ? normals(o.seed * 100003 + k) : uniforms(o.seed * 100003 + k);
      const data = new Float32Array(n);
      const isNorm = /norm|layernorm/.test(name);
      if (isNorm && name.endsWith('.weight')) data.fill(1);
      else {
        const std = name.endsWith('.bias') ? o.std / 2 : o.std;
        for (let i = 0; i < n; i++) data[i] = rnd() * std;
      }
      return data;
    },
  }));
  const { weights, splitWeights } = uploadSources(sources, opts);
  return { name: o.name, family: config.arch, config, weights, splitWeights, tokenizer: new ByteTokenizer(config.vocabSize), source: `random(seed=${o.seed})` };
}
