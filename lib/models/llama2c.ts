// llama2.c checkpoints (legacy format, version 0): 7 int32 header fields, then fp32 tensors in a
// fixed order (see ../shared/models/README.md). Converted at load to the kit's HF layout: names
// as in transformers' LLaMA, q/k rows permuted from llama2.c's interleaved RoPE pairs to HF's
// half-split layout, so one forward pass serves both sources.
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import { configFromHf } from './hf';
import { Llama2cTokenizer } from './tokenizer-llama2c';
import type { Model, ModelConfig } from './types';
import { permuteRopeRows, uploadSources, validateSources, type TensorSource, type UploadOptions } from './weights';

export interface Llama2cHeader {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  vocabSize: number;
  seqLen: number;
  /** Negative vocab_size in the file: the classifier is stored separately (untied). */
  sharedClassifier: boolean;
}

const HEADER_BYTES = 7 * 4;

/** Reads and checks the header of a llama2.c checkpoint. */
export function readLlama2cHeader(file: string): Llama2cHeader {
  const fd = openFile(file);
  try {
    const b = Buffer.alloc(HEADER_BYTES);
    if (readSync(fd, b, 0, HEADER_BYTES, 0) < HEADER_BYTES) throw new Error(`${file}: truncated llama2.c checkpoint (no header)`);
    const v = [0, 1, 2, 3, 4, 5, 6].map((i) => b.readInt32LE(i * 4));
    const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocab, seqLen] = v;
    const h: Llama2cHeader = { dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize: Math.abs(vocab), seqLen, sharedClassifier: vocab > 0 };
    const bad = dim <= 0 || hiddenDim <= 0 || nLayers <= 0 || nHeads <= 0 || nKvHeads <= 0 || vocab === 0 || seqLen <= 0;
    if (bad || dim % nHeads !== 0 || nHeads % nKvHeads !== 0 || (dim / nHeads) % 2 !== 0) {
      throw new Error(`${file}: not a llama2.c checkpoint (header ${v.join(', ')})`);
    }
    return h;
  } finally {
    closeSync(fd);
  }
}

function openFile(file: string): number {
  try {
    return openSync(file, 'r');
  } catch (e) {
    throw new Error(`cannot open llama2.c checkpoint ${file}: ${(e as Error).message}`);
  }
}

/** The config.json transformers would have for this checkpoint (as the shared HF conversion). */
export function llama2cHfConfig(h: Llama2cHeader): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: h.dim,
    intermediate_size: h.hiddenDim,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHeads,
    num_key_value_heads: h.nKvHeads,
    vocab_size: h.vocabSize,
    max_position_embeddings: h.seqLen,
    rms_norm_eps: 1e-5, // llama2.c's rmsnorm epsilon
    rope_theta: 10000.0, // llama2.c's RoPE base
    hidden_act: 'silu',
    tie_word_embeddings: h.sharedClassifier,
    bos_token_id: 1,
    eos_token_id: 2,
    attention_bias: false,
    mlp_bias: false,
    torch_dtype: 'float32',
  };
}

/** Describes every tensor of a llama2.c checkpoint (file size checked) in HF names and layout. */
export function llama2cSources(file: string, h: Llama2cHeader, config: ModelConfig): TensorSource[] {
  const { dim, hiddenDim: F, nLayers: L, nHeads, nKvHeads, vocabSize: V, seqLen } = h;
  const hd = dim / nHeads;
  const kvDim = nKvHeads * hd;
  const fd = openFile(file);
  const size = fstatSync(fd).size;
  closeSync(fd);
  // The size the header implies, checked before any tensor is described (a header that claims
  // millions of layers must not make millions of sources).
  const perLayer = 2 * dim + 2 * dim * dim + 2 * kvDim * dim + 3 * F * dim;
  const implied = HEADER_BYTES + 4 * (V * dim + L * perLayer + dim + seqLen * hd + (h.sharedClassifier ? 0 : V * dim));
  if (size < implied) throw new Error(`${file}: truncated llama2.c checkpoint: ${size} bytes, the header implies ${implied}`);
  const sources: TensorSource[] = [];
  let off = HEADER_BYTES;
  // A stacked [L, ...] array in the file; layer l's slice becomes one HF tensor.
  const stacked = (what: string, shape: number[], name: (l: number) => string, transform?: (w: Float32Array) => Float32Array) => {
    const n = shape.reduce((a, b) => a * b, 1);
    for (let l = 0; l < L; l++) {
      const at = off + l * n * 4;
      sources.push(region(file, `${name(l)}`, `${file} (${what}[${l}])`, shape, at, n, transform));
    }
    off += L * n * 4;
  };
  sources.push(region(file, 'model.embed_tokens.weight', `${file} (token_embedding)`, [V, dim], off, V * dim));
  off += V * dim * 4;
  const p = (l: number) => `model.layers.${l}.`;
  stacked('rms_att', [dim], (l) => `${p(l)}input_layernorm.weight`);
  stacked('wq', [dim, dim], (l) => `${p(l)}self_attn.q_proj.weight`, (w) => permuteRopeRows(w, nHeads, hd, dim));
  stacked('wk', [kvDim, dim], (l) => `${p(l)}self_attn.k_proj.weight`, (w) => permuteRopeRows(w, nKvHeads, hd, dim));
  stacked('wv', [kvDim, dim], (l) => `${p(l)}self_attn.v_proj.weight`);
  stacked('wo', [dim, dim], (l) => `${p(l)}self_attn.o_proj.weight`);
  stacked('rms_ffn', [dim], (l) => `${p(l)}post_attention_layernorm.weight`);
  stacked('w1', [F, dim], (l) => `${p(l)}mlp.gate_proj.weight`);
  stacked('w2', [dim, F], (l) => `${p(l)}mlp.down_proj.weight`);
  stacked('w3', [F, dim], (l) => `${p(l)}mlp.up_proj.weight`);
  sources.push(region(file, 'model.norm.weight', `${file} (rms_final)`, [dim], off, dim));
  off += dim * 4;
  off += 2 * seqLen * (hd / 2) * 4; // freq_cis_real/imag: recomputed by the forward pass
  if (!h.sharedClassifier) {
    sources.push(region(file, 'lm_head.weight', `${file} (wcls)`, [V, dim], off, V * dim));
    off += V * dim * 4;
  }
  if (size > off) console.warn(`${file}: ${size - off} bytes after the weights the llama2.c header implies (${off} bytes) are ignored: is it another format or a damaged file?`);
  return validateSources(config, sources, file);
}

function region(
  file: string,
  name: string,
  origin: string,
  shape: number[],
  at: number,
  n: number,
  transform?: (w: Float32Array) => Float32Array,
): TensorSource {
  return {
    name,
    shape,
    origin,
    read() {
      const buf = new Float32Array(n);
      const fd = openSync(file, 'r');
      try {
        const u8 = new Uint8Array(buf.buffer);
        for (let done = 0; done < u8.length; ) {
          const got = readSync(fd, u8, done, Math.min(1 << 30, u8.length - done), at + done);
          if (got <= 0) throw new Error(`${origin}: unexpected end of file`);
          done += got;
        }
      } finally {
        closeSync(fd);
      }
      return transform ? transform(buf) : buf;
    },
  };
}

export interface Llama2cLoadOptions extends UploadOptions {
  /** Tokenizer .bin (default: tokenizer.bin, tok<vocab>.bin beside the checkpoint). */
  tokenizer?: string;
  /** Name for result rows (default: the file's base name). */
  name?: string;
}

/** The tokenizer file for a checkpoint: the given one, else tokenizer.bin or tok<vocab>.bin beside it. */
export function findLlama2cTokenizer(file: string, vocabSize: number, given?: string): string {
  if (given) return given;
  const dir = path.dirname(file);
  for (const cand of ['tokenizer.bin', `tok${vocabSize}.bin`]) {
    const p = path.join(dir, cand);
    if (existsSync(p)) return p;
  }
  throw new Error(`${file}: no tokenizer.bin or tok${vocabSize}.bin beside the checkpoint (pass --tokenizer)`);
}

/** Loads a llama2.c checkpoint and its tokenizer as a kit Model. */
export function loadLlama2c(file: string, opts: Llama2cLoadOptions = {}): Model {
  const h = readLlama2cHeader(file);
  const config = configFromHf(llama2cHfConfig(h), file);
  const tokenizer = Llama2cTokenizer.fromFile(findLlama2cTokenizer(file, h.vocabSize, opts.tokenizer), h.vocabSize);
  const sources = llama2cSources(file, h, config);
  const { weights, splitWeights } = uploadSources(sources, opts);
  return {
    name: opts.name ?? path.basename(file).replace(/\.bin$/, ''),
    family: 'llama',
    config,
    weights,
    splitWeights,
    tokenizer,
    source: path.resolve(file),
  };
}
