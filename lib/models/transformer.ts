// One readable forward pass for decoder-only transformers, driven by the architecture tables in
// arch.ts: LLaMA family (RMSNorm, half-split RoPE with rope_theta and linear/llama3 scaling,
// SwiGLU, grouped-query attention, tied or untied head; Qwen2's q/k/v biases, Mistral's sliding
// window), GLM (the same with fused q|k|v and gate|up sliced by rows, RoPE on half of each head in
// interleaved pairs) and OPT (learned positions offset by 2, pre/post LayerNorm, ReLU, biases,
// project_in/out). Layer-by-layer API (embed → runBlock(i) →
// head) for the compression methods, batched forward with padding masks, and KV-cache generation.
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from '../rng';
import { meanRows } from '../runtime/rows';
import { actQuantHook } from '../quant/act';
import { attentionPlain } from '../kernels/attention';
import { wasmAttention, wasmGatherRows, wasmKernelsAvailable, wasmRmsNorm, wasmSwiglu } from '../kernels/wasm-simd';
import { kernelAttention, kernelLinear, kernelMatMulT, kernelQuantizesInput, kernelRmsNorm, kernelRopeHeads, kernelSwiglu } from '../kernels';
import type { BackendName } from '../runtime/backend';
import { ARCHS, fusedQkv, linearName, linearParts } from './arch';
import type { LinearInputHook, ModelConfig } from './types';
import type { InferenceModel } from '../engine/inference';
import { blockWidths, hasFinalNorm, missingWeight } from './weights';
import { matMulT } from './matmul';

export interface ForwardOptions {
  attentionMask?: tf.Tensor2D; // [B, T] 1 = real token, 0 = padding (right padding for scoring)
  rightPadding?: boolean; // the caller guarantees attentionMask marks only trailing padding: causal attention already keeps real rows off it, so the wasm attention kernel (causal mask only) may run; padded rows' outputs then differ (never read)
  onLinearInput?: LinearInputHook; // observe or replace each linear's input [tokens, in] (after the model's activation quantization; before it for linears on the W8A8 kernel, which quantizes inside)
  kernels?: boolean; // allow the custom WGSL kernels where the kernel policy is on (lib/kernels); under a gradient tape only those with gradients run. Default false
  prep?: ForwardPrep | null; // weights laid out for this backend (prepareForward), made once for many forwards; null/absent: the plain layout
  plan?: ForwardPlan; // which ops carry the forward; default: FORWARD_PLANS of the active backend (tests pass another to compare paths)
  /** runBlock only: one half of the block. 'attention': y = x + attention(x) (OPT's post-norm applied), the MLP not run;
   * 'mlp': x is the MLP's input (after its norm, what its first linears see) and y = MLP(x), no residual or norm, no
   * attention, mask or rotary tables (AWQ's searches inspect q/k/v through the attention, gate/up through the MLP). */
  half?: 'attention' | 'mlp';
}

/**
 * Backend-specific layout choices of the tfjs forward (DESIGN §5.4: data, not branches). Every row
 * computes the same math; only which tfjs ops carry it differs.
 */
export interface ForwardPlan {
  /** Linear layers as untransposed 2-D matmuls, forward and backward (lib/models/matmul.ts): the
   * weights as [in, out] copies (prepareForward) or transposed on the fly (matMulT). tfjs-wasm sends
   * only untransposed 2-D matmuls to XNNPACK (about 25 GFLOP/s on one core here) and runs
   * transposed or batched ones on a scalar loop (about 2 GFLOP/s); tfjs's own matMul gradient is
   * transposed. */
  untransposed: boolean;
  /** Causal attention without a padding mask or KV cache, when no gradient tape records: 'plain' =
   * attentionPlain's tfjs ops; 'wasm-simd' = one WebAssembly SIMD kernel in place on tfjs-wasm's
   * memory (lib/kernels/wasm-simd.ts: RoPE inside, no [B·heads, T, T] tensors, the masked half
   * skipped), about 10× the plain ops there for stories260K's head dim 8. */
  attention: 'plain' | 'wasm-simd';
  /** RMSNorm, SwiGLU and the embedding lookup when no gradient tape records: 'plain' = tfjs ops
   * (five and three passes; a gather that checks every id in JS); 'wasm-simd' = one pass each on
   * lib/kernels/wasm-simd.ts. */
  fused: 'plain' | 'wasm-simd';
}

export const FORWARD_PLANS = {
  wasm: { untransposed: true, attention: 'wasm-simd', fused: 'wasm-simd' },
  webgpu: { untransposed: false, attention: 'plain', fused: 'plain' }, // matmul shaders read either layout at the same speed; the fused WGSL kernels are lib/kernels' policy
  cpu: { untransposed: false, attention: 'plain', fused: 'plain' }, // the reference backend: keep its ops as they are
} satisfies Record<BackendName, ForwardPlan>;

/** The plan of the active tfjs backend (cpu's for a backend the table does not name). */
export function forwardPlan(backend: string = tf.getBackend()): ForwardPlan {
  return (FORWARD_PLANS as Record<string, ForwardPlan>)[backend] ?? FORWARD_PLANS.cpu;
}

/** Weights prepared for the active backend's fast path; made by prepareForward, freed by disposeForwardPrep. */
export interface ForwardPrep {
  /** Linear (and unsplit LM head) weights transposed to [in, out], by HF weight name. */
  weightsT: Map<string, tf.Tensor2D>;
}

/**
 * The backend's prepared weights for many forward calls over the same weights (a scoring run), or
 * null when its plan needs none. The copies are only valid while the model's weights stay as they
 * are: make them after compression, free them with disposeForwardPrep.
 */
export function prepareForward(model: InferenceModel, plan: ForwardPlan = forwardPlan()): ForwardPrep | null {
  if (!plan.untransposed) return null;
  const c = model.config;
  const spec = ARCHS[c.arch];
  const names = new Set<string>();
  for (let i = 0; i < c.numLayers; i++) for (const short of Object.keys(spec.linears)) names.add(linearName(c.arch, i, short));
  names.add(headWeightName(c));
  const ws = [...names].map((n) => [n, model.weights.get(n)] as const).filter((e): e is [string, tf.Tensor2D] => e[1]?.rank === 2);
  // The copies double these weights' memory while the run lasts: past the cap, keep the plain layout.
  if (ws.reduce((s, [, w]) => s + 4 * w.size, 0) > PREPARED_BYTES_MAX) return null;
  return { weightsT: new Map(ws.map(([n, w]) => [n, tf.keep(tf.transpose(w))])) };
}

/** Most bytes of transposed weight copies prepareForward makes (a quarter of tfjs-wasm's 4 GiB heap). */
export const PREPARED_BYTES_MAX = 1 << 30;

export function disposeForwardPrep(p: ForwardPrep | null | undefined): void {
  if (!p) return;
  for (const t of p.weightsT.values()) t.dispose();
  p.weightsT.clear();
}

/** Additive mask value for disallowed keys: large but finite, so fully masked rows stay finite. */
const MASKED = -1e9;
/** OPT's learned position table is offset by 2 (fairseq's padding_idx + 1). */
const OPT_POSITION_OFFSET = 2;

/** Per-call state the blocks share: where the new tokens start and their mask and rotary tables. */
interface Step {
  pastLength: number; // tokens already in the KV cache
  mask: tf.Tensor4D | null; // [B|1, 1, T, S] additive, null when nothing is masked
  rope: { cos: tf.Tensor2D; sin: tf.Tensor2D; rot: tf.Tensor2D } | null; // cos/sin [T, headDim] (LLaMA); rot [headDim, headDim]: x·rot = rotate_half(x)
  prep: ForwardPrep | null; // weights laid out for the backend (ForwardOptions.prep)
  plan: ForwardPlan; // the backend's layout choices (ForwardOptions.plan)
  hook?: LinearInputHook;
  kernels: boolean; // the caller allows custom kernels (lib/kernels decides whether they run)
  padded: boolean; // a padding or sliding-window mask applies (the fused attention handles only the causal mask)
  kernelRope: boolean; // the RoPE kernels may rotate q and k (LLaMA's layout; GLM's half-head pairs run on tfjs ops)
  wasmAttention: boolean; // attention runs on the wasm SIMD kernel (ForwardPlan.attention; no KV cache; no mask or right padding only)
  wasmFused: boolean; // RMSNorm, SwiGLU and embedding rows run on the wasm SIMD kernels (ForwardPlan.fused)
  attentionOnly: boolean; // ForwardOptions.half === 'attention'
}

interface KV {
  k: tf.Tensor4D; // [B, KV, S, hd]
  v: tf.Tensor4D; // [B, KV, S, hd]
}

function weight(model: InferenceModel, name: string): tf.Tensor {
  const w = model.weights.get(name);
  if (!w) throw missingWeight(model, name);
  return w;
}

/** A matrix as row blocks: [w] normally, the blocks when it exceeds one GPU binding. */
function rowBlocks(model: InferenceModel, name: string): tf.Tensor2D[] {
  const split = model.splitWeights?.get(name);
  if (split) return split as tf.Tensor2D[];
  return [weight(model, name) as tf.Tensor2D];
}

/** The weight the LM head multiplies by: lm_head, or the token embedding when tied. */
function headWeightName(config: ModelConfig): string {
  const spec = ARCHS[config.arch];
  return config.tieWordEmbeddings ? spec.embedTokens : spec.lmHead;
}

/** y = x Wᵀ + b for x [N, in], W [out, in]; the hook sees (and may replace) x. With `kernels`, a
 * packed (quantized) or dense kernel may run instead of tfjs's matMul (lib/kernels kernelLinear). */
function linear(model: InferenceModel, name: string, x: tf.Tensor2D, hook: LinearInputHook | undefined, step: Pick<Step, 'kernels' | 'prep' | 'plan'>): tf.Tensor2D {
  let input = x;
  if (hook) {
    const r = hook(name, x);
    if (r) input = r;
  }
  const b = model.weights.get(name.replace(/\.weight$/, '.bias'));
  const fast = step.kernels ? kernelLinear(model, name, input, b) : null; // [N, out]
  if (fast) return fast;
  const wT = step.prep?.weightsT.get(name); // [in, out]
  const y = wT ? tf.matMul(input, wT) : timesT(input, weight(model, name) as tf.Tensor2D, step.plan); // [N, out]
  return (b ? tf.add(y, b) : y) as tf.Tensor2D;
}

/** x [N, in] · wᵀ for w [out, in] → [N, out], laid out as the plan says (ForwardPlan.untransposed). */
function timesT(x: tf.Tensor2D, w: tf.Tensor2D, plan: ForwardPlan): tf.Tensor2D {
  return plan.untransposed ? matMulT(x, w) : tf.matMul(x, w, false, true);
}

/** RMSNorm (LLaMA) or LayerNorm (OPT) over the last axis; `prefix` is the norm's name without '.weight'. */
function norm(model: InferenceModel, prefix: string, x: tf.Tensor, kernels = false, wasmFused = wasmFusedOn()): tf.Tensor {
  const eps = model.config.normEps;
  const w = weight(model, `${prefix}.weight`);
  if (ARCHS[model.config.arch].norm === 'rms') {
    const fused = kernels ? kernelRmsNorm(x, w, eps) : null;
    if (fused) return fused;
    if (wasmFused) return wasmRmsNorm(x, w, eps);
    const ms = meanRows(tf.square(x));
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), w);
  }
  const centered = tf.sub(x, meanRows(x));
  const y = tf.mul(centered, tf.rsqrt(tf.add(meanRows(tf.square(centered)), eps)));
  return tf.add(tf.mul(y, w), weight(model, `${prefix}.bias`));
}

/** The plan's fused RMSNorm/SwiGLU/embedding kernels run now (wasm SIMD, no gradient tape). */
function wasmFusedOn(plan: ForwardPlan = forwardPlan()): boolean {
  return plan.fused === 'wasm-simd' && wasmKernelsAvailable();
}

function activation(config: ModelConfig, x: tf.Tensor): tf.Tensor {
  if (config.activation === 'silu') return tf.mul(x, tf.sigmoid(x));
  if (config.activation === 'relu') return tf.relu(x);
  return tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))); // exact (erf) GELU
}

/** Rotated dimensions of each head: the architecture's share of headDim (GLM: half). */
function rotaryDim(config: ModelConfig): number {
  return Math.round(config.headDim * (ARCHS[config.arch].rope?.fraction ?? 1));
}

/** RoPE inverse frequencies [rotaryDim/2] in fp32 as transformers computes them (incl. scaling). */
export function ropeInvFreq(config: ModelConfig): Float32Array {
  const rd = rotaryDim(config);
  const f = Math.fround;
  const inv = new Float32Array(rd / 2);
  for (let j = 0; j < rd / 2; j++) inv[j] = f(1 / f(Math.pow(config.ropeTheta, f((2 * j) / rd))));
  const s = config.ropeScaling;
  if (!s) return inv;
  if (s.type === 'linear') return inv.map((v) => v / s.factor);
  // llama3: low frequencies slowed by `factor`, high kept, the band between interpolated.
  const old = s.originalMaxPositions!;
  const lowWave = old / s.lowFreqFactor!;
  const highWave = old / s.highFreqFactor!;
  return inv.map((v) => {
    const wave = (2 * Math.PI) / v;
    const scaled = wave > lowWave ? v / s.factor : v;
    if (wave < highWave || wave > lowWave) return scaled;
    const smooth = (old / wave - s.lowFreqFactor!) / (s.highFreqFactor! - s.lowFreqFactor!);
    return (1 - smooth) * (scaled / s.factor) + smooth * scaled;
  });
}

/** Dimensions (a, b) of a head that rotate together with frequency j: rotaryDim r, layout 'halves' (j, j + r/2) or 'pairs' (2j, 2j + 1). */
function ropePair(layout: 'halves' | 'pairs', r: number, j: number): [number, number] {
  return layout === 'halves' ? [j, j + r / 2] : [2 * j, 2 * j + 1];
}

/** cos/sin tables [T, headDim] for positions start..start+T-1, and rot [headDim, headDim] with
 * x·rot = the pair rotation (a, b) → (−x_b, x_a) (one ±1 per column: exact); dimensions past the
 * rotary ones have cos 1, sin 0 (they pass through). LLaMA: HF's halves over the whole head. */
function ropeTables(config: ModelConfig, start: number, T: number): { cos: tf.Tensor2D; sin: tf.Tensor2D; rot: tf.Tensor2D } {
  const inv = ropeInvFreq(config);
  const layout = ARCHS[config.arch].rope!.layout;
  const hd = config.headDim;
  const rd = rotaryDim(config);
  const cos = new Float32Array(T * hd).fill(1);
  const sin = new Float32Array(T * hd);
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < rd / 2; j++) {
      const a = Math.fround((start + t) * inv[j]); // fp32 angle, as transformers
      for (const d of ropePair(layout, rd, j)) {
        cos[t * hd + d] = Math.cos(a);
        sin[t * hd + d] = Math.sin(a);
      }
    }
  }
  const rot = new Float32Array(hd * hd);
  for (let j = 0; j < rd / 2; j++) {
    const [a, b] = ropePair(layout, rd, j);
    rot[b * hd + a] = -1; // out[a] = -x[b]
    rot[a * hd + b] = 1; // out[b] = x[a]
  }
  return { cos: tf.tensor2d(cos, [T, hd]), sin: tf.tensor2d(sin, [T, hd]), rot: tf.tensor2d(rot, [hd, hd]) };
}

/** The RoPE kernels (lib/kernels, wasm SIMD) implement HF LLaMA's rotation over the whole head only. */
function kernelRope(config: ModelConfig): boolean {
  const r = ARCHS[config.arch].rope;
  return r !== null && r.fraction === 1 && r.layout === 'halves';
}

/** x·cos + rotate(x)·sin for x [B, H, T, hd] (tokenMajor: [B, T, H, hd]); the rotation as one small matmul (no split/concat copies). */
function applyRope(x: tf.Tensor4D, rope: { cos: tf.Tensor2D; sin: tf.Tensor2D; rot: tf.Tensor2D }, tokenMajor = false): tf.Tensor4D {
  const hd = x.shape[3];
  const [cos, sin] = tokenMajor ? [rope.cos, rope.sin].map((t) => tf.expandDims(t, 1)) : [rope.cos, rope.sin]; // [T, 1, hd] | [T, hd]
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]) as tf.Tensor2D, rope.rot), x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}

/**
 * Additive attention mask [B|1, 1, T, S] for T new tokens after `past` cached ones: causal (and,
 * with a sliding window W, keys at or before query − W), plus key padding from attentionMask [B, S].
 * Null when nothing would be masked.
 */
function buildMask(B: number, T: number, past: number, attentionMask?: tf.Tensor2D, window: number | null = null): tf.Tensor4D | null {
  const S = past + T;
  if (attentionMask && (attentionMask.shape[0] !== B || attentionMask.shape[1] !== S)) {
    throw new Error(`attentionMask has shape [${attentionMask.shape.join(', ')}], expected [${B}, ${S}]`);
  }
  const windowed = window !== null && S > window;
  if (T === 1 && !attentionMask && !windowed) return null;
  // Built on the host: tfjs-webgpu computes ops on small host-side int32 inputs (the ranges) on the
  // CPU through a per-element broadcast loop, which cost seconds per compression on small models.
  const causal = new Float32Array(T * S); // [T, S]: MASKED at keys after the query or out of its window
  for (let t = 0; t < T; t++) {
    const q = past + t;
    const row = causal.subarray(t * S, (t + 1) * S);
    row.fill(MASKED, q + 1);
    if (windowed) row.fill(MASKED, 0, Math.max(0, q - window! + 1));
  }
  return tf.tidy(() => {
    let m: tf.Tensor = tf.tensor4d(causal, [1, 1, T, S]);
    if (attentionMask) {
      const pad = tf.mul(tf.sub(1, tf.cast(attentionMask, 'float32')), MASKED); // [B, S]
      m = tf.add(m, tf.reshape(pad, [B, 1, 1, S]));
    }
    return m as tf.Tensor4D;
  });
}

/** The blocks' shared state for T new tokens after `past` cached ones; `cache`: the caller keeps the
 * blocks' keys and values (generation), so they stay in the [B, KV, S, hd] layout of the plain path. */
function makeStep(model: InferenceModel, B: number, T: number, past: number, opts: ForwardOptions, cache = false): Step {
  // The kernel applies the causal mask itself, and right padding needs no other (rightPadding): no mask tensor then.
  const plan = opts.plan ?? forwardPlan();
  const c = model.config;
  const window = c.slidingWindow ?? null;
  const windowed = window !== null && past + T > window; // the attention kernels apply the causal mask only
  const wasmAttn = !cache && !windowed && past === 0 && (!opts.attentionMask || opts.rightPadding === true) && plan.attention === 'wasm-simd' && wasmKernelsAvailable();
  const mlpOnly = opts.half === 'mlp'; // no attention: no mask or rotary tables
  const mask = wasmAttn || mlpOnly ? null : buildMask(B, T, past, opts.attentionMask, window);
  try {
    const rope = ARCHS[c.arch].rope && !mlpOnly ? ropeTables(c, past, T) : null;
    return {
      pastLength: past, mask, rope, prep: opts.prep ?? null, plan, hook: opts.onLinearInput, kernels: opts.kernels ?? false,
      padded: !!opts.attentionMask || windowed, wasmAttention: wasmAttn, wasmFused: wasmFusedOn(plan), kernelRope: kernelRope(c), attentionOnly: opts.half === 'attention',
    };
  } catch (e) {
    mask?.dispose();
    throw e;
  }
}

function disposeStep(s: Step): void {
  s.mask?.dispose();
  s.rope?.cos.dispose();
  s.rope?.sin.dispose();
  s.rope?.rot.dispose();
}

/** Token (and for OPT position) embeddings: ids [B, T] int32 → [B, T, D]. */
export function embed(
  model: InferenceModel,
  ids: tf.Tensor2D,
  opts: { attentionMask?: tf.Tensor2D; pastLength?: number; plan?: ForwardPlan } = {},
): tf.Tensor3D {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const [B, T] = ids.shape;
  const past = opts.pastLength ?? 0;
  return tf.tidy(() => {
    const idx = ids.dtype === 'int32' ? ids : tf.cast(ids, 'int32');
    const fused = wasmFusedOn(opts.plan);
    let x = gatherRows(rowBlocks(model, spec.embedTokens), idx, fused); // [B, T, E]
    if (c.arch !== 'opt') return x as tf.Tensor3D;
    if (spec.projectIn && model.weights.has(spec.projectIn)) {
      x = tf.reshape(timesT(tf.reshape(x, [B * T, c.wordEmbedProjDim]), weight(model, spec.projectIn) as tf.Tensor2D, opts.plan ?? forwardPlan()), [B, T, c.hiddenSize]);
    }
    // Positions as transformers' OPT: cumsum of the mask (padding at position -1), else arange.
    let pos: tf.Tensor;
    if (opts.attentionMask) {
      const m = tf.cast(opts.attentionMask, 'float32'); // [B, S]
      const p = tf.sub(tf.mul(tf.cumsum(m, 1), m), 1);
      pos = tf.cast(tf.slice(p, [0, past], [B, T]), 'int32');
    } else {
      pos = tf.tile(tf.reshape(tf.range(past, past + T, 1, 'int32'), [1, T]), [B, 1]);
    }
    if (past + T > c.maxPositions) throw new Error(`OPT supports ${c.maxPositions} positions; got ${past + T}`);
    const pe = gatherRows(rowBlocks(model, spec.embedPositions!), tf.add(pos, tf.scalar(OPT_POSITION_OFFSET, 'int32')), fused); // [B, T, D]
    return tf.add(x, pe) as tf.Tensor3D;
  });
}

/** Gathers rows of a (possibly row-split) matrix: ids [B, T] → [B, T, cols]. */
function gatherRows(blocks: tf.Tensor2D[], ids: tf.Tensor, fused: boolean): tf.Tensor {
  if (blocks.length === 1) return fused ? wasmGatherRows(blocks[0], ids) : tf.gather(blocks[0], ids);
  let out: tf.Tensor | null = null;
  let r0 = 0;
  for (const b of blocks) {
    const rows = b.shape[0];
    const local = tf.sub(ids, tf.scalar(r0, 'int32'));
    const inside = tf.logicalAnd(tf.greaterEqual(local, 0), tf.less(local, rows));
    const g = tf.mul(tf.gather(b, tf.maximum(tf.minimum(local, tf.scalar(rows - 1, 'int32')), tf.scalar(0, 'int32'))), tf.expandDims(tf.cast(inside, 'float32'), -1));
    out = out ? tf.add(out, g) : g;
    r0 += rows;
  }
  return out!;
}

/** Short linear name of a block linear's full weight name ('model.layers.3.self_attn.q_proj.weight' → 'q'). */
function shortOf(model: InferenceModel, full: string): string {
  const spec = ARCHS[model.config.arch];
  for (const [short, suffix] of Object.entries(spec.linears)) if (full.endsWith(`.${suffix}.weight`)) return short;
  throw new Error(`'${full}' is not a linear of architecture '${model.config.arch}'`);
}

/** Block i's linear-input hook: the model's activation quantization (W8A8) first, then the caller's hook on its result. */
function blockHook(model: InferenceModel, i: number, user: LinearInputHook | undefined, kernels: boolean): LinearInputHook | undefined {
  const act = model.actQuant;
  if (!act) return user;
  const quant = actQuantHook(act, i, (l) => shortOf(model, l));
  return (name, x) => {
    // A linear on the W8A8 kernel quantizes its input itself (the caller's hook then sees it unquantized).
    const q = (kernels && kernelQuantizesInput(model, name) ? null : quant(name, x)) ?? x;
    const r = user?.(name, q);
    return r ?? q;
  };
}

/** Block i's q, k, v projections of h2 [tokens, D]: [tokens, H·hd], [tokens, KV·hd], [tokens, KV·hd]
 * (one linear sliced by rows when the architecture fuses them, ARCHS[arch].fused). */
function attentionInputs(model: InferenceModel, i: number, h2: tf.Tensor2D, hook: LinearInputHook | undefined, step: Step): tf.Tensor2D[] {
  const c = model.config;
  const a = ARCHS[c.arch].attention;
  const run = (short: string) => linear(model, linearName(c.arch, i, short), h2, hook, step);
  if (!fusedQkv(c.arch)) return [run(a.q), run(a.k), run(a.v)];
  const out = run(a.q); // [tokens, (H + 2·KV)·hd]
  const parts = linearParts(c.arch, a.q, { ...blockWidths(c, i), headDim: c.headDim });
  return parts.map((p) => tf.slice(out, [0, p.offset], [h2.shape[0], p.rows!]) as tf.Tensor2D);
}

/** Block i's MLP on m [tokens, D] (its input after the norm) → [tokens, D] (the down projection's output). */
function mlp(model: InferenceModel, i: number, m: tf.Tensor2D, hook: LinearInputHook | undefined, step: Step): tf.Tensor2D {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const lin = (short: string) => linearName(c.arch, i, short);
  let inner: tf.Tensor2D;
  if (spec.mlp.gated) {
    // gated (SwiGLU): act(gate(x)) · up(x); GLM's one linear stacks gate | up
    const outs = spec.mlp.inputs.map((s) => linear(model, lin(s), m, hook, step)); // [tokens, F] each, or [tokens, 2F]
    const [g, u] = outs.length === 2 ? outs : tf.split(outs[0], 2, 1); // [tokens, F] each
    const fused = c.activation !== 'silu' ? null : ((step.kernels ? kernelSwiglu(g, u) : null) ?? (step.wasmFused ? wasmSwiglu(g, u) : null));
    inner = (fused ?? tf.mul(activation(c, g), u)) as tf.Tensor2D;
  } else {
    inner = activation(c, linear(model, lin(spec.mlp.inputs[0]), m, hook, step)) as tf.Tensor2D;
  }
  return linear(model, lin(spec.mlp.down), inner, hook, step);
}

/** Block i on x [B, T, D]; returns the block output and the full keys/values (past + new). */
function block(model: InferenceModel, i: number, x: tf.Tensor3D, step: Step, past?: KV): { y: tf.Tensor3D; kv: KV } {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const [B, T, D] = x.shape;
  const widths = blockWidths(c, i); // per-block head counts (structurally pruned models differ per block)
  const H = widths.numHeads;
  const KVH = widths.numKvHeads;
  const hd = c.headDim;
  const p = spec.blockPrefix(i);
  const lin = (short: string) => linearName(c.arch, i, short);
  const pre = c.arch !== 'opt' || c.doLayerNormBefore;
  const hook = blockHook(model, i, step.hook, step.kernels);
  return tf.tidy(() => {
    // --- attention ---
    const h = (pre ? norm(model, `${p}${spec.norms.attn}`, x, step.kernels, step.wasmFused) : x) as tf.Tensor3D;
    const h2 = tf.reshape(h, [B * T, D]) as tf.Tensor2D; // [tokens, D]
    // A linear's output [B·T, n·hd] as heads [B, n, T, hd]; queries and keys RoPE'd (LLaMA).
    const heads = (t: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(t, [B, T, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    const ropeHeads = (t: tf.Tensor2D, n: number): tf.Tensor4D => {
      if (!step.rope) return heads(t, n);
      return (step.kernels && step.kernelRope ? kernelRopeHeads(t, step.rope, B, n) : null) ?? applyRope(heads(t, n), step.rope);
    };
    const [qLin, kLin, vLin] = attentionInputs(model, i, h2, hook, step); // [B·T, H·hd], [B·T, KV·hd], [B·T, KV·hd]
    let k: tf.Tensor4D;
    let v: tf.Tensor4D;
    let merged: tf.Tensor2D; // [B·T, H·hd]
    if (step.wasmAttention) {
      // The kernel reads the linears' [B, T, heads, hd] layout (no head transposes) and applies
      // LLaMA's RoPE itself (other layouts are rotated here first); k and v leave the block in this
      // layout, unrotated by the kernel (forward drops them).
      const tokenHeads = (t: tf.Tensor2D, n: number) => tf.reshape(t, [B, T, n, hd]) as tf.Tensor4D;
      const rotated = (t: tf.Tensor2D, n: number) => (step.rope && !step.kernelRope ? applyRope(tokenHeads(t, n), step.rope, true) : tokenHeads(t, n));
      k = rotated(kLin, KVH); // [B, T, KV, hd]
      v = tokenHeads(vLin, KVH); // [B, T, KV, hd]
      merged = wasmAttention(rotated(qLin, H), k, v, 0, step.kernelRope ? (step.rope ?? undefined) : undefined);
    } else {
      const q = ropeHeads(qLin, H); // [B, H, T, hd]
      k = ropeHeads(kLin, KVH); // [B, KV, T, hd]
      v = heads(vLin, KVH); // [B, KV, T, hd]
      if (past) {
        k = tf.concat([past.k, k], 2);
        v = tf.concat([past.v, v], 2);
      }
      // The fused kernel applies the causal mask itself: with a padding mask, the plain ops run.
      merged = (step.kernels && !step.padded ? kernelAttention(q, k, v, step.pastLength) : null) ?? attentionPlain(q, k, v, step.mask);
    }
    const attnOut = tf.reshape(linear(model, lin(spec.attention.o), merged, hook, step), [B, T, D]);
    let r: tf.Tensor = tf.add(x, attnOut);
    if (!pre) r = norm(model, `${p}${spec.norms.attn}`, r, false, step.wasmFused);
    if (step.attentionOnly) return { y: r as tf.Tensor3D, kv: { k, v } };
    // --- MLP ---
    const m = pre ? norm(model, `${p}${spec.norms.mlp}`, r, step.kernels, step.wasmFused) : r;
    const down = tf.reshape(mlp(model, i, tf.reshape(m, [B * T, D]) as tf.Tensor2D, hook, step), [B, T, D]);
    let y: tf.Tensor = tf.add(r, down);
    if (!pre) y = norm(model, `${p}${spec.norms.mlp}`, y, false, step.wasmFused);
    return { y: y as tf.Tensor3D, kv: { k, v } };
  });
}

/** Block i: x [B, T, D] → [B, T, D] (a fresh forward without cache). */
export function runBlock(model: InferenceModel, i: number, x: tf.Tensor3D, opts: ForwardOptions = {}): tf.Tensor3D {
  if (i < 0 || i >= model.config.numLayers) throw new Error(`block ${i} out of range (model has ${model.config.numLayers})`);
  const [B, T, D] = x.shape;
  const step = makeStep(model, B, T, 0, opts);
  try {
    if (opts.half === 'mlp') {
      const hook = blockHook(model, i, step.hook, step.kernels);
      return tf.tidy(() => tf.reshape(mlp(model, i, tf.reshape(x, [B * T, D]) as tf.Tensor2D, hook, step), [B, T, D]) as tf.Tensor3D);
    }
    const { y, kv } = block(model, i, x, step);
    kv.k.dispose();
    kv.v.dispose();
    return y;
  } finally {
    disposeStep(step);
  }
}

/** Final norm, OPT's project_out and the LM head: x [B, T, D] → logits [B, T, V] (`kernels`: the LM head may run on the fp32 GEMM kernel). */
export function head(model: InferenceModel, x: tf.Tensor3D, kernels = false, prep: ForwardPrep | null = null, plan: ForwardPlan = forwardPlan()): tf.Tensor3D {
  const c = model.config;
  const spec = ARCHS[c.arch];
  const [B, T, D] = x.shape;
  return tf.tidy(() => {
    let h: tf.Tensor = hasFinalNorm(c) ? norm(model, spec.finalNorm, x, kernels, wasmFusedOn(plan)) : x;
    let width = D;
    if (c.arch === 'opt' && spec.projectOut && model.weights.has(spec.projectOut)) {
      h = timesT(tf.reshape(h, [B * T, D]), weight(model, spec.projectOut) as tf.Tensor2D, plan);
      width = c.wordEmbedProjDim;
    }
    const h2 = tf.reshape(h, [B * T, width]) as tf.Tensor2D;
    const name = headWeightName(c);
    const blocks = rowBlocks(model, name);
    // An unsplit head may be packed (quantized) in InferenceModel.packedLinears: kernelLinear runs it, or the dense kernel.
    const whole = kernels && blocks.length === 1 ? kernelLinear(model, name, h2) : null; // [tokens, V]
    const wT = blocks.length === 1 ? prep?.weightsT.get(name) : undefined; // [width, V]
    const parts = whole ? [whole] : wT ? [tf.matMul(h2, wT)] : blocks.map((w) => (kernels ? kernelMatMulT(h2, w) : null) ?? timesT(h2, w, plan)); // [tokens, rows_i]
    const logits = parts.length === 1 ? parts[0] : tf.concat(parts, 1);
    return tf.reshape(logits, [B, T, c.vocabSize]) as tf.Tensor3D;
  });
}

/** ids [B, T] → logits [B, T, V]. */
export function forward(model: InferenceModel, ids: tf.Tensor2D, opts: ForwardOptions = {}): tf.Tensor3D {
  if (opts.half) throw new Error(`forward: half '${opts.half}' applies to runBlock only`);
  const [B, T] = ids.shape;
  const step = makeStep(model, B, T, 0, opts);
  let x: tf.Tensor3D | null = null; // the running hidden state [B, T, D]; freed on every path, errors included
  try {
    x = embed(model, ids, { attentionMask: opts.attentionMask, plan: opts.plan });
    for (let i = 0; i < model.config.numLayers; i++) {
      const { y, kv } = block(model, i, x, step);
      kv.k.dispose();
      kv.v.dispose();
      x.dispose();
      x = y;
    }
    return head(model, x, step.kernels, step.prep, opts.plan);
  } finally {
    x?.dispose();
    disposeStep(step);
  }
}

export interface GenerateOptions {
  /** Tokens to generate at most. */
  maxNewTokens?: number;
  /** Greedy decoding (argmax); when false, sample from softmax(logits / temperature). */
  greedy?: boolean;
  /** Sampling temperature (> 0), used when greedy is false. */
  temperature?: number;
  /** Seed of the sampling noise (same seed, same tokens on every backend up to logit rounding). */
  seed?: number;
  /** Stop after the EOS token (it is included in the output). */
  stopAtEos?: boolean;
  /** Called with each new token as it is produced. */
  onToken?: (id: number) => void;
  /** Allow the custom WGSL kernels where the kernel policy is on (lib/kernels). */
  kernels?: boolean;
}

export const GENERATE_DEFAULTS: Required<Omit<GenerateOptions, 'onToken'>> = {
  maxNewTokens: 64, // enough for a sentence or two
  greedy: true, // deterministic by default
  temperature: 1.0, // plain softmax sampling
  seed: 0, // fixed so that sampled runs repeat
  stopAtEos: true, // as llama2.c and transformers' generate
  kernels: true, // generation is inference: kernels run whenever the policy (default off) turns them on
};

/**
 * Generates a continuation of `prompt` (token ids, BOS included if wanted) with a KV cache.
 * Each step runs one token through the blocks and reads back only the chosen id; sampling uses the
 * Gumbel-max trick on the device (argmax of logits/T + Gumbel noise ≡ a draw from softmax(logits/T)).
 * Stops at maxNewTokens, EOS (stopAtEos) or the model's context length. Returns the new ids.
 */
export async function generate(model: InferenceModel, prompt: readonly number[], opts: GenerateOptions = {}): Promise<number[]> {
  const o = { ...GENERATE_DEFAULTS, ...opts };
  if (prompt.length === 0) throw new Error('generate: the prompt is empty (prepend BOS to start from nothing)');
  if (!o.greedy && !(o.temperature > 0)) throw new Error(`generate: temperature must be > 0, got ${o.temperature}`);
  const c = model.config;
  const V = c.vocabSize;
  const rand = mulberry32(o.seed); // host-side sampling noise: backend independent
  const out: number[] = [];
  let cache: KV[] = [];
  let input = [...prompt];
  let past = 0;
  try {
    while (out.length < o.maxNewTokens && past + input.length <= c.maxPositions) {
      const T = input.length;
      const noise = o.greedy ? null : gumbel(rand, V);
      // [next id, k0, v0, k1, v1, …]: the new cache leaves the scope, everything else is freed.
      const result = tf.tidy((): tf.Tensor[] => {
        const ids = tf.tensor2d(input, [1, T], 'int32');
        const step = makeStep(model, 1, T, past, { kernels: o.kernels }, true);
        let x = embed(model, ids, { pastLength: past });
        const kvs: KV[] = [];
        for (let i = 0; i < c.numLayers; i++) {
          const { y, kv } = block(model, i, x, step, cache[i]);
          kvs.push(kv);
          x = y;
        }
        disposeStep(step);
        const last = tf.slice(x, [0, T - 1, 0], [1, 1, c.hiddenSize]) as tf.Tensor3D;
        let logits = tf.reshape(head(model, last, o.kernels), [V]);
        if (noise) logits = tf.add(tf.div(logits, o.temperature), tf.tensor1d(noise));
        return [tf.argMax(logits), ...kvs.flatMap((kv) => [kv.k, kv.v])];
      });
      for (const kv of cache) {
        kv.k.dispose();
        kv.v.dispose();
      }
      const [next, ...flat] = result;
      cache = [];
      for (let i = 0; i < flat.length; i += 2) cache.push({ k: flat[i] as tf.Tensor4D, v: flat[i + 1] as tf.Tensor4D });
      const id = (await next.data())[0];
      next.dispose();
      out.push(id);
      o.onToken?.(id);
      past += T;
      input = [id];
      if (o.stopAtEos && c.eosTokenId !== null && id === c.eosTokenId) break;
    }
  } finally {
    for (const kv of cache) {
      kv.k.dispose();
      kv.v.dispose();
    }
  }
  return out;
}

/** Gumbel(0, 1) noise −log(−log u) for V logits (also the executor's sampling noise, lib/engine/generate.ts). */
export function gumbel(rand: () => number, V: number): Float32Array {
  const g = new Float32Array(V);
  for (let i = 0; i < V; i++) {
    const u = Math.max(rand(), 1e-20);
    g[i] = -Math.log(-Math.log(u));
  }
  return g;
}
