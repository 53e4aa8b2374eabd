// AdamW with decoupled weight decay (Loshchilov & Hutter; the update of torch.optim.AdamW), a
// cosine learning-rate schedule with linear warmup, and global-norm gradient clipping. Optimizer
// state lives in tf.Variables so that a step never leaves the device; it can be exported and
// restored exactly for checkpoints.
import * as tf from '@tensorflow/tfjs';
import { onReplay } from '../kernels/step-graph';
import { adamHyper, adamUpdate, type AdamStep } from '../kernels/train';
import { webgpuDevice } from '../runtime/backend';

export interface ScheduleOptions {
  lr: number; // peak learning rate, reached at the end of warmup
  warmupSteps: number; // linear warmup from lr/warmupSteps to lr
  totalSteps: number; // the cosine reaches minLr at this step
  minLrRatio: number; // floor of the cosine as a fraction of lr
}

/** Learning rate for optimizer step `step` (0-based). */
export function cosineLr(step: number, o: ScheduleOptions): number {
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * (step + 1)) / o.warmupSteps;
  const decay = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / decay);
  const minLr = o.lr * o.minLrRatio;
  return minLr + 0.5 * (o.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}

export interface AdamWOptions {
  beta1: number; // first-moment decay
  beta2: number; // second-moment decay
  eps: number; // added to sqrt(v̂)
  weightDecay: number; // decoupled: p ← p·(1 − lr·wd) before the Adam step
}
export const ADAMW_DEFAULTS: AdamWOptions = {
  beta1: 0.9,
  beta2: 0.95, // the usual LM pre-training choice (GPT-3, LLaMA)
  eps: 1e-8,
  weightDecay: 0.1,
};

/**
 * AdamW over a fixed set of named variables. `decay(name)` says which parameters get weight decay
 * (conventionally matrices, not norms or biases).
 */
export class AdamW {
  readonly o: AdamWOptions;
  /** Number of steps taken (t in the bias corrections). */
  t = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(
    readonly params: Map<string, tf.Variable>,
    opts: Partial<AdamWOptions> = {},
    readonly decay: (name: string) => boolean = () => true,
  ) {
    this.o = { ...ADAMW_DEFAULTS, ...opts };
    for (const [name, p] of params) {
      // tf.variable copies its initial value; tidy frees the zeros it was made from.
      this.m.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
      this.v.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
    }
  }

  /**
   * One update. grads must hold every parameter's gradient; gradScale (a scalar tensor, e.g. the
   * clipping factor) multiplies them first. The caller keeps ownership of grads and gradScale.
   */
  step(grads: Map<string, tf.Tensor> | Record<string, tf.Tensor>, lr: number, gradScale?: tf.Scalar): void {
    const g = grads instanceof Map ? grads : new Map(Object.entries(grads));
    this.t += 1;
    const { beta1, beta2, eps } = this.o;
    const at = (t: number) => ({ stepSize: lr / (1 - Math.pow(beta1, t)), sqrtBc2: Math.sqrt(1 - Math.pow(beta2, t)) });
    // webgpu: one dispatch instead of ~12 (lib/kernels/train.ts); the ops stay the reference. The
    // t-dependent scalars are a device tensor there, which a step graph rewrites at each replay
    // (the learning rate of a captured step stays fixed).
    const now = at(this.t);
    const hyper = webgpuDevice() !== null ? adamHyper(now) : null;
    try {
      if (hyper) {
        onReplay(hyper, () => {
          const s = at(++this.t);
          return Float32Array.from([s.stepSize, s.sqrtBc2]);
        });
      }
      for (const [name, p] of this.params) {
        const gi = g.get(name);
        if (!gi) throw new Error(`AdamW.step: no gradient for parameter '${name}'`);
        const wd = this.decay(name) ? this.o.weightDecay : 0;
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        const s: AdamStep = { beta1, beta2, eps, ...now, decay: wd > 0 ? 1 - lr * wd : 1 };
        tf.tidy(() => {
          const grad = gradScale ? tf.mul(gi, gradScale) : gi;
          const next = hyper ? adamUpdate(p, m, v, grad, s, hyper) : adamUpdateOps(p, m, v, grad, s);
          [p, m, v].forEach((variable, i) => variable.assign(next[i]));
        });
      }
    } finally {
      hyper?.dispose();
    }
  }

  /** The moments (tf.Variables; a step replaces their tensors): with the parameters, a step graph's state. */
  moments(): tf.Variable[] {
    return [...this.m.values(), ...this.v.values()];
  }

  /** Moments as named tensors (copies) for a checkpoint, plus t. */
  exportState(): { t: number; tensors: Map<string, tf.Tensor> } {
    const tensors = new Map<string, tf.Tensor>();
    for (const [name, m] of this.m) tensors.set(`m.${name}`, m.clone());
    for (const [name, v] of this.v) tensors.set(`v.${name}`, v.clone());
    return { t: this.t, tensors };
  }

  /** Restores moments saved by exportState (the caller keeps ownership of `tensors`). */
  importState(state: { t: number; tensors: Map<string, tf.Tensor> }, source = 'optimizer state'): void {
    for (const [kind, map] of [['m', this.m], ['v', this.v]] as const) {
      for (const [name, variable] of map) {
        const x = state.tensors.get(`${kind}.${name}`);
        if (!x) throw new Error(`${source}: missing '${kind}.${name}'`);
        if (x.shape.join(',') !== variable.shape.join(',')) {
          throw new Error(`${source}: '${kind}.${name}' has shape [${x.shape}], the parameter has [${variable.shape}]`);
        }
        variable.assign(x);
      }
    }
    this.t = state.t;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/** adamUpdate's tfjs ops (the reference; the path off webgpu): [p', m', v']. */
export function adamUpdateOps(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, s: AdamStep): [tf.Tensor, tf.Tensor, tf.Tensor] {
  return tf.tidy(() => {
    const m1 = m.mul(s.beta1).add(g.mul(1 - s.beta1));
    const v1 = v.mul(s.beta2).add(g.square().mul(1 - s.beta2));
    const base = s.decay !== 1 ? p.mul(s.decay) : p;
    // torch: denom = sqrt(v)/sqrt(bc2) + eps; p -= (lr/bc1) · m/denom
    const denom = v1.sqrt().div(s.sqrtBc2).add(s.eps);
    return [base.sub(m1.div(denom).mul(s.stepSize)), m1, v1];
  });
}

/**
 * Global-norm clipping factor: min(1, maxNorm / (‖g‖₂ + 1e-6)) over all gradients together (as
 * torch.nn.utils.clip_grad_norm_). Returns [norm, factor] as scalars; maxNorm ≤ 0 means no clipping
 * (factor 1).
 */
export function clipFactor(grads: Iterable<tf.Tensor>, maxNorm: number): [tf.Scalar, tf.Scalar] {
  return tf.tidy(() => {
    let sq: tf.Scalar = tf.scalar(0);
    for (const g of grads) sq = sq.add(g.square().sum()) as tf.Scalar;
    const norm = sq.sqrt() as tf.Scalar;
    const factor = maxNorm > 0 ? (tf.minimum(1, tf.div(maxNorm, norm.add(1e-6))) as tf.Scalar) : tf.scalar(1);
    return [norm, factor];
  });
}
