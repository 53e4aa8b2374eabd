// The layer Hessian of the GPTQ/SparseGPT objective ||WX - ŴX||², H = 2/n Σ XᵀX, accumulated
// batch by batch exactly as the reference `add_batch` does (running mean over n = number of
// sequences seen, in fp32 on the device), plus the host-side Float64 linear algebra (Cholesky,
// inverse) that tfjs lacks.
import * as tf from '@tensorflow/tfjs';
import { ARCHS } from '../models/arch';
import type { Arch } from '../models/types';
import { kernelGram, kernelsActive } from '../kernels';

/**
 * XᵀX [cols, cols] of x [tokens, cols]: on the fp32 GEMM kernel where kernels are active (as
 * xᵀ·(xᵀ)ᵀ, the kernel's x·Wᵀ form, computing the lower half and mirroring it), else tfjs's
 * transposed matMul. Same sums, another order.
 */
export function gram(x: tf.Tensor2D): tf.Tensor2D {
  if (kernelsActive()) {
    const xt = tf.transpose(x) as tf.Tensor2D; // [cols, tokens]
    const g = kernelGram(xt);
    if (g) return g;
  }
  return tf.matMul(x, x, true, false);
}

export class HessianAccumulator {
  /** Running H [cols, cols] (fp32, on the tfjs backend). */
  private H: tf.Tensor2D | null;
  /** Number of samples (sequences, as the reference's `tmp = inp.shape[0]`) seen so far. */
  nsamples = 0;

  constructor(readonly cols: number) {
    this.H = tf.zeros([cols, cols]) as tf.Tensor2D;
  }

  /**
   * Adds x [tokens, cols]; `samples` is how many sequences those tokens come from (the
   * reference counts sequences, not tokens: H = 2/nseq Σ XᵀX).
   */
  addBatch(x: tf.Tensor2D, samples = 1): void {
    if (!this.H) throw new Error('HessianAccumulator: used after dispose()');
    if (x.shape[1] !== this.cols) throw new Error(`HessianAccumulator: input has ${x.shape[1]} columns, expected ${this.cols}`);
    const old = this.H;
    const n0 = this.nsamples;
    this.nsamples += samples;
    const n = this.nsamples;
    // keep: addBatch may be called inside someone else's tf.tidy (e.g. a forward hook).
    this.H = tf.keep(tf.tidy(() => {
      const xs = tf.mul(x.toFloat(), Math.sqrt(2 / n)) as tf.Tensor2D; // [tokens, cols]
      return tf.add(tf.mul(old, n0 / n), gram(xs)) as tf.Tensor2D; // [cols, cols]
    }));
    old.dispose();
  }

  /** H as a tensor (a copy; caller disposes). */
  value(): tf.Tensor2D {
    if (!this.H) throw new Error('HessianAccumulator: used after dispose()');
    return this.H.clone();
  }

  /** H on the host in Float64, row-major [cols * cols] (async read). */
  async toFloat64(): Promise<Float64Array> {
    if (!this.H) throw new Error('HessianAccumulator: used after dispose()');
    return Float64Array.from((await this.H.data()) as Float32Array);
  }

  dispose(): void {
    this.H?.dispose();
    this.H = null;
  }
}

/**
 * The Hessians of a block's linears, one accumulator per input group of the architecture (ARCHS
 * groups: q, k and v read one input, gate and up another), so that each captured input is
 * multiplied once: the linears of a group would accumulate the same H from the same x. `add` is a
 * LinearObserver (sequential.ts): it adds x for the first linear of its group and skips the others,
 * which the driver hands the same tensor. get(l) is l's group's accumulator, shared: value() and
 * toFloat64() copy it.
 */
export class BlockHessians {
  private readonly byLinear = new Map<string, HessianAccumulator>();
  private readonly adds = new Set<string>(); // the first linear of each group: its inputs are added

  /** `linears`: the block's short linear names; `cols(l)`: l's input width. */
  constructor(arch: Arch, linears: readonly string[], cols: (l: string) => number) {
    const groups = ARCHS[arch].groups.map((g) => g.linears.filter((l) => linears.includes(l))).filter((m) => m.length > 0);
    for (const l of linears) if (!groups.some((m) => m.includes(l))) throw new Error(`BlockHessians: '${l}' is in no input group of architecture '${arch}'`);
    for (const members of groups) {
      const acc = new HessianAccumulator(cols(members[0]));
      for (const l of members) this.byLinear.set(l, acc);
      this.adds.add(members[0]);
    }
  }

  /** Observer of the driver's captured inputs: x [tokens, cols] of linear l from `samples` sequences. */
  readonly add = (l: string, x: tf.Tensor2D, info: { samples: number }): void => {
    if (this.adds.has(l)) this.get(l).addBatch(x, info.samples);
  };

  get(l: string): HessianAccumulator {
    const acc = this.byLinear.get(l);
    if (!acc) throw new Error(`BlockHessians: no Hessian for linear '${l}'`);
    return acc;
  }

  dispose(): void {
    new Set(this.byLinear.values()).forEach((a) => a.dispose());
  }
}

export class NotPositiveDefiniteError extends Error {
  constructor(
    what: string,
    readonly column: number, // the first pivot that is not positive
  ) {
    super(`${what}: matrix is not positive definite (pivot ${column}); increase percdamp`);
    this.name = 'NotPositiveDefiniteError';
  }
}

/** In-place lower Cholesky factor L (A = L Lᵀ) of a symmetric n×n row-major matrix; upper part zeroed. */
export function choleskyLower(A: Float64Array, n: number, what = 'cholesky'): Float64Array {
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j];
    for (let k = 0; k < j; k++) d -= A[j * n + k] * A[j * n + k];
    if (!(d > 0)) throw new NotPositiveDefiniteError(what, j);
    const ljj = Math.sqrt(d);
    A[j * n + j] = ljj;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j];
      for (let k = 0; k < j; k++) s -= A[i * n + k] * A[j * n + k];
      A[i * n + j] = s / ljj;
    }
    for (let k = j + 1; k < n; k++) A[j * n + k] = 0;
  }
  return A;
}

/** Inverse of a lower-triangular n×n row-major matrix (host, float64). */
export function invertLower(L: Float64Array, n: number): Float64Array {
  const X = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    X[j * n + j] = 1 / L[j * n + j];
    for (let i = j + 1; i < n; i++) {
      let s = 0;
      for (let k = j; k < i; k++) s -= L[i * n + k] * X[k * n + j];
      X[i * n + j] = s / L[i * n + i];
    }
  }
  return X;
}

/** A⁻¹ of a symmetric positive definite matrix from its lower Cholesky factor (torch.cholesky_inverse). */
export function choleskyInverse(L: Float64Array, n: number): Float64Array {
  // Linv = L⁻¹ (lower triangular), then A⁻¹ = Linvᵀ Linv.
  const Li = invertLower(L, n);
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let k = i; k < n; k++) s += Li[k * n + i] * Li[k * n + j];
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/** Upper Cholesky factor U (A = Uᵀ U) of a symmetric matrix (torch.linalg.cholesky(upper=True)). */
export function choleskyUpper(A: Float64Array, n: number, what = 'cholesky'): Float64Array {
  const L = choleskyLower(Float64Array.from(A), n, what);
  const U = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) U[j * n + i] = L[i * n + j];
  return U;
}

export interface PreparedHessian {
  /** Upper Cholesky factor of (H + damp·I)⁻¹, row-major [n, n] (GPTQ/SparseGPT's Hinv). */
  hinv: Float64Array;
  /** Columns whose diag(H) was 0 (inputs never non-zero): the reference zeroes their weights. */
  dead: boolean[];
  /** The dampening added to the diagonal. */
  damp: number;
}

/**
 * GPTQ/SparseGPT's Hessian preparation: dead columns get H[i,i] = 1, dampening
 * percdamp·mean(diag H) on the diagonal, then Hinv = chol(chol_inverse(chol(H)), upper).
 * H is row-major n×n and is not modified; `perm` (act-order) permutes rows and columns first.
 */
export function prepareHessian(H: Float64Array, n: number, percdamp: number, perm?: number[]): PreparedHessian {
  if (!(percdamp >= 0)) throw new Error(`percdamp must be >= 0, got ${percdamp}`);
  const A = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const pi = perm ? perm[i] : i;
    for (let j = 0; j < n; j++) A[i * n + j] = H[pi * n + (perm ? perm[j] : j)];
  }
  const dead: boolean[] = [];
  for (let i = 0; i < n; i++) {
    dead.push(A[i * n + i] === 0);
    if (dead[i]) A[i * n + i] = 1;
  }
  let mean = 0;
  for (let i = 0; i < n; i++) mean += A[i * n + i];
  const damp = (percdamp * mean) / n;
  for (let i = 0; i < n; i++) A[i * n + i] += damp;
  const L = choleskyLower(A, n, 'Hessian');
  const inv = choleskyInverse(L, n);
  return { hinv: choleskyUpper(inv, n, 'Hessian inverse'), dead, damp };
}
