// WebAssembly SIMD kernels for the tfjs-wasm backend (wasm/*.c, built by
// scripts/build-wasm-kernels.sh), registered as tfjs kernels so that they run inside tf.tidy like
// any op. Each module imports the backend's own linear memory and reads its inputs and writes its
// output where tfjs keeps them (no copies). Inference only (no gradients): the forward uses them
// when its plan says so and no tape records (wasmKernelsAvailable).
//
// Why: tfjs-wasm sends only 2-D untransposed matmuls to XNNPACK; attention's batched
// [B·KV, rep·T, hd] × [B·KV, S, hd]ᵀ scores and probs × values run on a scalar loop (~1.5
// GFLOP/s), with [B·heads, T, T] mask, scale and softmax passes on top: with head dim 8 that was
// ~60% of stories260K's perplexity run. The attention kernel also skips the masked upper triangle.
// RMSNorm and SwiGLU are five and three tfjs ops (full passes, each with an op's fixed cost).
import * as tf from '@tensorflow/tfjs';
import { attentionWasm } from './wasm/attention.wasm';
import { fusedWasm } from './wasm/fused.wasm';

/** What this file needs of tfjs-wasm's BackendWasm (not part of its typed API). */
interface WasmBackendLike {
  wasm: { asm?: { memory?: WebAssembly.Memory }; _malloc(bytes: number): number; _free(ptr: number): void };
  getMemoryOffset(dataId: object): number;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
  disposeData(dataId: object): boolean;
}

type AttentionFn = (q: number, k: number, v: number, out: number, B: number, T: number, S: number, H: number, KV: number, hd: number, past: number, scale: number, cos: number, sin: number, scratch: number) => void;
type SwigluFn = (g: number, u: number, out: number, n: number) => void;
type RmsNormFn = (x: number, w: number, out: number, rows: number, cols: number, eps: number) => void;
type GatherRowsFn = (table: number, rows: number, cols: number, ids: number, n: number, out: number) => number;
type TokenStatsFn = (x: number, V: number, rows: number, tok: number, M: number, out: number) => number;

const MODULES = { attention: attentionWasm, fused: fusedWasm };
type ModuleName = keyof typeof MODULES;

/** Compiled modules (once per process) and their instances per backend memory: caches. */
const compiled = new Map<ModuleName, WebAssembly.Module>();
const instances = new WeakMap<WebAssembly.Memory, Map<ModuleName, WebAssembly.Exports>>();

function exportsFor(name: ModuleName, memory: WebAssembly.Memory): WebAssembly.Exports {
  let byName = instances.get(memory);
  if (!byName) instances.set(memory, (byName = new Map()));
  let ex = byName.get(name);
  if (!ex) {
    let mod = compiled.get(name);
    if (!mod) compiled.set(name, (mod = new WebAssembly.Module(Buffer.from(MODULES[name], 'base64'))));
    ex = new WebAssembly.Instance(mod, { env: { memory } }).exports;
    byName.set(name, ex);
  }
  return ex;
}

/** The backend's linear memory when the active backend is tfjs-wasm and exposes it, else null
 * (also for the threaded build's shared memory, which these single-threaded modules do not import). */
function wasmMemory(): WebAssembly.Memory | null {
  if (tf.getBackend() !== 'wasm') return null;
  const m = (tf.backend() as unknown as Partial<WasmBackendLike>).wasm?.asm?.memory;
  return m instanceof WebAssembly.Memory && m.buffer instanceof ArrayBuffer ? m : null;
}

/** True when the kernels of this file can run now: tfjs-wasm with its memory reachable, and no gradient tape. */
export function wasmKernelsAvailable(): boolean {
  if (!wasmMemory()) return false;
  return !(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/** Floats of scratch the attention kernel needs for S keys of head dim hd (wasm/attention.c). */
const scratchFloats = (S: number, hd: number) => (2 * hd + 2) * (Math.ceil(S / 4) * 4) + 6 * hd;

const ATTENTION = 'LlmcbWasmCausalAttention';
const SWIGLU = 'LlmcbWasmSwiglu';
const RMSNORM = 'LlmcbWasmRmsNorm';
const GATHER_ROWS = 'LlmcbWasmGatherRows';
const TOKEN_STATS = 'LlmcbWasmTokenLogprobStats';

/** Registers the kernels of this file with tfjs (once). */
function register(): void {
  if (tf.getKernel(ATTENTION, 'wasm')) return;
  const at = (be: WasmBackendLike, t: tf.TensorInfo | undefined) => (t ? be.getMemoryOffset(t.dataId) : 0);
  const memory = (be: WasmBackendLike) => be.wasm.asm!.memory!;
  tf.registerKernel({
    kernelName: ATTENTION,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackendLike;
      const { q, k, v, cos, sin } = inputs as { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; cos?: tf.TensorInfo; sin?: tf.TensorInfo };
      const { past, scale } = attrs as unknown as { past: number; scale: number };
      const [B, T, H, hd] = q.shape;
      const [, S, KV] = k.shape;
      const out = be.makeOutput([B * T, H * hd], 'float32');
      const raw = be.wasm._malloc(4 * scratchFloats(S, hd) + 16);
      try {
        const scratch = (raw + 15) & ~15; // 16-byte aligned vectors
        (exportsFor('attention', memory(be)).attention_f32 as AttentionFn)(at(be, q), at(be, k), at(be, v), at(be, out), B, T, S, H, KV, hd, past, scale, at(be, cos), at(be, sin), scratch);
      } finally {
        be.wasm._free(raw);
      }
      return out;
    },
  });
  tf.registerKernel({
    kernelName: SWIGLU,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const { g, u } = inputs as { g: tf.TensorInfo; u: tf.TensorInfo };
      const out = be.makeOutput(g.shape, 'float32');
      (exportsFor('fused', memory(be)).swiglu_f32 as SwigluFn)(at(be, g), at(be, u), at(be, out), tf.util.sizeFromShape(g.shape));
      return out;
    },
  });
  tf.registerKernel({
    kernelName: RMSNORM,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackendLike;
      const { x, w } = inputs as { x: tf.TensorInfo; w: tf.TensorInfo };
      const { eps } = attrs as unknown as { eps: number };
      const cols = x.shape[x.shape.length - 1];
      const out = be.makeOutput(x.shape, 'float32');
      (exportsFor('fused', memory(be)).rmsnorm_f32 as RmsNormFn)(at(be, x), at(be, w), at(be, out), tf.util.sizeFromShape(x.shape) / cols, cols, eps);
      return out;
    },
  });
  tf.registerKernel({
    kernelName: GATHER_ROWS,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const { table, ids } = inputs as { table: tf.TensorInfo; ids: tf.TensorInfo };
      const [rows, cols] = table.shape;
      const out = be.makeOutput([...ids.shape, cols], 'float32');
      const bad = (exportsFor('fused', memory(be)).gather_rows_f32 as GatherRowsFn)(at(be, table), rows, cols, at(be, ids), tf.util.sizeFromShape(ids.shape), at(be, out));
      if (bad) {
        be.disposeData(out.dataId);
        throw new Error(`wasmGatherRows: ${bad} id(s) outside [0, ${rows})`);
      }
      return out;
    },
  });
  tf.registerKernel({
    kernelName: TOKEN_STATS,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const be = backend as unknown as WasmBackendLike;
      const { x, rows, tokens } = inputs as { x: tf.TensorInfo; rows: tf.TensorInfo; tokens: tf.TensorInfo };
      const V = x.shape[1];
      const M = rows.shape[0];
      const out = be.makeOutput([M, 2], 'float32');
      const bad = (exportsFor('fused', memory(be)).token_logprob_stats_f32 as TokenStatsFn)(at(be, x), V, at(be, rows), at(be, tokens), M, at(be, out));
      if (bad) {
        be.disposeData(out.dataId);
        throw new Error(`wasmTokenLogprobStats: ${bad} token(s) outside [0, ${V})`);
      }
      return out;
    },
  });
}

function needWasm(op: string, ts: tf.Tensor[]): void {
  if (!wasmMemory()) throw new Error(`${op}: needs the tfjs-wasm backend (active: ${tf.getBackend()})`);
  if (ts.some((t) => t.dtype !== 'float32')) throw new Error(`${op}: inputs must be float32`);
  register();
}

/** silu(g) · u on the wasm SIMD kernel (g, u of one shape). */
export function wasmSwiglu(g: tf.Tensor, u: tf.Tensor): tf.Tensor {
  if (g.shape.join() !== u.shape.join()) throw new Error(`wasmSwiglu: gate [${g.shape}] and up [${u.shape}] differ`);
  needWasm('wasmSwiglu', [g, u]);
  return tf.engine().runKernel(SWIGLU, { g, u }, {}) as tf.Tensor;
}

/** RMSNorm of x [..., D] with weight w [D] on the wasm SIMD kernel: x · w / sqrt(mean(x²) + eps). */
export function wasmRmsNorm(x: tf.Tensor, w: tf.Tensor, eps: number): tf.Tensor {
  if (w.size !== x.shape[x.rank - 1]) throw new Error(`wasmRmsNorm: weight [${w.shape}] does not match x [${x.shape}]`);
  needWasm('wasmRmsNorm', [x, w]);
  return tf.engine().runKernel(RMSNORM, { x, w }, { eps } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * For scored (row, token) pairs of logits x [N, V]: [M, 2] with column 0 = x[row, token] − max of
 * the row (≤ 0; 0 iff the token is an argmax) and column 1 = Σ exp(x[row] − max) (≥ 1), so that
 * log p(token) = col0 − log(col1). One pass over each scored row, no [N, V] temporaries.
 */
export function wasmTokenLogprobStats(x: tf.Tensor2D, rows: tf.Tensor1D, tokens: tf.Tensor1D): tf.Tensor2D {
  if (rows.dtype !== 'int32' || tokens.dtype !== 'int32' || rows.size !== tokens.size) throw new Error('wasmTokenLogprobStats: rows and tokens must be int32 of one length');
  needWasm('wasmTokenLogprobStats', [x]);
  return tf.engine().runKernel(TOKEN_STATS, { x, rows, tokens }, {}) as tf.Tensor2D;
}

/** Rows of table [rows, cols] at ids (int32, any shape) on the wasm SIMD kernel → [...ids.shape, cols] (an embedding lookup). */
export function wasmGatherRows(table: tf.Tensor2D, ids: tf.Tensor): tf.Tensor {
  if (ids.dtype !== 'int32') throw new Error(`wasmGatherRows: ids must be int32, got ${ids.dtype}`);
  needWasm('wasmGatherRows', [table]);
  return tf.engine().runKernel(GATHER_ROWS, { table, ids }, {}) as tf.Tensor;
}

/**
 * Causal attention on the wasm SIMD kernel: q [B, T, H, hd] (positions past..past+T-1), k and v
 * [B, past + T, KV, hd] (H a multiple of KV; query heads g·rep.. read KV head g) → context
 * [B·T, H·hd] (heads merged, ready for o_proj), scale 1/√hd. With `rope` (cos/sin [past + T, hd],
 * HF half-split layout) q and k are rotated inside the kernel, as the model's applyRope would.
 * No padding mask (right padding never changes real rows of a causal model, but callers with a
 * mask keep the plain path).
 */
export function wasmAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, past: number, rope?: { cos: tf.Tensor2D; sin: tf.Tensor2D }): tf.Tensor2D {
  const [B, T, H, hd] = q.shape;
  const [kb, S, KV, khd] = k.shape;
  if (kb !== B || khd !== hd || H % KV !== 0 || S !== past + T) throw new Error(`wasmAttention: q [${q.shape}] and k [${k.shape}] must be [B, T, H, hd] and [B, past + T, KV, hd] with H a multiple of KV (past ${past})`);
  if (v.shape.join() !== k.shape.join()) throw new Error(`wasmAttention: v [${v.shape}] differs from k [${k.shape}]`);
  if (rope && !(rope.cos.shape.join() === `${S},${hd}` && rope.sin.shape.join() === `${S},${hd}` && hd % 2 === 0)) throw new Error(`wasmAttention: RoPE tables [${rope.cos.shape}] must be [${S}, ${hd}] (even head dim)`);
  needWasm('wasmAttention', [q, k, v]);
  const attrs = { past, scale: 1 / Math.sqrt(hd) };
  const inputs: tf.NamedTensorMap = rope ? { q, k, v, cos: rope.cos, sin: rope.sin } : { q, k, v };
  return tf.engine().runKernel(ATTENTION, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}
