// Causal attention on the tfjs-wasm backend as one WebAssembly SIMD kernel (wasm/attention.c),
// registered as a tfjs kernel so that it runs inside tf.tidy like any op. The module imports the
// backend's own linear memory and reads q, k, v and writes the output where tfjs keeps them.
// Inference only (no gradient): the forward uses it when its plan says so and no tape records.
//
// Why not the plain ops: tfjs-wasm sends only 2-D untransposed matmuls to XNNPACK; the batched
// [B·KV, rep·T, hd] × [B·KV, S, hd]ᵀ scores and the probs × values run on a scalar loop (~1.5
// GFLOP/s), and the [B·heads, T, T] mask add, scale and softmax passes come on top. With head dim 8
// that was ~60% of stories260K's perplexity run; this kernel also skips the masked upper triangle.
import * as tf from '@tensorflow/tfjs';
import { attentionWasm } from './wasm/attention.wasm';

const KERNEL_NAME = 'LlmcbCausalAttentionF32';

/** What this file needs of tfjs-wasm's BackendWasm (not part of its typed API). */
interface WasmBackendLike {
  wasm: { asm?: { memory?: WebAssembly.Memory }; _malloc(bytes: number): number; _free(ptr: number): void };
  getMemoryOffset(dataId: object): number;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

type AttentionFn = (q: number, k: number, v: number, out: number, B: number, T: number, S: number, H: number, KV: number, hd: number, past: number, scale: number, cos: number, sin: number, scratch: number) => void;

/** The kernel instantiated on a backend's memory (a cache: one instance per memory). */
const instances = new WeakMap<WebAssembly.Memory, AttentionFn>();
let compiled: WebAssembly.Module | null = null; // the module bytes compile once per process

function kernelFor(memory: WebAssembly.Memory): AttentionFn {
  let fn = instances.get(memory);
  if (!fn) {
    compiled ??= new WebAssembly.Module(Buffer.from(attentionWasm, 'base64'));
    const inst = new WebAssembly.Instance(compiled, { env: { memory } });
    fn = inst.exports.attention_f32 as AttentionFn;
    instances.set(memory, fn);
  }
  return fn;
}

/** The backend's linear memory when the active backend is tfjs-wasm and exposes it, else null. */
function wasmMemory(): WebAssembly.Memory | null {
  if (tf.getBackend() !== 'wasm') return null;
  const b = tf.backend() as unknown as Partial<WasmBackendLike>;
  return b.wasm?.asm?.memory instanceof WebAssembly.Memory ? b.wasm.asm.memory : null;
}

/** Floats of scratch the kernel needs for S keys of head dim hd (wasm/attention.c). */
const scratchFloats = (S: number, hd: number) => (2 * hd + 2) * (Math.ceil(S / 4) * 4) + 6 * hd;

function register(): void {
  if (tf.getKernel(KERNEL_NAME, 'wasm')) return;
  tf.registerKernel({
    kernelName: KERNEL_NAME,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const be = backend as unknown as WasmBackendLike;
      const { q, k, v, cos, sin } = inputs as { q: tf.TensorInfo; k: tf.TensorInfo; v: tf.TensorInfo; cos?: tf.TensorInfo; sin?: tf.TensorInfo };
      const { past, scale } = attrs as unknown as { past: number; scale: number };
      const [B, T, H, hd] = q.shape;
      const [, S, KV] = k.shape;
      const out = be.makeOutput([B * T, H * hd], 'float32');
      const bytes = 4 * scratchFloats(S, hd) + 16;
      const raw = be.wasm._malloc(bytes);
      try {
        const scratch = (raw + 15) & ~15; // 16-byte aligned vectors
        const at = (t: tf.TensorInfo | undefined) => (t ? be.getMemoryOffset(t.dataId) : 0); // 0: no RoPE tables
        kernelFor(be.wasm.asm!.memory!)(at(q), at(k), at(v), at(out), B, T, S, H, KV, hd, past, scale, at(cos), at(sin), scratch);
      } finally {
        be.wasm._free(raw);
      }
      return out;
    },
  });
}

/** True when wasmAttention can run now: tfjs-wasm with its memory reachable, and no gradient tape. */
export function wasmAttentionAvailable(): boolean {
  if (!wasmMemory()) return false;
  return !(tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
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
  if ([q, k, v].some((t) => t.dtype !== 'float32')) throw new Error('wasmAttention: q, k and v must be float32');
  if (!wasmMemory()) throw new Error(`wasmAttention: needs the tfjs-wasm backend (active: ${tf.getBackend()})`);
  if (rope && !(rope.cos.shape.join() === `${S},${hd}` && rope.sin.shape.join() === `${S},${hd}` && hd % 2 === 0)) throw new Error(`wasmAttention: RoPE tables [${rope.cos.shape}] must be [${S}, ${hd}] (even head dim)`);
  register();
  const attrs = { past, scale: 1 / Math.sqrt(hd) };
  const inputs: tf.NamedTensorMap = rope ? { q, k, v, cos: rope.cos, sin: rope.sin } : { q, k, v };
  return tf.engine().runKernel(KERNEL_NAME, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor2D;
}
