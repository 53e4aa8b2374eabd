// The GPTQ / SparseGPT solvers on the active tfjs backend (webgpu on a GPU host), in fp32 as the
// reference implementations run on the GPU:
//   - prepareHessianDevice: dead inputs, dampening (percdamp · mean diag H) and Hinv, the upper
//     Cholesky factor of (H + damp·I)⁻¹, from one blocked Cholesky and one blocked triangular
//     inverse (U = J·chol(J·H·J)⁻¹·J with J the order-reversing permutation; see below);
//   - the in-block column sweeps of GPTQ and SparseGPT: every row of a block of ≤ 128 columns is
//     independent, so one WGSL dispatch sweeps a block (one invocation per row), and the lazy batch
//     update of the columns right of the block is one tfjs matmul in the caller.
// Off webgpu (wasm, cpu) the sweeps run the same loops on the host on the block's values.
//
// Layout: the solvers keep weights column-major, Wt [cols, rows] (a block of columns is a
// contiguous row range and each invocation reads one element per column: coalesced).
//
// LLMCB_SOLVER picks them per weight (solverKind): 'device' always, 'host' never (the float64
// JavaScript solvers of lib/methods/hessian.ts, the tests' oracle), 'auto' (default) the device for
// weights of more than HOST_SOLVER_MAX_ELEMENTS and the host below, where a layer's dispatches and
// readbacks cost more than its arithmetic.
import * as tf from '@tensorflow/tfjs';
import { f32, grid1d, paramsStruct, runKernel, u32, type Param } from '../kernels/gpu';
import { webgpuDevice } from '../runtime/backend';
import { BlockHessians, choleskyLower, invertLower, NotPositiveDefiniteError, type HessianAccumulator } from './hessian';
import { roundHalfEven } from '../quant/quantizer';
import { subPhase, withCalibKernels, type BlockContext } from './sequential';
import { linearName } from '../models/arch';
import { getWeight, linearShape, replaceWeight } from '../quant/weights';
import { kernelGram, kernelMatMulT } from '../kernels';
import { maskLowestGlobal, maskLowestPerRow } from '../quant/sparse-pattern';

const onWebgpu = () => webgpuDevice() !== null;

export type SolverKind = 'device' | 'host';
export const SOLVER_SETTINGS = ['auto', 'device', 'host'] as const;

/**
 * 'auto' solves weights of at most this many elements on the host: every embedded model's linears
 * (the zoo's largest, 160 × 640, is 102,400) and none of a 1B-class model's (2048², 4.2M). A tiny
 * layer costs the device solver a few dozen dispatches and readbacks for microseconds of work.
 */
export const HOST_SOLVER_MAX_ELEMENTS = 1 << 18;

/** The solver for a weight [rows, cols]: LLMCB_SOLVER (default 'auto', see above); a bad value is an error naming it. */
export function solverKind(rows: number, cols: number): SolverKind {
  const v = process.env.LLMCB_SOLVER ?? 'auto';
  if (!(SOLVER_SETTINGS as readonly string[]).includes(v)) throw new Error(`LLMCB_SOLVER='${v}': expected one of ${SOLVER_SETTINGS.join(', ')}`);
  if (v === 'auto') return rows * cols <= HOST_SOLVER_MAX_ELEMENTS ? 'host' : 'device';
  return v as SolverKind;
}

/**
 * a · bᵀ for a [m, k] and b [n, k]: on the fp32 GEMM kernel on webgpu with the calibration kernels
 * on (LLMCB_CALIB_KERNELS, lib/methods/sequential.ts), else tfjs's matMul (its transposed products
 * run far below the kernel on a GPU): the solvers' Cholesky panels and updates, the triangular
 * inverse, the lazy batch updates and AWQ's group outputs. Same sums, another order. Inside tf.tidy.
 */
export function calibMatMulT(a: tf.Tensor2D, b: tf.Tensor2D): tf.Tensor2D {
  return withCalibKernels(() => kernelMatMulT(a, b)) ?? tf.matMul(a, b, false, true); // kernelMatMulT: null off webgpu or for an unsupported shape
}

/** a · aᵀ for a [m, k] (symmetric [m, m]): calibMatMulT on the GEMM kernel's symmetric form (half the tiles), else tfjs's matMul. Inside tf.tidy. */
function calibGram(a: tf.Tensor2D): tf.Tensor2D {
  return withCalibKernels(() => kernelGram(a)) ?? tf.matMul(a, a, false, true);
}

/** Columns per diagonal block of the blocked factorisations. */
export const FACTOR_BLOCK = 128;

async function hostSquare(t: tf.Tensor2D): Promise<Float64Array> {
  return Float64Array.from((await t.data()) as Float32Array);
}

/**
 * One diagonal block of the blocked factorisations in one WGSL dispatch (a single workgroup, the
 * block in global memory): with factor = 1, the lower Cholesky factor L of the symmetric a [b, b]
 * (right-looking, fp32, as torch.linalg.cholesky) and L⁻¹; with factor = 0, a is already lower
 * triangular and only a⁻¹ is computed (L = a). status[0] is the first pivot that is not positive
 * (−1 if none); past it the values are not finite. Nothing is read back: the blocked loops need no
 * host round trip per block.
 */
const DIAG_BLOCK = `
${paramsStruct({ b: u32(0), factor: u32(0) })}
@group(0) @binding(0) var<storage, read_write> L: array<f32>;
@group(0) @binding(1) var<storage, read_write> Li: array<f32>;
@group(0) @binding(2) var<storage, read_write> status: array<i32>;
@group(0) @binding(3) var<storage, read> a: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
var<workgroup> pivot: f32;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) t: u32) {
  let b = params.b;
  for (var e = t; e < b * b; e += 256u) { L[e] = select(0.0, a[e], e % b <= e / b); } // the lower triangle
  if (t == 0u) { status[0] = -1; }
  storageBarrier();
  workgroupBarrier();
  if (params.factor == 1u) {
    for (var j = 0u; j < b; j++) {
      if (t == 0u) {
        let d = L[j * b + j];
        if (!(d > 0.0) && status[0] < 0) { status[0] = i32(j); }
        pivot = sqrt(d);
        L[j * b + j] = pivot;
      }
      workgroupBarrier();
      let p = pivot;
      for (var i = j + 1u + t; i < b; i += 256u) { L[i * b + j] /= p; }
      storageBarrier();
      workgroupBarrier();
      // trailing update of the lower triangle right of column j: L[i, k] −= L[i, j]·L[k, j], j < k ≤ i
      let m = b - j - 1u;
      for (var e = t; e < m * m; e += 256u) {
        let i = j + 1u + e / m;
        let k = j + 1u + e % m;
        if (k <= i) { L[i * b + k] -= L[i * b + j] * L[k * b + j]; }
      }
      storageBarrier();
      workgroupBarrier();
    }
  }
  // L⁻¹ by forward substitution, one column per invocation
  if (t < b) {
    for (var i = 0u; i < t; i++) { Li[i * b + t] = 0.0; }
    Li[t * b + t] = 1.0 / L[t * b + t];
    for (var i = t + 1u; i < b; i++) {
      var s = 0.0;
      for (var k = t; k < i; k++) { s -= L[i * b + k] * Li[k * b + t]; }
      Li[i * b + t] = s / L[i * b + i];
    }
  }
}`;

/** A diagonal block's factor and inverse; status: the block's first bad pivot (device: a tensor read once by the caller). */
interface DiagBlock {
  L: tf.Tensor2D; // [b, b] lower
  Linv: tf.Tensor2D; // [b, b] lower
  status: tf.Tensor1D | null; // [1] int32 on webgpu (−1: positive definite); null on the host path (which throws at once)
}

/** diagBlock(a, factor): the block [b, b] on the GPU (DIAG_BLOCK) on webgpu, else on the host in float64 (throws NotPositiveDefiniteError naming `what`). */
async function diagBlock(a: tf.Tensor2D, factor: boolean, what: string): Promise<DiagBlock> {
  const b = a.shape[0];
  if (onWebgpu()) {
    const [L, Linv, status] = runKernel({ name: 'diag-block', code: DIAG_BLOCK, inputs: [a], outputs: [{ shape: [b, b], dtype: 'float32' }, { shape: [b, b], dtype: 'float32' }, { shape: [1], dtype: 'int32' }], params: { b: u32(b), factor: u32(factor ? 1 : 0) }, workgroups: [1, 1, 1] });
    return { L: L as tf.Tensor2D, Linv: Linv as tf.Tensor2D, status: status as tf.Tensor1D };
  }
  const host = await hostSquare(a);
  if (factor) choleskyLower(host, b, what);
  return { L: tf.tensor2d(Float32Array.from(host), [b, b]), Linv: tf.tensor2d(Float32Array.from(invertLower(host, b)), [b, b]), status: null };
}

/**
 * Lower Cholesky factor L of a symmetric positive definite A [n, n] (A = L Lᵀ), right-looking and
 * blocked: each FACTOR_BLOCK diagonal block is factorised (diagBlock: on the GPU on webgpu, with no
 * readback until the end, else on the host in float64), the panel below it is A21·L11⁻ᵀ and the
 * trailing matrix is updated by one matmul. The update is applied to the whole [n, n] matrix
 * (S − P·Pᵀ with P the panel padded with zeros to n rows: only the trailing block changes), so every
 * step allocates the same sizes and the buffer pool reuses them, where a shrinking trailing copy
 * would allocate new large buffers every step. A not positive definite matrix is refused with its
 * first bad pivot (NotPositiveDefiniteError). A is not disposed.
 */
export async function choleskyLowerDevice(A: tf.Tensor2D, what = 'cholesky'): Promise<tf.Tensor2D> {
  const n = A.shape[0];
  if (A.shape[1] !== n) throw new Error(`${what}: matrix is [${A.shape}], not square`);
  const panels: tf.Tensor2D[] = []; // [n, b] each: column panels of L
  const statuses: tf.Tensor1D[] = []; // [1] per diagonal block (device path)
  let S = A.clone(); // [n, n]: rows and columns from k on hold the trailing matrix
  const blockError = (k: number, pivot: number) => new NotPositiveDefiniteError(`${what} (diagonal block at column ${k})`, k + pivot);
  try {
    for (let k = 0; k < n; k += FACTOR_BLOCK) {
      const b = Math.min(FACTOR_BLOCK, n - k);
      const a11 = tf.slice(S, [k, k], [b, b]);
      let d: DiagBlock;
      try {
        d = await diagBlock(a11, true, what);
      } catch (e) {
        throw e instanceof NotPositiveDefiniteError ? blockError(k, e.column) : e;
      } finally {
        a11.dispose();
      }
      if (d.status) statuses.push(d.status);
      const { L: L11, Linv: L11inv } = d;
      if (k + b === n) {
        panels.push(tf.tidy(() => tf.pad(L11, [[k, 0], [0, 0]]) as tf.Tensor2D));
        tf.dispose([L11, L11inv]);
        break;
      }
      const [panel, next] = tf.tidy(() => {
        const a21 = tf.slice(S, [k + b, k], [n - k - b, b]); // [n - k - b, b]
        const l21 = calibMatMulT(a21, L11inv); // A21·L11⁻ᵀ [n - k - b, b]
        const P = tf.pad(l21, [[k + b, 0], [0, 0]]) as tf.Tensor2D; // [n, b], zero above the trailing rows
        return [tf.pad(tf.concat([L11, l21], 0), [[k, 0], [0, 0]]) as tf.Tensor2D, tf.sub(S, calibGram(P)) as tf.Tensor2D];
      });
      tf.dispose([L11, L11inv]);
      panels.push(panel);
      S.dispose();
      S = next;
    }
    if (statuses.length > 0) {
      const all = tf.concat(statuses); // [blocks]
      const st = (await all.data()) as Int32Array; // one readback for the whole factorisation
      all.dispose();
      const i = st.findIndex((p) => p >= 0);
      if (i >= 0) throw blockError(i * FACTOR_BLOCK, st[i]);
    }
    return tf.concat(panels, 1) as tf.Tensor2D;
  } finally {
    S.dispose();
    tf.dispose(panels);
    tf.dispose(statuses);
  }
}

/** Inverse of a lower-triangular L [n, n], by recursive halving ([[A,0],[B,C]]⁻¹ = [[A⁻¹,0],[−C⁻¹BA⁻¹,C⁻¹]]); leaves on the host. */
export async function invertLowerDevice(L: tf.Tensor2D): Promise<tf.Tensor2D> {
  const n = L.shape[0];
  if (n <= FACTOR_BLOCK) {
    const d = await diagBlock(L, false, 'triangular inverse');
    tf.dispose([d.L, d.status ?? []]);
    return d.Linv;
  }
  const h = Math.ceil(n / 2 / FACTOR_BLOCK) * FACTOR_BLOCK; // split on a block boundary
  const A = tf.slice(L, [0, 0], [h, h]);
  const C = tf.slice(L, [h, h], [n - h, n - h]);
  let Ai: tf.Tensor2D | null = null;
  let Ci: tf.Tensor2D | null = null;
  try {
    Ai = await invertLowerDevice(A);
    Ci = await invertLowerDevice(C);
    const [ai, ci] = [Ai, Ci];
    return tf.tidy(() => {
      const B = tf.slice(L, [h, 0], [n - h, h]); // [n - h, h]
      const Y = calibMatMulT(B, tf.transpose(ai)); // B·A⁻¹ [n - h, h]
      const X = tf.neg(calibMatMulT(ci, tf.transpose(Y))); // [n - h, h]
      const top = tf.concat([ai, tf.zeros([h, n - h])], 1);
      return tf.concat([top, tf.concat([X, ci], 1)], 0) as tf.Tensor2D;
    });
  } finally {
    tf.dispose([A, C]);
    if (Ai) Ai.dispose();
    if (Ci) Ci.dispose();
  }
}

export interface DeviceHessian {
  /** Upper Cholesky factor of (H + damp·I)⁻¹ [n, n] on the backend (GPTQ/SparseGPT's Hinv); caller disposes. */
  hinv: tf.Tensor2D;
  /** Columns whose diag(H) was 0 (in the permuted order when perm is given). */
  dead: boolean[];
  /** The dampening added to the diagonal. */
  damp: number;
  /** diag(H) before dead-column fixing and dampening (permuted order), on the host. */
  diag: Float32Array;
}

/** diag(A) of a square tensor, on the host. */
export async function diagonal(A: tf.Tensor2D): Promise<Float32Array> {
  const n = A.shape[0];
  const d = tf.tidy(() => tf.gather(tf.reshape(A, [-1]), tf.tensor1d(Array.from({ length: n }, (_, i) => i * (n + 1)), 'int32')));
  const v = (await d.data()) as Float32Array;
  d.dispose();
  return Float32Array.from(v);
}

/**
 * prepareHessian (lib/methods/hessian.ts) on the backend: dead columns get H[i,i] = 1, dampening
 * percdamp·mean(diag H), then Hinv = upper Cholesky factor of (H + damp·I)⁻¹. `perm` (act-order)
 * permutes rows and columns first. H is not disposed.
 *
 * With J the reversal permutation and J·A·J = M Mᵀ (M lower): A⁻¹ = (J M⁻ᵀ J)(J M⁻¹ J), and J M⁻¹ J
 * is upper triangular, so Hinv = J M⁻¹ J: one Cholesky and one triangular inverse instead of the
 * reference's Cholesky, cholesky_inverse and second Cholesky (same matrix up to rounding).
 */
export async function prepareHessianDevice(H: tf.Tensor2D, percdamp: number, perm?: number[]): Promise<DeviceHessian> {
  if (!(percdamp >= 0)) throw new Error(`percdamp must be >= 0, got ${percdamp}`);
  const n = H.shape[0];
  if (H.shape[1] !== n) throw new Error(`Hessian is [${H.shape}], not square`);
  if (perm && perm.length !== n) throw new Error(`Hessian: permutation has ${perm.length} entries for ${n} columns`);
  const P = perm ? tf.tidy(() => { const p = tf.tensor1d(perm, 'int32'); return tf.gather(tf.gather(H, p, 0), p, 1) as tf.Tensor2D; }) : H;
  try {
    const diag = await diagonal(P);
    const dead = Array.from(diag, (d) => d === 0);
    let mean = 0;
    for (let i = 0; i < n; i++) mean += dead[i] ? 1 : diag[i];
    const damp = (percdamp * mean) / n;
    const add = Float32Array.from(dead, (isDead) => (isDead ? 1 : 0) + damp);
    const flipped = tf.tidy(() => tf.reverse(tf.add(P, tf.diag(tf.tensor1d(add))), [0, 1]) as tf.Tensor2D); // J(H + D)J
    let M: tf.Tensor2D;
    try {
      M = await subPhase('cholesky', () => choleskyLowerDevice(flipped, 'Hessian'));
    } finally {
      flipped.dispose();
    }
    let Mi: tf.Tensor2D;
    try {
      Mi = await subPhase('inverse', () => invertLowerDevice(M));
    } finally {
      M.dispose();
    }
    const hinv = tf.reverse(Mi, [0, 1]) as tf.Tensor2D;
    Mi.dispose();
    return { hinv, dead, damp, diag };
  } finally {
    if (P !== H) P.dispose();
  }
}

/**
 * One block's prepared Hessians (prepareHessianDevice), shared by the linears that see the same
 * input (q, k, v; gate, up: one accumulator, the `owner`): the factorisation runs once per input
 * and (percdamp, permutation), as its result is the same. Owns the Hinv tensors; dispose() frees them.
 */
export class PreparedHessians {
  private readonly cache = new Map<object, { key: string; prep: DeviceHessian }>();

  /** H's preparation for owner, from the cache or computed now (H is not disposed; the result is owned here). */
  async get(owner: object, H: tf.Tensor2D, percdamp: number, perm?: number[]): Promise<DeviceHessian> {
    const key = `${percdamp}|${perm?.join(',') ?? ''}`;
    const hit = this.cache.get(owner);
    if (hit?.key === key) return hit.prep;
    const prep = await prepareHessianDevice(H, percdamp, perm);
    hit?.prep.hinv.dispose();
    this.cache.set(owner, { key, prep });
    return prep;
  }

  dispose(): void {
    for (const { prep } of this.cache.values()) prep.hinv.dispose();
    this.cache.clear();
  }
}

/**
 * The GPTQ / SparseGPT step of one block: the Hessian of each input group captured ('capture'),
 * then every linear solved in execution order ('solve'): `solve` gets the linear's full name, its
 * weight (not to be disposed), its group's Hessian and the block's shared preparations, and returns
 * the new weight, which replaces the old one.
 */
export async function solveBlockLinears(
  ctx: BlockContext,
  solve: (name: string, w: tf.Tensor2D, hessian: HessianAccumulator, prepared: PreparedHessians) => Promise<tf.Tensor2D>,
  sample?: () => void, // the memory probe, once the Hessians are captured
): Promise<void> {
  const { model, block } = ctx;
  const name = (l: string) => linearName(model.config.arch, block, l);
  const hessians = new BlockHessians(model.config.arch, ctx.linears, (l) => linearShape(model, l, block)[1]);
  const prepared = new PreparedHessians();
  try {
    await ctx.timed('capture', () => ctx.observe(hessians.add));
    sample?.();
    await ctx.timed('solve', async () => {
      for (const l of ctx.linears) replaceWeight(model, name(l), await solve(name(l), getWeight(model, name(l)) as tf.Tensor2D, hessians.get(l), prepared));
    });
  } finally {
    prepared.dispose();
    hessians.dispose();
  }
}

// ---- the in-block sweeps ---------------------------------------------------------------------

/**
 * The lazy batch update after sweeping the columns i1 … i1 + count of Wt [cols, rows]
 * (column-major): column j −= Σ_c Hinv[i1 + c, j] · err[c], applied to every column, so that the
 * product has the same size block after block (the buffer pool reuses it; the columns right of the
 * block alone would allocate a new size every block). Hinv is upper triangular: the columns left
 * of the block get nothing, and the block's own, already swept, are never read again. err
 * [count, rows]; returns the new Wt, nothing disposed.
 */
export function lazyUpdate(wt: tf.Tensor2D, hinv: tf.Tensor2D, err: tf.Tensor2D, i1: number): tf.Tensor2D {
  const [count] = err.shape;
  const cols = wt.shape[0];
  return tf.tidy(() => tf.sub(wt, calibMatMulT(tf.transpose(tf.slice(hinv, [i1, 0], [count, cols])), tf.transpose(err))) as tf.Tensor2D); // [cols, rows]
}

/** The GPTQ sweep of one block. All tensors column-major: w [count, rows]. */
export interface GptqBlockInput {
  w: tf.Tensor2D; // [count, rows] the block's columns (lazy updates of earlier blocks applied)
  hinv: tf.Tensor2D; // [count, count] the block's diagonal block of Hinv
  table: tf.Tensor2D; // [2·G, rows]: rows 0..G-1 the scales of the block's G groups, rows G..2G-1 their zeros
  group: Int32Array; // [count] group (row of table) of each column
  maxq: number; // 2^bits - 1
}

export interface BlockSweep {
  codes: tf.Tensor2D; // [count, rows] GPTQ: the integer codes (as floats); SparseGPT: the new values
  err: tf.Tensor2D; // [count, rows] (w − q) / Hinv_ii: the lazy update's input
  loss: tf.Tensor1D; // [rows] each row's loss over the block
}

/**
 * One block sweep on the GPU: thread r holds row r of the block's columns (w column-major [count, rows])
 * in `row` and runs `loop` over the columns in order; the loop writes binding 0 (named names[0]: the
 * codes or new values) and err per column and adds the row's loss to `l`. Inputs: w, hinv, then the
 * method's two tensors, bound as names[1] and names[2] ('tbl: array<f32>').
 */
function runSweep(name: string, w: tf.Tensor2D, hinv: tf.Tensor2D, extra: [tf.Tensor, tf.Tensor], names: [string, string, string], params: Record<string, Param>, loop: string): BlockSweep {
  const [count, rows] = w.shape;
  const code = `
${paramsStruct(params)}
const BS: u32 = ${count}u;
@group(0) @binding(0) var<storage, read_write> ${names[0]}: array<f32>;
@group(0) @binding(1) var<storage, read_write> err: array<f32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> hinv: array<f32>;
@group(0) @binding(5) var<storage, read> ${names[1]};
@group(0) @binding(6) var<storage, read> ${names[2]};
@group(0) @binding(7) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let r = gid.x;
  let R = params.rows;
  if (r >= R) { return; }
  var row: array<f32, BS>;
  for (var i = 0u; i < BS; i++) { row[i] = w[i * R + r]; }
  var l = 0.0;
${loop}  loss[r] = l;
}`;
  const f32s = (shape: number[]) => ({ shape, dtype: 'float32' as const });
  const [codes, err, loss] = runKernel({ name, code, inputs: [w, hinv, ...extra], outputs: [f32s([count, rows]), f32s([count, rows]), f32s([rows])], params, workgroups: [Math.ceil(rows / 64), 1, 1] });
  return { codes: codes as tf.Tensor2D, err: err as tf.Tensor2D, loss: loss as tf.Tensor1D };
}

/** The GPTQ sweep's column loop (runSweep): quantize column i with its group's (scale, zero), spread the error right. */
const GPTQ_SWEEP = `
  for (var i = 0u; i < BS; i++) {
    let g = u32(grp[i]);
    let s = tbl[g * R + r];
    let z = tbl[(params.groups + g) * R + r];
    let x = row[i];
    let c = clamp(round(x / s) + z, 0.0, params.maxq); // WGSL round: half to even, as torch.round
    let q = s * (c - z);
    let d = hinv[i * BS + i];
    let e = (x - q) / d;
    l += (x - q) * (x - q) / (d * d) / 2.0;
    codes[i * R + r] = c;
    err[i * R + r] = e;
    for (var j = i + 1u; j < BS; j++) { row[j] -= e * hinv[i * BS + j]; }
  }
`;

/** Sweeps one GPTQ block: quantize each column with its group's (scale, zero), spread the error right within the block. */
export async function gptqBlockSweep(a: GptqBlockInput): Promise<BlockSweep> {
  const [count, rows] = a.w.shape;
  const G = a.table.shape[0] / 2;
  if (!onWebgpu()) return gptqBlockSweepHost(a);
  const params = { rows: u32(rows), groups: u32(G), maxq: f32(a.maxq) };
  const grp = tf.tensor1d(a.group, 'int32');
  try {
    return runSweep(`gptq-sweep-${count}`, a.w, a.hinv, [a.table, grp], ['codes', 'tbl: array<f32>', 'grp: array<i32>'], params, GPTQ_SWEEP);
  } finally {
    grp.dispose();
  }
}

/** gptqBlockSweep's host twin (the row kept in float64): the sweep off webgpu, and the WGSL sweep's oracle in the tests. */
export async function gptqBlockSweepHost(a: GptqBlockInput): Promise<BlockSweep> {
  const [count, rows] = a.w.shape;
  const G = a.table.shape[0] / 2;
  const w = Float64Array.from((await a.w.data()) as Float32Array);
  const h = (await a.hinv.data()) as Float32Array;
  const tbl = (await a.table.data()) as Float32Array;
  const codes = new Float32Array(count * rows);
  const err = new Float32Array(count * rows);
  const loss = new Float32Array(rows);
  for (let i = 0; i < count; i++) {
    const g = a.group[i];
    const d = h[i * count + i];
    for (let r = 0; r < rows; r++) {
      const s = tbl[g * rows + r];
      const z = tbl[(G + g) * rows + r];
      const x = w[i * rows + r];
      const c = Math.min(Math.max(roundHalfEven(Math.fround(Math.fround(x) / s)) + z, 0), a.maxq);
      const q = Math.fround(s * Math.fround(c - z));
      const e = (x - q) / d;
      loss[r] += ((x - q) * (x - q)) / (d * d) / 2;
      codes[i * rows + r] = c;
      err[i * rows + r] = e;
    }
    propagateError(w, err, h, i, count, rows);
  }
  return sweepTensors(codes, err, loss, count, rows);
}

/** The lazy update inside a block after column i: w[j] −= err[i] · h[i, j] for the columns j > i (column-major [count, rows]). */
function propagateError(w: Float64Array, err: Float32Array, h: ArrayLike<number>, i: number, count: number, rows: number): void {
  for (let j = i + 1; j < count; j++) {
    const hij = h[i * count + j];
    if (hij === 0) continue;
    for (let r = 0; r < rows; r++) w[j * rows + r] -= err[i * rows + r] * hij;
  }
}

/** A host sweep's outputs as tensors: values and errors [count, rows], loss [rows]. */
function sweepTensors(values: Float32Array, err: Float32Array, loss: Float32Array, count: number, rows: number) {
  return { codes: tf.tensor2d(values, [count, rows]), err: tf.tensor2d(err, [count, rows]), loss: tf.tensor1d(loss) };
}

/** The SparseGPT sweep of one block. All tensors column-major: w [count, rows]. */
export interface SparseBlockInput {
  w: tf.Tensor2D; // [count, rows]
  hinv: tf.Tensor2D; // [count, count]
  mask: tf.Tensor2D | null; // [count, rows] 1 = prune (unstructured, chosen before the sweep); null for N:M
  nm: { n: number; m: number } | null; // N:M: chosen in the sweep per group of m columns (m ≤ 32)
  grid: tf.Tensor2D | null; // [2, rows] joint quantization: per-row scale, zero; null = off
  maxq: number; // 2^wbits - 1 (ignored without grid)
}

/** The SparseGPT sweep's column loop (runSweep): prune (N:M chosen per group here), optionally quantize, spread the error right. */
const SPARSE_SWEEP = `
  var nm = 0u; // bit j: column j of the current N:M group is pruned
  for (var i = 0u; i < BS; i++) {
    let d = hinv[i * BS + i];
    if (params.m > 0u && i % params.m == 0u) {
      nm = 0u;
      for (var j = 0u; j < params.m; j++) {
        let dj = hinv[(i + j) * BS + i + j];
        let sj = row[i + j] * row[i + j] / (dj * dj);
        var rank = 0u;
        for (var k = 0u; k < params.m; k++) {
          let dk = hinv[(i + k) * BS + i + k];
          let sk = row[i + k] * row[i + k] / (dk * dk);
          if (sk < sj || (sk == sj && k < j)) { rank++; }
        }
        if (rank < params.n) { nm |= 1u << j; }
      }
    }
    var pruned = mask[i * R + r] > 0.5;
    if (params.m > 0u) { pruned = ((nm >> (i % params.m)) & 1u) == 1u; }
    let x = row[i];
    var q = select(x, 0.0, pruned);
    if (params.maxq > 0.0) {
      let s = grid[r];
      let z = grid[R + r];
      q = s * (clamp(floor(q / s + 0.5) + z, 0.0, params.maxq) - z);
    }
    outv[i * R + r] = q;
    let e = (x - q) / d;
    l += e * e / 2.0;
    err[i * R + r] = e;
    if (e != 0.0) {
      for (var j = i + 1u; j < BS; j++) { row[j] -= e * hinv[i * BS + j]; }
    }
  }
`;

/** Sweeps one SparseGPT block: prune (and optionally quantize) each column, spread the error right within the block. */
export async function sparseBlockSweep(a: SparseBlockInput): Promise<BlockSweep> {
  const [count, rows] = a.w.shape;
  if (a.nm && (a.nm.m > 32 || count % a.nm.m !== 0)) throw new Error(`SparseGPT sweep: N:M with M = ${a.nm.m} needs M ≤ 32 dividing the block (${count} columns)`);
  if (!a.nm && !a.mask) throw new Error('SparseGPT sweep: an unstructured block needs its mask');
  if (onWebgpu()) {
    const params = { rows: u32(rows), n: u32(a.nm?.n ?? 0), m: u32(a.nm?.m ?? 0), maxq: f32(a.grid ? a.maxq : 0) };
    const mask = a.mask ?? (tf.zeros([1, 1]) as tf.Tensor2D);
    const grid = a.grid ?? (tf.zeros([1, 1]) as tf.Tensor2D);
    try {
      return runSweep(`sparsegpt-sweep-${count}`, a.w, a.hinv, [mask, grid], ['outv', 'mask: array<f32>', 'grid: array<f32>'], params, SPARSE_SWEEP);
    } finally {
      if (mask !== a.mask) mask.dispose();
      if (grid !== a.grid) grid.dispose();
    }
  }
  const w = Float64Array.from((await a.w.data()) as Float32Array);
  const h = (await a.hinv.data()) as Float32Array;
  const mask = a.mask ? ((await a.mask.data()) as Float32Array) : null;
  const grid = a.grid ? ((await a.grid.data()) as Float32Array) : null;
  const outv = new Float32Array(count * rows);
  const err = new Float32Array(count * rows);
  const loss = new Float32Array(rows);
  const pruned = new Uint8Array(rows); // this column's decision per row
  const nmRank = new Int32Array(a.nm ? rows * a.nm.m : 0); // [rows, m] rank of each column of the current N:M group
  const d = (i: number) => h[i * count + i];
  for (let i = 0; i < count; i++) {
    if (a.nm && i % a.nm.m === 0) {
      const { n, m } = a.nm;
      for (let r = 0; r < rows; r++) {
        const idx = Array.from({ length: m }, (_, j) => j);
        const s = idx.map((j) => (w[(i + j) * rows + r] * w[(i + j) * rows + r]) / (d(i + j) * d(i + j)));
        idx.sort((x, y) => s[x] - s[y] || x - y);
        for (let j = 0; j < m; j++) nmRank[r * m + idx[j]] = j; // the n lowest ranks are pruned
      }
    }
    for (let r = 0; r < rows; r++) {
      pruned[r] = a.nm ? (nmRank[r * a.nm.m + (i % a.nm.m)] < a.nm.n ? 1 : 0) : mask![i * rows + r] > 0.5 ? 1 : 0;
      const x = w[i * rows + r];
      let q = pruned[r] ? 0 : x;
      if (grid) {
        const s = grid[r];
        const z = grid[rows + r];
        q = s * (Math.min(Math.max(Math.round(q / s) + z, 0), a.maxq) - z);
      }
      outv[i * rows + r] = q;
      const e = (x - q) / d(i);
      loss[r] += (e * e) / 2;
      err[i * rows + r] = e;
    }
    propagateError(w, err, h, i, count, rows);
  }
  return sweepTensors(outv, err, loss, count, rows);
}

// ---- the k lowest scores on the device -------------------------------------------------------

/**
 * One workgroup per group (a row of score [groups, cols]) finds the k-th smallest key (value bits,
 * index) by radix selection, 8 bits a pass: four passes over the float's bits (non-negative floats
 * order as their bits), then IDX passes over the index among the entries equal to the k-th value,
 * so ties are taken in index order; then it marks every entry whose key is at most that one. The
 * counts live in workgroup memory: one dispatch, nothing read back.
 */
const selectLowestCode = (idxPasses: number, params: Record<string, Param>) => `
${paramsStruct(params)}
const IDX: u32 = ${idxPasses}u;
const UNROLL: u32 = 8u;
@group(0) @binding(0) var<storage, read_write> mask: array<f32>;
@group(0) @binding(1) var<storage, read> score: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> chosen: array<u32, 2>; // the pass's digit, and the count of matching entries below it
// The bits of the scores i0, i0 + 256, … (UNROLL of them, 0 past the end) of the group at base: the
// loads in flight together, as one workgroup alone on an SM is otherwise bound by one load's latency.
fn loadScores(base: u32, i0: u32) -> array<u32, UNROLL> {
  var vs: array<u32, UNROLL>;
  for (var u = 0u; u < UNROLL; u++) {
    let i = i0 + u * 256u;
    if (i < params.cols) { vs[u] = bitcast<u32>(score[base + i]); }
  }
  return vs;
}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.y * params.gx + wid.x;
  if (g >= params.groups) { return; }
  let base = g * params.cols;
  var val = 0u; // the k-th key's value bits, decided 8 a pass from the top
  var idx = 0u; // its index, decided after them
  var krem = params.k; // rank of the k-th key among the entries matching the digits decided so far
  for (var p = 0u; p < 4u + IDX; p++) {
    atomicStore(&hist[lid], 0u);
    workgroupBarrier();
    for (var i0 = lid; i0 < params.cols; i0 += 256u * UNROLL) {
      var vs = loadScores(base, i0);
      for (var u = 0u; u < UNROLL; u++) {
        let i = i0 + u * 256u;
        let v = vs[u];
        var ok = i < params.cols;
        var d: u32;
        if (p < 4u) {
          let sh = 24u - 8u * p;
          ok = ok && (p == 0u || (v >> (sh + 8u)) == (val >> (sh + 8u)));
          d = (v >> sh) & 255u;
        } else {
          let sh = 8u * (IDX - 1u - (p - 4u));
          ok = ok && v == val && (p == 4u || (i >> (sh + 8u)) == (idx >> (sh + 8u)));
          d = (i >> sh) & 255u;
        }
        if (ok) { atomicAdd(&hist[d], 1u); }
      }
    }
    workgroupBarrier();
    if (lid == 0u) {
      var below = 0u;
      var d = 0u;
      loop {
        let c = atomicLoad(&hist[d]);
        if (below + c >= krem || d == 255u) { break; }
        below += c;
        d++;
      }
      chosen[0] = d;
      chosen[1] = below;
    }
    workgroupBarrier();
    krem -= chosen[1];
    if (p < 4u) { val |= chosen[0] << (24u - 8u * p); } else { idx |= chosen[0] << (8u * (IDX - 1u - (p - 4u))); }
    workgroupBarrier();
  }
  for (var i0 = lid; i0 < params.cols; i0 += 256u * UNROLL) {
    var vs = loadScores(base, i0);
    for (var u = 0u; u < UNROLL; u++) {
      let i = i0 + u * 256u;
      if (i < params.cols) { mask[base + i] = select(0.0, 1.0, vs[u] < val || (vs[u] == val && i <= idx)); }
    }
  }
}`;

/**
 * maskLowestGlobal / maskLowestPerRow (lib/quant/sparse-pattern.ts) for non-negative finite
 * scores, on the device: 1 where one of the k lowest entries of score is, over the whole tensor
 * (`group` 'all', row-major order) or in each row of a 2-D score ('row'); ties at the threshold are
 * taken in index order. On webgpu one dispatch (selectLowestCode); elsewhere the host functions on
 * the read-back scores. Returns a float32 0/1 tensor of score's shape; score is not disposed.
 */
export async function maskLowestDevice(score: tf.Tensor, k: number, group: 'all' | 'row' = 'all'): Promise<tf.Tensor> {
  if (group === 'row' && score.rank !== 2) throw new Error(`maskLowestDevice: per-row selection needs a 2-D score, got rank ${score.rank}`);
  const R = group === 'row' ? score.shape[0] : 1;
  const C = score.size / R;
  if (k <= 0) return tf.zeros(score.shape);
  if (k >= C) return tf.ones(score.shape);
  if (!onWebgpu()) {
    const s = (await score.data()) as Float32Array;
    const m = group === 'row' ? maskLowestPerRow(s, R, C, k) : maskLowestGlobal(s, k);
    return tf.tensor(Float32Array.from(m), score.shape);
  }
  if (C >= 2 ** 32) throw new Error(`maskLowestDevice: ${C} scores in a group, past 32-bit indices`);
  const idxPasses = Math.max(1, Math.ceil(Math.log2(C) / 8));
  const workgroups = grid1d(R);
  const params = { groups: u32(R), cols: u32(C), k: u32(k), gx: u32(workgroups[0]) };
  const flat = tf.reshape(score, [R, C]);
  try {
    const [m] = runKernel({ name: `select-lowest-${idxPasses}`, code: selectLowestCode(idxPasses, params), inputs: [flat], outputs: [{ shape: score.shape, dtype: 'float32' }], params, workgroups });
    return m;
  } finally {
    flat.dispose();
  }
}

/** w with the entries of its k lowest scores zeroed (maskLowestDevice's selection over `group`); neither input is disposed. */
export async function zeroLowestDevice(w: tf.Tensor2D, score: tf.Tensor2D, k: number, group: 'all' | 'row'): Promise<tf.Tensor2D> {
  const m = await maskLowestDevice(score, k, group); // [out, in] 1 = pruned
  try {
    return tf.tidy(() => tf.where(tf.greater(m, 0.5), tf.zerosLike(w), w) as tf.Tensor2D);
  } finally {
    m.dispose();
  }
}
