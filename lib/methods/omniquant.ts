// OmniQuant (Shao et al., 2024): learnable weight clipping (LWC: per row-group clip factors
// sigmoid(γ)·max, sigmoid(β)·min of the min-max quantizer) and learnable equivalent transformation
// (LET: per-channel scales between a norm and the linears it feeds), trained block by block with
// tfjs gradients (straight-through rounding) to match the full-precision block's outputs. The
// quantized stream feeds the next block; targets come from a separate full-precision stream, as
// in the reference. Learned parameters are a serializable artifact; applyArtifact() rebuilds the
// quantized model from an FP model without training.
//
// Deviations from the reference, stated: LET learns scales only (no shifts) and only for
// norm-fed groups (q/k/v, gate/up or fc1); the q·kᵀ scale is not learned; groups must divide the
// input dimension.
import * as tf from '@tensorflow/tfjs';
import { assertFinite } from '../eval/finite';
import { captureStep, copyTensors, slotOf, stepGraphsEnabled, type StepGraph } from '../kernels/step-graph';
import { lwcBackward, lwcForward } from '../kernels/train';
import { ARCHS, linearName } from '../models/arch';
import type { Model } from '../models/types';
import type { ActQuantSpec } from '../quant/act';
import { webgpuDevice } from '../runtime/backend';
import { AdamW } from '../train/optim';
import { checkWeightSpec, dequantizeMatrix, maxq, quantizeGroups, roundHalfEven, type QuantizedMatrix } from '../quant/quantizer';
import { quantizeGroupsDevice } from '../quant/quantizer-device';
import { getWeight, hostValues, observeAbsMax, linearShape, readFloat32, readLinear, replaceWeight } from '../quant/weights';
import { describeCalib, type CalibSet } from './calib';
import { blockLinearNames, runSequential } from './sequential';
import { foldIntoNorm } from './smoothquant';
import { solverKind } from './solver';
import { defaultsOf, defineOptions, parseOptions, type OptionsOf } from './options';
import type { CompressResult, MethodHooks, MethodModule } from './types';

export const options = defineOptions({
  bits: { type: 'int', min: 1, max: 8, default: 4, doc: 'weight bits (paper: W4A16, W3A16, W2A16; W6A6/W4A4 with activations)' },
  groupSize: { type: 'int', min: -1, default: -1, doc: 'input columns per group, -1 per channel (paper: g128 for some weight-only rows)' },
  mode: { type: 'enum', values: ['weight', 'weight-act'], default: 'weight', doc: 'weight-only (paper Table 1) or weight-activation (Table 2)' },
  actBits: { type: 'int', min: 2, max: 16, default: 8, doc: 'activation bits in weight-act mode (paper W4A4, W6A6)' },
  lwc: { type: 'boolean', default: true, doc: 'learnable weight clipping (paper §3.2, on by default)' },
  let: { type: 'boolean', nullable: true, default: null, doc: "learnable equivalent transformation (paper §3.3); null = on in weight-act mode only, as the paper's scripts" },
  epochs: { type: 'int', min: 0, default: 20, doc: 'passes over the calibration windows per block (paper: 20 for weight-only, 20/40 for W4A4)' },
  lwcLr: { type: 'number', min: 0, minOpen: true, default: 1e-2, doc: 'learning rate of the LWC parameters (reference --lwc_lr)' },
  letLr: { type: 'number', min: 0, minOpen: true, default: 5e-3, doc: 'learning rate of the LET scales (reference --let_lr)' },
  lwcInit: { type: 'number', default: 4, doc: 'initial γ, β logits (reference init 4: clip factor sigmoid(4) ≈ 0.982)' },
  letAlpha: { type: 'number', min: 0, max: 1, default: 0.5, doc: "LET scale init max|X|^α / max|W|^(1−α) (the reference's SmoothQuant-style α = 0.5)" },
  batchSize: { type: 'int', min: 1, default: 1, doc: 'calibration windows per gradient step (reference: 1)' },
});
export type OmniQuantOptions = OptionsOf<typeof options>;
export const defaults: OmniQuantOptions = defaultsOf(options);

export function validate(o: OmniQuantOptions, model?: Model): void {
  parseOptions('omniquant', options, o);
  if (model) {
    for (const l of blockLinearNames(model)) {
      checkWeightSpec({ bits: o.bits, groupSize: o.groupSize, sym: false, groupRemainder: 'error' }, linearShape(model, l)[1], `omniquant ${l}`);
    }
  }
}

const useLet = (o: OmniQuantOptions) => o.let ?? o.mode === 'weight-act';

/** Learned parameters: γ/β logits per (row, group) of each linear, LET scales per norm-fed group. */
export interface OmniQuantArtifact {
  bits: number;
  groupSize: number;
  /** "<block>.<linear>" → { gamma, beta } (length rows × groups, row-major). */
  lwc: Record<string, { gamma: number[]; beta: number[] }>;
  /** "<block>.<first linear of group>" → { norm, linears, scales }. */
  let: Record<string, { norm: string; linears: string[]; scales: number[] }>;
}

/** torch.optim.AdamW's defaults with the reference's weight decay 0 (--wd). */
const REFERENCE_ADAM = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

/** round() with a straight-through gradient. */
const roundSte = tf.customGrad(((x: tf.Tensor) => ({ value: tf.round(x), gradFunc: (dy: tf.Tensor) => dy })) as unknown as Parameters<typeof tf.customGrad>[0]) as (x: tf.Tensor) => tf.Tensor;

/**
 * Differentiable LWC fake quantization of W [rows, cols] with clip logits γ, β [rows·groups, 1]:
 * on webgpu one kernel each way (lib/kernels/train.ts), elsewhere lwcFakeQuantOps.
 */
export function lwcFakeQuant(W: tf.Tensor2D, gamma: tf.Tensor, beta: tf.Tensor, bits: number, groupSize: number): tf.Tensor2D {
  if (!webgpuDevice()) return lwcFakeQuantOps(W, gamma, beta, bits, groupSize);
  const f = tf.customGrad(((w: tf.Tensor, g: tf.Tensor, b: tf.Tensor, save: tf.GradSaveFunc) => {
    save([w, g, b]);
    return { value: lwcForward(w, g, b, bits, groupSize), gradFunc: (dy: tf.Tensor, [ws, gs, bs]: tf.Tensor[]) => lwcBackward(dy, ws, gs, bs, bits, groupSize) };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(W, gamma, beta) as tf.Tensor2D;
}

/** lwcFakeQuant in tfjs ops (the reference; straight-through rounding). */
export function lwcFakeQuantOps(W: tf.Tensor2D, gamma: tf.Tensor, beta: tf.Tensor, bits: number, groupSize: number): tf.Tensor2D {
  const [rows, cols] = W.shape;
  const gs = groupSize === -1 ? cols : groupSize;
  const q = maxq(bits);
  const Wg = tf.reshape(W, [-1, gs]); // [rows·groups, gs]
  const xmax = tf.mul(tf.sigmoid(gamma), tf.max(Wg, 1, true));
  const xmin = tf.mul(tf.sigmoid(beta), tf.min(Wg, 1, true));
  const scale = tf.div(tf.clipByValue(tf.sub(xmax, xmin), 1e-5, 1e4), q);
  const zero = roundSte(tf.clipByValue(tf.div(tf.neg(xmin), scale), -1e4, 1e4));
  const codes = tf.clipByValue(tf.add(roundSte(tf.div(Wg, scale)), zero), 0, q);
  return tf.reshape(tf.mul(tf.sub(codes, zero), scale), [rows, cols]) as tf.Tensor2D;
}

/** The same quantizer on the host (fp32): codes, scales and zeros for the packed format. */
export function lwcQuantizeHost(W: Float32Array, rows: number, cols: number, gamma: ArrayLike<number>, beta: ArrayLike<number>, bits: number, groupSize: number): QuantizedMatrix {
  const ng = cols / (groupSize === -1 ? cols : groupSize);
  return quantizeGroups(W, rows, cols, { bits, groupSize, sym: false, groupRemainder: 'error' }, (mn, mx, r, g) => lwcGroupParams(mn, mx, gamma[r * ng + g], beta[r * ng + g], bits));
}

/** A group's scale and zero from its min and max and its clip logits γ, β (fp32, as the reference's LWC quantizer). */
function lwcGroupParams(mn: number, mx: number, gamma: number, beta: number, bits: number): { scale: number; zero: number } {
  const f = Math.fround;
  const q = maxq(bits);
  const sig = (x: number) => f(1 / (1 + Math.exp(-x)));
  const xmax = f(sig(gamma) * mx);
  const xmin = f(sig(beta) * mn);
  const scale = f(Math.min(Math.max(f(xmax - xmin), 1e-5), 1e4) / q);
  // the packed format stores integer zero points in 0..2^bits: clamp (a clipped range always contains 0 for real weights)
  const zero = Math.min(Math.max(roundHalfEven(f(-xmin / scale)), 0), q) + 0;
  return { scale, zero };
}

/** lwcQuantizeHost on the tfjs backend for a weight w [rows, cols] of whole groups (quantizeGroupsDevice: the codes and the weight on the backend; w is not disposed). */
export function lwcQuantizeDevice(w: tf.Tensor2D, gamma: ArrayLike<number>, beta: ArrayLike<number>, bits: number, groupSize: number): Promise<{ quantized: QuantizedMatrix; weight: tf.Tensor2D }> {
  const ng = w.shape[1] / (groupSize === -1 ? w.shape[1] : groupSize);
  return quantizeGroupsDevice(w, { bits, groupSize, sym: false, groupRemainder: 'error' }, (mn, mx, r, g) => lwcGroupParams(mn, mx, gamma[r * ng + g], beta[r * ng + g], bits));
}

/** Per-token absmax activation fake quantization with straight-through rounding. */
function actQuantSte(x: tf.Tensor2D, bits: number): tf.Tensor2D {
  const qmax = 2 ** (bits - 1) - 1;
  const s = tf.div(tf.maximum(tf.max(tf.abs(x), 1, true), 1e-5), qmax);
  return tf.mul(roundSte(tf.div(x, s)), s) as tf.Tensor2D;
}

/** Applies learned parameters to an FP model: LET scales into norms/linears, then LWC quantization. Returns the codes. */
export async function applyArtifact(model: Model, art: OmniQuantArtifact): Promise<Map<string, QuantizedMatrix>> {
  for (const [key, v] of Object.entries(art.let)) {
    const b = Number(key.split('.')[0]);
    const s = Float32Array.from(v.scales);
    await foldIntoNorm(model, b, v.norm, s);
    for (const l of v.linears) {
      const m = await readLinear(model, b, l);
      replaceWeight(model, m.name, Float32Array.from(m.data, (w, i) => Math.fround(w * s[i % m.cols])));
    }
  }
  const out = new Map<string, QuantizedMatrix>();
  for (const [key, p] of Object.entries(art.lwc)) {
    const [b, l] = key.split('.');
    const name = linearName(model.config.arch, Number(b), l);
    const [rows, cols] = linearShape(model, l, Number(b));
    if (solverKind(rows, cols) === 'device') {
      // big layers (solverKind): the codes and the weight on the backend
      const { quantized, weight } = await lwcQuantizeDevice(getWeight(model, name) as tf.Tensor2D, p.gamma, p.beta, art.bits, art.groupSize);
      replaceWeight(model, name, weight);
      out.set(name, quantized);
      continue;
    }
    const m = await readLinear(model, Number(b), l);
    const q = lwcQuantizeHost(m.data, m.rows, m.cols, p.gamma, p.beta, art.bits, art.groupSize);
    replaceWeight(model, m.name, dequantizeMatrix(q));
    out.set(m.name, q);
  }
  return out;
}

export async function compress(model: Model, calib: CalibSet | null, opts: Partial<OmniQuantOptions> = {}, hooks: MethodHooks = {}): Promise<CompressResult> {
  const o = { ...defaults, ...opts };
  validate(o, model);
  if (!calib) throw new Error('omniquant needs a calibration set');
  const arch = ARCHS[model.config.arch];
  const linears = blockLinearNames(model);
  const art: OmniQuantArtifact = { bits: o.bits, groupSize: o.groupSize, lwc: {}, let: {} };
  const letOn = useLet(o);
  const firstLoss: number[] = []; // per block: mean loss of the first epoch
  const lastLoss: number[] = []; // per block: mean loss of the last epoch
  const quantized = new Map<string, QuantizedMatrix>();
  let fpInputs: tf.Tensor3D[] | null = null; // the full-precision stream (targets' inputs)
  try {
    await runSequential(model, calib, {
      propagate: 'compressed',
      batchSize: o.batchSize,
      ...hooks,
      propagateOptions: o.mode === 'weight-act' ? { onLinearInput: (_l, x) => actQuantAbsmax(x, o.actBits) } : undefined,
      async perBlock(ctx) {
        const b = ctx.block;
        if (!fpInputs) fpInputs = ctx.inputs.map((x) => x.clone());
        // Targets: the FP block on the FP stream; they are also the next block's FP inputs (held in
        // fpInputs from here, so they are disposed however this block ends).
        const fp = fpInputs;
        const targets = await ctx.timed('targets', () => fp.map((x) => ctx.run(x)));
        fpInputs.forEach((t) => t.dispose());
        fpInputs = targets;
        // LET init from the block's activation maxima (quantized stream), SmoothQuant-style.
        const letGroups = letOn ? arch.groups.filter((g) => g.prev.kind === 'norm') : [];
        const actMax = new Map<string, Float32Array>();
        if (letGroups.length) {
          const firsts = new Set(letGroups.map((g) => g.linears[0]));
          for (const [l, m] of await observeAbsMax((fn) => ctx.observe(fn), (l) => firsts.has(l), true)) actMax.set(l, m);
        }
        const fpW = new Map(linears.map((l) => [l, getWeight(model, linearName(model.config.arch, b, l)).clone() as tf.Tensor2D]));
        const normName = (n: string) => `${arch.blockPrefix(b)}${arch.norms[n]}.weight`;
        const fpNorm = new Map(letGroups.map((g) => [g.prev.name, getWeight(model, normName(g.prev.name)).clone()]));
        const gamma = new Map<string, tf.Variable>();
        const beta = new Map<string, tf.Variable>();
        const letS = new Map<string, tf.Variable>(); // log-free scales, one per group
        for (const l of linears) {
          const [rows, cols] = fpW.get(l)!.shape;
          const n = rows * (o.groupSize === -1 ? 1 : cols / o.groupSize);
          gamma.set(l, variableOf(tf.fill([n, 1], o.lwcInit), o.lwc));
          beta.set(l, variableOf(tf.fill([n, 1], o.lwcInit), o.lwc));
        }
        for (const g of letGroups) {
          const am = actMax.get(g.linears[0])!;
          const cols = am.length;
          const wmax = await hostValues(() => tf.max(tf.stack(g.linears.map((l) => tf.max(tf.abs(fpW.get(l)!), 0))), 0));
          const init = Float32Array.from({ length: cols }, (_, j) => Math.max(Math.pow(am[j], o.letAlpha) / Math.pow(Math.max(wmax[j], 1e-5), 1 - o.letAlpha), 1e-5));
          letS.set(g.linears[0], variableOf(tf.tensor1d(init), true));
        }
        // The block with the current parameters: LET-scaled norm/linears, LWC-quantized weights.
        const setEffective = () => {
          const saved: [string, tf.Tensor][] = [];
          const set = (name: string, t: tf.Tensor) => {
            saved.push([name, model.weights.get(name)!]);
            model.weights.set(name, t);
          };
          const scaleOf = new Map<string, tf.Tensor>();
          for (const g of letGroups) {
            const s = letS.get(g.linears[0])!;
            set(normName(g.prev.name), tf.div(fpNorm.get(g.prev.name)!, s));
            for (const l of g.linears) scaleOf.set(l, s);
          }
          for (const l of linears) {
            const s = scaleOf.get(l);
            const w = s ? (tf.mul(fpW.get(l)!, s) as tf.Tensor2D) : fpW.get(l)!;
            set(linearName(model.config.arch, b, l), lwcFakeQuant(w, gamma.get(l)!, beta.get(l)!, o.bits, o.groupSize));
          }
          return () => saved.reverse().forEach(([n, t]) => model.weights.set(n, t));
        };
        const fwdOpts = o.mode === 'weight-act' ? { onLinearInput: (_l: string, x: tf.Tensor2D) => actQuantSte(x, o.actBits) } : {};
        const trainable = [...(o.lwc ? [...gamma.values(), ...beta.values()] : []), ...letS.values()];
        try {
          if (trainable.length && o.epochs > 0) {
            // the reference's torch AdamW (weight decay 0), one per learning rate
            const adam = (vars: tf.Variable[]) => new AdamW(new Map(vars.map((v) => [v.name, v])), REFERENCE_ADAM);
            const optLwc = adam(o.lwc ? [...gamma.values(), ...beta.values()] : []);
            const optLet = adam([...letS.values()]);
            /** One gradient step on window x against its target; returns the loss (the caller frees it). */
            const step = (x: tf.Tensor3D, target: tf.Tensor3D): tf.Scalar => {
              const { value, grads } = tf.variableGrads(() => {
                const restore = setEffective();
                try {
                  const out = ctx.run(x, fwdOpts);
                  return tf.mean(tf.square(tf.sub(out, target))) as tf.Scalar;
                } finally {
                  restore();
                }
              }, trainable);
              try {
                optLwc.step(grads, o.lwcLr);
                optLet.step(grads, o.letLr);
              } catch (e) {
                value.dispose();
                throw e;
              } finally {
                Object.values(grads).forEach((g) => g.dispose());
              }
              return value;
            };
            // On webgpu the first step is captured as a step graph and the others replay it
            // (lib/kernels/step-graph.ts): the same dispatches without tfjs's per-op host cost.
            // Windows of one shape only (a short last batch keeps every step eager).
            const n = ctx.inputs.length;
            const graphed = webgpuDevice() !== null && stepGraphsEnabled() && ctx.inputs.every((x) => x.shape.join() === ctx.inputs[0].shape.join());
            const slots = graphed ? { x: slotOf(ctx.inputs[0]) as tf.Tensor3D, target: slotOf(targets[0]) as tf.Tensor3D, losses: tf.zeros([n]) } : null;
            const captured: { graph: StepGraph; loss: tf.Scalar }[] = []; // the step graph, once captured
            /**
             * One pass over the calibration windows. The losses stay on the device and are read once,
             * when readLoss (a read per step would stall the GPU every step), summed in order in fp32.
             */
            const epoch = async (readLoss: boolean): Promise<number> => {
              const losses: tf.Scalar[] = [];
              try {
                for (let i = 0; i < n; i++) {
                  if (!slots) {
                    losses.push(step(ctx.inputs[i], targets[i]));
                  } else if (!captured.length) {
                    const { graph, result } = captureStep(() => step(slots.x, slots.target), () => [...trainable, ...optLwc.moments(), ...optLet.moments()]);
                    captured.push({ graph, loss: result });
                    copyTensors([{ from: result, to: slots.losses, toOffset: i }]);
                  } else {
                    const { graph, loss } = captured[0];
                    graph.replay([{ from: ctx.inputs[i], to: slots.x }, { from: targets[i], to: slots.target }], [{ from: loss, to: slots.losses, toOffset: i }]);
                  }
                }
                if (!readLoss) return NaN;
                const values = slots ? await slots.losses.data() : await readAll(losses);
                let sum = 0;
                for (let i = 0; i < n; i++) sum = Math.fround(sum + values[i]);
                return sum / n;
              } finally {
                tf.dispose(losses);
              }
            };
            try {
              await ctx.timed('train', async () => {
                for (let e = 0; e < o.epochs; e++) {
                  const read = e === 0 || e === o.epochs - 1;
                  const mean = await epoch(read);
                  if (read) assertFinite([mean], `${model.name} omniquant: block ${b}, epoch ${e + 1} of ${o.epochs}: calibration loss`);
                  if (e === 0) firstLoss.push(mean);
                  if (e === o.epochs - 1) lastLoss.push(mean);
                  hooks.sample?.();
                }
              });
            } finally {
              captured.forEach((c) => (c.graph.dispose(), c.loss.dispose()));
              if (slots) tf.dispose([slots.x, slots.target, slots.losses]);
              optLwc.dispose();
              optLet.dispose();
            }
          }
          // Final: record parameters, fold LET, quantize on the host (codes for the packed format).
          for (const l of linears) {
            art.lwc[`${b}.${l}`] = { gamma: Array.from(await readFloat32(gamma.get(l)!)), beta: Array.from(await readFloat32(beta.get(l)!)) };
          }
          for (const g of letGroups) {
            art.let[`${b}.${g.linears[0]}`] = { norm: g.prev.name, linears: g.linears, scales: Array.from(await readFloat32(letS.get(g.linears[0])!)) };
          }
        } finally {
          gamma.forEach((v) => v.dispose());
          beta.forEach((v) => v.dispose());
          letS.forEach((v) => v.dispose());
          fpW.forEach((t) => t.dispose());
          fpNorm.forEach((t) => t.dispose());
        }
        const blockArt: OmniQuantArtifact = {
          bits: o.bits, groupSize: o.groupSize,
          lwc: Object.fromEntries(linears.map((l) => [`${b}.${l}`, art.lwc[`${b}.${l}`]])),
          let: Object.fromEntries(letGroups.map((g) => [`${b}.${g.linears[0]}`, art.let[`${b}.${g.linears[0]}`]])),
        };
        (await applyArtifact(model, blockArt)).forEach((q, name) => quantized.set(name, q));
      },
    });
  } finally {
    (fpInputs as tf.Tensor3D[] | null)?.forEach((t) => t.dispose());
  }
  const actQuant: ActQuantSpec | null = o.mode === 'weight-act' ? { bits: o.actBits, granularity: 'per_token', staticAbsmax: null } : null;
  return {
    method: 'omniquant',
    config: { bits: o.bits, groupSize: o.groupSize, mode: o.mode, actBits: o.mode === 'weight-act' ? o.actBits : 16, lwc: o.lwc, let: letOn, epochs: o.epochs, lwcLr: o.lwcLr, letLr: o.letLr },
    calib: describeCalib(calib),
    quantized,
    actQuant,
    artifacts: { omniquant: art },
    stats: { first_epoch_loss_mean: mean(firstLoss), last_epoch_loss_mean: mean(lastLoss) },
  };
}

/** Scalars' values in one readback. */
async function readAll(scalars: tf.Scalar[]): Promise<Float32Array> {
  const all = tf.stack(scalars);
  try {
    return (await all.data()) as Float32Array;
  } finally {
    all.dispose();
  }
}

const mean = (a: number[]) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : NaN);

/** A variable from a fresh tensor (the tensor itself is disposed: tf.variable keeps its own reference). */
function variableOf(t: tf.Tensor, trainable: boolean): tf.Variable {
  const v = tf.variable(t, trainable);
  t.dispose();
  return v;
}

/** Per-token absmax int fake quantization (no gradient), for propagating the quantized stream. */
function actQuantAbsmax(x: tf.Tensor2D, bits: number): tf.Tensor2D {
  const qmax = 2 ** (bits - 1) - 1;
  const s = tf.div(tf.maximum(tf.max(tf.abs(x), 1, true), 1e-5), qmax);
  return tf.mul(tf.round(tf.div(x, s)), s) as tf.Tensor2D;
}

export const module = {
  display: 'OmniQuant',
  kind: 'quantization',
  inPaper: true,
  options,
  describe: 'OmniQuant: learnable weight clipping + learnable equivalent transformation trained block by block',
  defaults,
  needsCalib: true,
  validate,
  compress,
} satisfies MethodModule<OmniQuantOptions>;
