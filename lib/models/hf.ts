// Hugging Face directories: config.json ↔ ModelConfig, tokenizer.json through
// @huggingface/tokenizers, loading safetensors (single or sharded) and saving a model back as an
// HF directory that transformers and llama.cpp's converters read.
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { openSafetensorsDir, writeSafetensorsSharded, type AsyncWriteTensor } from './safetensors';
import { Llama2cTokenizer } from './tokenizer-llama2c';
import type { Arch, Model, ModelConfig, RopeScaling, Tokenizer } from './types';
import { ARCHS } from './arch';
import { glmFromNativeNames, glmToNativeTensors } from './glm';
import { PER_LAYER_KEYS, uploadSources, validateSources, type UploadOptions } from './weights';

/** model_type → the kit's architecture table. */
const MODEL_TYPES: Record<string, Arch> = { llama: 'llama', mistral: 'llama', qwen2: 'llama', opt: 'opt', glm: 'glm', chatglm: 'glm' };

function num(hf: Record<string, unknown>, key: string, file: string, fallback?: number): number {
  const v = hf[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new Error(`${file}: missing '${key}'`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${file}: '${key}' must be a number, got ${JSON.stringify(v)}`);
  return v;
}

function firstId(v: unknown): number | null {
  if (typeof v === 'number') return v;
  if (Array.isArray(v) && typeof v[0] === 'number') return v[0];
  return null;
}

/** Maps a config.json object to the kit's ModelConfig; unknown architectures are an error naming the file. */
export function configFromHf(hf: Record<string, unknown>, file = 'config.json'): ModelConfig {
  const modelType = String(hf.model_type ?? '');
  const arch = MODEL_TYPES[modelType];
  if (!arch) {
    throw new Error(
      `${file}: unknown architecture model_type='${modelType}'${Array.isArray(hf.architectures) ? ` (${hf.architectures.join(', ')})` : ''}; supported: ${Object.keys(MODEL_TYPES).join(', ')}`,
    );
  }
  if (modelType === 'chatglm') return configFromChatglm(hf, file);
  const hidden = num(hf, 'hidden_size', file);
  const heads = num(hf, 'num_attention_heads', file);
  const layers = num(hf, 'num_hidden_layers', file);
  const vocab = num(hf, 'vocab_size', file);
  if (arch === 'opt') {
    const act = String(hf.activation_function ?? 'relu');
    if (act !== 'relu' && act !== 'gelu') throw new Error(`${file}: unsupported OPT activation_function '${act}'`);
    if (hf.layer_norm_elementwise_affine === false) throw new Error(`${file}: OPT without elementwise-affine LayerNorm is not supported`);
    return {
      arch,
      vocabSize: vocab,
      hiddenSize: hidden,
      intermediateSize: num(hf, 'ffn_dim', file),
      numLayers: layers,
      numHeads: heads,
      numKvHeads: heads,
      headDim: hidden / heads,
      maxPositions: num(hf, 'max_position_embeddings', file),
      normEps: 1e-5, // torch.nn.LayerNorm's default, which OPT uses
      tieWordEmbeddings: hf.tie_word_embeddings === undefined ? true : Boolean(hf.tie_word_embeddings),
      bosTokenId: firstId(hf.bos_token_id),
      eosTokenId: firstId(hf.eos_token_id),
      ropeTheta: 0,
      ropeScaling: null,
      doLayerNormBefore: hf.do_layer_norm_before === undefined ? true : Boolean(hf.do_layer_norm_before),
      wordEmbedProjDim: num(hf, 'word_embed_proj_dim', file, hidden),
      activation: act,
      bias: hf.enable_bias === undefined ? true : Boolean(hf.enable_bias),
      hf,
    };
  }
  const act = String(hf.hidden_act ?? 'silu');
  if (act !== 'silu') throw new Error(`${file}: unsupported ${modelType} hidden_act '${act}' (only silu)`);
  // transformers 5 writes rope_parameters; older configs rope_theta + rope_scaling.
  const rp = (hf.rope_parameters ?? null) as Record<string, unknown> | null;
  const rs = (hf.rope_scaling ?? rp ?? null) as Record<string, unknown> | null;
  const ropeTheta = rp && typeof rp.rope_theta === 'number' ? rp.rope_theta : num(hf, 'rope_theta', file, 10000);
  let ropeScaling: RopeScaling | null = null;
  const ropeType = rs ? String(rs.rope_type ?? rs.type ?? 'default') : 'default';
  if (ropeType === 'llama3') {
    ropeScaling = {
      type: 'llama3',
      factor: num(rs!, 'factor', `${file} rope scaling`),
      lowFreqFactor: num(rs!, 'low_freq_factor', `${file} rope scaling`),
      highFreqFactor: num(rs!, 'high_freq_factor', `${file} rope scaling`),
      originalMaxPositions: num(rs!, 'original_max_position_embeddings', `${file} rope scaling`),
    };
  } else if (ropeType === 'linear') {
    ropeScaling = { type: 'linear', factor: num(rs!, 'factor', `${file} rope scaling`) };
  } else if (ropeType !== 'default') {
    throw new Error(`${file}: unsupported rope scaling type '${ropeType}' (supported: default, linear, llama3)`);
  }
  if (arch === 'glm') {
    // transformers' native GLM: the rotated share of a head is partial_rotary_factor (the arch table's 0.5).
    const partial = rp && typeof rp.partial_rotary_factor === 'number' ? rp.partial_rotary_factor : num(hf, 'partial_rotary_factor', file, 0.5);
    if (partial !== ARCHS.glm.rope!.fraction) throw new Error(`${file}: GLM with partial_rotary_factor ${partial} is not supported (only ${ARCHS.glm.rope!.fraction})`);
    const hd = num(hf, 'head_dim', file, hidden / heads);
    if ((hd * partial) % 2 !== 0) throw new Error(`${file}: GLM head_dim ${hd} rotates ${hd * partial} dimensions, which do not pair up (head_dim must be a multiple of 4)`);
  }
  const window = slidingWindowOf(hf, modelType, file);
  return {
    arch,
    vocabSize: vocab,
    hiddenSize: hidden,
    intermediateSize: num(hf, 'intermediate_size', file),
    numLayers: layers,
    numHeads: heads,
    numKvHeads: num(hf, 'num_key_value_heads', file, heads),
    headDim: num(hf, 'head_dim', file, hidden / heads),
    maxPositions: num(hf, 'max_position_embeddings', file),
    normEps: num(hf, 'rms_norm_eps', file, arch === 'glm' ? 1.5625e-7 : 1e-6),
    tieWordEmbeddings: Boolean(hf.tie_word_embeddings ?? false),
    bosTokenId: firstId(hf.bos_token_id),
    eosTokenId: firstId(hf.eos_token_id),
    ropeTheta,
    ropeScaling,
    doLayerNormBefore: true,
    wordEmbedProjDim: hidden,
    activation: 'silu',
    bias: arch === 'llama' && (Boolean(hf.attention_bias) || Boolean(hf.mlp_bias)),
    // Qwen2 always has q/k/v biases; native GLM has them with attention_bias (its default: true).
    qkvBias: modelType === 'qwen2' || (arch === 'glm' && hf.attention_bias !== false),
    slidingWindow: window,
    hf,
  };
}

/** Mistral's sliding_window (null or absent: full attention); Qwen2's use_sliding_window is refused (its per-layer windows are not implemented). */
function slidingWindowOf(hf: Record<string, unknown>, modelType: string, file: string): number | null {
  if (modelType === 'qwen2') {
    if (hf.use_sliding_window) throw new Error(`${file}: Qwen2 with use_sliding_window is not supported (per-layer windows from max_window_layers)`);
    return null;
  }
  if (modelType !== 'mistral' || hf.sliding_window === null || hf.sliding_window === undefined) return null;
  const w = num(hf, 'sliding_window', file);
  if (!(Number.isInteger(w) && w >= 1)) throw new Error(`${file}: sliding_window must be a positive integer, got ${w}`);
  return w;
}

/** The keys of ChatGLM2/3's config.json (model_type 'chatglm', remote-code models) → ModelConfig of the GLM table. */
function configFromChatglm(hf: Record<string, unknown>, file: string): ModelConfig {
  const refuse = (key: string, want: boolean) => {
    if (hf[key] !== undefined && Boolean(hf[key]) !== want) throw new Error(`${file}: ChatGLM with ${key} = ${JSON.stringify(hf[key])} is not supported (only ${want})`);
  };
  refuse('rmsnorm', true);
  refuse('add_bias_linear', false);
  refuse('apply_residual_connection_post_layernorm', false);
  refuse('post_layer_norm', true);
  refuse('original_rope', true);
  const hidden = num(hf, 'hidden_size', file);
  const heads = num(hf, 'num_attention_heads', file);
  return {
    arch: 'glm',
    vocabSize: num(hf, 'padded_vocab_size', file),
    hiddenSize: hidden,
    intermediateSize: num(hf, 'ffn_hidden_size', file),
    numLayers: num(hf, 'num_layers', file),
    numHeads: heads,
    numKvHeads: hf.multi_query_attention ? num(hf, 'multi_query_group_num', file) : heads,
    headDim: num(hf, 'kv_channels', file, hidden / heads),
    maxPositions: num(hf, 'seq_length', file),
    normEps: num(hf, 'layernorm_epsilon', file, 1e-5),
    tieWordEmbeddings: false,
    bosTokenId: firstId(hf.bos_token_id),
    eosTokenId: firstId(hf.eos_token_id),
    ropeTheta: 10000 * num(hf, 'rope_ratio', file, 1), // ChatGLM3-32k scales the base by rope_ratio
    ropeScaling: null,
    doLayerNormBefore: true,
    wordEmbedProjDim: hidden,
    activation: 'silu',
    bias: false,
    qkvBias: Boolean(hf.add_qkv_bias ?? false),
    slidingWindow: null,
    hf,
  };
}

/** ModelConfig → config.json: the original keys, with the fields the kit knows rewritten. */
export function configToHf(c: ModelConfig): Record<string, unknown> {
  const base: Record<string, unknown> = { ...c.hf };
  const common = {
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    max_position_embeddings: c.maxPositions,
    tie_word_embeddings: c.tieWordEmbeddings,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenId,
    torch_dtype: 'float32',
  };
  if (c.arch === 'opt') {
    return {
      architectures: ['OPTForCausalLM'],
      ...base,
      model_type: 'opt',
      ...common,
      ffn_dim: c.intermediateSize,
      do_layer_norm_before: c.doLayerNormBefore,
      word_embed_proj_dim: c.wordEmbedProjDim,
      activation_function: c.activation,
      enable_bias: c.bias,
    };
  }
  // The keys of the RMSNorm + SwiGLU + RoPE families (GLM, and LLaMA with Mistral and Qwen2).
  const gated = {
    intermediate_size: c.intermediateSize,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.headDim,
    rms_norm_eps: c.normEps,
    hidden_act: 'silu',
    rope_theta: c.ropeTheta,
  };
  if (c.arch === 'glm') {
    // Saved in transformers' native layout (GlmForCausalLM; lib/models/glm.ts splits the fused
    // q|k|v); a ChatGLM config's own keys (auto_map to remote code, num_layers, …) are not carried over.
    const kept = c.hf.model_type === 'chatglm' ? Object.fromEntries(Object.values(PER_LAYER_KEYS).filter((k) => k in base).map((k) => [k, base[k]])) : base;
    const out: Record<string, unknown> = {
      ...kept,
      architectures: ['GlmForCausalLM'],
      model_type: 'glm',
      ...common,
      ...gated,
      partial_rotary_factor: ARCHS.glm.rope!.fraction,
      attention_bias: c.qkvBias ?? false,
    };
    delete out.rope_parameters;
    return out;
  }
  // Mistral and Qwen2 keep their model_type (their sliding window and q/k/v biases are theirs).
  const family = c.hf.model_type === 'mistral' || c.hf.model_type === 'qwen2' ? c.hf.model_type : 'llama';
  const out: Record<string, unknown> = {
    architectures: ['LlamaForCausalLM'],
    ...base,
    model_type: family,
    ...common,
    ...gated,
    rope_scaling:
      c.ropeScaling === null
        ? null
        : c.ropeScaling.type === 'linear'
          ? { rope_type: 'linear', factor: c.ropeScaling.factor }
          : {
              rope_type: 'llama3',
              factor: c.ropeScaling.factor,
              low_freq_factor: c.ropeScaling.lowFreqFactor,
              high_freq_factor: c.ropeScaling.highFreqFactor,
              original_max_position_embeddings: c.ropeScaling.originalMaxPositions,
            },
  };
  // One source of truth for RoPE: drop transformers 5's rope_parameters in favour of the keys above
  // (transformers 5 still reads rope_theta / rope_scaling).
  delete out.rope_parameters;
  return out;
}

/** A tokenizer.json tokenizer (through @huggingface/tokenizers); keeps its files for saving. */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number | null;
  readonly eosId: number | null;
  private readonly impl: HfTokenizerImpl;

  constructor(
    readonly tokenizerJson: Record<string, unknown>,
    readonly tokenizerConfig: Record<string, unknown>,
    /** Where tokenizerJson came from, for error messages. */
    private readonly source = 'tokenizer.json',
  ) {
    this.impl = new HfTokenizerImpl(tokenizerJson, tokenizerConfig);
    this.vocabSize = this.impl.get_vocab().size ?? Object.keys(this.impl.get_vocab()).length;
    this.bosId = this.specialId(tokenizerConfig.bos_token);
    this.eosId = this.specialId(tokenizerConfig.eos_token);
  }

  private hash: string | undefined;
  /** sha256 of tokenizer.json and tokenizer_config.json as loaded (Tokenizer.fingerprint). */
  get fingerprint(): string {
    this.hash ??= createHash('sha256').update(JSON.stringify(this.tokenizerJson)).update(JSON.stringify(this.tokenizerConfig)).digest('hex');
    return this.hash;
  }

  private specialId(tok: unknown): number | null {
    const content = typeof tok === 'string' ? tok : tok && typeof tok === 'object' ? (tok as { content?: string }).content : undefined;
    if (!content) return null;
    return this.impl.token_to_id(content) ?? null;
  }

  encode(text: string, opts: { bos?: boolean } = {}): number[] {
    const ids = this.impl.encode(text, { add_special_tokens: false }).ids;
    // @huggingface/tokenizers gives null for a piece its vocabulary lacks (a tokenizer.json whose merges or pieces are not all tokens)
    const bad = ids.findIndex((id) => !Number.isInteger(id));
    if (bad >= 0) throw new Error(`${this.source}: encoding ${JSON.stringify(text.slice(0, 40))} gave the id ${JSON.stringify(ids[bad])} at position ${bad}: the vocabulary lacks a piece its model produces`);
    if (opts.bos) {
      if (this.bosId === null) throw new Error('this tokenizer has no BOS token (tokenizer_config.json bos_token)');
      return [this.bosId, ...ids];
    }
    return ids;
  }

  decode(ids: readonly number[]): string {
    if (ids.length === 0) return ''; // @huggingface/tokenizers throws on an empty list
    return this.impl.decode([...ids], { skip_special_tokens: true });
  }
}

/** A JSON file's object; unreadable or invalid JSON is an error naming the file. */
export function readJson(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${file}: invalid JSON: ${(e as Error).message}`);
  }
}

/**
 * The tokenizer of an HF directory: `tokenizer` (a llama2.c .bin or a tokenizer.json) when given,
 * else tokenizer.json (+ tokenizer_config.json), else a llama2.c `tokenizer.bin` saved by the kit.
 */
export function loadTokenizer(dir: string, vocabSize: number, tokenizer?: string, ids?: { bos: number | null; eos: number | null }): Tokenizer {
  const llama2cOpts = { bosId: ids?.bos ?? 1, eosId: ids?.eos ?? 2 };
  if (tokenizer) {
    if (tokenizer.endsWith('.json')) return hfTokenizerFrom(tokenizer, path.join(path.dirname(tokenizer), 'tokenizer_config.json'));
    return Llama2cTokenizer.fromFile(tokenizer, vocabSize, llama2cOpts);
  }
  const tj = path.join(dir, 'tokenizer.json');
  if (existsSync(tj)) return hfTokenizerFrom(tj, path.join(dir, 'tokenizer_config.json'));
  const tb = path.join(dir, 'tokenizer.bin');
  if (existsSync(tb)) return Llama2cTokenizer.fromFile(tb, vocabSize, llama2cOpts);
  // ChatGLM2/3 ship a SentencePiece model read by their own Python class, no tokenizer.json.
  const python = ['tokenization_chatglm.py', 'tokenizer.model'].filter((f) => existsSync(path.join(dir, f)));
  if (python.length > 0) {
    throw new Error(`${dir}: missing tokenizer.json (the directory has only a Python tokenizer: ${python.join(', ')}); convert it with transformers (AutoTokenizer.from_pretrained(dir, trust_remote_code=True).save_pretrained) or pass --tokenizer FILE.json`);
  }
  throw new Error(`${dir}: no tokenizer.json or tokenizer.bin (pass a tokenizer path, e.g. --tokenizer tok512.bin)`);
}

/**
 * Checks the token ids of a tokenizer.json before @huggingface/tokenizers sees them: it sizes its
 * tables by the largest id, so one id of 2e8 in a 300-token file made it hang. Ids of model.vocab
 * (when an object) and added_tokens must be integers below the number of tokens the file lists.
 */
function checkTokenIds(tj: Record<string, unknown>, file: string): void {
  const model = tj.model as { vocab?: unknown } | undefined;
  const vocab = model && typeof model === 'object' && model.vocab && typeof model.vocab === 'object' && !Array.isArray(model.vocab) ? Object.entries(model.vocab) : [];
  const added = Array.isArray(tj.added_tokens) ? (tj.added_tokens as unknown[]) : [];
  const n = vocab.length + added.length;
  const bad = (what: string, id: unknown) => new Error(`${file}: ${what} has id ${JSON.stringify(id)}, not an integer in 0..${n - 1}`);
  for (const [t, id] of vocab) if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= n) throw bad(`token ${JSON.stringify(t)}`, id);
  for (const a of added) {
    const id = (a as { id?: unknown } | null)?.id;
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= n) throw bad('an added token', id);
  }
}

function hfTokenizerFrom(file: string, configFile: string): HfTokenizer {
  const tj = readJson(file);
  checkTokenIds(tj, file);
  const tc = existsSync(configFile) ? readJson(configFile) : {};
  try {
    return new HfTokenizer(tj, tc, file);
  } catch (e) {
    throw new Error(`${file}: @huggingface/tokenizers cannot load it (with ${path.basename(configFile)}): ${(e as Error).message}`, { cause: e });
  }
}

export interface HfLoadOptions extends UploadOptions {
  /** Tokenizer file overriding the directory's (llama2.c .bin or tokenizer.json). */
  tokenizer?: string;
  /** Name for result rows (default: the directory's name). */
  name?: string;
  /** Provenance string (default: the directory). */
  source?: string;
}

/** Loads an HF directory: config.json, model.safetensors or a sharded index, a tokenizer. */
export function loadHfDir(dir: string, opts: HfLoadOptions = {}): Model {
  const configFile = path.join(dir, 'config.json');
  const hf = readJson(configFile);
  const config = configFromHf(hf, configFile);
  const gen = path.join(dir, 'generation_config.json');
  if (existsSync(gen)) {
    const g = readJson(gen);
    const eos = firstId(g.eos_token_id);
    if (eos !== null) config.eosTokenId = eos;
    const bos = firstId(g.bos_token_id);
    if (bos !== null) config.bosTokenId = bos;
  }
  const tokenizer = loadTokenizer(dir, config.vocabSize, opts.tokenizer, { bos: config.bosTokenId, eos: config.eosTokenId });
  // Everything is described and validated before a single tensor is uploaded.
  const { sources, what } = openSafetensorsDir(dir);
  // OPT checkpoints from the hub name weights 'decoder.…' (OPTModel); the kit uses 'model.decoder.…'.
  for (const s of sources) {
    if (config.arch === 'opt' && s.name.startsWith('decoder.')) s.name = `model.${s.name}`;
  }
  const kept = validateSources(config, config.hf.model_type === 'glm' ? glmFromNativeNames(sources) : sources, what);
  const { weights, splitWeights } = uploadSources(kept, opts);
  return {
    name: opts.name ?? path.basename(path.resolve(dir)),
    family: config.arch,
    config,
    weights,
    splitWeights,
    tokenizer,
    source: opts.source ?? path.resolve(dir),
  };
}

export interface SaveOptions {
  /** Largest shard in bytes; more than one shard writes model.safetensors.index.json. */
  maxShardBytes?: number;
  /** Stored dtype of every weight: F32 (exact) or F16 (rounded to nearest even, half the bytes). */
  dtype?: 'F32' | 'F16';
}

const SAVE_DEFAULTS: Required<SaveOptions> = {
  maxShardBytes: 4 * 1024 ** 3, // transformers' default shard size is in this range; keeps files portable
  dtype: 'F32', // the kit computes in fp32: store exactly what the model holds
};

/**
 * Saves a model as an HF directory: config.json, generation_config.json, model.safetensors (fp32,
 * or fp16 with dtype 'F16'; sharded with an index when larger than maxShardBytes) and the tokenizer
 * (tokenizer.json + tokenizer_config.json, or llama2.c's tokenizer as tokenizer.bin). Weights are
 * read asynchronously, one tensor at a time (WebGPU in Node has no synchronous read).
 */
export async function saveModel(model: Model, dir: string, opts: SaveOptions = {}): Promise<void> {
  const o = { ...SAVE_DEFAULTS, ...opts };
  if (o.dtype !== 'F32' && o.dtype !== 'F16') throw new Error(`saveModel: dtype must be 'F32' or 'F16', got '${String(o.dtype)}'`);
  mkdirSync(dir, { recursive: true });
  const c = model.config;
  writeFileSync(path.join(dir, 'config.json'), `${JSON.stringify(configToHf(c), null, 2)}\n`);
  writeFileSync(
    path.join(dir, 'generation_config.json'),
    `${JSON.stringify({ bos_token_id: c.bosTokenId, eos_token_id: c.eosTokenId }, null, 2)}\n`,
  );
  const tensors: AsyncWriteTensor[] = [];
  const names = [...model.weights.keys(), ...(model.splitWeights?.keys() ?? [])].sort();
  for (const name of names) {
    const whole = model.weights.get(name);
    const blocks = whole ? [whole] : model.splitWeights!.get(name)!;
    const shape: number[] = whole ? whole.shape : [blocks.reduce((a, b) => a + b.shape[0], 0), blocks[0].shape[1] as number];
    tensors.push({
      name,
      shape,
      dtype: o.dtype,
      // Read block by block at write time so the host never holds the whole model.
      chunks: async () => {
        const out: Float32Array[] = [];
        for (const b of blocks) out.push((await b.data()) as Float32Array);
        return out;
      },
    });
  }
  await writeSafetensorsSharded(dir, c.arch === 'glm' ? glmToNativeTensors(tensors, c) : tensors, { maxShardBytes: o.maxShardBytes, metadata: { format: 'pt' } });
  const tok = model.tokenizer;
  if (tok instanceof HfTokenizer) {
    writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tok.tokenizerJson));
    writeFileSync(path.join(dir, 'tokenizer_config.json'), `${JSON.stringify(tok.tokenizerConfig, null, 2)}\n`);
  } else if (tok instanceof Llama2cTokenizer) {
    writeFileSync(path.join(dir, 'tokenizer.bin'), tok.toBinary());
  }
}
