// LLM-Pruner (Ma et al., 2023): dependency-aware structured pruning. Coupled structures are
// removed together so the result is a smaller dense model:
// - attention: a KV group (one key/value head with the query heads that read it; a single head
//   without GQA) = its q/k/v output rows (+ biases) and its o input columns;
// - MLP: an intermediate channel = its gate/up (fc1) output row (+ bias) and its down (fc2) input column.
// Importance is first-order Taylor, |W ⊙ ∂L/∂W| summed over every weight of the group (the
// paper's element-wise "param_first" estimate with sum aggregation), with L the language-model
// loss on calibration sequences (gradients through forward() by tfjs autograd). Each pruned block
// removes the same fraction of its groups; the first and last blocks are kept, as the paper's
// per-layer policy (LLaMA-7B: blocks 4..29 of 32 pruned).
import * as tf from '@tensorflow/tfjs';
import { ARCHS, linearName, linearParts } from '../models/arch';
import { embed, head, runBlock } from '../models/transformer';
import type { Model, ModelConfig } from '../models/types';
import { PER_LAYER_KEYS } from '../models/weights';
import { SparsityOptionError } from '../quant/sparse-pattern';
import { describeCalib, type CalibSet } from './calib';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  ratio: { type: 'number', min: 0, max: 1, minOpen: true, maxOpen: true, default: 0.5, doc: 'fraction of KV groups and of MLP channels removed in each pruned block (LLMCBench: 0.5)' },
  layerStart: { type: 'int', min: 0, nullable: true, default: null, doc: "first pruned block; null = the paper's 4/32 of the depth, at least 1" },
  layerEnd: { type: 'int', min: 1, nullable: true, default: null, doc: "one past the last pruned block; null = the paper's 30/32 of the depth, at most L−1" },
  pruneAttention: { type: 'boolean', default: true, doc: 'remove attention KV groups (paper: block-wise pruning of heads and channels)' },
  pruneMlp: { type: 'boolean', default: true, doc: 'remove MLP intermediate channels' },
  nsamples: { type: 'int', min: 1, default: 10, doc: 'calibration sequences for the Taylor gradient (paper: 10 examples)' },
  seqlen: { type: 'int', min: 1, default: 64, doc: 'tokens per calibration sequence (paper: 64)' },
  batchSize: { type: 'int', min: 1, default: 10, doc: 'sequences per backward pass (memory only; the gradient is of the mean loss over all)' },
});
export type LlmPrunerOptions = OptionsOf<typeof options>;
export const defaults: LlmPrunerOptions = defaultsOf(options);

/** Per-block widths of a structurally pruned model (absent blocks keep the config's widths). */
export interface LayerWidths {
  numHeads: number[];
  numKvHeads: number[];
  intermediateSize: number[];
}

/** The widths of every block: from the per-layer config keys when present, else uniform. */
export function layerWidths(c: ModelConfig): LayerWidths {
  const get = (k: keyof LayerWidths, fallback: number): number[] => {
    const v = c.hf[PER_LAYER_KEYS[k]];
    if (Array.isArray(v)) {
      if (v.length !== c.numLayers) throw new Error(`config key '${PER_LAYER_KEYS[k]}' has ${v.length} entries for ${c.numLayers} layers`);
      return v.map(Number);
    }
    return Array(c.numLayers).fill(fallback);
  };
  return { numHeads: get('numHeads', c.numHeads), numKvHeads: get('numKvHeads', c.numKvHeads), intermediateSize: get('intermediateSize', c.intermediateSize) };
}

/** The config block i runs with (its own head counts and MLP width). */
export function blockConfig(c: ModelConfig, i: number): ModelConfig {
  const w = layerWidths(c);
  return { ...c, numHeads: w.numHeads[i], numKvHeads: w.numKvHeads[i], intermediateSize: w.intermediateSize[i] };
}

/**
 * ids [B, T] → logits [B, T, V] for a model whose blocks may differ in width: each block runs with
 * its own config. (Equal to forward() for uniform models; needed until the engine reads per-block widths.)
 */
export function forwardPruned(model: Model, ids: tf.Tensor2D): tf.Tensor3D {
  return tf.tidy(() => {
    let x = embed(model, ids);
    for (let i = 0; i < model.config.numLayers; i++) x = runBlock({ ...model, config: blockConfig(model.config, i) }, i, x);
    return head(model, x);
  });
}

export type LlmPrunerInput = Partial<LlmPrunerOptions>;

/** The pruned block range [start, end) (paper policy scaled to the depth: first and last kept). */
export function prunedBlocks(o: LlmPrunerOptions, numLayers: number): number[] {
  const start = o.layerStart ?? Math.max(1, Math.round((numLayers * 4) / 32));
  const end = o.layerEnd ?? Math.min(numLayers - 1, Math.round((numLayers * 30) / 32));
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > numLayers || start >= end) {
    throw new SparsityOptionError(`llm-pruner: layer range [${start}, ${end}) is empty or outside 0..${numLayers}`);
  }
  return Array.from({ length: end - start }, (_, k) => start + k);
}

/** Groups kept out of n when removing `ratio` of them (at least one must stay). */
export function keptCount(n: number, ratio: number): number {
  return Math.floor(n * (1 - ratio) + 1e-9);
}

/** Checks options and the model before any work: ratio, range, nothing pruned away entirely. */
export function validate(input: LlmPrunerInput, model?: Model): void {
  const o = parseOptions('llm-pruner', options, input);
  if (!o.pruneAttention && !o.pruneMlp) throw new SparsityOptionError('llm-pruner: pruneAttention and pruneMlp are both off: nothing to prune');
  if (!model) return;
  const c = model.config;
  const w = layerWidths(c);
  for (const b of prunedBlocks(o, c.numLayers)) {
    if (o.pruneAttention && keptCount(w.numKvHeads[b], o.ratio) < 1) {
      throw new SparsityOptionError(
        `llm-pruner: ratio ${o.ratio} would remove every attention head of layer ${b} (${w.numKvHeads[b]} KV group(s) of ${w.numHeads[b] / w.numKvHeads[b]} head(s); at most ${w.numKvHeads[b] - 1} can go)`,
      );
    }
    if (o.pruneMlp && keptCount(w.intermediateSize[b], o.ratio) < 1) {
      throw new SparsityOptionError(`llm-pruner: ratio ${o.ratio} would remove every MLP channel of layer ${b} (${w.intermediateSize[b]})`);
    }
  }
}

/** Weight (and bias) names of block b's linears that take part in pruning. */
function prunableNames(model: Model, b: number, o: LlmPrunerOptions): string[] {
  const spec = ARCHS[model.config.arch];
  const shorts = [
    ...(o.pruneAttention ? [spec.attention.q, spec.attention.k, spec.attention.v, spec.attention.o] : []),
    ...(o.pruneMlp ? [...spec.mlp.inputs, spec.mlp.down] : []),
  ];
  const names: string[] = [];
  for (const s of new Set(shorts)) {
    names.push(linearName(model.config.arch, b, s));
    const bias = linearName(model.config.arch, b, s, 'bias');
    if (model.weights.has(bias)) names.push(bias);
  }
  return names;
}

/** Mean next-token cross-entropy of ids [B, T] over the B·(T−1) predicted positions (HF's loss). */
function lmLoss(model: Model, ids: tf.Tensor2D): tf.Scalar {
  const [B, T] = ids.shape;
  const logits = forwardPruned(model, ids); // [B, T, V]
  const V = logits.shape[2];
  const pred = tf.reshape(tf.slice(logits, [0, 0, 0], [B, T - 1, V]), [B * (T - 1), V]);
  const tgt = tf.reshape(tf.slice(ids, [0, 1], [B, T - 1]), [-1]);
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(pred), tf.oneHot(tgt, V)), 1))) as tf.Scalar;
}

/**
 * Gradients of the mean LM loss over all calibration sequences with respect to `names`
 * (batches weighted by their share of tokens, so batching does not change the result).
 */
export async function lossGradients(model: Model, windows: number[][], names: string[], batchSize: number): Promise<Map<string, tf.Tensor>> {
  if (!windows.length) throw new Error('llm-pruner: no calibration sequences for the gradient');
  const xs = names.map((n) => {
    const t = model.weights.get(n);
    if (!t) throw new Error(`llm-pruner: model '${model.name}' has no weight '${n}'`);
    return t;
  });
  let acc: tf.Tensor[] | null = null;
  for (let i = 0; i < windows.length; i += batchSize) {
    const rows = windows.slice(i, i + batchSize);
    const gs = tf.tidy(() => {
      const ids = tf.tensor2d(rows, [rows.length, rows[0].length], 'int32'); // [B, T]
      const f = (...ws: tf.Tensor[]) => {
        const weights = new Map(model.weights);
        names.forEach((n, k) => weights.set(n, ws[k]));
        return lmLoss({ ...model, weights }, ids);
      };
      return tf.grads(f)(xs);
    });
    acc = accumulateGrads(acc, gs, rows.length / windows.length);
    await new Promise((r) => setTimeout(r, 0)); // let memory probes sample
  }
  return new Map(names.map((n, k) => [n, acc![k]]));
}

/**
 * acc + share·g per gradient (acc null: share·g; share 1: g itself), each g and old sum freed as
 * soon as its new sum exists: beside the two sets at most two gradients' worth more is alive. (Summing
 * all of them in one tidy held four sets at once: with a 7B model's 21 GB of fp32 gradients beside its
 * 27 GB of weights, more than an 80 GB GPU.)
 */
export function accumulateGrads(acc: tf.Tensor[] | null, gs: tf.Tensor[], share: number): tf.Tensor[] {
  return gs.map((g, k) => {
    if (!acc && share === 1) return g;
    const sum = tf.tidy(() => (acc ? tf.add(acc[k], tf.mul(g, share)) : tf.mul(g, share)));
    g.dispose();
    acc?.[k].dispose();
    return sum;
  });
}

/** Σ |w · g| along `axis` (0: per column, 1: per row) as host data. */
async function taylorSum(w: tf.Tensor, g: tf.Tensor, axis: 0 | 1): Promise<Float64Array> {
  const t = tf.tidy(() => (w.rank === 1 ? tf.abs(tf.mul(w, g)) : tf.sum(tf.abs(tf.mul(w, g)), axis)));
  const d = await t.data();
  t.dispose();
  return Float64Array.from(d);
}

/** Sums per-channel importances into groups of `size` consecutive channels. */
function groupSums(v: Float64Array, size: number): Float64Array {
  const out = new Float64Array(v.length / size);
  for (let i = 0; i < v.length; i++) out[Math.floor(i / size)] += v[i];
  return out;
}

/** Indices of the `keep` largest scores, in ascending index order (ties: lower index kept). */
export function topKeep(scores: ArrayLike<number>, keep: number): number[] {
  const idx = Array.from({ length: scores.length }, (_, i) => i);
  idx.sort((a, b) => scores[b] - scores[a] || a - b);
  return idx.slice(0, keep).sort((a, b) => a - b);
}

function expand(groups: number[], size: number): number[] {
  return groups.flatMap((g) => Array.from({ length: size }, (_, k) => g * size + k));
}

function replace(model: Model, name: string, t: tf.Tensor): void {
  const old = model.weights.get(name);
  model.weights.set(name, t);
  old?.dispose();
}

function gatherInto(model: Model, name: string, idx: number[], axis: 0 | 1): void {
  const w = model.weights.get(name);
  if (!w) return;
  const i = tf.tensor1d(idx, 'int32');
  const t = tf.gather(w, i, axis);
  i.dispose();
  replace(model, name, t);
}

export interface BlockPlan {
  block: number;
  keptGroups: number[]; // KV groups kept (attention)
  keptChannels: number[]; // intermediate channels kept (MLP)
  groupImportance: number[];
  channelImportance: number[];
}

/** Prunes the model in place and returns it; its config gets the new widths. */
export async function compress(model: Model, calib: CalibSet | null, input: LlmPrunerInput = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...input };
  validate(o, model);
  if (!calib) throw new Error('llm-pruner needs calibration sequences');
  if (calib.nsamples < o.nsamples) throw new SparsityOptionError(`llm-pruner: nsamples ${o.nsamples} but the calibration set has ${calib.nsamples} windows`);
  if (calib.seqlen < o.seqlen) throw new SparsityOptionError(`llm-pruner: seqlen ${o.seqlen} but calibration windows have ${calib.seqlen} tokens`);
  const c = model.config;
  const spec = ARCHS[c.arch];
  const blocks = prunedBlocks(o, c.numLayers);
  const widths = layerWidths(c);
  const paramsBefore = [...model.weights.values()].reduce((a, t) => a + t.size, 0);
  const windows = calib.windows.slice(0, o.nsamples).map((w) => w.slice(0, o.seqlen));
  const names = blocks.flatMap((b) => prunableNames(model, b, o));
  const grads = await lossGradients(model, windows, names, o.batchSize);
  hooks.sample?.();
  const plans: BlockPlan[] = [];
  try {
    for (const b of blocks) {
      const t0 = performance.now();
      const lin = (s: string, part: 'weight' | 'bias' = 'weight') => linearName(c.arch, b, s, part);
      const imp = async (name: string, axis: 0 | 1) => {
        const w = model.weights.get(name);
        return w ? taylorSum(w, grads.get(name) as tf.Tensor, axis) : null;
      };
      const addInto = (acc: Float64Array, v: Float64Array | null) => {
        if (v) for (let i = 0; i < acc.length; i++) acc[i] += v[i];
      };
      const plan: BlockPlan = { block: b, keptGroups: [], keptChannels: [], groupImportance: [], channelImportance: [] };
      const H = widths.numHeads[b];
      const KVH = widths.numKvHeads[b];
      const hd = c.headDim;
      const rep = H / KVH;
      // Row ranges of each projection inside its linear (GLM's fused q|k|v and gate|up share one).
      const parts = (short: string) => linearParts(c.arch, short, { numHeads: H, numKvHeads: KVH, intermediateSize: widths.intermediateSize[b], headDim: hd });
      const rowImp = async (short: string, part: 'weight' | 'bias') => imp(lin(short, part), 1);
      if (o.pruneAttention) {
        // group g: q rows / o columns of its rep query heads, k and v rows of its KV head
        const size = (part: string) => (part === 'q' || part === spec.attention.q ? rep * hd : hd);
        const attn = [...new Set([spec.attention.q, spec.attention.k, spec.attention.v])];
        const g = new Float64Array(KVH);
        for (const s of attn) {
          for (const which of ['weight', 'bias'] as const) {
            const v = await rowImp(s, which);
            if (!v) continue;
            for (const p of parts(s)) addInto(g, groupSums(v.subarray(p.offset, p.offset + KVH * size(p.part)), size(p.part)));
          }
        }
        addInto(g, groupSums((await imp(lin(spec.attention.o), 0))!, rep * hd));
        plan.groupImportance = Array.from(g);
        plan.keptGroups = topKeep(g, keptCount(KVH, o.ratio));
        for (const s of attn) {
          const idx = parts(s).flatMap((p) => expand(plan.keptGroups, size(p.part)).map((r) => p.offset + r));
          gatherInto(model, lin(s), idx, 0);
          gatherInto(model, lin(s, 'bias'), idx, 0);
        }
        gatherInto(model, lin(spec.attention.o), expand(plan.keptGroups, rep * hd), 1);
        widths.numKvHeads[b] = plan.keptGroups.length;
        widths.numHeads[b] = plan.keptGroups.length * rep;
      }
      if (o.pruneMlp) {
        const I = widths.intermediateSize[b];
        const ch = new Float64Array(I);
        for (const s of spec.mlp.inputs) {
          for (const which of ['weight', 'bias'] as const) {
            const v = await rowImp(s, which);
            if (v) for (const p of parts(s)) addInto(ch, v.subarray(p.offset, p.offset + I));
          }
        }
        addInto(ch, await imp(lin(spec.mlp.down), 0));
        plan.channelImportance = Array.from(ch);
        plan.keptChannels = topKeep(ch, keptCount(I, o.ratio));
        for (const s of spec.mlp.inputs) {
          const idx = parts(s).flatMap((p) => plan.keptChannels.map((r) => p.offset + r));
          gatherInto(model, lin(s), idx, 0);
          gatherInto(model, lin(s, 'bias'), idx, 0);
        }
        gatherInto(model, lin(spec.mlp.down), plan.keptChannels, 1);
        widths.intermediateSize[b] = plan.keptChannels.length;
      }
      plans.push(plan);
      hooks.sample?.();
      hooks.onBlockDone?.(b, performance.now() - t0);
    }
  } finally {
    grads.forEach((g) => g.dispose());
  }
  model.config = withWidths(c, widths);
  const paramsAfter = [...model.weights.values()].reduce((a, t) => a + t.size, 0);
  return {
    method: 'llm-pruner',
    config: { ratio: o.ratio, layers: `${blocks[0]}-${blocks[blocks.length - 1]}`, attention: o.pruneAttention, mlp: o.pruneMlp, importance: 'taylor-param-first', nsamples: o.nsamples, seqlen: o.seqlen },
    calib: describeCalib(calib),
    quantized: new Map(),
    actQuant: null,
    artifacts: { plans: plans.map((p) => ({ block: p.block, keptGroups: p.keptGroups, keptChannels: p.keptChannels })) },
    stats: { params_before: paramsBefore, params_after: paramsAfter, params_ratio: paramsAfter / paramsBefore },
  };
}

/**
 * The config with new per-block widths: uniform widths go into the standard keys (loadable by
 * any HF reader); differing widths keep the dense values in the standard keys and list every
 * block's widths under PER_LAYER_KEYS.
 */
export function withWidths(c: ModelConfig, w: LayerWidths): ModelConfig {
  const hf = { ...c.hf };
  for (const k of Object.values(PER_LAYER_KEYS)) delete hf[k];
  const uniform = (a: number[]) => a.every((v) => v === a[0]);
  if (uniform(w.numHeads) && uniform(w.numKvHeads) && uniform(w.intermediateSize)) {
    return { ...c, numHeads: w.numHeads[0], numKvHeads: w.numKvHeads[0], intermediateSize: w.intermediateSize[0], hf };
  }
  hf[PER_LAYER_KEYS.numHeads] = [...w.numHeads];
  hf[PER_LAYER_KEYS.numKvHeads] = [...w.numKvHeads];
  hf[PER_LAYER_KEYS.intermediateSize] = [...w.intermediateSize];
  return { ...c, hf };
}

export const module = {
  display: 'LLM-Pruner',
  kind: 'structured',
  inPaper: true,
  options,
  describe: 'LLM-Pruner: structured removal of attention KV groups and MLP channels by first-order Taylor importance (first/last blocks kept)',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<LlmPrunerInput>;
