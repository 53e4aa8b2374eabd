// The training kernels' correctness checks (lib/kernels/suites.ts registers them): each against
// the tfjs ops it replaces, on the same device. LWC forward and backward against OmniQuant's
// lwcFakeQuantOps and its tfjs gradients; the AdamW update against adamUpdateOps.
import * as tf from '@tensorflow/tfjs';
import { lwcFakeQuantOps } from '../methods/omniquant';
import { seededNormal } from '../runtime/bench';
import { adamUpdateOps } from '../train/optim';
import { caseSeed, maxRelError, runPoisoned, type CheckResult, type KernelCheck } from './cases';
import { adamUpdate, lwcBackward, lwcForward, type AdamStep } from './train';

interface LwcCase {
  rows: number;
  cols: number;
  groupSize: number; // −1: per row
  bits: number;
  small: boolean;
  weights?: 'normal' | 'ties'; // ties: few distinct values, so maxima and minima repeat in a group
}

const LWC_CASES: LwcCase[] = [
  { rows: 37, cols: 70, groupSize: -1, bits: 4, small: true }, // per channel, width not a multiple of the workgroup
  { rows: 16, cols: 256, groupSize: 128, bits: 4, small: true },
  { rows: 8, cols: 96, groupSize: 32, bits: 3, small: true },
  { rows: 6, cols: 64, groupSize: 16, bits: 8, small: true },
  { rows: 12, cols: 64, groupSize: 32, bits: 2, small: true, weights: 'ties' },
  { rows: 4096, cols: 4096, groupSize: 128, bits: 4, small: false },
  { rows: 2048, cols: 11008, groupSize: -1, bits: 4, small: false }, // long rows (a down projection's input)
];

/** W [rows, cols], γ and β around the reference's init 4 (some far below, so the clip bites), upstream gradient R. */
function lwcOperands(c: LwcCase, seed: number): { W: tf.Tensor2D; gamma: tf.Tensor2D; beta: tf.Tensor2D; R: tf.Tensor2D } {
  const n = c.rows * c.cols;
  const groups = c.groupSize === -1 ? c.rows : n / c.groupSize;
  const w = seededNormal(n, seed, 0.05);
  if (c.weights === 'ties') w.forEach((x, i) => (w[i] = Math.round(x * 40) / 40));
  const logits = (s: number) => seededNormal(groups, s, 2).map((x) => 4 + x);
  return {
    W: tf.tensor2d(w, [c.rows, c.cols]),
    gamma: tf.tensor2d(logits(seed + 1), [groups, 1]),
    beta: tf.tensor2d(logits(seed + 2), [groups, 1]),
    R: tf.tensor2d(seededNormal(n, seed + 3), [c.rows, c.cols]),
  };
}

/** The tfjs gradients of Σ R·lwcFakeQuantOps(W, γ, β) with respect to W, γ and β. */
function lwcGradsOps(W: tf.Tensor2D, gamma: tf.Tensor, beta: tf.Tensor, R: tf.Tensor, bits: number, groupSize: number): tf.Tensor[] {
  return tf.grads((w: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(lwcFakeQuantOps(w as tf.Tensor2D, g, b, bits, groupSize), R)))([W, gamma, beta]);
}

const lwcLabel = (c: LwcCase) => `${c.rows}x${c.cols} W${c.bits} ${c.groupSize === -1 ? 'per channel' : `g${c.groupSize}`}${c.weights === 'ties' ? ' ties' : ''}`;

/**
 * Where the kernel's fake-quantized weights differ from the ops'. Two fp32 implementations may
 * round W/s differently when it sits at a .5 boundary (Vulkan allows division 2.5 ulp; on the H100
 * the group scales differ by ~1e-7 relative), moving that weight by exactly one step s of its
 * group: such groups are `flipped`. `other` counts every other difference over 1e-5 of the largest
 * weight (a NaN left in the output included); `err` is the largest relative difference elsewhere.
 */
async function roundingFlips(got: tf.Tensor, want: tf.Tensor, o: ReturnType<typeof lwcOperands>, c: LwcCase): Promise<{ flipped: Set<number>; flips: number; other: number; err: number }> {
  const [g, w, W, ga, be] = (await Promise.all([got, want, o.W, o.gamma, o.beta].map((t) => t.data()))) as Float32Array[];
  const gs = c.groupSize === -1 ? c.cols : c.groupSize;
  const q = 2 ** c.bits - 1;
  const scale = w.reduce((m, x) => Math.max(m, Math.abs(x)), 0);
  const sig = (x: number) => 1 / (1 + Math.exp(-x));
  const flipped = new Set<number>();
  let flips = 0;
  let other = 0;
  let err = 0;
  for (let k = 0; k < ga.length; k++) {
    let mx = -Infinity;
    let mn = Infinity;
    for (let i = k * gs; i < (k + 1) * gs; i++) {
      mx = Math.max(mx, W[i]);
      mn = Math.min(mn, W[i]);
    }
    const step = Math.min(Math.max(sig(ga[k]) * mx - sig(be[k]) * mn, 1e-5), 1e4) / q;
    for (let i = k * gs; i < (k + 1) * gs; i++) {
      const d = Math.abs(g[i] - w[i]);
      if (d <= 1e-5 * scale) err = Math.max(err, d / scale);
      else if (Math.abs(d - step) <= 1e-3 * step) (flipped.add(k), flips++);
      else other++;
    }
  }
  return { flipped, flips, other, err };
}

/**
 * Forward: the kernel's fake-quantized weights against the ops': at most 1e-4 of the weights one
 * rounding step apart (see roundingFlips), the rest within 1e-5. Backward: dW, dγ, dβ against
 * tfjs's gradients of the ops over the groups where both forwards agree (sums in another order:
 * 1e-4 relative to each gradient's largest entry), at most 1% of the groups left out.
 */
function lwcChecks(seed: number): KernelCheck[] {
  return LWC_CASES.flatMap((c, i) => {
    const args = (o: ReturnType<typeof lwcOperands>) => [o.W, o.gamma, o.beta, c.bits, c.groupSize] as const;
    const forwards = (o: ReturnType<typeof lwcOperands>) => [tf.tidy(() => lwcFakeQuantOps(...args(o))), lwcForward(...args(o))];
    return [
      {
        kernel: 'lwc-forward',
        name: lwcLabel(c),
        small: c.small,
        async run(): Promise<CheckResult> {
          const o = lwcOperands(c, caseSeed(seed, 700 + 2 * i));
          const want = tf.tidy(() => lwcFakeQuantOps(...args(o)));
          const { outputs, poisoned } = await runPoisoned([want.size], () => [lwcForward(...args(o))]);
          try {
            const f = await roundingFlips(outputs[0], want, o, c);
            const note = `${f.flips} of ${want.size} weights one rounding step apart; max_rel_err elsewhere ${f.err.toExponential(2)}`;
            return { metric: 'rounding_flip_fraction', error: f.other > 0 ? Infinity : f.flips / want.size, tolerance: 1e-4, poisoned, note: f.other > 0 ? `${f.other} weights differ by other than one step; ${note}` : note };
          } finally {
            tf.dispose([...Object.values(o), want, ...outputs]);
          }
        },
      },
      {
        kernel: 'lwc-backward',
        name: lwcLabel(c),
        small: c.small,
        async run(): Promise<CheckResult> {
          const o = lwcOperands(c, caseSeed(seed, 701 + 2 * i));
          const want = lwcGradsOps(o.W, o.gamma, o.beta, o.R, c.bits, c.groupSize);
          const { outputs, poisoned } = await runPoisoned(want.map((t) => t.size), () => lwcBackward(o.R, ...args(o)));
          const fw = forwards(o);
          try {
            const { flipped } = await roundingFlips(fw[1], fw[0], o, c);
            const gs = o.W.size / o.gamma.size;
            const [got, ref] = (await Promise.all([outputs, want].map((ts) => Promise.all(ts.map((t) => t.data()))))) as Float32Array[][];
            // per gradient: the largest difference over agreeing groups, relative to its largest entry
            const errors = got.map((x, k) => {
              const per = k === 0 ? gs : 1; // dW: gs entries per group; dγ, dβ: one
              let diff = 0;
              for (let j = 0; j < x.length; j++) if (!flipped.has(Math.floor(j / per))) diff = Math.max(diff, Math.abs(x[j] - ref[k][j]) || (Number.isNaN(x[j]) ? Infinity : 0));
              const scale = ref[k].reduce((m, v) => Math.max(m, Math.abs(v)), 0);
              return scale === 0 ? diff : diff / scale;
            });
            const note = `dW ${errors[0].toExponential(2)}, dgamma ${errors[1].toExponential(2)}, dbeta ${errors[2].toExponential(2)}; ${flipped.size} of ${o.gamma.size} groups with a rounding flip left out`;
            return { metric: 'max_rel_err', error: flipped.size > 0.01 * o.gamma.size ? Infinity : Math.max(...errors), tolerance: 1e-4, poisoned, note };
          } finally {
            tf.dispose([...Object.values(o), ...want, ...outputs, ...fw]);
          }
        },
      },
    ];
  });
}

const ADAM_CASES = [
  { n: 1000, t: 1, weightDecay: 0, small: true },
  { n: 4099, t: 7, weightDecay: 0.1, small: true },
  { n: 16_777_216, t: 3, weightDecay: 0, small: false },
];

/** The AdamW update against its ops: p', m', v' within 1e-6 relative (the same fp32 arithmetic). */
function adamChecks(seed: number): KernelCheck[] {
  return ADAM_CASES.map((c, i) => ({
    kernel: 'adam-update',
    name: `${c.n} elements, step ${c.t}, weight decay ${c.weightDecay}`,
    small: c.small,
    async run(): Promise<CheckResult> {
      const s0 = caseSeed(seed, 800 + i);
      const lr = 1e-2;
      const step: AdamStep = { beta1: 0.9, beta2: 0.999, stepSize: lr / (1 - 0.9 ** c.t), sqrtBc2: Math.sqrt(1 - 0.999 ** c.t), eps: 1e-8, decay: 1 - lr * c.weightDecay };
      const [p, m, g] = [0, 1, 2].map((k) => tf.tensor1d(seededNormal(c.n, s0 + k)));
      const v = tf.tensor1d(seededNormal(c.n, s0 + 3).map((x) => x * x * 1e-3)); // second moments are ≥ 0
      const want = adamUpdateOps(p, m, v, g, step);
      const { outputs, poisoned } = await runPoisoned([c.n, c.n, c.n], () => adamUpdate(p, m, v, g, step));
      try {
        const errors = await Promise.all(outputs.map((t, k) => maxRelError(t, want[k])));
        return { metric: 'max_rel_err', error: Math.max(...errors), tolerance: 1e-6, poisoned, note: `p ${errors[0].toExponential(2)}, m ${errors[1].toExponential(2)}, v ${errors[2].toExponential(2)}` };
      } finally {
        tf.dispose([p, m, v, g, ...want, ...outputs]);
      }
    },
  }));
}

/** Every training kernel's checks. */
export function trainChecks(seed: number): KernelCheck[] {
  return [...lwcChecks(seed), ...adamChecks(seed)];
}
