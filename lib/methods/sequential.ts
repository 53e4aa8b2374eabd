// The one sequential calibration driver (GPTQ / SparseGPT / Wanda / AWQ reference structure):
// embed the calibration windows, then block by block capture the inputs of the block's linears,
// let the method solve and replace weights, and feed the next block either the *compressed*
// block's outputs (GPTQ, SparseGPT, Wanda) or the full-precision ones (AWQ), as each method's
// reference code does.
import { AsyncLocalStorage } from 'node:async_hooks';
import * as tf from '@tensorflow/tfjs';
import { ARCHS } from '../models/arch';
import type { Model } from '../models/types';
import { maxHeads } from '../models/weights';
import { maxTensorElements, webgpuDevice } from '../runtime/backend';
import { gpuBytesInUse, offloadToHost } from '../runtime/residency';
import { embed, runBlock, type ForwardOptions } from '../models/transformer';
import { setKernels } from '../kernels';
import { kernelGroups, KernelTimes, profileGpu } from '../kernels/timing';
import { syncDevice } from '../runtime/probes';
import { calibBatches, checkCalibForModel, type CalibSet } from './calib';

export type Propagate = 'compressed' | 'dense';

/** Called with each linear's input x [tokens, in] (short linear name, e.g. 'q'), outside any tf.tidy; must not dispose x. */
export type LinearObserver = (linear: string, x: tf.Tensor2D, info: { batch: number; samples: number }) => void;

export interface BlockContext {
  model: Model;
  /** Block index. */
  block: number;
  /** Short names of this block's linears, in execution order (ARCHS[arch].groups). */
  linears: string[];
  /** The block's calibration inputs, one [B, T, D] tensor per batch (owned by the driver). */
  inputs: readonly tf.Tensor3D[];
  /**
   * Runs the block (current weights) over every calibration batch and calls observe with the
   * input of each linear; outputs are discarded. Linears sharing an input (q, k, v) each get it.
   */
  observe(observe: LinearObserver, opts?: { linears?: string[] }): void;
  /** The block on x [B, T, D] with the current weights (caller disposes the result). */
  run(x: tf.Tensor3D, opts?: ForwardOptions): tf.Tensor3D;
  /**
   * The block's outputs with the weights it had when the callback started (one [B, T, D] per
   * batch; owned by the driver): the full-precision targets for methods that fit the block
   * output (AWQ's loss, OmniQuant's training).
   */
  denseOutputs(): readonly tf.Tensor3D[];
  /**
   * Runs fn, waits for the GPU work queued so far and adds the wall time to the block's phase
   * `name` (onBlockDone reports the phases: where a block's time goes).
   */
  timed<T>(name: string, fn: () => T | Promise<T>): Promise<T>;
}

/** Milliseconds per named phase of one block (BlockContext.timed, plus the driver's 'propagate'); sub-phases as 'solve.hinv'. */
export type BlockPhases = Record<string, number>;

/** The phase being timed (BlockContext.timed), for subPhase. */
const currentPhase = new AsyncLocalStorage<{ phases: BlockPhases; name: string }>();

/**
 * With LLMCB_PROFILE_GPU=1 on webgpu, each phase of a block (BlockContext.timed) runs under
 * profileGpu and its GPU time by kernel goes to stderr: where a block's time goes, kernel by kernel
 * (every dispatch in a pass of its own: a little slower, the same results).
 */
function profileGpuOn(): boolean {
  const v = process.env.LLMCB_PROFILE_GPU ?? '0';
  if (v !== '0' && v !== '1') throw new Error(`LLMCB_PROFILE_GPU='${v}': expected '0' or '1'`);
  return v === '1' && webgpuDevice() !== null;
}

/** fn under profileGpu, its kernels' GPU time on stderr headed `what`. */
async function profiled<T>(what: string, fn: () => Promise<T>): Promise<T> {
  const times = new KernelTimes();
  const r = await profileGpu(fn, times);
  console.error([`[profile] ${what}`, ...times.report(kernelGroups(times), 12).map((l) => `[profile]   ${l}`)].join('\n'));
  return r;
}

/** Runs fn, waits for the GPU and adds the wall time to phases[name]. */
async function timeInto<T>(phases: BlockPhases, name: string, fn: () => T | Promise<T>): Promise<T> {
  const t = performance.now();
  const r = await fn();
  await syncDevice();
  phases[name] = (phases[name] ?? 0) + performance.now() - t;
  return r;
}

/**
 * Times fn as a part of the phase that runs it ('solve.hinv' inside ctx.timed('solve')), GPU-synced
 * like the phase; outside a timed phase (tests, the host solvers' callers) it only runs fn.
 */
export function subPhase<T>(name: string, fn: () => T | Promise<T>): Promise<T> {
  const p = currentPhase.getStore();
  return p ? timeInto(p.phases, `${p.name}.${name}`, fn) : Promise.resolve(fn());
}

/** ' (capture 12.1 s, solve 8.0 s, propagate 6.1 s)': a block's phases for a progress line; '' when none. */
export function formatPhases(phases: BlockPhases | undefined): string {
  const parts = Object.entries(phases ?? {}).map(([k, ms]) => `${k} ${(ms / 1000).toFixed(1)} s`);
  return parts.length ? ` (${parts.join(', ')})` : '';
}

export interface SequentialOptions {
  /** Which outputs feed the next block: the compressed block's (GPTQ/SparseGPT/Wanda) or the dense one's (AWQ). */
  propagate: Propagate;
  /** Windows per forward call (memory vs. speed; results do not depend on it). */
  batchSize?: number;
  /** The method's work on one block; may replace the block's weights in model.weights. */
  perBlock(ctx: BlockContext): void | Promise<void>;
  /** Forward options used when computing the outputs passed on (e.g. activation quantization). */
  propagateOptions?: ForwardOptions;
  /** Only these blocks (default: all). */
  blocks?: number[];
  /** Progress callback after each block, with its phases (BlockPhases). */
  onBlockDone?(block: number, ms: number, phases: BlockPhases): void;
  /** Called once per block with the live tensors (for peak-memory sampling). */
  sample?(): void;
}

export const sequentialDefaults = {
  batchSize: 8, // windows per forward; the reference runs 1 at a time, results are the same
} as const;

/**
 * Layer streaming (LLMCB_STREAM, default 'on'): on webgpu, every weight is moved to the host after
 * the calibration windows are embedded and each block's weights after the block is done, so the
 * GPU holds one block's weights, the calibration activations and the solver's work at a time, as
 * the reference implementations do (lib/runtime/residency.ts). Results do not depend on it; off
 * webgpu it does nothing. 'off' keeps every weight on the GPU once used.
 */
export function streamingOn(): boolean {
  const v = process.env.LLMCB_STREAM ?? 'on';
  if (v !== 'on' && v !== 'off') throw new Error(`LLMCB_STREAM='${v}': expected 'on' or 'off'`);
  return v === 'on';
}

/**
 * The driver's own block forwards (capturing the linears' inputs, the dense outputs, the outputs
 * passed on) on the custom WGSL kernels (LLMCB_CALIB_KERNELS, default 'auto'): on webgpu the fp32
 * GEMM and the fused causal attention (no [B·heads, T, T] scores) run in place of tfjs's matMul
 * and attention ops, the same fp32 arithmetic in another order; the observers run under the same
 * policy (the Hessians' XᵀX on the GEMM); elsewhere, and wherever a kernel does not support a
 * shape, the tfjs ops run (lib/kernels). 'off' keeps tfjs's ops. The methods' own forwards
 * (ctx.run: AWQ's search, OmniQuant's targets) run under the same policy; under a gradient tape
 * (OmniQuant's training) only the fused RMSNorm, RoPE and SwiGLU run (they have gradients), the
 * GEMM and attention kernels step aside for tfjs's ops.
 */
export function calibKernelsOn(): boolean {
  const v = process.env.LLMCB_CALIB_KERNELS ?? 'auto';
  if (v !== 'auto' && v !== 'off') throw new Error(`LLMCB_CALIB_KERNELS='${v}': expected 'auto' or 'off'`);
  return v === 'auto';
}

/** Runs fn with the kernel policy on when calibKernelsOn, for this call only (restored after). */
export function withCalibKernels<T>(fn: () => T): T {
  if (!calibKernelsOn()) return fn();
  const prev = setKernels({ mode: 'auto' });
  try {
    return fn();
  } finally {
    setKernels(prev);
  }
}

/** Names of block i's weights in model.weights (norms, linears, biases). */
export function blockWeightNames(model: Model, block: number): string[] {
  const prefix = ARCHS[model.config.arch].blockPrefix(block);
  return [...model.weights.keys()].filter((k) => k.startsWith(prefix));
}

/** Maps the name a LinearInputHook reports (short 'q' or a full weight name) to the short name. */
export function shortLinearName(model: Model, name: string): string {
  const spec = ARCHS[model.config.arch];
  if (name in spec.linears) return name;
  for (const [short, suffix] of Object.entries(spec.linears)) {
    if (name === suffix || name.endsWith(`.${suffix}`) || name.endsWith(`.${suffix}.weight`)) return short;
  }
  throw new Error(`linear '${name}' is not a linear of architecture '${model.config.arch}'`);
}

/** The block's short linear names in execution order. */
export function blockLinearNames(model: Model): string[] {
  return ARCHS[model.config.arch].groups.flatMap((g) => g.linears);
}

/** Embeds the calibration windows: one [B, T, D] tensor per batch. Caller disposes. */
export function embedCalibration(model: Model, calib: CalibSet, batchSize: number): tf.Tensor3D[] {
  checkCalibForModel(calib, model);
  const ids = calibBatches(calib, batchSize);
  try {
    return ids.map((b) => embed(model, b));
  } finally {
    ids.forEach((t) => t.dispose());
  }
}

/** With LLMCB_TRACE_PHASES=1, a line on stderr as each phase of a block begins, with the GPU bytes held by live tensors (to find where a run runs out of memory). */
function tracePhase(block: number, name: string): void {
  if (process.env.LLMCB_TRACE_PHASES !== '1') return;
  const bytes = gpuBytesInUse();
  console.error(`block ${block}: ${name} begins${bytes === null ? '' : `, ${(bytes / 2 ** 30).toFixed(2)} GiB of live tensors on the GPU`}`);
}

/** Thrown by observe's hook once every wanted linear input is captured, to end the block's forward early (its tidy frees what it made). */
class ForwardDone extends Error {}

/** Runs the sequential driver over the model's blocks. Weights are replaced in place by perBlock. */
export async function runSequential(model: Model, calib: CalibSet, opts: SequentialOptions): Promise<void> {
  // Windows per forward, also bounded so that a batch's [B·heads, T, T] attention scores fit one GPU binding.
  const fit = Math.max(1, Math.floor(maxTensorElements() / (maxHeads(model.config) * calib.seqlen * calib.seqlen)));
  const batchSize = Math.min(opts.batchSize ?? sequentialDefaults.batchSize, fit);
  if (opts.propagate !== 'compressed' && opts.propagate !== 'dense') throw new Error(`runSequential: propagate must be 'compressed' or 'dense', got '${opts.propagate}'`);
  const nLayers = model.config.numLayers;
  const blocks = opts.blocks ?? Array.from({ length: nLayers }, (_, i) => i);
  for (const b of blocks) if (!Number.isInteger(b) || b < 0 || b >= nLayers) throw new Error(`runSequential: block ${b} out of range 0..${nLayers - 1}`);
  const linears = blockLinearNames(model);
  const stream = streamingOn();
  const kernels = calibKernelsOn();
  const profile = profileGpuOn();
  // The driver's block forward, on the kernels when calibKernelsOn.
  const fwd = (block: number, x: tf.Tensor3D, o: ForwardOptions = {}): tf.Tensor3D =>
    withCalibKernels(() => runBlock(model, block, x, kernels ? { ...o, kernels: true } : o));
  let inputs = embedCalibration(model, calib, batchSize);
  try {
    if (stream) await offloadToHost(model.weights); // the embedding, and anything an earlier step left on the GPU
    for (let block = 0; block < nLayers; block++) {
      const t0 = performance.now();
      const phases: BlockPhases = {};
      const timed = <T>(name: string, fn: () => T | Promise<T>): Promise<T> => {
        tracePhase(block, name);
        const run = () => currentPhase.run({ phases, name }, () => timeInto(phases, name, fn));
        return profile ? profiled(`block ${block}, ${name}`, run) : run();
      };
      const selected = blocks.includes(block);
      let dense: tf.Tensor3D[] | null = null;
      const getDense = () => {
        if (!dense) dense = inputs.map((x) => fwd(block, x));
        return dense;
      };
      if (selected) {
        // Dense outputs are needed to propagate them; compute before the weights change.
        if (opts.propagate === 'dense') getDense();
        const ctx: BlockContext = {
          model,
          block,
          linears,
          inputs,
          observe(observe, o = {}) {
            const want = new Set(o.linears ?? linears);
            inputs.forEach((x, batch) => {
              const info = { batch, samples: x.shape[0] };
              // The hook runs inside the block's tidy: keep copies and call the observer after
              // the block returns, so whatever the observer creates is not disposed under it.
              const captured: [string, tf.Tensor2D][] = [];
              const copies = new Map<tf.Tensor2D, tf.Tensor2D>();
              try {
                try {
                  const out = fwd(block, x, {
                    onLinearInput: (name, xin) => {
                      const short = shortLinearName(model, name);
                      if (!want.has(short)) return;
                      let c = copies.get(xin);
                      if (!c) {
                        c = tf.keep(xin.clone());
                        copies.set(xin, c);
                      }
                      captured.push([short, c]);
                      // Every wanted input is in: the rest of the block (the last linear itself, the residual) is not run.
                      if (captured.length === want.size) throw new ForwardDone();
                    },
                  });
                  out.dispose();
                } catch (e) {
                  if (!(e instanceof ForwardDone)) throw e;
                }
                // Under the same kernel policy as the forward: the observers' products (the Hessians' XᵀX) may use the GEMM.
                withCalibKernels(() => {
                  for (const [short, c] of captured) observe(short, c, info);
                });
              } finally {
                copies.forEach((c) => c.dispose());
              }
            });
          },
          run: (x, fo) => fwd(block, x, fo),
          denseOutputs: () => getDense(),
          timed,
        };
        await opts.perBlock(ctx);
        opts.sample?.();
      }
      let next: tf.Tensor3D[];
      if (opts.propagate === 'dense' && selected) {
        next = getDense();
        dense = null;
      } else {
        (dense as tf.Tensor3D[] | null)?.forEach((t) => t.dispose());
        // Each batch's input is freed as soon as its output exists: activations peak at one copy plus a batch, not two copies.
        next = [];
        try {
          await timed('propagate', () => {
            for (const x of inputs) {
              next.push(fwd(block, x, opts.propagateOptions));
              x.dispose();
            }
          });
        } catch (e) {
          next.forEach((t) => t.dispose());
          throw e;
        }
      }
      inputs.forEach((t) => t.dispose());
      inputs = next;
      if (stream) await timed('offload', () => offloadToHost(model.weights, blockWeightNames(model, block)));
      opts.onBlockDone?.(block, performance.now() - t0, phases);
    }
  } finally {
    inputs.forEach((t) => t.dispose());
  }
}
