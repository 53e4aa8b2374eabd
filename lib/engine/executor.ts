// The inference executor (DESIGN §2): a forward planned once per model. Executor.create sizes and
// allocates every buffer (activations for maxTokens tokens, logits for maxScoreRows rows, the KV
// store), compiles every pipeline and builds every bind group; a step then writes a few small
// metadata buffers, records one compute pass and submits it: no allocation, no host round trip
// inside it. Weights are the model's own tensors (borrowed, never copied); the executor owns the
// inference state (activation scratch, KV cache, rope tables) and frees it in dispose().
//
// A step is a packed batch of ragged sequences (no padding): token t has an id, a position and the
// KV-store row of its sequence's position 0. Without a cache (scoring), the keys and values of a
// layer live in a per-step scratch shared by the layers, at the token's own row; with a cache
// (generation) each layer has [slots × length] rows and a sequence owns a slot.
//
// Supported: LLaMA (RMSNorm, RoPE incl. scaling tables, SwiGLU, GQA, per-block widths of pruned
// models, tied or untied head, row-split embedding/head, Qwen2's q/k/v biases), GLM (one fused
// q|k|v projection that the RoPE kernel splits, RoPE on half of each head in interleaved pairs, one
// fused gate|up projection and a split SwiGLU) and OPT (pre-LayerNorm, learned positions, ReLU, biases); dense fp32 weights (sparse ones are dense with zeros); activation fake
// quantization per token or per tensor with static scales (SmoothQuant W8A8 models); and W8A8
// packed linears (InferenceModel.packedLinears of kind 'w8a8', per-token INT8 activations): the input is
// quantized to INT8 codes once per distinct input (q, k and v share it) and the INT8 GEMM of
// lib/kernels/w8a8.ts (tensor cores where the device has INT8 subgroup matrices, else dot4)
// dequantizes in its epilogue. Anything else (weight-only packed linears, OPT project_in/out or
// post-LayerNorm, GELU, dynamic per-tensor activation scales) is an error naming it, raised
// before any work.
import type * as tf from '@tensorflow/tfjs';
import { ARCHS, fusedQkv, linearName } from '../models/arch';
import { ropeInvFreq } from '../models/transformer';
import type { InferenceModel } from './inference';
import { registerAttentionBytes } from '../kernels/attention';
import type { ModelConfig } from '../models/types';
import { blockWidths, hasFinalNorm } from '../models/weights';
import { actQuantKernel } from './act-quant';
import { flushTfjs } from '../kernels/gpu';
import { isPerTokenInt8, type PackedW8A8 } from '../kernels/packed-linear';
import { chooseInt8Tile, int8ActQuantSource, int8GemmKernel, int8GemvKernel, INT8_GEMV_MAX_ROWS, int8PathFor, INT8_AUTO, INT8_TILES, tileSharedBytes, type Int8Path, type Int8TileName } from '../kernels/w8a8';
import { Arena, borrow, engineDevice, Program, spill, type Buf, type DispatchSpec } from './gpu';
import { StepTimer, type KernelTimes } from '../kernels/timing';
import {
  attentionKernel,
  attnMergeKernel,
  BLOCK_WORDS,
  embedKernel,
  GEMM_TILES,
  gemmKernel,
  gemmSplitReduceKernel,
  GEMV_MAX_ROWS,
  gemvGroups,
  gemvKernel,
  normKernel,
  pickKernel,
  ropeKvKernel,
  swigluSplitKernel,
  type RopeLayout,
  rowStatsKernel,
  splitChunk,
  type AttnTile,
  type GemmTile,
  REGISTER_ATTN_TILE,
  epilogueCode,
  type Epilogue,
} from './kernels';

export interface ExecutorOptions {
  /** Tokens one step may hold (sum of its sequences' new tokens); null: sized from the model and the device. */
  maxTokens: number | null;
  /** The most tokens any step will need (a scorer's whole request set, say): the default maxTokens is cut to it. */
  fitTokens: number | null;
  /** Positions whose logits one step computes; null: min(maxTokens, what fits maxLogitBytes). */
  maxScoreRows: number | null;
  /** Scored (position, token) pairs per step: maxScoreRows × this. */
  itemsPerRow: number;
  /** Bytes of the [rows, vocab] logits buffer at most. */
  maxLogitBytes: number;
  /** Bytes of the activation buffers at most (together). */
  maxActivationBytes: number;
  /** A KV cache for generation: `slots` sequences of up to `length` positions; null: scoring only. */
  cache: { slots: number; length: number } | null;
  /** INT8 GEMM of W8A8 packed linears (lib/kernels/w8a8.ts Int8Path): 'auto' = subgroup matrices where the device has them, else dot4. */
  int8Path: Int8Path | 'auto';
  /** The subgroup-matrix INT8 tiling of every W8A8 GEMM, or 'auto' (chooseInt8Tile per step shape); the default can be set with LLMCB_EXECUTOR_INT8_TILE. */
  int8Tile: Int8TileName | 'auto';
  /** The fp32 GEMM tilings: a GEMM_FAMILIES name or one spelled out (gemmFamily); the default can be set with LLMCB_EXECUTOR_GEMM. */
  gemm: GemmFamily | string;
  /** Most K chunks of a split-K fp32 GEMM (gemmSplits); 1 = never split. Default from LLMCB_EXECUTOR_SPLIT_K. */
  splitK: number;
  /** Attention kernel: 'registers' = the register-blocked one where it applies (attnTile), else and with 'scalar' the scalar one. Default from LLMCB_EXECUTOR_ATTENTION. */
  attention: 'registers' | 'scalar';
}

/** The executor's kernels in groups by name, for a profile's report (KernelTimes.report); the LM head is also counted in the fp32 GEMMs. */
export function executorKernelGroups(vocab: number): [string, RegExp][] {
  return [
    ['attention', /^attn/],
    ['fp32 GEMMs (split-K reduce included)', /^gemm/],
    [`LM head (N = ${vocab})`, new RegExp(`^(gemm|gemmv|gemv)-\\d+x${vocab}-|^gemm-reduce-${vocab}-`)],
    ['fp32 GEMVs (decode)', /^gemv-/],
    ['INT8 GEMMs and GEMV', /^int8-/],
    ['activation quantization', /act-quant/],
    ['norms, RoPE/KV, embedding, SwiGLU', /^(norm|rope|embed|swiglu)/],
    ['row stats and picks', /^(row-stats|pick)/],
  ];
}

export const EXECUTOR_DEFAULTS: ExecutorOptions = {
  maxTokens: null, // sized from the model: see planSizes
  fitTokens: null, // no cut
  maxScoreRows: null,
  itemsPerRow: 4, // MMLU-style rows score 4 letters; continuation rows score 1
  maxLogitBytes: 1 << 30, // 1 GiB of logits per step
  maxActivationBytes: 2 ** 31, // 2 GiB of per-step activations
  cache: null,
  int8Path: 'auto',
  int8Tile: (process.env.LLMCB_EXECUTOR_INT8_TILE as Int8TileName | undefined) ?? 'auto', // see INT8_AUTO
  gemm: process.env.LLMCB_EXECUTOR_GEMM ?? 'vectorC', // see GEMM_FAMILIES
  splitK: Number(process.env.LLMCB_EXECUTOR_SPLIT_K ?? 8), // see gemmSplits
  attention: (process.env.LLMCB_EXECUTOR_ATTENTION as ExecutorOptions['attention'] | undefined) ?? 'registers',
};

/** What one step runs: its token, block, score-row and item counts and how attention splits. */
export interface StepShape {
  tokens: number;
  blocks: number;
  splits: number;
  tilesPerSplit: number;
  scoreRows: number;
  items: number;
  /** Sampling (Gumbel-max with the noise buffer) instead of plain argmax, and its temperature. */
  sampled: boolean;
  temp: number;
}

/**
 * One sequence of a step: its new tokens, their first position and the KV row of its position 0.
 * Without a cache a sequence may continue a shared `prefix`: the keys of its positions below
 * prefix.length are those of KV rows prefix.kvBase + p (an earlier sequence of the same step, the
 * context several continuations share); its own tokens then start at position prefix.length.
 */
export interface StepSeq {
  ids: ArrayLike<number>;
  pos0: number;
  kvBase: number;
  prefix?: { kvBase: number; length: number };
}

/** Step inputs: the sequences, which token rows to score (indices into the packed tokens) and which (row, token) items. */
export interface StepInput {
  seqs: StepSeq[];
  scoreRows: number[];
  /** (score row, token) pairs, flat: row₀, token₀, row₁, token₁, … (a scorer makes millions: no object each). */
  items: number[];
  /** Gumbel noise [scoreRows, V] and the temperature, for sampling. */
  sample?: { noise: Float32Array; temperature: number };
}

export interface StepOutput {
  logprobs: Float32Array; // per item
  greedy: Uint8Array; // per item: its token is the row's argmax
  argmax: Uint32Array; // per score row
}

/**
 * The executor's fp32 GEMM tilings, in families: an M×N output takes the first tiling whose
 * workgroups number at least its threshold (about one or two per SM of an H100/H200's 132).
 * From scripts/bench-engine-gemm.ts on the H200 (data/bench/engine-gemm.csv at ae086d5):
 *   scalar: 128×128 reaches 29.8–32.3 TFLOP/s once it has ≥ 256 workgroups but 12 at 64 (512×2048
 *     outputs), where 128×64 gives 21; narrow outputs (512×512) want 64×64 or smaller;
 *   vector (vec4 loads from workgroup memory, GemmTile.vec): 128×64 gives 31.6–34.4
 *     at the scoring shapes and 24.7 at 512×2048, 64×64 the narrow ones (8.7 at 512×512); the
 *     128×128 vector tiling is slower than the scalar one (register pressure) and not used;
 *   since c2e236d the 128×64 tiling prefetches the next K slice into registers (tallVP): on the
 *     H100 the 1.2B prefill went from 8,697 to 11,031 tok/s (bench-forward, both in one run);
 *   vectorC (the default, from the rows at 5ca72dd): tallVPC, tallVP with its staged rows padded so
 *     that the transposed stores hit 32 banks (GemmTile.pad): on the H100 the 1.2B prefill went from
 *     11,015 to 12,693 tok/s (both in one run, rows 5ca72dd).
 */
export const GEMM_FAMILIES = {
  // [tiling, the workgroups it needs at least], largest first
  scalar: [['large', 256], ['tall', 128], ['medium', 64], ['small', 0]],
  vector: [['tallVP', 128], ['mediumV', 0]],
  vectorC: [['tallVPC', 128], ['mediumV', 0]], // the default: tallVP with conflict-free staging (GemmTile.pad)
} as const satisfies Record<string, GemmTiles>;
export type GemmFamily = keyof typeof GEMM_FAMILIES;
type GemmTileName = keyof typeof GEMM_TILES;
type GemmTiles = readonly (readonly [GemmTileName, number])[];

/**
 * The tilings of a family: a GEMM_FAMILIES name, or spelled out for measurements as 'tiling:least
 * workgroups' entries joined by '+', largest first, the last taking every shape (':0'), e.g.
 * 'largeV:256+tallVPC:128+mediumV:0'.
 */
export function gemmFamily(spec: string): GemmTiles {
  if (spec in GEMM_FAMILIES) return GEMM_FAMILIES[spec as GemmFamily];
  const bad = (why: string) => new Error(`executor: GEMM tilings '${spec}' (LLMCB_EXECUTOR_GEMM or options.gemm): ${why}`);
  const tiles = spec.split('+').map((entry) => {
    const m = /^(\w+):(\d+)$/.exec(entry);
    if (!m) throw bad(`'${entry}' is neither a family (${Object.keys(GEMM_FAMILIES).join(', ')}) nor 'tiling:workgroups'`);
    if (!(m[1] in GEMM_TILES)) throw bad(`unknown tiling '${m[1]}' (${Object.keys(GEMM_TILES).join(', ')})`);
    return [m[1] as GemmTileName, Number(m[2])] as const;
  });
  if (tiles.at(-1)![1] !== 0) throw bad('the last tiling must take every shape (:0)');
  return tiles;
}

function gemmTileFor(tiles: GemmTiles, M: number, N: number): GemmTileName {
  for (const [name, min] of tiles) {
    const t = GEMM_TILES[name];
    if (Math.ceil(M / t.BM) * Math.ceil(N / t.BN) >= min) return name;
  }
  return 'small';
}

/** Workgroups a split-K GEMM aims at (2 per SM of an H100/H200), and the fewest K columns of a chunk. */
const SPLIT_TARGET_WORKGROUPS = 264;
const SPLIT_MIN_CHUNK = 128;

/**
 * K chunks for an M×N×K GEMM with tiling t: doubled (up to `most`) while the grid stays within
 * SPLIT_TARGET_WORKGROUPS and each chunk keeps ≥ SPLIT_MIN_CHUNK columns. A 512-token prefill's
 * narrow k/v projections (N = 256: 32 tiles of 64×64) get 8 chunks; outputs that already fill the
 * GPU (scoring, the LM head) get 1.
 */
export function gemmSplits(M: number, N: number, K: number, t: GemmTile, most: number): number {
  const tiles = Math.ceil(M / t.BM) * Math.ceil(N / t.BN);
  let s = 1;
  while (s * 2 <= most && tiles * s * 2 <= SPLIT_TARGET_WORKGROUPS && splitChunk(K, t.BK, s * 2) >= SPLIT_MIN_CHUNK) s *= 2;
  return s;
}

// Split keys until about this many attention workgroups run (2 per SM on an H100/H200). A 512-token
// prefill of the 1.2B model (64 blocks × 8 KV heads) is not split; splitting it 3 or 4 ways (targets
// 1056, 2112) gave 2.16 and 2.23 ms of attention a step against 2.24 ms on the H100 (a4711c5): its
// long causal blocks do not hold the kernel up.
const ATTN_TARGET_WORKGROUPS = 264;
const MAX_SPLITS = 64;

/** Why the executor has no kernels for this model family (Mistral's sliding window), or null: such
 * models score on tfjs (lib/eval/model-scorer.ts), where every family runs. */
export function executorFamilyUnsupported(c: ModelConfig): string | null {
  if (c.slidingWindow != null) return `sliding-window attention (sliding_window ${c.slidingWindow}): the attention kernel applies the causal mask only`;
  return null;
}

/** Why the executor cannot run this model, or null when it can. */
export function executorUnsupported(model: InferenceModel): string | null {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const family = executorFamilyUnsupported(c);
  if (family) return family;
  for (const [name, p] of model.packedLinears ?? []) {
    if (p.kind !== 'w8a8') return `weight-only packed linears (${name} …): evaluate the dequantized weights`;
    if (!isPerTokenInt8(model.actQuant)) return `W8A8 packed linear ${name} without per-token INT8 activation quantization`;
  }
  if (c.arch === 'opt' && !c.doLayerNormBefore) return 'OPT with post-LayerNorm (do_layer_norm_before = false)';
  if (!hasFinalNorm(c)) return 'a model without a final norm';
  if (spec.projectIn && model.weights.has(spec.projectIn)) return 'OPT project_in/project_out (word_embed_proj_dim ≠ hidden_size)';
  if (c.arch === 'llama' && c.activation !== 'silu') return `LLaMA with activation '${c.activation}'`;
  if (c.arch === 'opt' && c.activation !== 'relu') return `OPT with activation '${c.activation}'`;
  if (c.headDim % 2 !== 0) return `odd head dim ${c.headDim}`;
  const a = model.actQuant;
  if (a && a.granularity === 'per_tensor' && !a.staticAbsmax) return 'dynamic per-tensor activation quantization (per token or static per-tensor scales are supported)';
  if (c.arch === 'opt' && model.splitWeights?.size) return 'OPT with a row-split embedding';
  return null;
}

interface Sizes {
  maxTokens: number;
  maxScoreRows: number;
  maxItems: number;
  maxBlocks: number;
}

/** Per-token activation floats of the widest block (hidden ×2, q, k, v, attention out, MLP inner, act-quant scratch, INT8 codes and scale). */
function floatsPerToken(model: InferenceModel): number {
  const c = model.config;
  let w = 0;
  for (let i = 0; i < c.numLayers; i++) {
    const b = blockWidths(c, i);
    const qkv = (b.numHeads + 2 * b.numKvHeads) * c.headDim;
    const widest = Math.max(c.hiddenSize, b.intermediateSize, b.numHeads * c.headDim);
    const int8 = widest / 4 + 5; // INT8 codes (4 a word, padded to 16 bytes) and the scale
    w = Math.max(w, 2 * c.hiddenSize + qkv + b.numHeads * c.headDim + b.intermediateSize + 2 * b.numKvHeads * c.headDim + widest + int8);
  }
  return w;
}

function planSizes(model: InferenceModel, o: ExecutorOptions, device: GPUDevice): Sizes {
  const c = model.config;
  const binding = device.limits.maxStorageBufferBindingSize;
  let widest = c.hiddenSize;
  for (let i = 0; i < c.numLayers; i++) {
    const b = blockWidths(c, i);
    widest = Math.max(widest, b.intermediateSize, b.numHeads * c.headDim);
  }
  const maxTokens = o.maxTokens ?? Math.max(1, Math.min(32768, o.fitTokens ?? Infinity, Math.floor(binding / (4 * widest)), Math.floor(o.maxActivationBytes / (4 * floatsPerToken(model)))));
  if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new Error(`executor: maxTokens ${maxTokens} must be a positive integer`);
  if (4 * maxTokens * widest > binding) throw new Error(`executor: maxTokens ${maxTokens} × width ${widest} floats exceed one storage binding (${binding} B)`);
  const byLogits = Math.floor(Math.min(binding, o.maxLogitBytes) / (4 * c.vocabSize));
  if (byLogits < 1) throw new Error(`executor: one row of ${c.vocabSize} logits exceeds maxLogitBytes / the binding limit`);
  const maxScoreRows = o.maxScoreRows ?? Math.min(maxTokens, byLogits);
  if (!(Number.isInteger(maxScoreRows) && maxScoreRows >= 1 && maxScoreRows <= byLogits)) throw new Error(`executor: maxScoreRows ${maxScoreRows} must be in [1, ${byLogits}]`);
  return { maxTokens, maxScoreRows, maxItems: maxScoreRows * o.itemsPerRow, maxBlocks: Math.min(maxTokens, device.limits.maxComputeWorkgroupsPerDimension) };
}

/** Workgroup memory of the attention kernel with R query rows and BKV staged keys (lib/engine/kernels.ts attentionKernel). */
const attnBytes = (R: number, BKV: number, hd: number) => 4 * (R * hd + BKV * (hd + 1) + R * (BKV + 1) + 3 * R);

/**
 * The attention tiling for a head dim and the blocks' group sizes (rep = H / KV; the first block's
 * sets the tokens per attention block) on this device: the register-blocked kernel when the head
 * dim is a multiple of 32, rep divides 32, no block has a larger rep, and its workgroup memory fits
 * (and `registers` allows it); else the scalar kernel (workgroup memory bound).
 */
function attnTile(hd: number, reps: number[], device: GPUDevice, registers: boolean): AttnTile {
  const lim = device.limits.maxComputeWorkgroupStorageSize;
  const rep = reps[0];
  if (registers && hd % 32 === 0 && 32 % rep === 0 && reps.every((r) => r <= rep) && registerAttentionBytes(hd) <= lim) return REGISTER_ATTN_TILE;
  const bytes = (R: number, BKV: number) => attnBytes(R, BKV, hd);
  let rows = Math.max(rep, 16 - (16 % rep));
  let BKV = 32;
  while (bytes(rows, BKV) > lim && BKV > 8) BKV /= 2;
  while (bytes(rows, BKV) > lim && rows > rep) rows -= rep;
  if (bytes(rows, BKV) > lim) throw new Error(`executor: attention with head dim ${hd} and ${rep} heads per KV head needs ${bytes(rows, BKV)} B of workgroup memory, the device has ${lim}`);
  return { rows, BKV, WG: 128 };
}

export class Executor {
  readonly sizes: Sizes;
  private readonly arena: Arena;
  private readonly program: Program<StepShape>;
  private readonly io: { ids: Buf; pos: Buf; kvRow: Buf; blocks: Buf; scoreRows: Buf; items: Buf; noise: Buf | null; lp: Buf; greedy: Buf; argmax: Buf };
  private readonly readbacks: Buf[] = [];
  private readonly logits: Buf;
  private readonly tokensPerBlock: number;
  private readonly attnKeyTile: number; // keys staged per attention step (BKV)
  /** The attention kernel the plan runs (options.attention where it applies). */
  readonly attentionKernel: 'registers' | 'scalar';
  private readonly kvHeads: number;
  private chain: Promise<void> = Promise.resolve(); // the last step's submission
  private readonly readbackFree: Promise<void>[] = [Promise.resolve(), Promise.resolve()]; // each readback's last read
  private steps = 0;
  private disposed = false;

  private constructor(
    readonly model: InferenceModel,
    readonly options: ExecutorOptions,
  ) {
    const why = executorUnsupported(model);
    if (why) throw new Error(`executor: model '${model.name}' is not supported: ${why}`);
    const device = engineDevice();
    const c = model.config;
    const spec = ARCHS[c.arch];
    const gemmTiles = gemmFamily(options.gemm);
    if (!(Number.isInteger(options.splitK) && options.splitK >= 1)) throw new Error(`executor: splitK must be a positive integer (LLMCB_EXECUTOR_SPLIT_K or options.splitK), got ${options.splitK}`);
    this.sizes = planSizes(model, options, device);
    const { maxTokens, maxScoreRows, maxItems, maxBlocks } = this.sizes;
    if (options.cache) {
      const { slots, length } = options.cache;
      if (!(Number.isInteger(slots) && slots >= 1 && Number.isInteger(length) && length >= 1)) throw new Error(`executor: cache slots ${slots} / length ${length} must be positive integers`);
      if (length > c.maxPositions) throw new Error(`executor: cache length ${length} exceeds the model's context ${c.maxPositions}`);
    }
    const arena = new Arena(device);
    this.arena = arena;
    try {
      const D = c.hiddenSize;
      const hd = c.headDim;
      let maxH = 1;
      let maxKV = 1;
      let maxF = 1;
      for (let i = 0; i < c.numLayers; i++) {
        const b = blockWidths(c, i);
        maxH = Math.max(maxH, b.numHeads);
        maxKV = Math.max(maxKV, b.numKvHeads);
        maxF = Math.max(maxF, b.intermediateSize);
      }
      const reps = Array.from({ length: c.numLayers }, (_, i) => blockWidths(c, i).numHeads / blockWidths(c, i).numKvHeads);
      const rep0 = reps[0];
      if (options.attention !== 'registers' && options.attention !== 'scalar') throw new Error(`executor: attention '${options.attention}' (registers or scalar)`);
      const tile = attnTile(hd, reps, device, options.attention === 'registers');
      this.attnKeyTile = tile.BKV;
      this.attentionKernel = tile.registers ? 'registers' : 'scalar';
      this.tokensPerBlock = Math.max(1, Math.floor(tile.rows / rep0));
      this.kvHeads = maxKV;
      const f32 = 4;
      // --- per-step inputs and outputs ---
      const io = {
        ids: arena.storage('ids', f32 * maxTokens),
        pos: arena.storage('pos', f32 * maxTokens),
        kvRow: arena.storage('kv-row', f32 * maxTokens),
        blocks: arena.storage('blocks', f32 * BLOCK_WORDS * maxBlocks),
        scoreRows: arena.storage('score-rows', f32 * maxScoreRows),
        items: arena.storage('items', f32 * 2 * maxItems),
        noise: null as Buf | null,
        lp: arena.storage('logprobs', f32 * maxItems),
        greedy: arena.storage('greedy', f32 * maxItems),
        argmax: arena.storage('argmax', f32 * maxScoreRows),
      };
      this.io = io;
      // --- activations ---
      const x = arena.storage('x', f32 * maxTokens * D); // [T, D] residual stream
      const h = arena.storage('h', f32 * maxTokens * D); // [T, D] normed
      const q = arena.storage('q', f32 * maxTokens * maxH * hd); // [T, H·hd]
      const kT = arena.storage('k', f32 * maxTokens * maxKV * hd); // [T, KV·hd]
      const vT = arena.storage('v', f32 * maxTokens * maxKV * hd);
      const att = arena.storage('attn', f32 * maxTokens * maxH * hd); // [T, H·hd]
      const ff = arena.storage('ff', f32 * maxTokens * maxF); // [T, F]
      // GLM: the fused projections' outputs before they are split (q|k|v by the RoPE kernel, gate|up by SwiGLU)
      const qkvOut = fusedQkv(c.arch) ? arena.storage('qkv', f32 * maxTokens * (maxH + 2 * maxKV) * hd) : null; // [T, (H + 2·KV)·hd]
      const gateUpOut = spec.mlp.gated && spec.mlp.inputs.length === 1 ? arena.storage('gate-up', f32 * maxTokens * 2 * maxF) : null; // [T, 2F]
      const packed = (model.packedLinears ?? new Map()) as Map<string, PackedW8A8>; // executorUnsupported: W8A8 only
      const aq = model.actQuant ? arena.storage('act-quant', f32 * maxTokens * Math.max(D, maxF, maxH * hd)) : null;
      const maxKWords = Math.max(0, ...[...packed.values()].map((p) => p.kWords));
      const q8 = maxKWords ? { codes: arena.storage('int8-codes', 4 * maxTokens * maxKWords), scales: arena.storage('int8-scales', f32 * maxTokens) } : null; // [T, kWords], [T]
      const hs = arena.storage('head-in', f32 * maxScoreRows * D); // [R, D]
      const logits = arena.storage('logits', f32 * maxScoreRows * c.vocabSize); // [R, V]
      this.logits = logits;
      const stats = arena.storage('row-stats', f32 * 2 * maxScoreRows);
      let attnRowsMax = tile.rows;
      for (let i = 0; i < c.numLayers; i++) {
        const b = blockWidths(c, i);
        attnRowsMax = Math.max(attnRowsMax, this.tokensPerBlock * (b.numHeads / b.numKvHeads));
      }
      const partRows = 2 * ATTN_TARGET_WORKGROUPS * attnRowsMax; // splits · blocks · KV heads < 2 · target
      const po = arena.storage('attn-partials', f32 * partRows * hd);
      // Split-K GEMM partials [splits, M, N]: splits · tiles ≤ SPLIT_TARGET_WORKGROUPS, so at most that many full tiles.
      const maxTile = Math.max(...gemmTiles.map(([n]) => GEMM_TILES[n].BM * GEMM_TILES[n].BN));
      const gemmParts = options.splitK > 1 ? arena.storage('gemm-partials', f32 * SPLIT_TARGET_WORKGROUPS * maxTile) : null;
      const ml = arena.storage('attn-ml', f32 * 2 * partRows);
      // --- KV store ---
      const kvRows = options.cache ? options.cache.slots * options.cache.length : maxTokens;
      const store = (i: number): { k: Buf; v: Buf } => {
        if (!options.cache && i > 0) return stores[0];
        const kvh = options.cache ? blockWidths(c, i).numKvHeads : maxKV;
        return { k: arena.storage(`k-store-${i}`, f32 * kvRows * kvh * hd), v: arena.storage(`v-store-${i}`, f32 * kvRows * kvh * hd) };
      };
      const stores: { k: Buf; v: Buf }[] = [];
      for (let i = 0; i < c.numLayers; i++) stores.push(store(i));
      // --- RoPE tables [P, rotated pairs] (fp32 angles as transformers) ---
      let rope: { cos: Buf; sin: Buf; layout: RopeLayout } | null = null;
      if (spec.rope) {
        const inv = ropeInvFreq(c);
        const half = inv.length; // hd/2, or GLM's rotated quarter
        const P = options.cache ? options.cache.length : c.maxPositions;
        const cos = new Float32Array(P * half);
        const sin = new Float32Array(P * half);
        for (let p = 0; p < P; p++) {
          for (let j = 0; j < half; j++) {
            const a = Math.fround(p * inv[j]);
            cos[p * half + j] = Math.cos(a);
            sin[p * half + j] = Math.sin(a);
          }
        }
        const layout: RopeLayout = { pairs: spec.rope.layout === 'halves' ? 'halves' : 'interleaved', rotated: half, fused: fusedQkv(c.arch) };
        rope = { cos: arena.upload('rope-cos', cos), sin: arena.upload('rope-sin', sin), layout };
      }
      const w = (name: string): Buf => {
        const t = model.weights.get(name);
        if (!t) throw new Error(`executor: model '${model.name}' has no weight '${name}'`);
        return borrow(t, name);
      };
      const maybe = (name: string): Buf | null => (model.weights.has(name) ? w(name) : null);
      const norm = spec.norm;
      const eps = c.normEps;
      const specs: DispatchSpec<StepShape>[] = [];
      const tokens = (s: StepShape) => s.tokens;
      // --- embedding ---
      const table = model.splitWeights?.get(spec.embedTokens) ?? [model.weights.get(spec.embedTokens)!];
      if (!table[0]) throw new Error(`executor: model '${model.name}' has no weight '${spec.embedTokens}'`);
      let r0 = 0;
      for (const [bi, blockT] of table.entries()) {
        const rows = blockT.shape[0];
        const start = r0;
        const positions = c.arch === 'opt';
        specs.push({
          kernel: embedKernel(D, positions),
          buffers: [x, io.ids, borrow(blockT, `${spec.embedTokens}[${bi}]`), ...(positions ? [io.pos, w(spec.embedPositions!)] : [])],
          params: (s) => ({ n: s.tokens, rowStart: start, rows }),
          workgroups: (s) => spill(Math.ceil((s.tokens * D) / 256), device),
        });
        r0 += rows;
      }
      // --- blocks ---
      /** The last activation quantization recorded: the linears right after it on the same input reuse it. */
      let lastQuant: { input: Buf; kind: 'int8' | 'fake'; end: number } | null = null;
      const reuse = (input: Buf, kind: 'int8' | 'fake') => lastQuant?.input === input && lastQuant.kind === kind && lastQuant.end === specs.length;
      const act = model.actQuant ?? null;
      /** The input a dense linear reads: its activation-quantized copy when the model quantizes activations. */
      const fakeQuantized = (quant: { block: number; short: string }, input: Buf, K: number): Buf => {
        if (!act || !aq) return input;
        const staticMax = act.granularity === 'per_tensor' ? act.staticAbsmax![`${quant.block}.${quant.short}`] : undefined;
        if (act.granularity === 'per_tensor' && staticMax === undefined) throw new Error(`executor: static activation quantization has no calibrated scale for linear '${quant.block}.${quant.short}'`);
        if (staticMax === undefined && reuse(input, 'fake')) return aq; // per-token scales depend on the input only
        specs.push({
          kernel: actQuantKernel(K, act.bits, staticMax ?? null),
          buffers: [aq, input],
          params: (s) => ({ n: s.tokens }),
          workgroups: (s) => spill(s.tokens, device),
        });
        lastQuant = { input, kind: 'fake', end: specs.length };
        return aq;
      };
      const int8Path = packed.size ? int8PathFor(options.int8Path) : null;
      // The subgroup-matrix tilings of INT8_AUTO (or the one options.int8Tile names) that fit the device's workgroup memory; chooseInt8Tile picks per step among them.
      if (options.int8Tile !== 'auto' && !(options.int8Tile in INT8_TILES)) throw new Error(`executor: unknown INT8 tiling '${options.int8Tile}' (auto, ${Object.keys(INT8_TILES).join(', ')})`);
      const wantedTiles: Int8TileName[] = options.int8Tile === 'auto' ? [...new Set([INT8_AUTO.large, INT8_AUTO.small])] : [options.int8Tile];
      const int8Tiles = wantedTiles.filter((t) => tileSharedBytes(INT8_TILES[t]) <= device.limits.maxComputeWorkgroupStorageSize);
      if (int8Path && int8Path !== 'dot4' && int8Tiles.length === 0) throw new Error(`executor: no INT8 subgroup-matrix tiling of ${wantedTiles.join(', ')} fits the device's ${device.limits.maxComputeWorkgroupStorageSize} B of workgroup memory`);
      const int8TileFor = (M: number, N: number) => (int8Tiles.includes(chooseInt8Tile(M, N)) ? chooseInt8Tile(M, N) : int8Tiles[0]);
      /** W8A8: INT8 codes of the input (once per input), then the INT8 GEMM with the linear's epilogue. */
      const int8Linear = (name: string, p: PackedW8A8, input: Buf, output: Buf, K: number, N: number, e: Epilogue, rows: (s: StepShape) => number, ldy: number, colOff: number): void => {
        if (p.inFeatures !== K || p.outFeatures !== N) throw new Error(`executor: packed '${name}' is [${p.outFeatures}, ${p.inFeatures}], the block needs [${N}, ${K}]`);
        if (!reuse(input, 'int8')) {
          specs.push({
            kernel: int8ActQuantSource(K),
            buffers: [q8!.codes, q8!.scales, input],
            params: (s) => ({ M: s.tokens, K, kWords: p.kWords }),
            workgroups: (s) => spill(s.tokens, device),
          });
        }
        const b = maybe(name.replace(/\.weight$/, '.bias'));
        const groups = p.groupSize !== -1;
        const buffers = [output, q8!.codes, borrow(p.codes, `${name}:codes`), q8!.scales, borrow(p.scales, `${name}:scales`), ...(b ? [b] : [])];
        const write = (m: string, n: string, v: string) => epilogueCode(e, `${m} * params.ldy + params.colOff + ${n}`, v);
        // Named with the linear's shape, so that a profile tells the linears apart (the pipeline is shared: its WGSL is the same).
        const gemm = (tile: Int8TileName) => {
          const k = int8GemmKernel({ path: int8Path!, tile, groups, bias: !!b, write, extra: { ldy: 'u32', colOff: 'u32' } });
          return { ...k, name: `${k.name}-${K}x${N}` };
        };
        const params = (s: StepShape) => ({ M: rows(s), N, kWords: p.kWords, G: p.scales.shape[1], groupWords: groups ? p.groupSize / 4 : p.kWords, ldy, colOff });
        const grid = (g: number | [number, number, number]) => (typeof g === 'number' ? spill(g, device) : g);
        // Decode steps (few rows, per-channel scales) take the INT8 GEMV: the GEMM's tiles would leave most of the GPU idle.
        const gemv = groups ? null : int8GemvKernel({ bias: !!b, write, extra: { ldy: 'u32', colOff: 'u32' } });
        const many = (s: StepShape) => !gemv || rows(s) > INT8_GEMV_MAX_ROWS;
        if (gemv) specs.push({ kernel: gemv, buffers, params, workgroups: (s) => (many(s) ? null : spill(gemv.workgroups(N), device)) });
        if (int8Path === 'dot4' || groups) {
          const k = gemm(int8Tiles[0]);
          specs.push({ kernel: k, buffers, params, workgroups: (s) => (many(s) ? grid(k.workgroups(rows(s), N)) : null) });
        } else {
          for (const tile of int8Tiles) {
            const k = gemm(tile);
            specs.push({ kernel: k, buffers, params, workgroups: (s) => (many(s) && int8TileFor(rows(s), N) === tile ? grid(k.workgroups(rows(s), N)) : null) });
          }
        }
        lastQuant = output === input ? null : { input, kind: 'int8', end: specs.length };
      };
      /**
       * y[:, colOff : colOff + N] (row stride ldy) ⟵e⟵ input [rows, K] · W[N, K]ᵀ (+ bias): the W8A8
       * kernels when the weight is packed, else the fp32 GEMV/GEMM (on the fake-quantized input when
       * `quant` names a block linear of a model that quantizes activations).
       */
      const linear = (name: string, input: Buf, output: Buf, K: number, N: number, e: Epilogue, rows: (s: StepShape) => number, o: { quant?: { block: number; short: string }; ldy?: number; colOff?: number; weight?: Buf } = {}): void => {
        const ldy = o.ldy ?? N;
        const colOff = o.colOff ?? 0;
        const p = packed.get(name);
        if (p) return int8Linear(name, p, input, output, K, N, e, rows, ldy, colOff);
        const x = o.quant ? fakeQuantized(o.quant, input, K) : input;
        const quantEnd = specs.length;
        const W = o.weight ?? w(name);
        const b = maybe(name.replace(/\.weight$/, '.bias'));
        const buffers = [output, x, W, ...(b ? [b] : [])];
        const params = (s: StepShape) => ({ M: rows(s), ldy, colOff });
        specs.push({ kernel: gemvKernel(K, N, e, !!b), buffers, params, workgroups: (s) => (rows(s) <= GEMV_MAX_ROWS ? spill(gemvGroups(N), device) : null) });
        for (const [name] of gemmTiles) {
          const t = GEMM_TILES[name];
          // This tiling with `splits` K chunks runs when the step's shape picks both.
          const picks = (s: StepShape, splits: number) => rows(s) > GEMV_MAX_ROWS && gemmTileFor(gemmTiles, rows(s), N) === name && gemmSplits(rows(s), N, K, t, options.splitK) === splits;
          const grid = (s: StepShape, splits: number): [number, number, number] => [Math.ceil(N / t.BN), Math.ceil(rows(s) / t.BM), splits];
          specs.push({ kernel: gemmKernel(K, N, t, e, !!b), buffers, params, workgroups: (s) => (picks(s, 1) ? grid(s, 1) : null) });
          for (let splits = 2; gemmParts && splits <= options.splitK; splits *= 2) {
            const n = splits;
            specs.push({ kernel: gemmKernel(K, N, t, e, false, n), buffers: [gemmParts, x, W], params, workgroups: (s) => (picks(s, n) ? grid(s, n) : null) });
            specs.push({ kernel: gemmSplitReduceKernel(N, n, e, !!b), buffers: [output, gemmParts, ...(b ? [b] : [])], params, workgroups: (s) => (picks(s, n) ? spill(Math.ceil((rows(s) * N) / 256), device) : null) });
          }
        }
        if (lastQuant?.end === quantEnd && output !== lastQuant.input) lastQuant.end = specs.length; // the next linear on the same input may reuse its quantization
      };
      for (let i = 0; i < c.numLayers; i++) {
        const bw = blockWidths(c, i);
        const H = bw.numHeads;
        const KVH = bw.numKvHeads;
        const F = bw.intermediateSize;
        const p = spec.blockPrefix(i);
        const lin = (short: string) => linearName(c.arch, i, short);
        const normInto = (prefix: string) => {
          specs.push({
            kernel: normKernel(D, norm, eps, false),
            buffers: [h, x, w(`${prefix}.weight`), ...(norm === 'layer' ? [w(`${prefix}.bias`)] : [])],
            params: (s) => ({ n: s.tokens }),
            workgroups: (s) => spill(s.tokens, device),
          });
        };
        normInto(`${p}${spec.norms.attn}`);
        const a = spec.attention;
        // q, k, v each read the normed input (quantized per linear when activations are)
        const quant = (short: string) => ({ quant: { block: i, short } });
        // GLM: one q|k|v projection, which the RoPE kernel reads for all three
        if (qkvOut) linear(lin(a.q), h, qkvOut, D, (H + 2 * KVH) * hd, 'store', tokens, quant(a.q));
        else {
          linear(lin(a.q), h, q, D, H * hd, 'store', tokens, quant(a.q));
          linear(lin(a.k), h, kT, D, KVH * hd, 'store', tokens, quant(a.k));
          linear(lin(a.v), h, vT, D, KVH * hd, 'store', tokens, quant(a.v));
        }
        const st = stores[i];
        specs.push({
          kernel: ropeKvKernel(H, KVH, hd, !!rope, rope?.layout),
          buffers: [st.k, st.v, qkvOut ?? kT, qkvOut ?? vT, io.pos, io.kvRow, ...(rope ? [q, rope.cos, rope.sin] : [])],
          params: (s) => ({ n: s.tokens }),
          workgroups: (s) => spill(Math.ceil((s.tokens * ((rope ? H : 0) + 2 * KVH) * (hd / 2)) / 256), device),
        });
        const rep = H / KVH;
        const blockTile: AttnTile = tile.registers ? tile : { ...tile, rows: Math.max(rep, this.tokensPerBlock * rep) };
        const need = blockTile.registers ? registerAttentionBytes(hd) : attnBytes(blockTile.rows, blockTile.BKV, hd);
        if (need > device.limits.maxComputeWorkgroupStorageSize) throw new Error(`executor: block ${i}'s attention (${rep} heads per KV head) needs ${need} B of workgroup memory, the device has ${device.limits.maxComputeWorkgroupStorageSize}`);
        const attnParams = (s: StepShape) => ({ nb: s.blocks, tilesPerSplit: s.tilesPerSplit, scale: 1 / Math.sqrt(hd) });
        specs.push({
          kernel: attentionKernel(H, KVH, hd, blockTile, false),
          buffers: [att, q, st.k, st.v, io.blocks],
          params: attnParams,
          workgroups: (s) => (s.splits === 1 ? [s.blocks, KVH, 1] : null),
        });
        specs.push({
          kernel: attentionKernel(H, KVH, hd, blockTile, true),
          buffers: [po, ml, q, st.k, st.v, io.blocks],
          params: attnParams,
          workgroups: (s) => (s.splits > 1 ? [s.blocks, KVH, s.splits] : null),
        });
        specs.push({
          kernel: attnMergeKernel(H, KVH, hd, blockTile.rows),
          buffers: [att, po, ml, io.blocks],
          params: (s) => ({ nb: s.blocks, splits: s.splits }),
          workgroups: (s) => (s.splits > 1 ? spill(Math.ceil((s.blocks * KVH * blockTile.rows * hd) / 64), device) : null),
        });
        linear(lin(a.o), att, x, H * hd, D, 'add', tokens, quant(a.o));
        normInto(`${p}${spec.norms.mlp}`);
        if (gateUpOut) {
          // GLM: one gate|up projection [T, 2F], then silu(gate) · up
          const gateUp = spec.mlp.inputs[0];
          linear(lin(gateUp), h, gateUpOut, D, 2 * F, 'store', tokens, quant(gateUp));
          specs.push({ kernel: swigluSplitKernel(F), buffers: [ff, gateUpOut], params: (s) => ({ n: s.tokens }), workgroups: (s) => spill(Math.ceil((s.tokens * F) / 256), device) });
        } else if (spec.mlp.gated) {
          const [gate, up] = spec.mlp.inputs;
          linear(lin(gate), h, ff, D, F, 'store', tokens, quant(gate));
          linear(lin(up), h, ff, D, F, 'silu-mul', tokens, quant(up));
        } else {
          const fc1 = spec.mlp.inputs[0];
          linear(lin(fc1), h, ff, D, F, 'relu', tokens, quant(fc1));
        }
        linear(lin(spec.mlp.down), ff, x, F, D, 'add', tokens, quant(spec.mlp.down));
      }
      // --- head: final norm of the scored rows, LM head (row blocks into column ranges), row stats, items ---
      specs.push({
        kernel: normKernel(D, norm, eps, true),
        buffers: [hs, x, w(`${spec.finalNorm}.weight`), ...(norm === 'layer' ? [w(`${spec.finalNorm}.bias`)] : []), io.scoreRows],
        params: (s) => ({ n: s.scoreRows }),
        workgroups: (s) => spill(s.scoreRows, device),
      });
      const headName = c.tieWordEmbeddings ? spec.embedTokens : spec.lmHead;
      const headBlocks = model.splitWeights?.get(headName) ?? [model.weights.get(headName)!];
      if (!headBlocks[0]) throw new Error(`executor: model '${model.name}' has no weight '${headName}'`);
      let col = 0;
      for (const [bi, blockT] of headBlocks.entries()) {
        linear(headName, hs, logits, D, blockT.shape[0], 'store', (s) => s.scoreRows, { ldy: c.vocabSize, colOff: col, weight: borrow(blockT, `${headName}[${bi}]`) });
        col += blockT.shape[0];
      }
      if (col !== c.vocabSize) throw new Error(`executor: LM head rows ${col} ≠ vocabulary ${c.vocabSize}`);
      for (const sampled of [false, true]) {
        if (sampled && !options.cache) continue;
        if (sampled) io.noise = arena.storage('noise', f32 * maxScoreRows * c.vocabSize);
        specs.push({
          kernel: rowStatsKernel(c.vocabSize, sampled),
          buffers: [stats, io.argmax, logits, ...(sampled ? [io.noise!] : [])],
          params: (s) => ({ n: s.scoreRows, temp: s.temp }),
          workgroups: (s) => (s.sampled === sampled ? spill(s.scoreRows, device) : null),
        });
      }
      specs.push({
        kernel: pickKernel(c.vocabSize),
        buffers: [io.lp, io.greedy, logits, stats, io.items],
        params: (s) => ({ n: s.items }),
        workgroups: (s) => (s.items > 0 ? spill(Math.ceil(s.items / 256), device) : null),
      });
      this.program = new Program(arena, specs, `forward-${model.name}`);
      // Borrowing a weight may have recorded its upload into tfjs's open command encoder: submit it
      // now, or the executor's steps would read the buffers before the weights are in them.
      flushTfjs();
      const rbBytes = f32 * (2 * maxItems + maxScoreRows);
      for (let r = 0; r < 2; r++) this.readbacks.push(arena.readback(`readback-${r}`, rbBytes));
    } catch (e) {
      arena.destroy();
      throw e;
    }
  }

  /** Plans the model's forward on the webgpu backend (see ExecutorOptions for the sizes). */
  static create(model: InferenceModel, opts: Partial<ExecutorOptions> = {}): Executor {
    return new Executor(model, { ...EXECUTOR_DEFAULTS, ...opts });
  }

  /** Bytes the executor allocated (activations, KV store, tables). */
  get allocatedBytes(): number {
    return this.arena.allocatedBytes;
  }

  /** Query tokens per attention block (a sequence of L new tokens takes ceil(L / this) blocks). */
  get blockTokens(): number {
    return this.tokensPerBlock;
  }

  /** Dispatches a step of this shape records (profiling). */
  dispatchCount(s: StepShape): number {
    return this.program.count(s);
  }

  /** Attention blocks a step with these sequence lengths needs. */
  blocksFor(lengths: readonly number[]): number {
    return lengths.reduce((n, l) => n + Math.ceil(l / this.tokensPerBlock), 0);
  }

  /**
   * Runs one step and resolves with its items' log-probabilities and greedy flags and the score
   * rows' argmax. Steps are submitted in call order; at most two are in flight (the readbacks
   * alternate), so a caller may start the next step before awaiting this one. With `times` the
   * step is profiled: one compute pass per dispatch with timestamp queries, each kernel's GPU time
   * added to `times` (the outputs are the same; the extra passes make the step a little slower).
   * With `chained` the step is one token whose id is the previous step's first argmax, copied on
   * the GPU (its ids in `input` are ignored): a decoder submits the next step before it has read
   * the last one back, so the host round trip leaves the GPU's critical path.
   */
  run(input: StepInput, opts: { times?: KernelTimes; chained?: boolean } = {}): Promise<StepOutput> {
    if (this.disposed) throw new Error('executor: used after dispose()');
    if (opts.chained && !(this.steps > 0 && input.seqs.length === 1 && input.seqs[0].ids.length === 1)) throw new Error('executor: a chained step is one token of one sequence after an earlier step');
    const c = this.model.config;
    const device = this.arena.device;
    const { maxTokens, maxScoreRows, maxItems, maxBlocks } = this.sizes;
    // --- host metadata ---
    let T = 0;
    for (const s of input.seqs) T += s.ids.length;
    if (T === 0) throw new Error('executor: a step needs at least one token');
    if (T > maxTokens) throw new Error(`executor: step of ${T} tokens exceeds maxTokens ${maxTokens}`);
    const R = input.scoreRows.length;
    if (input.items.length % 2 !== 0) throw new Error(`executor: items hold ${input.items.length} numbers, not (row, token) pairs`);
    const I = input.items.length / 2;
    if (R > maxScoreRows) throw new Error(`executor: ${R} score rows exceed maxScoreRows ${maxScoreRows}`);
    if (I > maxItems) throw new Error(`executor: ${I} items exceed ${maxItems}`);
    const ids = new Uint32Array(T);
    const pos = new Uint32Array(T);
    const kvRow = new Uint32Array(T);
    const blocks: number[] = [];
    const limit = this.options.cache ? this.options.cache.slots * this.options.cache.length : maxTokens;
    let t = 0;
    for (const s of input.seqs) {
      const L = s.ids.length;
      if (L === 0) throw new Error('executor: a sequence has no new tokens');
      if (s.pos0 + L > c.maxPositions) throw new Error(`executor: positions up to ${s.pos0 + L} exceed the model's context ${c.maxPositions}`);
      if (this.options.cache && s.pos0 + L > this.options.cache.length) throw new Error(`executor: positions up to ${s.pos0 + L} exceed the cache length ${this.options.cache.length}`);
      const pre = s.prefix?.length ?? 0;
      if (s.prefix && this.options.cache) throw new Error('executor: a shared prefix is for steps without a cache (scoring)');
      if (s.prefix && !(Number.isInteger(pre) && pre >= 1 && Number.isInteger(s.prefix.kvBase) && s.prefix.kvBase >= 0 && s.prefix.kvBase + pre <= t)) throw new Error(`executor: a prefix must be ≥ 1 rows of earlier tokens of the step (rows ${s.prefix.kvBase}..${s.prefix.kvBase + pre - 1}, the sequence starts at row ${t})`);
      if (!this.options.cache && (s.pos0 !== pre || s.kvBase !== t - pre)) throw new Error('executor: without a cache a sequence starts at position 0 (or after its prefix) and keeps its keys at its own token rows');
      if (s.kvBase + s.pos0 + L > limit) throw new Error(`executor: KV rows up to ${s.kvBase + s.pos0 + L} exceed the store's ${limit}`);
      for (let j = 0; j < L; j++) {
        const id = s.ids[j];
        if (!(Number.isInteger(id) && id >= 0 && id < c.vocabSize)) throw new Error(`executor: token id ${id} outside the vocabulary [0, ${c.vocabSize})`);
        ids[t + j] = id;
        pos[t + j] = s.pos0 + j;
        kvRow[t + j] = s.kvBase;
      }
      for (let j = 0; j < L; j += this.tokensPerBlock) blocks.push(t + j, Math.min(this.tokensPerBlock, L - j), s.kvBase, s.pos0 + j, s.prefix?.kvBase ?? 0, pre);
      t += L;
    }
    const nb = blocks.length / BLOCK_WORDS;
    if (nb > maxBlocks) throw new Error(`executor: ${nb} attention blocks exceed ${maxBlocks}`);
    for (const r of input.scoreRows) if (!(Number.isInteger(r) && r >= 0 && r < T)) throw new Error(`executor: score row ${r} outside the step's ${T} tokens`);
    const items = new Uint32Array(2 * I);
    for (let k = 0; k < I; k++) {
      const row = input.items[2 * k];
      const token = input.items[2 * k + 1];
      if (!(Number.isInteger(row) && row >= 0 && row < R)) throw new Error(`executor: item row ${row} outside the ${R} score rows`);
      if (!(Number.isInteger(token) && token >= 0 && token < c.vocabSize)) throw new Error(`executor: scored token ${token} outside the vocabulary [0, ${c.vocabSize})`);
      items[2 * k] = row;
      items[2 * k + 1] = token;
    }
    // Split the keys of short steps (decode) across workgroups until the GPU is busy.
    let maxKeys = 0;
    for (let b = 0; b < nb; b++) maxKeys = Math.max(maxKeys, blocks[BLOCK_WORDS * b + 3] + blocks[BLOCK_WORDS * b + 1]);
    const kvTiles = Math.ceil(maxKeys / this.attnKeyTile);
    const base = nb * this.kvHeads;
    const wanted = base >= ATTN_TARGET_WORKGROUPS ? 1 : Math.min(kvTiles, MAX_SPLITS, Math.ceil(ATTN_TARGET_WORKGROUPS / base));
    const tilesPerSplit = Math.ceil(kvTiles / wanted);
    const splits = Math.ceil(kvTiles / tilesPerSplit);
    if (input.sample && !this.io.noise) throw new Error('executor: sampling needs an executor created with a cache');
    if (input.sample && input.sample.noise.length !== R * c.vocabSize) throw new Error(`executor: sampling noise has ${input.sample.noise.length} values, expected ${R * c.vocabSize}`);
    const shape: StepShape = { tokens: T, blocks: nb, splits, tilesPerSplit, scoreRows: R, items: I, sampled: !!input.sample, temp: input.sample ? input.sample.temperature : 1 };
    // --- upload, record, submit (in call order; the readback this step reuses must be read first) ---
    const k = this.steps++ % 2;
    const rb = this.readbacks[k];
    const free = this.readbackFree[k]; // its previous step's read (taken now: reassigned below)
    let timer: StepTimer | null = null;
    const submitted = this.chain
      .then(() => free)
      .then(() => {
        flushTfjs(); // tfjs work on the borrowed weights (if any) runs first
        const q = device.queue;
        const put = (b: Buf, a: Uint32Array | Float32Array) => q.writeBuffer(b.buffer, 0, a.buffer, a.byteOffset, a.byteLength);
        if (!opts.chained) put(this.io.ids, ids);
        put(this.io.pos, pos);
        put(this.io.kvRow, kvRow);
        put(this.io.blocks, Uint32Array.from(blocks));
        if (R > 0) put(this.io.scoreRows, Uint32Array.from(input.scoreRows));
        if (I > 0) put(this.io.items, items);
        if (input.sample) put(this.io.noise!, input.sample.noise);
        const enc = device.createCommandEncoder({ label: 'executor-step' });
        if (opts.chained) enc.copyBufferToBuffer(this.io.argmax.buffer, 0, this.io.ids.buffer, 0, 4); // the token: the last step's first argmax
        timer = opts.times ? new StepTimer(device, this.program.count(shape)) : null;
        this.program.record(enc, shape, timer ?? undefined);
        timer?.resolve(enc);
        if (I > 0) {
          enc.copyBufferToBuffer(this.io.lp.buffer, 0, rb.buffer, 0, 4 * I);
          enc.copyBufferToBuffer(this.io.greedy.buffer, 0, rb.buffer, 4 * maxItems, 4 * I);
        }
        if (R > 0) enc.copyBufferToBuffer(this.io.argmax.buffer, 0, rb.buffer, 8 * maxItems, 4 * R);
        q.submit([enc.finish()]);
      });
    this.chain = submitted.catch(() => timer?.destroy());
    const out = submitted
      .then(() => (timer && opts.times ? timer.collect(opts.times) : undefined))
      .then(() => rb.buffer.mapAsync(GPUMapMode.READ))
      .then((): StepOutput => {
        const view = rb.buffer.getMappedRange();
        const logprobs = new Float32Array(view, 0, I).slice();
        const flags = new Uint32Array(view, 4 * maxItems, I);
        const greedy = new Uint8Array(I);
        for (let i = 0; i < I; i++) greedy[i] = flags[i] ? 1 : 0;
        const argmax = new Uint32Array(view, 8 * maxItems, R).slice();
        rb.buffer.unmap();
        return { logprobs, greedy, argmax };
      });
    this.readbackFree[k] = out.then(
      () => undefined,
      () => undefined,
    );
    return out;
  }

  /**
   * The logits [rows, V] of the last step's first `rows` score rows (checks and debugging: a
   * temporary readback buffer, freed before returning).
   */
  async readLogits(rows: number): Promise<Float32Array> {
    await this.idle();
    const V = this.model.config.vocabSize;
    if (!(Number.isInteger(rows) && rows >= 1 && rows <= this.sizes.maxScoreRows)) throw new Error(`executor: readLogits(${rows}) outside [1, ${this.sizes.maxScoreRows}]`);
    const device = this.arena.device;
    const tmp = device.createBuffer({ label: 'logits-readback', size: 4 * rows * V, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(this.logits.buffer, 0, tmp, 0, 4 * rows * V);
      device.queue.submit([enc.finish()]);
      await tmp.mapAsync(GPUMapMode.READ);
      return new Float32Array(tmp.getMappedRange()).slice();
    } finally {
      tmp.destroy();
    }
  }

  /** Resolves when every step submitted so far has been read back. */
  async idle(): Promise<void> {
    await Promise.all([this.chain, ...this.readbackFree]);
  }

  /** Frees everything the executor allocated (the model's weights are untouched); call after idle(). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.arena.destroy();
  }
}
