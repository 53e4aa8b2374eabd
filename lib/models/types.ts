// The kit's model representation: an HF-style config, weights keyed by their HF names in HF
// layouts (linear weights are [out, in]), and a tokenizer. Every loader produces this; the
// forward pass, the methods and the writers consume it. What a model runs with beyond its weights
// (activation quantization, packed linears for the quantized kernels) is the inference side's:
// lib/engine/inference.ts InferenceModel.
import type * as tf from '@tensorflow/tfjs';

export type Arch = 'llama' | 'opt' | 'glm';

export interface RopeScaling {
  /** Only 'llama3' (LLaMA 3.1 frequency-dependent scaling) and 'linear' are implemented. */
  type: 'llama3' | 'linear';
  factor: number;
  lowFreqFactor?: number; // llama3
  highFreqFactor?: number; // llama3
  originalMaxPositions?: number; // llama3
}

export interface ModelConfig {
  arch: Arch;
  vocabSize: number;
  hiddenSize: number; // d_model
  intermediateSize: number; // FFN inner width (OPT: ffn_dim)
  numLayers: number;
  numHeads: number;
  numKvHeads: number; // = numHeads without GQA
  headDim: number;
  maxPositions: number; // context length
  normEps: number;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
  // LLaMA family
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  // OPT
  doLayerNormBefore: boolean;
  wordEmbedProjDim: number; // = hiddenSize when OPT has no project_in/out
  activation: 'silu' | 'relu' | 'gelu';
  /** Linear layers carry biases (OPT: yes; LLaMA: attention_bias / mlp_bias). */
  bias: boolean;
  /** q, k and v (GLM: the fused query_key_value) carry biases while the output projection does not
   * (Qwen2, GLM). Default false. */
  qkvBias?: boolean;
  /** Mistral's sliding-window attention: a query attends to itself and the window − 1 keys before
   * it (transformers: key > query − window). Default null (full causal attention). */
  slidingWindow?: number | null;
  /** The config.json this came from (kept so that saving round-trips unknown keys). */
  hf: Record<string, unknown>;
}

/** A tokenizer: llama2.c's or a tokenizer.json. */
export interface Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  /** A hash of everything its encodings depend on (vocabulary, merges, special ids), when known:
   * encodings are then cached across processes (lib/eval/token-cache.ts). */
  readonly fingerprint?: string;
  /** Token ids of text; bos adds the BOS id in front (default false). */
  encode(text: string, opts?: { bos?: boolean }): number[];
  decode(ids: readonly number[]): string;
}

export interface Model {
  /** Short name for result rows, e.g. 'stories260K'. */
  name: string;
  /** Family for result rows, e.g. 'llama', 'opt'. */
  family: string;
  config: ModelConfig;
  /** HF-named weights in HF layout; methods replace entries (disposing the old tensor). */
  weights: Map<string, tf.Tensor>;
  /** Matrices too large for one WebGPU storage binding (2 GiB+, e.g. a 128k-vocabulary embedding),
   * kept as row blocks [rows_i, cols] in order under their HF name; such a name is then absent
   * from `weights`. Only embeddings and the LM head are ever split. */
  splitWeights?: Map<string, tf.Tensor[]>;
  tokenizer: Tokenizer;
  /** Where it came from (path or hub id@revision), for provenance. */
  source: string;
}

/** A hook on the input of every linear layer of a block. Return a tensor to replace the input
 * (e.g. activation fake-quantization), or nothing to only observe it (calibration capture).
 * `linear` is the linear's full weight name, `linearName(arch, block, short)`, e.g.
 * 'model.layers.0.self_attn.q_proj.weight' (so `model.weights.get(linear)` is its weight); linears
 * that share an input (q, k, v) are each called with it. x is [tokens, in] (tokens = batch × seq,
 * padding included); the hook must not dispose x, and x is freed when the block returns, so keep a
 * copy with `tf.keep(x.clone())` or read its data. */
export type LinearInputHook = (linear: string, x: tf.Tensor2D) => tf.Tensor2D | void;
