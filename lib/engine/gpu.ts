// The executor's GPU plumbing on raw WebGPU (the tfjs-webgpu backend's own device, so the model's
// weight tensors bind directly): one owner for every buffer the executor creates (Arena), compiled
// pipelines cached by WGSL text, and a Program: a fixed list of dispatches whose pipelines and bind
// groups are made once, at a dispatch's first recording (a plan holds variants a run may never
// pick: GEMM splits, attention paths; making all of them cost ~60 ms a plan). Per step only three
// things change: the small metadata buffers (queue.writeBuffer), the params of each dispatch (one
// uniform blob, one writeBuffer), and the workgroup counts; a step is one compute pass in one
// command buffer (one pass per dispatch when the step is profiled with timestamp queries).
import { flushTfjs, gpuBuffer, pipelineFor } from '../kernels/gpu';
import { webgpuDevice } from '../runtime/backend';
import type { StepTimer } from '../kernels/timing';
import type * as tf from '@tensorflow/tfjs';

export type ParamType = 'u32' | 'i32' | 'f32';

/** The executor's device: tfjs-webgpu's, whose pending work is submitted first so weights are on the GPU. */
export function engineDevice(): GPUDevice {
  const d = webgpuDevice();
  if (!d) throw new Error('the inference executor needs the webgpu backend (initRuntime({ backend: "webgpu" }))');
  flushTfjs();
  return d;
}

/** A GPU buffer the arena owns, or a model tensor's buffer it only borrows. */
export interface Buf {
  buffer: GPUBuffer;
  bytes: number;
  label: string;
}

/** Every buffer the executor creates, freed together; live counts for leak checks. */
export class Arena {
  private owned: GPUBuffer[] = [];
  private bytes = 0;
  private static liveBuffers = 0;

  constructor(readonly device: GPUDevice) {}

  /** A zero-filled storage buffer of `bytes` (rounded up to 16), usable as copy source and target. */
  storage(label: string, bytes: number, extraUsage = 0): Buf {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    const max = this.device.limits.maxStorageBufferBindingSize;
    if (size > max) throw new Error(`executor buffer '${label}' needs ${size} B, over the device's ${max} B storage binding (lower maxTokens or maxScoreRows)`);
    const buffer = this.device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage });
    return this.own({ buffer, bytes: size, label });
  }

  uniform(label: string, bytes: number): Buf {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    return this.own({ buffer: this.device.createBuffer({ label, size, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }), bytes: size, label });
  }

  readback(label: string, bytes: number): Buf {
    const size = Math.max(16, Math.ceil(bytes / 16) * 16);
    return this.own({ buffer: this.device.createBuffer({ label, size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }), bytes: size, label });
  }

  /** A buffer filled with `data` (float32 or uint32 words). */
  upload(label: string, data: Float32Array | Uint32Array | Int32Array): Buf {
    const b = this.storage(label, data.byteLength);
    this.device.queue.writeBuffer(b.buffer, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  }

  /** The first `floats` 32-bit values of b, read back through a temporary buffer (checks and debugging). */
  async read(b: Buf, floats: number): Promise<Float32Array> {
    const tmp = this.device.createBuffer({ label: `${b.label}-readback`, size: Math.max(16, Math.ceil((4 * floats) / 16) * 16), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(b.buffer, 0, tmp, 0, 4 * floats);
      this.device.queue.submit([enc.finish()]);
      await tmp.mapAsync(GPUMapMode.READ);
      return new Float32Array(tmp.getMappedRange(), 0, floats).slice();
    } finally {
      tmp.destroy();
    }
  }

  private own(b: Buf): Buf {
    this.owned.push(b.buffer);
    this.bytes += b.bytes;
    Arena.liveBuffers++;
    return b;
  }

  /** Bytes allocated by this arena. */
  get allocatedBytes(): number {
    return this.bytes;
  }

  /** Buffers created by all arenas and not yet destroyed (leak checks). */
  static get live(): number {
    return Arena.liveBuffers;
  }

  destroy(): void {
    for (const b of this.owned) b.destroy();
    Arena.liveBuffers -= this.owned.length;
    this.owned = [];
    this.bytes = 0;
  }
}

/** The GPU buffer of a model tensor, borrowed (the model owns it; the executor never frees it). */
export function borrow(t: tf.Tensor, label: string): Buf {
  if (t.isDisposed) throw new Error(`executor: weight '${label}' is disposed`);
  if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new Error(`executor: weight '${label}' has dtype ${t.dtype}`);
  return { buffer: gpuBuffer(t), bytes: t.size * 4, label };
}

/** A kernel: complete WGSL whose bindings are `buffers` in order, then one `params` uniform when it has fields. */
export interface Kernel {
  name: string;
  code: string;
  params: Record<string, ParamType>;
}

/**
 * A kernel generator memoized by its arguments (plain data): a plan asks for hundreds of kernels,
 * mostly the same ones as the last plan's, and regenerating their WGSL (and hashing it again in the
 * pipeline cache) cost about as much as the plan's own work.
 */
export function memoKernel<A extends unknown[]>(generate: (...args: A) => Kernel): (...args: A) => Kernel {
  const made = new Map<string, Kernel>();
  return (...args: A) => {
    const key = JSON.stringify(args);
    let k = made.get(key);
    if (!k) made.set(key, (k = generate(...args)));
    return k;
  };
}

/** One dispatch of a program: its kernel's buffers are fixed; params and workgroups come from the step. */
export interface DispatchSpec<S> {
  kernel: Kernel;
  buffers: Buf[];
  params?: (s: S) => Record<string, number>;
  /** Workgroup counts for this step, or null to skip the dispatch this step. */
  workgroups: (s: S) => [number, number, number] | null;
}

const SLOT = 256; // uniform offsets must be multiples of minUniformBufferOffsetAlignment (≤ 256)

interface Dispatch<S> {
  spec: DispatchSpec<S>;
  /** Made at the dispatch's first recording: a plan holds variants (GEMM splits, attention paths) that a run may never pick. */
  bound: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup } | null;
  slot: number;
}

/**
 * A fixed list of dispatches recorded into one compute pass per step. Params of all dispatches
 * live in one uniform buffer (a 256-byte slot each) written once per step.
 */
export class Program<S> {
  private readonly list: Dispatch<S>[] = [];
  private readonly paramsBuf: Buf;
  private readonly blob: ArrayBuffer;

  constructor(
    private readonly arena: Arena,
    specs: DispatchSpec<S>[],
    readonly name: string,
  ) {
    const withParams = specs.filter((s) => Object.keys(s.kernel.params).length > 0).length;
    this.paramsBuf = arena.uniform(`${name}-params`, Math.max(1, withParams) * SLOT);
    this.blob = new ArrayBuffer(Math.max(1, withParams) * SLOT);
    let slot = 0;
    for (const spec of specs) {
      const hasParams = Object.keys(spec.kernel.params).length > 0;
      this.list.push({ spec, bound: null, slot: hasParams ? slot++ : -1 });
    }
  }

  /** The dispatch's pipeline (compiled once per WGSL source, engine-wide) and bind group. */
  private bind(d: Dispatch<S>): { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup } {
    if (d.bound) return d.bound;
    const device = this.arena.device;
    const { kernel, buffers } = d.spec;
    const pipeline = pipelineFor(device, kernel.name, kernel.code);
    const entries: GPUBindGroupEntry[] = buffers.map((b, binding) => ({ binding, resource: { buffer: b.buffer } }));
    if (d.slot >= 0) entries.push({ binding: entries.length, resource: { buffer: this.paramsBuf.buffer, offset: d.slot * SLOT, size: SLOT } });
    d.bound = { pipeline, bindGroup: device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries, label: kernel.name }) };
    return d.bound;
  }

  /** Number of dispatches recorded for step s. */
  count(s: S): number {
    return this.list.filter((d) => d.spec.workgroups(s) !== null).length;
  }

  /**
   * Writes every dispatch's params for step s and records the dispatches into `enc`: one compute
   * pass, or with `timer` one pass per dispatch whose start and end go to the timer's query set
   * (then timer.names lists the recorded kernels in order). Returns the number of dispatches.
   */
  record(enc: GPUCommandEncoder, s: S, timer?: StepTimer): number {
    const u32 = new Uint32Array(this.blob);
    const i32 = new Int32Array(this.blob);
    const f32 = new Float32Array(this.blob);
    const maxGroups = this.arena.device.limits.maxComputeWorkgroupsPerDimension;
    let pass = timer ? null : enc.beginComputePass();
    let n = 0;
    for (const d of this.list) {
      const wg = d.spec.workgroups(s);
      if (!wg || wg[0] * wg[1] * wg[2] === 0) continue;
      if (wg.some((g) => g > maxGroups)) throw new Error(`${d.spec.kernel.name}: workgroups [${wg.join(', ')}] exceed ${maxGroups} per dimension`);
      if (d.slot >= 0) {
        const values = d.spec.params!(s);
        let w = (d.slot * SLOT) / 4;
        for (const [k, t] of Object.entries(d.spec.kernel.params)) {
          const v = values[k];
          if (v === undefined || !Number.isFinite(v)) throw new Error(`${d.spec.kernel.name}: param '${k}' is ${v}`);
          if (t === 'f32') f32[w++] = v;
          else if (t === 'i32') i32[w++] = v;
          else u32[w++] = v;
        }
      }
      if (timer) {
        pass = enc.beginComputePass({ timestampWrites: { querySet: timer.querySet, beginningOfPassWriteIndex: 2 * n, endOfPassWriteIndex: 2 * n + 1 } });
        timer.names.push(d.spec.kernel.name);
      }
      const { pipeline, bindGroup } = this.bind(d);
      pass!.setPipeline(pipeline);
      pass!.setBindGroup(0, bindGroup);
      pass!.dispatchWorkgroups(wg[0], wg[1], wg[2]);
      if (timer) pass!.end();
      n++;
    }
    if (!timer) pass!.end();
    this.arena.device.queue.writeBuffer(this.paramsBuf.buffer, 0, this.blob);
    return n;
  }
}

/** Workgroups for `n` workgroups in x, spilling into y past the per-dimension limit. */
export function spill(n: number, device: GPUDevice): [number, number, number] {
  const max = device.limits.maxComputeWorkgroupsPerDimension;
  return [Math.min(n, max), Math.ceil(n / max), 1];
}
