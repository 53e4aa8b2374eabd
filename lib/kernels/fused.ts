// Fused row and element-wise kernels for the transformer block: each replaces a chain of tfjs ops
// (one dispatch each) by one dispatch. On the H100 a decode step costs about as much as a 512-token
// prefill (data/bench/forward.csv), the sign of per-dispatch overhead, and a LLaMA block runs ~50
// tfjs dispatches; these three take the block's RMSNorms, RoPE (with the head transpose) and SwiGLU
// from ~30 dispatches to 5.
//   rmsNorm(x, w, eps)          x [..., D], w [D]               → x · rsqrt(mean(x²) + eps) · w
//   ropeHeads(a, cos, sin, B, n) a [B·T, n·hd], cos/sin [T, hd] → [B, n, T, hd], RoPE applied (HF half split)
//   swiglu(g, u)                 g, u [N, F]                    → silu(g) · u
// Each computes exactly what the plain ops in lib/models/transformer.ts compute, in the same order.
// Under a gradient tape (OmniQuant's block training) the *WithGrad forms run: the same forward, and
// one or two backward kernels computing what tfjs's gradients of the plain ops compute (sums in
// another order), in place of ~45 tfjs dispatches a LLaMA block.
import * as tf from '@tensorflow/tfjs';
import { f32, grid1d, paramsStruct, runKernel, u32 } from './gpu';

const THREADS = 64; // rmsNorm: one workgroup per row
const ELEMENTS = 256; // element-wise kernels: one element per invocation

const RMS_PARAMS = { rows: u32(0), d: u32(0), groupsX: u32(0), eps: f32(0) };
const RMS_WGSL = `
${paramsStruct(RMS_PARAMS)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
var<workgroup> partial: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * params.groupsX + wg.x;
  if (row >= params.rows) { return; }
  let base = row * params.d;
  var s = 0.0;
  for (var i = lid; i < params.d; i += ${THREADS}u) { let v = x[base + i]; s += v * v; }
  partial[lid] = s;
  workgroupBarrier();
  for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { partial[lid] += partial[lid + stride]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(partial[0] / f32(params.d) + params.eps);
  for (var i = lid; i < params.d; i += ${THREADS}u) { y[base + i] = x[base + i] * inv * w[i]; }
}`;

/** RMSNorm over the last axis: x [..., D], w [D] → x's shape. */
export function rmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const D = x.shape[x.shape.length - 1];
  if (w.size !== D) throw new Error(`rmsNorm: x is [${x.shape.join(', ')}] but w has ${w.size} entries`);
  const rows = x.size / D;
  const workgroups = grid1d(rows);
  const [y] = runKernel({
    name: 'rmsnorm',
    code: RMS_WGSL,
    inputs: [x, w],
    outputs: [{ shape: x.shape, dtype: 'float32' }],
    params: { rows: u32(rows), d: u32(D), groupsX: u32(workgroups[0]), eps: f32(eps) },
    workgroups,
  });
  return y;
}

const ELEMENT_INDEX = `let i = (wg.y * params.groupsX + wg.x) * ${ELEMENTS}u + lid;
  if (i >= params.n) { return; }`;

const ROPE_PARAMS = { n: u32(0), groupsX: u32(0), T: u32(0), heads: u32(0), hd: u32(0) };
const ROPE_WGSL = `
${paramsStruct(ROPE_PARAMS)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(${ELEMENTS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${ELEMENT_INDEX}
  // y [B, n, T, hd] at (b, h, t, d) reads a [B·T, n·hd] at row b·T + t, column h·hd + d.
  let hd = params.hd;
  let d = i % hd;
  let t = (i / hd) % params.T;
  let h = (i / (hd * params.T)) % params.heads;
  let b = i / (hd * params.T * params.heads);
  let src = ((b * params.T + t) * params.heads + h) * hd;
  let half = hd / 2u;
  var rotated: f32;
  if (d < half) { rotated = -a[src + d + half]; } else { rotated = a[src + d - half]; }
  y[i] = a[src + d] * cosT[t * hd + d] + rotated * sinT[t * hd + d];
}`;

/**
 * A linear's output a [B·T, n·hd] as heads [B, n, T, hd] with RoPE applied (cos/sin [T, hd], the
 * halves repeated as in HF): transpose + split + neg + concat + 2 mul + add in one dispatch.
 */
export function ropeHeads(a: tf.Tensor2D, cos: tf.Tensor2D, sin: tf.Tensor2D, B: number, heads: number): tf.Tensor4D {
  const [T, hd] = cos.shape;
  if (a.shape[0] !== B * T || a.shape[1] !== heads * hd || hd % 2 !== 0 || sin.shape.join() !== cos.shape.join()) {
    throw new Error(`ropeHeads: a [${a.shape.join(', ')}] is not [B·T, heads·hd] for B=${B}, heads=${heads}, cos [${cos.shape.join(', ')}] (hd even), sin [${sin.shape.join(', ')}]`);
  }
  const workgroups = grid1d(Math.ceil(a.size / ELEMENTS));
  const [y] = runKernel({
    name: 'rope-heads',
    code: ROPE_WGSL,
    inputs: [a, cos, sin],
    outputs: [{ shape: [B, heads, T, hd], dtype: 'float32' }],
    params: { n: u32(a.size), groupsX: u32(workgroups[0]), T: u32(T), heads: u32(heads), hd: u32(hd) },
    workgroups,
  });
  return y as tf.Tensor4D;
}

const SWIGLU_PARAMS = { n: u32(0), groupsX: u32(0) };
const SWIGLU_WGSL = `
${paramsStruct(SWIGLU_PARAMS)}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(${ELEMENTS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${ELEMENT_INDEX}
  let v = g[i];
  y[i] = v * (1.0 / (1.0 + exp(-v))) * u[i];
}`;

/** silu(g) · u for g, u of one shape (SwiGLU's gate and up projections). */
export function swiglu(g: tf.Tensor, u: tf.Tensor): tf.Tensor {
  if (g.shape.join() !== u.shape.join()) throw new Error(`swiglu: gate [${g.shape.join(', ')}] and up [${u.shape.join(', ')}] differ`);
  const workgroups = grid1d(Math.ceil(g.size / ELEMENTS));
  const [y] = runKernel({
    name: 'swiglu',
    code: SWIGLU_WGSL,
    inputs: [g, u],
    outputs: [{ shape: g.shape, dtype: 'float32' }],
    params: { n: u32(g.size), groupsX: u32(workgroups[0]) },
    workgroups,
  });
  return y;
}

// --- gradients ---

const RMS_BACK_PARAMS = { rows: u32(0), d: u32(0), groupsX: u32(0), eps: f32(0) };
// Per row: inv = rsqrt(mean(x²) + eps), dx = inv·w·dy − x·inv³·Σ(dy·w·x)/D; inv is kept for dw.
const RMS_BACK_WGSL = `
${paramsStruct(RMS_BACK_PARAMS)}
@group(0) @binding(0) var<storage, read_write> dx: array<f32>;
@group(0) @binding(1) var<storage, read_write> invs: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> x: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
var<workgroup> sq: array<f32, ${THREADS}>;
var<workgroup> dot: array<f32, ${THREADS}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wg.y * params.groupsX + wg.x;
  if (row >= params.rows) { return; }
  let base = row * params.d;
  var s = 0.0;
  var t = 0.0;
  for (var i = lid; i < params.d; i += ${THREADS}u) { let v = x[base + i]; s += v * v; t += dy[base + i] * w[i] * v; }
  sq[lid] = s;
  dot[lid] = t;
  workgroupBarrier();
  for (var stride = ${THREADS / 2}u; stride > 0u; stride >>= 1u) {
    if (lid < stride) { sq[lid] += sq[lid + stride]; dot[lid] += dot[lid + stride]; }
    workgroupBarrier();
  }
  let inv = inverseSqrt(sq[0] / f32(params.d) + params.eps);
  let k = inv * inv * inv * dot[0] / f32(params.d);
  for (var i = lid; i < params.d; i += ${THREADS}u) { dx[base + i] = inv * w[i] * dy[base + i] - x[base + i] * k; }
  if (lid == 0u) { invs[row] = inv; }
}`;

const RMS_DW_PARAMS = { rows: u32(0), d: u32(0) };
// dw[j] = Σ_rows dy[r, j]·x[r, j]·inv[r]: one invocation per column.
const RMS_DW_WGSL = `
${paramsStruct(RMS_DW_PARAMS)}
@group(0) @binding(0) var<storage, read_write> dw: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> invs: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(${THREADS})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let j = gid.x;
  if (j >= params.d) { return; }
  var s = 0.0;
  for (var r = 0u; r < params.rows; r++) { s += dy[r * params.d + j] * x[r * params.d + j] * invs[r]; }
  dw[j] = s;
}`;

/** rmsNorm with its gradients: dx by row (one kernel), dw by column (a second). */
export function rmsNormWithGrad(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  const f = tf.customGrad(((xi: tf.Tensor, wi: tf.Tensor, save: tf.GradSaveFunc) => {
    save([xi, wi]);
    const gradFunc = (dy: tf.Tensor, [xs, ws]: tf.Tensor[]) => {
      const D = ws.size;
      const rows = xs.size / D;
      const workgroups = grid1d(rows);
      const [dx, invs] = runKernel({
        name: 'rmsnorm-backward',
        code: RMS_BACK_WGSL,
        inputs: [dy, xs, ws],
        outputs: [{ shape: xs.shape, dtype: 'float32' }, { shape: [rows], dtype: 'float32' }],
        params: { rows: u32(rows), d: u32(D), groupsX: u32(workgroups[0]), eps: f32(eps) },
        workgroups,
      });
      const [dw] = runKernel({ name: 'rmsnorm-dw', code: RMS_DW_WGSL, inputs: [dy, xs, invs], outputs: [{ shape: ws.shape, dtype: 'float32' }], params: { rows: u32(rows), d: u32(D) }, workgroups: [Math.ceil(D / THREADS), 1, 1] });
      invs.dispose();
      return [dx, dw];
    };
    return { value: rmsNorm(xi, wi, eps), gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(x, w);
}

const ROPE_BACK_WGSL = `
${paramsStruct(ROPE_PARAMS)}
@group(0) @binding(0) var<storage, read_write> da: array<f32>;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> cosT: array<f32>;
@group(0) @binding(3) var<storage, read> sinT: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
@compute @workgroup_size(${ELEMENTS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${ELEMENT_INDEX}
  // da [B·T, n·hd] at (row b·T + t, column h·hd + d) gathers dy [B, n, T, hd]: the rotation transposed
  let hd = params.hd;
  let d = i % hd;
  let h = (i / hd) % params.heads;
  let t = (i / (hd * params.heads)) % params.T;
  let b = i / (hd * params.heads * params.T);
  let src = ((b * params.heads + h) * params.T + t) * hd;
  let half = hd / 2u;
  var rotated: f32;
  if (d < half) { rotated = dy[src + d + half] * sinT[t * hd + d + half]; } else { rotated = -dy[src + d - half] * sinT[t * hd + d - half]; }
  da[i] = dy[src + d] * cosT[t * hd + d] + rotated;
}`;

/** ropeHeads with its gradient with respect to a (cos and sin are constants). */
export function ropeHeadsWithGrad(a: tf.Tensor2D, cos: tf.Tensor2D, sin: tf.Tensor2D, B: number, heads: number): tf.Tensor4D {
  const [T, hd] = cos.shape;
  const f = tf.customGrad(((ai: tf.Tensor2D, save: tf.GradSaveFunc) => {
    save([cos, sin]); // kept for the backward: the forward's caller may free its tables first
    const gradFunc = (dy: tf.Tensor, [c, s]: tf.Tensor[]) => {
      const workgroups = grid1d(Math.ceil(a.size / ELEMENTS));
      const [da] = runKernel({
        name: 'rope-heads-backward',
        code: ROPE_BACK_WGSL,
        inputs: [dy, c, s],
        outputs: [{ shape: a.shape, dtype: 'float32' }],
        params: { n: u32(a.size), groupsX: u32(workgroups[0]), T: u32(T), heads: u32(heads), hd: u32(hd) },
        workgroups,
      });
      return [da];
    };
    return { value: ropeHeads(ai, cos, sin, B, heads), gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(a) as tf.Tensor4D;
}

const SWIGLU_BACK_WGSL = `
${paramsStruct(SWIGLU_PARAMS)}
@group(0) @binding(0) var<storage, read_write> dg: array<f32>;
@group(0) @binding(1) var<storage, read_write> du: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read> u: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
@compute @workgroup_size(${ELEMENTS})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  ${ELEMENT_INDEX}
  let v = g[i];
  let s = 1.0 / (1.0 + exp(-v));
  du[i] = dy[i] * v * s;
  dg[i] = dy[i] * u[i] * (s + v * s * (1.0 - s));
}`;

/** swiglu with its gradients with respect to g and u. */
export function swigluWithGrad(g: tf.Tensor, u: tf.Tensor): tf.Tensor {
  const f = tf.customGrad(((gi: tf.Tensor, ui: tf.Tensor, save: tf.GradSaveFunc) => {
    save([gi, ui]);
    const gradFunc = (dy: tf.Tensor, [gs, us]: tf.Tensor[]) => {
      const workgroups = grid1d(Math.ceil(gs.size / ELEMENTS));
      return runKernel({
        name: 'swiglu-backward',
        code: SWIGLU_BACK_WGSL,
        inputs: [dy, gs, us],
        outputs: [{ shape: gs.shape, dtype: 'float32' }, { shape: us.shape, dtype: 'float32' }],
        params: { n: u32(gs.size), groupsX: u32(workgroups[0]) },
        workgroups,
      });
    };
    return { value: swiglu(gi, ui), gradFunc };
  }) as unknown as Parameters<typeof tf.customGrad>[0]);
  return f(g, u);
}
