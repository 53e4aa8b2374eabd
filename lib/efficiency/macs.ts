// MAC accounting (Track 4): multiply-accumulates of one forward pass over a sequence, counted
// from the model's actual weight shapes (so a structurally pruned model is counted at its new
// sizes) in three ways: dense (every weight multiplies), skipping zeros (only non-zero weights of
// the linears multiply: what a sparse kernel could reach) and per linear, for tables.
import * as tf from '@tensorflow/tfjs';
import { ARCHS, blockLinears, linearName, linearParts } from '../models/arch';
import { blockWidths } from '../models/weights';
import type { LinearInputHook, Model } from '../models/types';

export interface MacOptions {
  seqlen: number; // tokens in the sequence (paper Track 4 uses the evaluation context; attention grows with it)
  attention: 'full' | 'causal'; // full: the T×T score and value products an engine computes; causal: only the unmasked half
  includeHead: boolean; // count the LM head (vocab × hidden per token)
}

export const macDefaults: MacOptions = {
  seqlen: 2048,
  attention: 'full',
  includeHead: true,
};

export interface MacReport {
  seqlen: number;
  /** Linear layers of all blocks, every weight multiplying. */
  linearDense: number;
  /** Linear layers of all blocks, only non-zero weights multiplying. */
  linearNonZero: number;
  /** QKᵀ and attention·V products of all blocks. */
  attention: number;
  /** LM head. */
  head: number;
  /** linearDense + attention + head. */
  dense: number;
  /** linearNonZero + attention + head. */
  skipZeros: number;
  /** Per block linear weight name: [dense, non-zero] MACs. */
  perLinear: Record<string, [number, number]>;
}

async function nonZeros(t: tf.Tensor): Promise<number> {
  const d = await t.data();
  let nz = 0;
  for (let i = 0; i < d.length; i++) if (d[i] !== 0) nz++;
  return nz;
}

/** Counts the MACs of one forward pass over `seqlen` tokens from the model's weights. */
export async function countMacs(model: Model, opts: Partial<MacOptions> = {}): Promise<MacReport> {
  const o = { ...macDefaults, ...opts };
  if (!Number.isInteger(o.seqlen) || o.seqlen < 1) throw new Error(`countMacs: seqlen must be a positive integer, got ${o.seqlen}`);
  const c = model.config;
  const spec = ARCHS[c.arch];
  const T = o.seqlen;
  let linearDense = 0;
  let linearNonZero = 0;
  let attention = 0;
  const perLinear: Record<string, [number, number]> = {};
  for (let b = 0; b < c.numLayers; b++) {
    for (const l of blockLinears(c.arch)) {
      const name = linearName(c.arch, b, l);
      const w = model.weights.get(name);
      if (!w) throw new Error(`countMacs: model '${model.name}' has no weight '${name}'`);
      const [rows, cols] = w.shape as [number, number];
      const dense = T * rows * cols;
      const nz = T * (await nonZeros(w));
      perLinear[name] = [dense, nz];
      linearDense += dense;
      linearNonZero += nz;
    }
    // heads of this block from q's actual rows (structured pruning may have removed some; GLM's q rows lead its fused q|k|v)
    const q = model.weights.get(linearName(c.arch, b, spec.attention.q)) as tf.Tensor;
    const qWidth = linearParts(c.arch, spec.attention.q, { ...blockWidths(c, b), headDim: c.headDim })[0].rows ?? (q.shape[0] as number); // heads · headDim
    const W = Math.min(T, c.slidingWindow ?? T); // keys a query sees at most (Mistral's sliding window)
    const pairs = o.attention === 'full' ? T * T : (W * (W + 1)) / 2 + (T - W) * W; // (query, key) pairs per head
    attention += 2 * pairs * qWidth; // scores (q·k) and weighted values (p·v), headDim MACs each per head
  }
  const headW = model.weights.get(spec.lmHead) ?? model.weights.get(spec.embedTokens);
  const head = o.includeHead ? T * c.vocabSize * (headW ? (headW.shape[1] as number) : c.hiddenSize) : 0;
  return {
    seqlen: T,
    linearDense,
    linearNonZero,
    attention,
    head,
    dense: linearDense + attention + head,
    skipZeros: linearNonZero + attention + head,
    perLinear,
  };
}

/**
 * A forward hook that counts the linear MACs actually executed (tokens × out × in, and tokens ×
 * non-zeros) on the inputs the model really sees; pass `hook` as ForwardOptions.onLinearInput.
 * Non-zero counts are taken once per weight (weights do not change during a forward pass).
 */
export function macCounter(model: Model): { hook: LinearInputHook; dense(): number; nonZero(): Promise<number> } {
  const tokens = new Map<string, number>(); // weight name → tokens seen
  const resolve = (linear: string): string => {
    if (model.weights.has(linear)) return linear;
    if (model.weights.has(`${linear}.weight`)) return `${linear}.weight`;
    throw new Error(`macCounter: linear '${linear}' does not name a weight of '${model.name}' (the hook needs full names)`);
  };
  return {
    hook: (linear, x) => {
      const name = resolve(linear);
      tokens.set(name, (tokens.get(name) ?? 0) + x.shape[0]);
    },
    dense: () => {
      let s = 0;
      for (const [name, t] of tokens) {
        const w = model.weights.get(name) as tf.Tensor;
        s += t * (w.shape[0] as number) * (w.shape[1] as number);
      }
      return s;
    },
    nonZero: async () => {
      let s = 0;
      for (const [name, t] of tokens) s += t * (await nonZeros(model.weights.get(name) as tf.Tensor));
      return s;
    },
  };
}

/** Parameters of the model (every weight tensor; tied embeddings counted once). */
export function countParams(model: Model): number {
  let n = 0;
  for (const t of model.weights.values()) n += t.size;
  return n;
}
