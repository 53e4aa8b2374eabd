// When the model engine uses the custom WGSL kernels instead of tfjs ops. Their correctness checks
// and benchmarks are registered in lib/kernels/suites.ts, which the forward pass does not load.
//
// A kernel runs only when all of these hold:
//   1. the caller allows it: forward(..., { kernels: true }) — the scorer, generate, and the
//      compression driver's block forwards (lib/methods/sequential.ts);
//   2. the policy is on: setKernels({ mode: 'auto' }) / withKernels(...), or LLMCB_KERNELS=auto in
//      the environment; default 'off', so the plain tfjs path is what runs unless asked
//      (LLMCB_KERNEL_ATTENTION sets the attention tiles' default the same way);
//   3. the backend is webgpu, the kernel supports the shape on this device (else the tfjs op runs:
//      the fallback is per call, never an error), and no gradient tape is recording — except for
//      the fused RMSNorm, RoPE and SwiGLU and attention on the GEMM (attentionOnGemm), which have
//      gradients (OmniQuant's block training), and the dense linear's GEMM when gradGemm is 'on'.
// The policy lives in tfjs's environment flags (one per process, like tfjs's own settings).
import * as tf from '@tensorflow/tfjs';
import type { InferenceModel } from '../engine/inference';
import { maxTensorElements, webgpuDevice } from '../runtime/backend';
import { ATTENTION_TILES, attentionTilesFor, attentionUnsupported, fusedAttention, planAttention, type AttentionTileName } from './attention';
import { attentionOnGemm } from './attention-grad';
import { rmsNorm, rmsNormWithGrad, ropeHeads, ropeHeadsWithGrad, swiglu, swigluWithGrad } from './fused';
import { GEMM_DEFAULTS, GEMM_TILES, gemm, gemmGram, gemmUnsupported, gemmWithGrad, planGemm, type GemmTile, type GemmTileName, type GemmTilesFor } from './gemm';
import { quantLinear } from './quant-linear';
import { INT8_DEFAULTS, INT8_TILES, type Int8TileName } from './w8a8';

export type KernelMode = 'auto' | 'off';

export interface KernelPolicy {
  mode: KernelMode; // 'auto': kernels where allowed and supported; 'off': tfjs ops everywhere
  gemm: GemmTileName | 'off'; // tiles of the fp32 linear GEMM, or 'off' to keep tfjs's matMul
  attention: AttentionTileName | 'auto' | 'off'; // tiles of the fused attention ('auto': by head dim, attentionTilesFor), or 'off'
  gemmMinRows: number; // linears with fewer input rows (decode) keep tfjs's matMul
  int8Tile: Int8TileName | 'auto'; // tiling of the W8A8 GEMM on subgroup matrices (INT8_TILES; 'auto' by output size)
  fusedOps: 'on' | 'off'; // the fused RMSNorm, RoPE-with-head-transpose and SwiGLU kernels (fused.ts)
  gradGemm: 'on' | 'off'; // under a gradient tape, the dense linears on the GEMM with its gradients (gemmWithGrad) or tfjs's matMul
}

export const KERNEL_DEFAULTS: KernelPolicy = {
  mode: 'off', // plain tfjs unless an entry point turns kernels on
  gemm: GEMM_DEFAULTS.tiles, // see scripts/bench-kernels.ts --tiles for the device's best
  attention: 'auto', // by head dim and new positions (attentionTilesFor); its tilings passed check-kernels on the H100 (rows ce8cbba)
  gemmMinRows: 64, // a 64-row tile would be mostly idle below this; tfjs has a GEMV path
  int8Tile: INT8_DEFAULTS.tile, // see scripts/bench-kernels.ts --kernels w8a8 for the device's best
  fusedOps: 'on',
  // 'off', as before gemmWithGrad: on the H100, OmniQuant W4's 1-block 7B training (attention on
  // the GEMM) took 62.7 s with the linears on gemmWithGrad against 60.4 s on tfjs's matMul, one
  // after the other in one call (rows e5c06ff); earlier, 63.1 s against 53.0 s in two calls. Both
  // ran before gemmTilesUnder: OmniQuant's gradients are computed after withCalibKernels restores
  // 'off', so the backward products of gemmWithGrad (and of attentionOnGemm) fell to tfjs's matMul
  // with transposed copies. Not measured since; LLMCB_KERNEL_GRAD_GEMM=on to compare.
  gradGemm: 'off',
};

const FLAGS = { mode: 'LLMCB_KERNELS', gemm: 'LLMCB_KERNEL_GEMM', attention: 'LLMCB_KERNEL_ATTENTION', gemmMinRows: 'LLMCB_KERNEL_GEMM_MIN_ROWS', int8Tile: 'LLMCB_KERNEL_INT8_TILE', fusedOps: 'LLMCB_KERNEL_FUSED_OPS', gradGemm: 'LLMCB_KERNEL_GRAD_GEMM' } as const;

function ensureFlags(): void {
  const env = tf.env();
  if ((env as unknown as { flagRegistry: Record<string, unknown> }).flagRegistry[FLAGS.mode]) return;
  env.registerFlag(FLAGS.mode, () => parseMode(process.env.LLMCB_KERNELS ?? KERNEL_DEFAULTS.mode));
  env.registerFlag(FLAGS.gemm, () => gemmPolicy(process.env.LLMCB_KERNEL_GEMM ?? KERNEL_DEFAULTS.gemm));
  env.registerFlag(FLAGS.attention, () => attentionPolicy(process.env.LLMCB_KERNEL_ATTENTION ?? KERNEL_DEFAULTS.attention));
  env.registerFlag(FLAGS.gemmMinRows, () => KERNEL_DEFAULTS.gemmMinRows);
  env.registerFlag(FLAGS.int8Tile, () => KERNEL_DEFAULTS.int8Tile);
  env.registerFlag(FLAGS.fusedOps, () => KERNEL_DEFAULTS.fusedOps);
  env.registerFlag(FLAGS.gradGemm, () => onOff('gradGemm', process.env.LLMCB_KERNEL_GRAD_GEMM ?? KERNEL_DEFAULTS.gradGemm));
}

function onOff(key: 'fusedOps' | 'gradGemm', s: string): 'on' | 'off' {
  if (s === 'on' || s === 'off') return s;
  throw new Error(`${key} '${s}' (choose on or off)`);
}

function gemmPolicy(s: string): KernelPolicy['gemm'] {
  if (s === 'off' || s in GEMM_TILES) return s as KernelPolicy['gemm'];
  throw new Error(`gemm tiles '${s}' (choose off or ${Object.keys(GEMM_TILES).join(', ')})`);
}

function attentionPolicy(s: string): KernelPolicy['attention'] {
  if (s === 'off' || s === 'auto' || s in ATTENTION_TILES) return s as KernelPolicy['attention'];
  throw new Error(`attention tiles '${s}' (choose auto, off or ${Object.keys(ATTENTION_TILES).join(', ')})`);
}

export function parseMode(s: string): KernelMode {
  if (s === 'auto' || s === 'off') return s;
  throw new Error(`kernel mode '${s}' (choose auto or off)`);
}

/** The current kernel policy. */
export function kernelPolicy(): KernelPolicy {
  ensureFlags();
  const env = tf.env();
  return {
    mode: env.get(FLAGS.mode) as KernelMode,
    gemm: env.get(FLAGS.gemm) as KernelPolicy['gemm'],
    attention: env.get(FLAGS.attention) as KernelPolicy['attention'],
    gemmMinRows: env.getNumber(FLAGS.gemmMinRows),
    int8Tile: env.get(FLAGS.int8Tile) as KernelPolicy['int8Tile'],
    fusedOps: env.get(FLAGS.fusedOps) as KernelPolicy['fusedOps'],
    gradGemm: env.get(FLAGS.gradGemm) as KernelPolicy['gradGemm'],
  };
}

/** Sets (part of) the policy; returns the previous one. */
export function setKernels(p: Partial<KernelPolicy>): KernelPolicy {
  const prev = kernelPolicy();
  if (p.mode !== undefined) parseMode(p.mode);
  if (p.gemm !== undefined) gemmPolicy(p.gemm);
  if (p.attention !== undefined) attentionPolicy(p.attention);
  if (p.gemmMinRows !== undefined && !(Number.isInteger(p.gemmMinRows) && p.gemmMinRows >= 1)) throw new Error(`gemmMinRows must be a positive integer, got ${p.gemmMinRows}`);
  if (p.fusedOps !== undefined) onOff('fusedOps', p.fusedOps);
  if (p.gradGemm !== undefined) onOff('gradGemm', p.gradGemm);
  if (p.int8Tile !== undefined && p.int8Tile !== 'auto' && !(p.int8Tile in INT8_TILES)) throw new Error(`int8 tile '${p.int8Tile}' (choose from auto, ${Object.keys(INT8_TILES).join(', ')})`);
  for (const [k, v] of Object.entries(p)) if (v !== undefined) tf.env().set(FLAGS[k as keyof KernelPolicy], v);
  return prev;
}

/** Runs fn under the policy p (merged into the current one) and restores the previous policy. */
export async function withKernels<T>(p: Partial<KernelPolicy>, fn: () => T | Promise<T>): Promise<T> {
  const prev = setKernels(p);
  try {
    return await fn();
  } finally {
    setKernels(prev);
  }
}

const tapeOn = (): boolean => (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();

/** Policy 'auto' on the webgpu backend (whether a gradient tape records aside). */
function policyOn(p: KernelPolicy = kernelPolicy()): boolean {
  return p.mode === 'auto' && webgpuDevice() !== null;
}

/** True when kernels may run now: policy 'auto', the webgpu backend, and no gradient tape recording. */
export function kernelsActive(): boolean {
  return policyOn() && !tapeOn();
}

/**
 * The linear y = x Wᵀ (+ b) on a kernel, or null to use tfjs's matMul: a packed (quantized) weight
 * (InferenceModel.packedLinears) runs its W8A8 or weight-only kernel; a dense one the fp32 GEMM when x has
 * at least gemmMinRows rows, under a gradient tape with the GEMM's gradients (gemmWithGrad) when the
 * policy's gradGemm is 'on' (a packed weight has none). Call only where kernels are allowed (see the header).
 */
export function kernelLinear(model: InferenceModel, name: string, x: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D | null {
  const p = kernelPolicy();
  if (!policyOn(p)) return null;
  const packed = model.packedLinears?.get(name);
  const w = model.weights.get(name) as tf.Tensor2D | undefined;
  if (tapeOn()) {
    const tilesFor = gemmTilesUnder(p);
    return p.gradGemm === 'on' && !packed && w && tilesFor(x.shape[0], x.shape[1], w.shape[0]) ? gemmWithGrad(x, w, bias, tilesFor) : null;
  }
  if (packed) return quantLinear(packed, x, bias, { int8: { tile: p.int8Tile } });
  return w ? kernelMatMulT(x, w, bias) : null;
}

/**
 * True when kernelLinear would run the W8A8 kernel for this linear now: that kernel quantizes its
 * input per token itself, so the model's fake activation quantization must not run before it.
 */
export function kernelQuantizesInput(model: InferenceModel, name: string): boolean {
  return model.packedLinears?.get(name)?.kind === 'w8a8' && kernelsActive();
}

/**
 * The GEMM tiles for y [N, out] = x [N, in]·Wᵀ under policy p, by size and device, a gradient tape
 * aside, else null. gemmWithGrad and attentionOnGemm take this with the policy of the forward that
 * records them: their gradients' products are computed later (tf.grads, tf.variableGrads), when the
 * entry point that turned kernels on for the forward (withCalibKernels) may have restored 'off'.
 */
function gemmTilesUnder(p: KernelPolicy): GemmTilesFor {
  return (N, inDim, out) => {
    if (!policyOn(p) || p.gemm === 'off' || N < p.gemmMinRows) return null;
    const tiles = GEMM_TILES[p.gemm];
    return gemmUnsupported(tiles, planGemm(N, inDim, out, tiles)) ? null : tiles;
  };
}

/** gemmTilesUnder the current policy. */
function gemmTiles(N: number, inDim: number, out: number): GemmTile | null {
  return gemmTilesUnder(kernelPolicy())(N, inDim, out);
}

/** gemmTiles when the kernel may run now (no gradient tape recording), else null. */
function gemmTilesFor(N: number, inDim: number, out: number): GemmTile | null {
  return tapeOn() ? null : gemmTiles(N, inDim, out);
}

/** x [N, in] · W [out, in]ᵀ (+ bias) on the fp32 GEMM kernel, or null to use tfjs's matMul (policy, size, device). */
export function kernelMatMulT(x: tf.Tensor2D, w: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D | null {
  const tiles = gemmTilesFor(x.shape[0], x.shape[1], w.shape[0]);
  return tiles && gemm(x, w, bias, tiles);
}

/** x [n, k] · xᵀ on the GEMM kernel's symmetric form (gemmGram: half the tiles), or null to use tfjs's matMul (as kernelMatMulT). */
export function kernelGram(x: tf.Tensor2D): tf.Tensor2D | null {
  const tiles = gemmTilesFor(x.shape[0], x.shape[1], x.shape[0]);
  return tiles && gemmGram(x, tiles);
}

/**
 * The narrowest head attentionOnGemm takes (under a gradient tape); narrower heads keep the plain
 * ops. Chosen, not measured: the embedded models' heads (hd 8 to 36) would leave most of the GEMM's
 * 16-deep K slices empty, so their attention stays as it was.
 */
export const ATTENTION_ON_GEMM_MIN_HD = 64;

/**
 * Causal attention of new positions pastLength.. on the fused kernel → [B·T, H·hd], under a gradient
 * tape on the GEMM with its gradients (attentionOnGemm, heads of ATTENTION_ON_GEMM_MIN_HD or more),
 * or null to use attentionPlain (policy off, unsupported shape). Padding masks are the caller's to exclude.
 */
export function kernelAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pastLength: number): tf.Tensor2D | null {
  const p = kernelPolicy();
  if (!policyOn(p) || p.attention === 'off') return null;
  const [B, H, T, hd] = q.shape;
  if (tapeOn()) {
    const tilesFor = gemmTilesUnder(p);
    return hd >= ATTENTION_ON_GEMM_MIN_HD && tilesFor((H / k.shape[1]) * T, hd, k.shape[2]) ? attentionOnGemm(q, k, v, pastLength, tilesFor) : null;
  }
  for (const name of p.attention === 'auto' ? attentionTilesFor(hd, T) : [p.attention]) {
    const tiles = ATTENTION_TILES[name];
    if (!attentionUnsupported(planAttention(B, H, k.shape[1], T, k.shape[2], hd, tiles), tiles)) return fusedAttention(q, k, v, pastLength, tiles);
  }
  return null;
}

/**
 * True when the fused kernels may run now on a tensor of this size (policy, backend, one storage
 * binding). They have gradients, so they also run under a gradient tape (their *WithGrad forms).
 */
function fusedActive(size: number): boolean {
  const p = kernelPolicy();
  return policyOn(p) && p.fusedOps === 'on' && size <= maxTensorElements();
}

/** RMSNorm x [..., D] · w on the fused kernel, or null to use the plain ops. */
export function kernelRmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor | null {
  return fusedActive(x.size) ? (tapeOn() ? rmsNormWithGrad : rmsNorm)(x, w, eps) : null;
}

/** A linear's output [B·T, n·hd] as RoPE'd heads [B, n, T, hd] on the fused kernel, or null. */
export function kernelRopeHeads(a: tf.Tensor2D, rope: { cos: tf.Tensor2D; sin: tf.Tensor2D }, B: number, heads: number): tf.Tensor4D | null {
  return fusedActive(a.size) ? (tapeOn() ? ropeHeadsWithGrad : ropeHeads)(a, rope.cos, rope.sin, B, heads) : null;
}

/** silu(gate) · up on the fused kernel, or null. */
export function kernelSwiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor | null {
  return fusedActive(gate.size) ? (tapeOn() ? swigluWithGrad : swiglu)(gate, up) : null;
}
