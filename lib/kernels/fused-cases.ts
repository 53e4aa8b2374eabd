// The fused row and element-wise kernels' correctness checks and benchmarks against the plain ops
// they replace (lib/kernels/suites.ts registers them); kept out of fused.ts so that the forward pass
// does not load them.
import * as tf from '@tensorflow/tfjs';
import { seededNormal } from '../runtime/bench';
import { caseSeed, maxRelError, runPoisoned, type BenchSetup, type CheckResult, type KernelBench, type KernelCheck } from './cases';
import { rmsNorm, rmsNormWithGrad, ropeHeads, ropeHeadsWithGrad, swiglu, swigluWithGrad } from './fused';

// --- the plain ops each kernel replaces (as lib/models/transformer.ts runs them) ---

export function rmsNormPlain(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), w));
}

export function ropeHeadsPlain(a: tf.Tensor2D, cos: tf.Tensor2D, sin: tf.Tensor2D, B: number, heads: number): tf.Tensor4D {
  const [T, hd] = cos.shape;
  return tf.tidy(() => {
    const x = tf.transpose(tf.reshape(a, [B, T, heads, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    const [x1, x2] = tf.split(x, 2, 3);
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], 3), sin)) as tf.Tensor4D;
  });
}

export function swigluPlain(g: tf.Tensor, u: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(g, tf.sigmoid(g)), u));
}

// --- checks and benchmarks (lib/kernels/suites.ts registers them) ---

/** Operands of one case: x-like tensors from seeded normals, RoPE tables from real angles. */
function operands(kind: 'rmsnorm' | 'rope' | 'swiglu', dims: number[], seed: number): tf.Tensor[] {
  const t = (shape: number[], s: number) => tf.tensor(seededNormal(shape.reduce((a, b) => a * b, 1), s), shape);
  if (kind === 'rmsnorm') return [t(dims, seed), t([dims[dims.length - 1]], seed + 1)];
  if (kind === 'swiglu') return [t(dims, seed), t(dims, seed + 1)];
  const [B, T, heads, hd] = dims;
  const angles = Array.from({ length: T * hd }, (_, i) => Math.floor(i / hd) * 10000 ** (-(2 * (i % (hd / 2))) / hd));
  return [t([B * T, heads * hd], seed), tf.tensor2d(angles.map(Math.cos), [T, hd]), tf.tensor2d(angles.map(Math.sin), [T, hd])];
}

interface FusedCase {
  kind: 'rmsnorm' | 'rope' | 'swiglu';
  dims: number[]; // rmsnorm/swiglu: x's shape; rope: [B, T, heads, hd]
  small: boolean;
}

function runners(c: FusedCase, ops: tf.Tensor[]): { kernel(): tf.Tensor; plain(): tf.Tensor } {
  if (c.kind === 'rmsnorm') return { kernel: () => rmsNorm(ops[0], ops[1], 1e-5), plain: () => rmsNormPlain(ops[0], ops[1], 1e-5) };
  if (c.kind === 'swiglu') return { kernel: () => swiglu(ops[0], ops[1]), plain: () => swigluPlain(ops[0], ops[1]) };
  const [a, cos, sin] = ops as tf.Tensor2D[];
  const [B, , heads] = c.dims;
  return { kernel: () => ropeHeads(a, cos, sin, B, heads), plain: () => ropeHeadsPlain(a, cos, sin, B, heads) };
}

const CASES: FusedCase[] = [
  { kind: 'rmsnorm', dims: [37, 70], small: true }, // rows and width not multiples of the workgroup
  { kind: 'rmsnorm', dims: [2, 3, 200], small: true },
  { kind: 'rmsnorm', dims: [1, 5], small: true },
  { kind: 'rmsnorm', dims: [4096, 4096], small: false },
  { kind: 'rope', dims: [2, 7, 3, 10], small: true },
  { kind: 'rope', dims: [1, 1, 8, 64], small: true }, // a decode step
  { kind: 'rope', dims: [4, 512, 32, 128], small: false },
  { kind: 'swiglu', dims: [37, 70], small: true },
  { kind: 'swiglu', dims: [2048, 14336], small: false },
];

const label = (c: FusedCase) => (c.kind === 'rope' ? `B=${c.dims[0]} T=${c.dims[1]} heads=${c.dims[2]} hd=${c.dims[3]}` : `[${c.dims.join(', ')}]`);

/** The gradients of each kernel's *WithGrad form and of its plain ops, for one upstream gradient dy. */
function gradRunners(c: FusedCase, ops: tf.Tensor[], dy: tf.Tensor): { kernel(): tf.Tensor[]; plain(): tf.Tensor[] } {
  if (c.kind === 'rmsnorm') return { kernel: () => tf.grads((x, w) => rmsNormWithGrad(x, w, 1e-5))(ops, dy), plain: () => tf.grads((x, w) => rmsNormPlain(x, w, 1e-5))(ops, dy) };
  if (c.kind === 'swiglu') return { kernel: () => tf.grads((g, u) => swigluWithGrad(g, u))(ops, dy), plain: () => tf.grads((g, u) => swigluPlain(g, u))(ops, dy) };
  const [a, cos, sin] = ops as tf.Tensor2D[];
  const [B, , heads] = c.dims;
  return { kernel: () => tf.grads((x) => ropeHeadsWithGrad(x as tf.Tensor2D, cos, sin, B, heads))([a], dy), plain: () => tf.grads((x) => ropeHeadsPlain(x as tf.Tensor2D, cos, sin, B, heads))([a], dy) };
}

/**
 * Each fused kernel against its plain ops, outputs poisoned, fp32 tolerance 1e-5 relative; then its
 * gradients (the backward kernels) against tfjs's gradients of the plain ops, 1e-4 relative to each
 * gradient's largest entry (sums over a row or a column in another order).
 */
export function fusedChecks(seed: number): KernelCheck[] {
  return [...forwardChecks(seed), ...gradChecks(seed)];
}

function gradChecks(seed: number): KernelCheck[] {
  return CASES.map((c, i) => ({
    kernel: `${c.kind}-backward`,
    name: label(c),
    small: c.small,
    async run(): Promise<CheckResult> {
      const ops = operands(c.kind, c.dims, caseSeed(seed, 400 + 2 * i));
      const outShape = c.kind === 'rope' ? [c.dims[0], c.dims[2], c.dims[1], c.dims[3]] : c.dims;
      const dy = tf.tensor(seededNormal(outShape.reduce((a, b) => a * b, 1), caseSeed(seed, 401 + 2 * i)), outShape);
      const r = gradRunners(c, ops, dy);
      const want = r.plain();
      const { outputs, poisoned } = await runPoisoned(want.map((t) => t.size), () => r.kernel());
      try {
        const errors = await Promise.all(outputs.map((t, k) => maxRelError(t, want[k])));
        return { metric: 'max_rel_err', error: Math.max(...errors), tolerance: 1e-4, poisoned, note: errors.map((e) => e.toExponential(2)).join(', ') };
      } finally {
        tf.dispose([...ops, dy, ...want, ...outputs]);
      }
    },
  }));
}

function forwardChecks(seed: number): KernelCheck[] {
  return CASES.map((c, i) => ({
    kernel: c.kind,
    name: label(c),
    small: c.small,
    async run(): Promise<CheckResult> {
      const ops = operands(c.kind, c.dims, caseSeed(seed, 300 + 2 * i));
      const r = runners(c, ops);
      const want = r.plain();
      const { outputs, poisoned } = await runPoisoned([want.size], () => [r.kernel()]);
      try {
        return { metric: 'max_rel_err', error: await maxRelError(outputs[0], want), tolerance: 1e-5, poisoned };
      } finally {
        tf.dispose([...ops, want, ...outputs]);
      }
    },
  }));
}

/** Memory-bound: GB/s over the bytes each kernel must read and write once. */
export function fusedBenches(): KernelBench[] {
  return CASES.map((c, i) => {
    const n = c.dims.reduce((a, b) => a * b, 1);
    return {
      kernel: c.kind,
      name: label(c),
      small: c.small,
      flops: 0,
      bytes: 4 * n * (c.kind === 'swiglu' ? 3 : 2),
      variants: ['fused'],
      setup(): BenchSetup {
        const ops = operands(c.kind, c.dims, 500 + i);
        return { ...runners(c, ops), dispose: () => tf.dispose(ops) };
      },
    };
  });
}
