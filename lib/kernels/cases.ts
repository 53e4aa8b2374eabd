// What each kernel contributes to the GPU-host scripts: correctness checks (scripts/check-kernels.ts,
// and the small ones in the vitest suites) and benchmarks against the plain tfjs op
// (scripts/bench-kernels.ts). The registries live in lib/kernels/suites.ts; the helpers here make
// every check compare the same way and poison its outputs the same way.
import * as tf from '@tensorflow/tfjs';
import { syncDevice } from '../runtime/probes';
import { gpuBuffer, grid1d, runKernel, u32 } from './gpu';

export interface CheckResult {
  metric: string; // what `error` measures, e.g. 'max_rel_err' (max |got − want| / max |want|)
  error: number;
  tolerance: number; // pass when error ≤ tolerance
  poisoned: boolean | null; // every output buffer held NaN before the kernel ran; null: a whole-algorithm check (no single output buffer)
  note?: string; // what else the check measured (written into the row's note)
}

export interface KernelCheck {
  kernel: string; // e.g. 'gemm'
  name: string; // the case, e.g. 'N=37 in=70 out=129 bias'
  small: boolean; // cheap enough for lavapipe (CPU Vulkan) and the vitest suites
  run(): Promise<CheckResult>;
}

/** A kernel against the plain tfjs op; `kernel` and `plain` each return a fresh tensor. */
export interface BenchSetup {
  kernel(): tf.Tensor;
  plain(): tf.Tensor;
  dispose(): void;
}

export interface KernelBench {
  kernel: string;
  name: string;
  small: boolean;
  flops: number; // useful floating-point operations per call (for GFLOP/s; integer ops for INT8 kernels)
  bytes?: number; // bytes a memory-bound kernel must move per call (read + written, for GB/s), when that is its measure
  variants: string[]; // tile choices the kernel can run with (bench-kernels --tiles picks among them)
  setup(variant: string): BenchSetup;
  /**
   * Checks one variant on the bench's own inputs (the ones setup(variant) times); bench-kernels
   * runs it before timing the variant and does not time a failing one.
   */
  check?(variant: string): Promise<CheckResult>;
  /** Frees what the variants of this case share (operands made once per case); called after its last variant. */
  release?(): void;
}

/**
 * The seed of one case of a check registry: the run's seed mixed with the case's salt (a 32-bit
 * hash), so that cases draw different inputs and each run of check-kernels (--seed, random by
 * default) draws fresh ones.
 */
export function caseSeed(seed: number, salt: number): number {
  let h = (seed ^ Math.imul((salt + 0x9e3779b9) >>> 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
  return (h ^ (h >>> 16)) >>> 0;
}

/** max |got − want| / max |want| (0 when both are all zeros); NaN anywhere in got gives Infinity. */
export async function maxRelError(got: tf.Tensor, want: tf.Tensor): Promise<number> {
  if (got.shape.join() !== want.shape.join()) throw new Error(`shape [${got.shape.join(', ')}] differs from the reference's [${want.shape.join(', ')}]`);
  const [g, w] = await Promise.all([got.data(), want.data()]);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < g.length; i++) {
    const d = Math.abs(g[i] - w[i]);
    if (Number.isNaN(d)) return Infinity;
    diff = Math.max(diff, d);
    scale = Math.max(scale, Math.abs(w[i]));
  }
  return scale === 0 ? diff : diff / scale;
}

/**
 * Σ f(inputs)·c and its gradients with respect to every input, as [value, ...grads]: what a gradient
 * check compares between a kernel with a backward and the plain ops (c: seeded weights shaped as f's output).
 */
export function weightedSumAndGrads(f: (...t: tf.Tensor[]) => tf.Tensor, inputs: tf.Tensor[], c: tf.Tensor): tf.Tensor[] {
  return tf.tidy(() => {
    const { value, grads } = tf.valueAndGrads((...t: tf.Tensor[]) => tf.sum(tf.mul(f(...t), c)))(inputs);
    return [value, ...grads];
  });
}

/** The largest maxRelError over pairs (a value and its gradients, say): got[i] against want[i]. */
export async function maxRelErrorOf(got: tf.Tensor[], want: tf.Tensor[]): Promise<number> {
  if (got.length !== want.length) throw new Error(`${got.length} tensors against the reference's ${want.length}`);
  let error = 0;
  for (let i = 0; i < want.length; i++) error = Math.max(error, await maxRelError(got[i], want[i]));
  return error;
}

/** NaN buffers made per output size: intermediates of the same size (a split kernel's partials) may take some first. */
const POISON_COPIES = 4;

/**
 * Runs fn so that its outputs land in buffers that were just filled with NaN: NaN tensors of the
 * outputs' sizes are made, freed to tfjs's buffer pool, and fn's outputs take them from the pool
 * (checked by buffer identity). `poisoned` is false when an output got a fresh buffer instead.
 */
export async function runPoisoned(outputSizes: number[], fn: () => tf.Tensor[]): Promise<{ outputs: tf.Tensor[]; poisoned: boolean }> {
  const poison = outputSizes.flatMap((n) => Array.from({ length: POISON_COPIES }, () => tf.fill([n], NaN)));
  const buffers = new Set(poison.map((t) => gpuBuffer(t)));
  tf.dispose(poison);
  await syncDevice(); // the NaN fill has run and the freed buffers are back in the pool
  const outputs = fn();
  return { outputs, poisoned: outputs.every((t) => buffers.has(gpuBuffer(t))) };
}

// tfjs-webgpu 4.22 computes int32 ops (notEqual, sub, slice, gather, ...) through f32 on the GPU:
// values past 2^24 lose their low bits (seen on lavapipe: notEqual found 8192 of 65536 differing
// pairs near 2^26). Exact int32 comparisons and row picks therefore use these two kernels.

/** Elements where a and b (int32, same size) differ, counted exactly on the device (partial counts per workgroup, summed). */
export async function countInt32Mismatches(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  if (a.size !== b.size || a.dtype !== 'int32' || b.dtype !== 'int32') throw new Error(`countInt32Mismatches: int32 tensors of one size expected, got ${a.dtype} [${a.shape}] and ${b.dtype} [${b.shape}]`);
  const WG = 256;
  const groups = Math.ceil(a.size / WG);
  const params = { n: u32(a.size) };
  const [partial] = runKernel({
    name: 'int32-mismatches',
    code: /* wgsl */ `
struct Params { n: u32, }
@group(0) @binding(0) var<storage, read_write> partial: array<i32>; // [workgroups]
@group(0) @binding(1) var<storage, read> a: array<i32>;
@group(0) @binding(2) var<storage, read> b: array<i32>;
@group(0) @binding(3) var<uniform> params: Params;
var<workgroup> count: atomic<u32>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let g = wg.y * nwg.x + wg.x;
  let i = g * ${WG}u + li;
  if (i < params.n && a[i] != b[i]) { atomicAdd(&count, 1u); }
  workgroupBarrier();
  if (li == 0u && g < ${groups}u) { partial[g] = i32(atomicLoad(&count)); }
}`,
    inputs: [a, b],
    outputs: [{ shape: [groups], dtype: 'int32' }],
    params,
    workgroups: grid1d(groups),
  });
  try {
    const counts = (await partial.data()) as Int32Array;
    return counts.reduce((s, c) => s + c, 0);
  } finally {
    partial.dispose();
  }
}

/** Rows `rows` of a 2D tensor (int32 or float32), copied bit for bit: [rows.length, cols]. */
export function pickRows(t: tf.Tensor2D, rows: number[]): tf.Tensor2D {
  const [R, C] = t.shape;
  for (const r of rows) if (!(Number.isInteger(r) && r >= 0 && r < R)) throw new Error(`pickRows: row ${r} outside [0, ${R})`);
  const idx = tf.tensor1d(rows, 'int32');
  const params = { cols: u32(C), n: u32(rows.length * C) };
  try {
    const [out] = runKernel({
      name: 'pick-rows',
      code: /* wgsl */ `
struct Params { cols: u32, n: u32, }
@group(0) @binding(0) var<storage, read_write> out: array<u32>; // [rows, cols]
@group(0) @binding(1) var<storage, read> src: array<u32>; // [R, cols]
@group(0) @binding(2) var<storage, read> rows: array<i32>;
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gid.y * nwg.x * 256u + gid.x;
  if (i >= params.n) { return; }
  out[i] = src[u32(rows[i / params.cols]) * params.cols + i % params.cols];
}`,
      inputs: [t, idx],
      outputs: [{ shape: [rows.length, C], dtype: t.dtype === 'int32' ? 'int32' : 'float32' }],
      params,
      workgroups: grid1d(Math.ceil((rows.length * C) / 256)),
    });
    return out as tf.Tensor2D;
  } finally {
    idx.dispose();
  }
}
