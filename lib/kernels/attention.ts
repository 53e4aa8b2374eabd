// Causal self-attention of the kit's transformer, in two forms with the same inputs and output:
//   attentionPlain: tfjs ops (scores [B·KV, rep·T, S] in memory, additive mask): every backend,
//     gradients, padding masks. This is the model's reference path.
//   fusedAttention: one WGSL kernel, FlashAttention-style: the keys are visited in tiles with an
//     online softmax (running max m and sum l per query row), so no [T, S] score matrix exists.
//   attentionOnGemm (attention-grad.ts): attentionPlain's math one KV head at a time with its two
//     products on the fp32 GEMM with gradients (gradient tapes: OmniQuant's block training).
// Grouped-query attention without copying K/V: the rep = H/KV query heads of one KV head are
// consecutive, so q [B, H, T, hd] is the row-major [B·KV, rep·T, hd] and each workgroup takes
// blockQ of those rows against its KV head. The queries are positions past..past+T-1 of the
// sequence (KV cache); row r may see keys 0..past + r mod T. When the row blocks alone would leave
// the GPU idle (decode: T = 1, few heads, long S), the keys are split across `splits` workgroups
// per row block and a second small kernel merges their partial (m, l, o) (flash-decoding).
import * as tf from '@tensorflow/tfjs';
import { softmaxRows } from '../runtime/rows';
import { deviceLimits, f32, paramsStruct, runKernel, u32 } from './gpu';

/** Additive mask value for disallowed keys in the plain path (finite, as the model's). */
const MASKED = -1e9;

/**
 * Plain attention: q [B, H, T, hd], k/v [B, KV, S, hd], mask [B|1, 1, T, S] additive or null
 * (null only when nothing is masked) → context [B·T, H·hd] (heads merged, ready for o_proj).
 */
export function attentionPlain(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D | null): tf.Tensor2D {
  const [B, H, T, hd] = q.shape;
  const [, KVH, S] = k.shape;
  const rep = H / KVH;
  return tf.tidy(() => {
    const q3 = tf.reshape(q, [B * KVH, rep * T, hd]);
    const k3 = tf.reshape(k, [B * KVH, S, hd]);
    const v3 = tf.reshape(v, [B * KVH, S, hd]);
    let scores: tf.Tensor = tf.mul(tf.matMul(q3, k3, false, true), 1 / Math.sqrt(hd)); // [B·KV, rep·T, S]
    if (mask) scores = tf.add(tf.reshape(scores, [B, H, T, S]), mask);
    const probs = tf.reshape(softmaxRows(scores), [B * KVH, rep * T, S]);
    const ctx = tf.matMul(probs, v3); // [B·KV, rep·T, hd]
    return tf.reshape(tf.transpose(tf.reshape(ctx, [B, H, T, hd]), [0, 2, 1, 3]), [B * T, H * hd]) as tf.Tensor2D;
  });
}

/** The causal mask [1, 1, T, S] for T queries after `past` cached keys (null when T = 1: nothing masked). */
export function causalMask(T: number, past: number): tf.Tensor4D | null {
  if (T === 1) return null;
  const S = past + T;
  return tf.tidy(() => {
    const qPos = tf.reshape(tf.range(past, S, 1, 'int32'), [T, 1]);
    const kPos = tf.reshape(tf.range(0, S, 1, 'int32'), [1, S]);
    return tf.reshape(tf.mul(tf.cast(tf.greater(kPos, qPos), 'float32'), MASKED), [1, 1, T, S]) as tf.Tensor4D;
  });
}

export interface AttentionTiles {
  blockQ: number; // query rows per workgroup (fewer when rep·T is smaller, except with `registers`)
  blockKV: number; // keys staged in workgroup memory per step
  workgroupSize: number; // threads per workgroup
  targetWorkgroups: number; // split the keys until about this many workgroups run (≈ 2 per SM on an H100)
  /** The register-blocked kernel (registerAttentionShader): 32 rows × 32 keys, 64 threads; head dims that are multiples of 32. */
  registers?: boolean;
}

export const ATTENTION_TILES = {
  q16kv32: { blockQ: 16, blockKV: 32, workgroupSize: 128, targetWorkgroups: 264 },
  q32kv32: { blockQ: 32, blockKV: 32, workgroupSize: 256, targetWorkgroups: 264 }, // hd 128: 37.5 KB of workgroup memory (NVIDIA's 48 KB, not lavapipe's 32)
  q16kv64: { blockQ: 16, blockKV: 64, workgroupSize: 128, targetWorkgroups: 264 }, // hd ≤ 64
  q8kv32: { blockQ: 8, blockKV: 32, workgroupSize: 64, targetWorkgroups: 528 },
  r32kv32: { blockQ: 32, blockKV: 32, workgroupSize: 64, targetWorkgroups: 264, registers: true }, // hd 128: 37.5 KB of workgroup memory
} satisfies Record<string, AttentionTiles>;
export type AttentionTileName = keyof typeof ATTENTION_TILES;

export const ATTENTION_DEFAULTS = {
  tiles: 'q16kv32' as AttentionTileName, // fits hd 128 in 32 KiB of workgroup memory
};

/**
 * The tilings the kernel policy's 'auto' (its default) tries for head dim hd and T new positions,
 * best first (the first the device can run is used). Prefill (T > 1) takes the register-blocked
 * r32kv32 where the head dim is a multiple of 32: on the H100, GPTQ's propagation forward of the
 * 1-block 7B model (hd 128, 128 × 2048 tokens) took 4.3 s with it against 5.4 s with q16kv32, and
 * the executor's 1.2B prefill (hd 64, the same kernel) 11,306 against 10,613 tok/s (rows ce8cbba).
 * Then q32kv32 at hd ≥ 128 (bench-kernels on the H100, data/bench/kernels-h100.txt: 1.9× (T = 1024)
 * and 2.5× (T = 2048: 5.9 against 2.3 TFLOP/s) q16kv32's speed; r32kv32 and q32kv32 have not been
 * timed side by side), else q16kv32, also for decode (T = 1: as fast or faster at hd 64).
 */
export function attentionTilesFor(hd: number, T: number): AttentionTileName[] {
  if (T === 1) return [ATTENTION_DEFAULTS.tiles];
  return [...(hd % 32 === 0 ? (['r32kv32'] as const) : []), ...(hd >= 128 ? (['q32kv32'] as const) : []), ATTENTION_DEFAULTS.tiles];
}

/** How one attention call is laid out on the GPU (CPU-side, testable anywhere). */
export interface AttentionPlan {
  hd: number;
  rows: number; // rep·T query rows per KV head
  blockQ: number;
  rowBlocks: number;
  splits: number; // key ranges per row block (1: no merge kernel)
  tilesPerSplit: number; // key tiles per range
  sharedBytes: number;
  workgroups: [number, number, number]; // [rowBlocks, B·KV, splits]
}

const nextPow2 = (n: number) => 2 ** Math.ceil(Math.log2(Math.max(1, n)));

export function planAttention(B: number, H: number, KV: number, T: number, S: number, hd: number, t: AttentionTiles): AttentionPlan {
  const rows = (H / KV) * T;
  const blockQ = t.registers ? t.blockQ : Math.min(t.blockQ, nextPow2(rows));
  const rowBlocks = Math.ceil(rows / blockQ);
  const base = B * KV * rowBlocks;
  const kvTiles = Math.ceil(S / t.blockKV);
  const wanted = base >= t.targetWorkgroups ? 1 : Math.min(kvTiles, Math.ceil(t.targetWorkgroups / base));
  const tilesPerSplit = Math.ceil(kvTiles / wanted);
  const splits = Math.ceil(kvTiles / tilesPerSplit);
  const sharedBytes = t.registers
    ? registerAttentionBytes(hd)
    : 4 * (blockQ * hd + t.blockKV * (hd + 1) + blockQ * (t.blockKV + 1) + 3 * blockQ);
  return { hd, rows, blockQ, rowBlocks, splits, tilesPerSplit, sharedBytes, workgroups: [rowBlocks, B * KV, splits] };
}

/** Why the fused kernel cannot run this plan on the current device, or null when it can. */
export function attentionUnsupported(p: AttentionPlan, t: AttentionTiles): string | null {
  const lim = deviceLimits();
  if (!lim) return 'needs the webgpu backend';
  if (t.registers && p.hd % 32 !== 0) return `the register-blocked kernel needs a head dim that is a multiple of 32, got ${p.hd}`;
  if (p.sharedBytes > lim.maxComputeWorkgroupStorageSize) return `${p.sharedBytes} B of workgroup memory exceed the device's ${lim.maxComputeWorkgroupStorageSize} (smaller blockQ/blockKV or head dim)`;
  if (t.workgroupSize > lim.maxComputeInvocationsPerWorkgroup) return `${t.workgroupSize} threads exceed the device's ${lim.maxComputeInvocationsPerWorkgroup}`;
  if (Math.max(...p.workgroups) > lim.maxComputeWorkgroupsPerDimension) return `workgroups [${p.workgroups.join(', ')}] exceed ${lim.maxComputeWorkgroupsPerDimension} per dimension`;
  return null;
}

const PARAMS = { T: u32(0), S: u32(0), past: u32(0), rep: u32(0), KV: u32(0), H: u32(0), tilesPerSplit: u32(0), scale: f32(0) };

/**
 * WGSL of the online softmax step of the attention kernels: thread r < R turns its row of scores
 * ps [R][PS] (NEG = masked) into probabilities against the new running max, and updates the row's
 * max ms, sum ls and rescaling factor as_ (the earlier output's weight).
 */
export function onlineSoftmaxRows(R: number, BKV: number, PS: number): string {
  return `if (lid < ${R}u) {
      let mOld = ms[lid];
      var mNew = mOld;
      for (var j = 0u; j < ${BKV}u; j++) { mNew = max(mNew, ps[lid * ${PS}u + j]); }
      var sum = 0.0;
      for (var j = 0u; j < ${BKV}u; j++) {
        let x = ps[lid * ${PS}u + j];
        var p = 0.0;
        if (x > NEG) { p = exp(x - mNew); }
        ps[lid * ${PS}u + j] = p;
        sum += p;
      }
      let alpha = exp(mOld - mNew);
      ls[lid] = ls[lid] * alpha + sum;
      ms[lid] = mNew;
      as_[lid] = alpha;
    }`;
}

/** The main kernel: one row block × one key range; writes the merged output or partials. */
function attentionShader(hd: number, BQ: number, BKV: number, WG: number, split: boolean): string {
  const per = (n: number) => Math.ceil(n / WG); // elements per thread of an n-element tile
  // WGSL: each thread visits its elements e < n of an [n / hd, hd] tile as row r, column d.
  const eachElement = (n: number, body: string) => `for (var i = 0u; i < ${per(n)}u; i++) {
    let e = lid + i * ${WG}u;
    if (e < ${n}u) {
      let r = e / ${hd}u;
      let d = e % ${hd}u;
      ${body}
    }
  }`;
  const KS = hd + 1; // padded row stride of the K/V tile (no bank conflicts across keys)
  const PS = BKV + 1;
  const outs = split
    ? `@group(0) @binding(0) var<storage, read_write> po: array<f32>; // [splits, B·KV, rows, hd]
@group(0) @binding(1) var<storage, read_write> ml: array<f32>; // [splits, B·KV, rows, 2]`
    : '@group(0) @binding(0) var<storage, read_write> out: array<f32>; // [B, T, H, hd]';
  const b0 = split ? 2 : 1;
  const write = split
    ? `let base = (g.z * nbk + bk) * rows + gr;
        po[base * ${hd}u + d] = acc[i];
        if (d == 0u) { ml[base * 2u] = ms[r]; ml[base * 2u + 1u] = ls[r]; }`
    : `let b = bk / params.KV;
        let h = (bk % params.KV) * params.rep + gr / params.T;
        out[((b * params.T + gr % params.T) * params.H + h) * ${hd}u + d] = acc[i] / ls[r];`;
  return `
${paramsStruct(PARAMS)}
${outs}
@group(0) @binding(${b0}) var<storage, read> q: array<f32>; // [B·KV, rows, hd]
@group(0) @binding(${b0 + 1}) var<storage, read> k: array<f32>; // [B·KV, S, hd]
@group(0) @binding(${b0 + 2}) var<storage, read> v: array<f32>; // [B·KV, S, hd]
@group(0) @binding(${b0 + 3}) var<uniform> params: Params;
const NEG = -3.0e38;
var<workgroup> qs: array<f32, ${BQ * hd}>;
var<workgroup> kvs: array<f32, ${BKV * KS}>;
var<workgroup> ps: array<f32, ${BQ * PS}>;
var<workgroup> ms: array<f32, ${BQ}>;
var<workgroup> ls: array<f32, ${BQ}>;
var<workgroup> as_: array<f32, ${BQ}>;

fn loadKV(src: ptr<storage, array<f32>, read>, bk: u32, kt: u32, lid: u32) {
  ${eachElement(BKV * hd, `var x = 0.0;
      if (kt + r < params.S) { x = (*src)[(bk * params.S + kt + r) * ${hd}u + d]; }
      kvs[r * ${KS}u + d] = x;`)}
}

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u, @builtin(num_workgroups) ng: vec3u) {
  let rows = params.rep * params.T;
  let nbk = ng.y;
  let bk = g.y;
  let r0 = g.x * ${BQ}u;
  ${eachElement(BQ * hd, `let gr = r0 + r;
      var x = 0.0;
      if (gr < rows) { x = q[(bk * rows + gr) * ${hd}u + d] * params.scale; }
      qs[e] = x;`)}
  if (lid < ${BQ}u) { ms[lid] = NEG; ls[lid] = 0.0; }
  // Keys this workgroup visits: its split's range, cut at the block's last visible position.
  let last = min(r0 + ${BQ}u, rows) - 1u;
  var maxPos = params.past + params.T - 1u;
  if (r0 / params.T == last / params.T) { maxPos = params.past + last % params.T; }
  let kStart = g.z * params.tilesPerSplit * ${BKV}u;
  let kEnd = min(min(params.S, maxPos + 1u), kStart + params.tilesPerSplit * ${BKV}u);
  var acc: array<f32, ${per(BQ * hd)}>;
  workgroupBarrier();
  for (var kt = kStart; kt < kEnd; kt += ${BKV}u) {
    loadKV(&k, bk, kt, lid);
    workgroupBarrier();
    for (var i = 0u; i < ${per(BQ * BKV)}u; i++) {
      let e = lid + i * ${WG}u;
      if (e < ${BQ * BKV}u) {
        let r = e / ${BKV}u;
        let j = e % ${BKV}u;
        var s = NEG;
        if (kt + j < kEnd && kt + j <= params.past + (r0 + r) % params.T) {
          s = 0.0;
          for (var d = 0u; d < ${hd}u; d++) { s = fma(qs[r * ${hd}u + d], kvs[j * ${KS}u + d], s); }
        }
        ps[r * ${PS}u + j] = s;
      }
    }
    workgroupBarrier();
    loadKV(&v, bk, kt, lid);
    ${onlineSoftmaxRows(BQ, BKV, PS)}
    workgroupBarrier();
    ${eachElement(BQ * hd, `var o = acc[i] * as_[r];
      for (var j = 0u; j < ${BKV}u; j++) { o = fma(ps[r * ${PS}u + j], kvs[j * ${KS}u + d], o); }
      acc[i] = o;`)}
    workgroupBarrier();
  }
  ${eachElement(BQ * hd, `let gr = r0 + r;
      if (gr < rows) {
        ${write}
      }`)}
}`;
}

/** The register-blocked kernel's query rows and keys a step: fixed, its 8 × 8 thread grid of 4 × 4 blocks is written for 32 of each. */
export const REGISTER_ROWS = 32;
export const REGISTER_KEYS = 32;

/**
 * Where the register-blocked attention kernel's rows, keys and outputs live: WGSL snippets, so that
 * the tfjs path (below) and the executor (lib/engine/kernels.ts: ragged token blocks, a KV store)
 * share one kernel. A workgroup takes up to REGISTER_ROWS query rows (local rows 0..rows-1) of one
 * KV head. The kernel binds its outputs first (out, or po and ml with split keys) and writes them.
 */
export interface RegisterLayout {
  /** Bindings from `first` on (q, k and v as array<vec4<f32>>, params, any others) and helper functions. */
  decls(first: number): string;
  /** Statements at the top of main (lid, g, ng in scope) defining `rows` (valid local rows), `scale`, `kStart` and `kEnd` (the keys this workgroup visits). */
  setup: string;
  /** vec4 index of local row r's query vector. */
  q(r: string): string;
  /** vec4 index of key position p's vector in k and v, and whether it may be read (else zeros). */
  kv(p: string): string;
  kvLoadable(p: string): string;
  /** Whether local row r may see key p (p < kEnd is tested besides). */
  visible(r: string, p: string): string;
  /** vec4 index of local row r's output in out (whole keys), and its cell in the partials po [cells, hd] and ml [cells, 2] (split keys). */
  out(r: string): string;
  partial(r: string): string;
}

/** Workgroup memory of the register-blocked attention kernel at head dim hd (37.5 KB at hd 128). */
export const registerAttentionBytes = (hd: number) => 4 * ((REGISTER_ROWS + REGISTER_KEYS) * (hd + 4) + REGISTER_ROWS * (REGISTER_KEYS + 1) + 3 * REGISTER_ROWS);

/**
 * The register-blocked attention kernel (AttentionTiles.registers; same results as attentionShader):
 * 32 query rows × 32 keys a step, 64 threads as an 8 × 8 grid (ty, tx). Thread (ty, tx) owns rows
 * ty + 8i (i < 4): their scores against keys tx + 8j (j < 4), dot products of vec4 reads, and their
 * outputs' column vec4s tx + 8c (c < hd/32) in registers. Rows are padded by one vec4 in workgroup
 * memory so that the eight key rows a warp reads at once fall in distinct banks. One thread a row
 * runs the online softmax between the two products. Needs hd % 32 = 0; 64 threads.
 */
export function registerAttentionShader(hd: number, L: RegisterLayout, split: boolean): string {
  if (hd % 32 !== 0) throw new Error(`register-blocked attention: head dim ${hd} is not a multiple of 32`);
  const BQ = REGISTER_ROWS;
  const BKV = REGISTER_KEYS;
  const WG = (BQ / 4) * (BKV / 4);
  const HD4 = hd / 4; // vec4s a row
  const QW = HD4 + 1; // padded row stride (vec4s)
  const C = hd / 32; // output vec4s a thread per row
  const PS = BKV + 1;
  const I = [0, 1, 2, 3];
  const cols = Array.from({ length: C }, (_, c) => c);
  // every (row i, key j) and (row i, column c) a thread owns, unrolled
  const ij = I.flatMap((i) => I.map((j) => [i, j]));
  const ic = I.flatMap((i) => cols.map((c) => [i, c]));
  const tileLoad = (n: number, body: string) => `for (var n = 0u; n < ${Math.ceil((n * HD4) / WG)}u; n++) {
    let e = lid + n * ${WG}u;
    if (e < ${n * HD4}u) {
      let r = e / ${HD4}u;
      let c4 = e % ${HD4}u;
      ${body}
    }
  }`;
  // The key (or value) tile of keys kt .. kt + BKV - 1 into kv (zeros where not loadable).
  const loadKeys = (src: 'k' | 'v') =>
    tileLoad(BKV, `var x = vec4<f32>(0.0);
      if (${L.kvLoadable('kt + r')}) { x = ${src}[${L.kv('kt + r')} + c4]; }
      kv[r * ${QW}u + c4] = x;`);
  const write = (i: number) =>
    split
      ? `let cell = ${L.partial('r')};
      ${cols.map((c) => `po[cell * ${HD4}u + tx + ${8 * c}u] = acc[${i * C + c}];`).join(' ')}
      if (tx == 0u) { ml[cell * 2u] = ms[r]; ml[cell * 2u + 1u] = ls[r]; }`
      : `let o = ${L.out('r')};
      let inv = 1.0 / ls[r];
      ${cols.map((c) => `out[o + tx + ${8 * c}u] = acc[${i * C + c}] * inv;`).join(' ')}`;
  return `
${
  split
    ? `@group(0) @binding(0) var<storage, read_write> po: array<vec4<f32>>; // [cells, hd]: unnormalised outputs of each key range
@group(0) @binding(1) var<storage, read_write> ml: array<f32>; // [cells, 2]: their running max and sum`
    : '@group(0) @binding(0) var<storage, read_write> out: array<vec4<f32>>;'
}
${L.decls(split ? 2 : 1)}
const NEG = -3.0e38;
var<workgroup> qs: array<vec4<f32>, ${BQ * QW}>; // [BQ][hd + 4], scaled
var<workgroup> kv: array<vec4<f32>, ${BKV * QW}>; // [BKV][hd + 4]: the key tile, then the value tile
var<workgroup> ps: array<f32, ${BQ * PS}>; // [BQ][BKV + 1]: scores, then probabilities
var<workgroup> ms: array<f32, ${BQ}>;
var<workgroup> ls: array<f32, ${BQ}>;
var<workgroup> as_: array<f32, ${BQ}>;

@compute @workgroup_size(${WG})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) g: vec3u, @builtin(num_workgroups) ng: vec3u) {
  ${L.setup}
  let tx = lid % 8u;
  let ty = lid / 8u;
  ${tileLoad(BQ, `var x = vec4<f32>(0.0);
      if (r < rows) { x = q[${L.q('r')} + c4] * scale; }
      qs[r * ${QW}u + c4] = x;`)}
  if (lid < ${BQ}u) { ms[lid] = NEG; ls[lid] = 0.0; }
  var acc: array<vec4<f32>, ${4 * C}>; // [row i][column vec4 c]
  workgroupBarrier();
  for (var kt = kStart; kt < kEnd; kt += ${BKV}u) {
    ${loadKeys('k')}
    workgroupBarrier();
    var s = array<f32, 16>(); // [row i][key j]
    for (var d = 0u; d < ${HD4}u; d++) {
      ${I.map((i) => `let q${i} = qs[(ty + ${8 * i}u) * ${QW}u + d];`).join(' ')}
      ${I.map((j) => `let k${j} = kv[(tx + ${8 * j}u) * ${QW}u + d];`).join(' ')}
      ${ij.map(([i, j]) => `s[${i * 4 + j}] += dot(q${i}, k${j});`).join(' ')}
    }
    ${ij
      .map(
        ([i, j]) => `{
      let r = ty + ${8 * i}u;
      let key = kt + tx + ${8 * j}u;
      var x = NEG;
      if (r < rows && key < kEnd && ${L.visible('r', 'key')}) { x = s[${i * 4 + j}]; }
      ps[r * ${PS}u + tx + ${8 * j}u] = x;
    }`,
      )
      .join('\n    ')}
    workgroupBarrier();
    ${loadKeys('v')}
    ${onlineSoftmaxRows(BQ, BKV, PS)}
    workgroupBarrier();
    ${I.map((i) => `let a${i} = as_[ty + ${8 * i}u];`).join(' ')}
    ${ic.map(([i, c]) => `acc[${i * C + c}] *= a${i};`).join(' ')}
    for (var j = 0u; j < ${BKV}u; j++) {
      ${I.map((i) => `let p${i} = ps[(ty + ${8 * i}u) * ${PS}u + j];`).join(' ')}
      ${cols.map((c) => `let v${c} = kv[j * ${QW}u + tx + ${8 * c}u];`).join(' ')}
      ${ic.map(([i, c]) => `acc[${i * C + c}] = fma(vec4<f32>(p${i}), v${c}, acc[${i * C + c}]);`).join(' ')}
    }
    workgroupBarrier();
  }
  ${I.map(
    (i) => `{
    let r = ty + ${8 * i}u;
    if (r < rows) {
      ${write(i)}
    }
  }`,
  ).join('\n  ')}
}`;
}

/** The tfjs path's layout of the register-blocked kernel: bindings and outputs as attentionShader's (out [B, T, H, hd]; partials [splits, B·KV, rows, ·]), q/k/v [B·KV, rows | S, hd] as vec4s. */
function tfjsRegisterLayout(hd: number): RegisterLayout {
  const HD4 = hd / 4;
  return {
    decls: (b0) => `${paramsStruct(PARAMS)}
@group(0) @binding(${b0}) var<storage, read> q: array<vec4<f32>>; // [B·KV, rows, hd]
@group(0) @binding(${b0 + 1}) var<storage, read> k: array<vec4<f32>>; // [B·KV, S, hd]
@group(0) @binding(${b0 + 2}) var<storage, read> v: array<vec4<f32>>; // [B·KV, S, hd]
@group(0) @binding(${b0 + 3}) var<uniform> params: Params;`,
    setup: `let all = params.rep * params.T; // rows of the KV head
  let bk = g.y;
  let r0 = g.x * ${REGISTER_ROWS}u;
  let rows = min(all - min(all, r0), ${REGISTER_ROWS}u);
  let scale = params.scale;
  // Keys this workgroup visits: its split's range, cut at the block's last visible position.
  let last = min(r0 + ${REGISTER_ROWS}u, all) - 1u;
  var maxPos = params.past + params.T - 1u;
  if (r0 / params.T == last / params.T) { maxPos = params.past + last % params.T; }
  let kStart = g.z * params.tilesPerSplit * ${REGISTER_KEYS}u;
  let kEnd = min(min(params.S, maxPos + 1u), kStart + params.tilesPerSplit * ${REGISTER_KEYS}u);`,
    q: (r) => `(bk * all + r0 + ${r}) * ${HD4}u`,
    kv: (p) => `(bk * params.S + ${p}) * ${HD4}u`,
    kvLoadable: (p) => `${p} < params.S`,
    visible: (r, p) => `${p} <= params.past + (r0 + ${r}) % params.T`,
    out: (r) => `(((bk / params.KV) * params.T + (r0 + ${r}) % params.T) * params.H + (bk % params.KV) * params.rep + (r0 + ${r}) / params.T) * ${HD4}u`,
    partial: (r) => `(g.z * ng.y + bk) * all + r0 + ${r}`,
  };
}

/** Merges the splits' partial (m, l, o) into the output [B, T, H, hd]: one thread per element. */
function mergeShader(hd: number): string {
  return `
${paramsStruct({ T: u32(0), rep: u32(0), KV: u32(0), H: u32(0), splits: u32(0) })}
@group(0) @binding(0) var<storage, read_write> out: array<f32>; // [B, T, H, hd]
@group(0) @binding(1) var<storage, read> po: array<f32>; // [splits, B·KV, rows, hd]
@group(0) @binding(2) var<storage, read> ml: array<f32>; // [splits, B·KV, rows, 2]
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) ng: vec3u) {
  let rows = params.rep * params.T;
  let e = gid.x;
  if (e >= rows * ${hd}u) { return; }
  let bk = gid.y;
  let gr = e / ${hd}u;
  let d = e % ${hd}u;
  let nbk = ng.y;
  var m = -3.0e38;
  for (var s = 0u; s < params.splits; s++) { m = max(m, ml[((s * nbk + bk) * rows + gr) * 2u]); }
  var l = 0.0;
  var o = 0.0;
  for (var s = 0u; s < params.splits; s++) {
    let base = (s * nbk + bk) * rows + gr;
    let w = exp(ml[base * 2u] - m);
    l += ml[base * 2u + 1u] * w;
    o += po[base * ${hd}u + d] * w;
  }
  let b = bk / params.KV;
  let h = (bk % params.KV) * params.rep + gr / params.T;
  out[((b * params.T + gr % params.T) * params.H + h) * ${hd}u + d] = o / l;
}`;
}

/** Validates the attention operands: q [B, H, T, hd], k/v [B, KV, past + T, hd], H a multiple of KV. */
function attentionShapes(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pastLength: number): void {
  const [B, H, T, hd] = q.shape;
  const [kb, KV, S, khd] = k.shape;
  if (kb !== B || khd !== hd || H % KV !== 0) throw new Error(`attention: q [${q.shape.join(', ')}] and k [${k.shape.join(', ')}] must be [B, H, T, hd] and [B, KV, S, hd] with H a multiple of KV`);
  if (v.shape.join() !== k.shape.join()) throw new Error(`attention: v [${v.shape.join(', ')}] differs from k [${k.shape.join(', ')}]`);
  if (S !== pastLength + T) throw new Error(`attention: k has ${S} positions, expected pastLength ${pastLength} + T ${T}`);
}

/**
 * Fused causal attention on the webgpu backend: q [B, H, T, hd] (positions past..past+T-1),
 * k/v [B, KV, past + T, hd] → context [B·T, H·hd], scale 1/√hd. No padding mask: callers with one
 * use attentionPlain.
 */
export function fusedAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, pastLength: number, tiles: AttentionTiles = ATTENTION_TILES[ATTENTION_DEFAULTS.tiles]): tf.Tensor2D {
  attentionShapes(q, k, v, pastLength);
  const [B, H, T, hd] = q.shape;
  const [, KV, S] = k.shape;
  const p = planAttention(B, H, KV, T, S, hd, tiles);
  const why = attentionUnsupported(p, tiles);
  if (why) throw new Error(`fusedAttention (hd ${hd}, blockQ ${p.blockQ}, blockKV ${tiles.blockKV}): ${why}`);
  const params = { T: u32(T), S: u32(S), past: u32(pastLength), rep: u32(H / KV), KV: u32(KV), H: u32(H), tilesPerSplit: u32(p.tilesPerSplit), scale: f32(1 / Math.sqrt(hd)) };
  const split = p.splits > 1;
  const name = 'attention';
  const code = tiles.registers ? registerAttentionShader(hd, tfjsRegisterLayout(hd), split) : attentionShader(hd, p.blockQ, tiles.blockKV, tiles.workgroupSize, split);
  if (!split) {
    const [out] = runKernel({ name, code, inputs: [q, k, v], outputs: [{ shape: [B * T, H * hd], dtype: 'float32' }], params, workgroups: p.workgroups });
    return out as tf.Tensor2D;
  }
  const [po, ml] = runKernel({
    name,
    code,
    inputs: [q, k, v],
    outputs: [{ shape: [p.splits, B * KV, p.rows, hd], dtype: 'float32' }, { shape: [p.splits, B * KV, p.rows, 2], dtype: 'float32' }],
    params,
    workgroups: p.workgroups,
  });
  try {
    const [out] = runKernel({
      name: 'attention-merge',
      code: mergeShader(hd),
      inputs: [po, ml],
      outputs: [{ shape: [B * T, H * hd], dtype: 'float32' }],
      params: { T: u32(T), rep: u32(H / KV), KV: u32(KV), H: u32(H), splits: u32(p.splits) },
      workgroups: [Math.ceil((p.rows * hd) / 64), B * KV, 1],
    });
    return out as tf.Tensor2D;
  } finally {
    tf.dispose([po, ml]);
  }
}
