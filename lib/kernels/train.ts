// Kernels for training loops on webgpu: each replaces a chain of tfjs ops (one dispatch each, and in
// a gradient step the per-dispatch cost is the time: an OmniQuant step on stories260K ran ~770 tfjs
// dispatches) by one dispatch. Each computes what its tfjs composite computes, which stays the
// reference and the path off webgpu; lib/kernels/train-cases.ts checks them against it.
//   lwcForward(W, γ, β, bits, gs)        W [groups·gs] → OmniQuant's LWC fake quantization of W
//   lwcBackward(dy, W, γ, β, bits, gs)   → [dW, dγ, dβ], the composite's gradients (straight-through rounding)
//   adamUpdate(p, m, v, g, step[, hyper]) → [p', m', v'], one AdamW step of one parameter
import * as tf from '@tensorflow/tfjs';
import { f32, grid1d, paramsStruct, runKernel, u32 } from './gpu';

const THREADS = 64; // LWC: one workgroup per quantization group
const ELEMENTS = 256; // Adam: one element per invocation

const LWC_PARAMS = { groups: u32(0), gs: u32(0), groupsX: u32(0), q: f32(0) };

/**
 * The group's clipped range, as the composite computes it: max/min over the group (workgroup
 * reduction), xmax = σ(γ)·max, xmin = σ(β)·min, scale = clip(xmax − xmin, 1e-5, 1e4) / q,
 * zero = round(clip(−xmin / scale, −1e4, 1e4)). Leaves g, base, mx, mn, sg, sb, xmin, r, s, t, z in scope.
 */
const LWC_RANGE = `
  let g = wg.y * params.groupsX + wg.x;
  if (g >= params.groups) { return; }
  let base = g * params.gs;
  var mx = w[base];
  var mn = w[base];
  for (var i = lid; i < params.gs; i += ${THREADS}u) { mx = max(mx, w[base + i]); mn = min(mn, w[base + i]); }
  hi[lid] = mx;
  lo[lid] = mn;
  workgroupBarrier();
  for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { hi[lid] = max(hi[lid], hi[lid + stride]); lo[lid] = min(lo[lid], lo[lid + stride]); }
    workgroupBarrier();
  }
  mx = hi[0];
  mn = lo[0];
  let q = params.q;
  let sg = 1.0 / (1.0 + exp(-gamma[g]));
  let sb = 1.0 / (1.0 + exp(-beta[g]));
  let xmin = sb * mn;
  let r = sg * mx - xmin;
  let s = clamp(r, 1e-5, 1e4) / q;
  let t = -xmin / s;
  let z = round(clamp(t, -1e4, 1e4));`;

const LWC_HEAD = `
${paramsStruct(LWC_PARAMS)}
var<workgroup> hi: array<f32, ${THREADS}>;
var<workgroup> lo: array<f32, ${THREADS}>;`;

const LWC_FORWARD_WGSL = `${LWC_HEAD}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {${LWC_RANGE}
  for (var i = lid; i < params.gs; i += ${THREADS}u) {
    let code = clamp(round(w[base + i] / s) + z, 0.0, q);
    y[base + i] = (code - z) * s;
  }
}`;

// Gradients of y = (clip(round(W/s) + z, 0, q) − z)·s with rounding passed straight through. Per
// element: ∂y/∂s = (code − z) − c·W/s and ∂y/∂z = (c − 1)·s, c = [0 ≤ round(W/s) + z ≤ q]; their
// dy-weighted sums A, B over the group give ∂/∂xmax and ∂/∂xmin through s and z (masks of the two
// clips, inclusive like tfjs's), then γ, β through the sigmoids; W also gets dy·c and, at the
// group's max and min elements (ties all), the range's gradient (tfjs's max/min gradient).
const LWC_BACKWARD_WGSL = `${LWC_HEAD}
var<workgroup> sumA: array<f32, ${THREADS}>;
var<workgroup> sumB: array<f32, ${THREADS}>;
@group(0) @binding(0) var<storage, read_write> dw: array<f32>;
@group(0) @binding(1) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<storage, read> gamma: array<f32>;
@group(0) @binding(6) var<storage, read> beta: array<f32>;
@group(0) @binding(7) var<uniform> params: Params;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {${LWC_RANGE}
  var a = 0.0;
  var b = 0.0;
  for (var i = lid; i < params.gs; i += ${THREADS}u) {
    let wi = w[base + i];
    let pre = round(wi / s) + z;
    let c = select(0.0, 1.0, pre >= 0.0 && pre <= q);
    let d = dy[base + i];
    a += d * ((clamp(pre, 0.0, q) - z) - c * wi / s);
    b += d * (c - 1.0) * s;
  }
  sumA[lid] = a;
  sumB[lid] = b;
  workgroupBarrier();
  for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { sumA[lid] += sumA[lid + stride]; sumB[lid] += sumB[lid + stride]; }
    workgroupBarrier();
  }
  let mr = select(0.0, 1.0, r >= 1e-5 && r <= 1e4);
  let mz = select(0.0, 1.0, t >= -1e4 && t <= 1e4);
  let dS = sumA[0] + sumB[0] * mz * xmin / (s * s);
  let dXmax = dS * mr / q;
  let dXmin = -dS * mr / q - sumB[0] * mz / s;
  if (lid == 0u) {
    dgamma[g] = dXmax * mx * sg * (1.0 - sg);
    dbeta[g] = dXmin * mn * sb * (1.0 - sb);
  }
  for (var i = lid; i < params.gs; i += ${THREADS}u) {
    let wi = w[base + i];
    let pre = round(wi / s) + z;
    let c = select(0.0, 1.0, pre >= 0.0 && pre <= q);
    dw[base + i] = dy[base + i] * c + select(0.0, dXmax * sg, wi == mx) + select(0.0, dXmin * sb, wi == mn);
  }
}`;

/** The workgroups and params of an LWC kernel over W's groups (one workgroup each), after checking γ and β fit them. */
function lwcCall(W: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, bits: number, groupSize: number) {
  const gs = groupSize === -1 ? W.shape[W.rank - 1] : groupSize;
  const groups = W.size / gs;
  if (!Number.isInteger(groups) || gamma.size !== groups || beta.size !== groups) {
    throw new Error(`lwc kernel: W [${W.shape.join(', ')}] in groups of ${gs} needs ${groups} clip logits, got γ ${gamma.size}, β ${beta.size}`);
  }
  const workgroups = grid1d(groups);
  return { workgroups, params: { groups: u32(groups), gs: u32(gs), groupsX: u32(workgroups[0]), q: f32(2 ** bits - 1) } };
}

/** LWC fake quantization of W (groups of gs consecutive elements; gs = groupSize, −1: the last axis) with clip logits γ, β [groups]. */
export function lwcForward(W: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, bits: number, groupSize: number): tf.Tensor {
  const c = lwcCall(W, gamma, beta, bits, groupSize);
  const [y] = runKernel({ name: 'lwc-forward', code: LWC_FORWARD_WGSL, inputs: [W, gamma, beta], outputs: [{ shape: W.shape, dtype: 'float32' }], params: c.params, workgroups: c.workgroups });
  return y;
}

/** Gradients of lwcForward's output (upstream dy, W's shape) with respect to W, γ and β (their shapes). */
export function lwcBackward(dy: tf.Tensor, W: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, bits: number, groupSize: number): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const c = lwcCall(W, gamma, beta, bits, groupSize);
  const [dw, dg, db] = runKernel({
    name: 'lwc-backward',
    code: LWC_BACKWARD_WGSL,
    inputs: [dy, W, gamma, beta],
    outputs: [W.shape, gamma.shape, beta.shape].map((shape) => ({ shape, dtype: 'float32' as const })),
    params: c.params,
    workgroups: c.workgroups,
  });
  return [dw, dg, db];
}

const ADAM_PARAMS = { n: u32(0), groupsX: u32(0), beta1: f32(0), beta2: f32(0), keep1: f32(0), keep2: f32(0), eps: f32(0), decay: f32(0) };
const ADAM_WGSL = `
${paramsStruct(ADAM_PARAMS)}
@group(0) @binding(0) var<storage, read_write> p1: array<f32>;
@group(0) @binding(1) var<storage, read_write> m1: array<f32>;
@group(0) @binding(2) var<storage, read_write> v1: array<f32>;
@group(0) @binding(3) var<storage, read> p: array<f32>;
@group(0) @binding(4) var<storage, read> m: array<f32>;
@group(0) @binding(5) var<storage, read> v: array<f32>;
@group(0) @binding(6) var<storage, read> g: array<f32>;
@group(0) @binding(7) var<storage, read> hyper: array<f32, 2>; // [stepSize, sqrtBc2]
@group(0) @binding(8) var<uniform> params: Params;
@compute @workgroup_size(${ELEMENTS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let i = (wg.y * params.groupsX + wg.x) * ${ELEMENTS}u + lid;
  if (i >= params.n) { return; }
  let gi = g[i];
  let mi = m[i] * params.beta1 + gi * params.keep1;
  let vi = v[i] * params.beta2 + gi * gi * params.keep2;
  m1[i] = mi;
  v1[i] = vi;
  p1[i] = p[i] * params.decay - mi / (sqrt(vi) / hyper[1] + params.eps) * hyper[0];
}`;

/** The host-computed scalars of one AdamW step (torch.optim.AdamW's update). */
export interface AdamStep {
  beta1: number;
  beta2: number;
  stepSize: number; // lr / (1 − β1^t)
  sqrtBc2: number; // sqrt(1 − β2^t)
  eps: number;
  decay: number; // 1 − lr·weightDecay (1: none)
}

/** The step's scalars that change with t, [stepSize, sqrtBc2], as adamUpdate reads them from the device. */
export function adamHyper(s: Pick<AdamStep, 'stepSize' | 'sqrtBc2'>): tf.Tensor1D {
  return tf.tensor1d([s.stepSize, s.sqrtBc2]);
}

/**
 * One AdamW step of parameter p with moments m, v and gradient g (one shape): [p', m', v']. The
 * step size and bias correction come from `hyper` (adamHyper(s); by default made and freed here):
 * on the device, so that a step graph (step-graph.ts) can rewrite them before each replay.
 */
export function adamUpdate(p: tf.Tensor, m: tf.Tensor, v: tf.Tensor, g: tf.Tensor, s: AdamStep, hyper?: tf.Tensor1D): [tf.Tensor, tf.Tensor, tf.Tensor] {
  for (const [what, t] of [['m', m], ['v', v], ['gradient', g]] as const) {
    if (t.size !== p.size) throw new Error(`adamUpdate: ${what} has ${t.size} elements, the parameter ${p.size}`);
  }
  const h = hyper ?? adamHyper(s);
  if (h.size !== 2) throw new Error(`adamUpdate: hyper has ${h.size} elements, not 2 ([stepSize, sqrtBc2])`);
  const workgroups = grid1d(Math.ceil(p.size / ELEMENTS));
  try {
    const [p1, m1, v1] = runKernel({
      name: 'adam-update',
      code: ADAM_WGSL,
      inputs: [p, m, v, g, h],
      outputs: [0, 1, 2].map(() => ({ shape: p.shape, dtype: 'float32' as const })),
      params: { n: u32(p.size), groupsX: u32(workgroups[0]), beta1: f32(s.beta1), beta2: f32(s.beta2), keep1: f32(1 - s.beta1), keep2: f32(1 - s.beta2), eps: f32(s.eps), decay: f32(s.decay) },
      workgroups,
    });
    return [p1, m1, v1];
  } finally {
    if (!hyper) h.dispose();
  }
}
