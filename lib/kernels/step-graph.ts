// Step graphs: one step of tfjs-webgpu work (a training step: forward, gradients, optimizer update)
// recorded as the GPU commands it encodes, then replayed for the following steps without tfjs,
// autograd or bind-group creation on the host, as a CUDA graph replays a captured stream. On a
// small model a step is a few hundred tiny dispatches, and their host cost (~80 µs each through
// tfjs on the H100) is the step's whole time; a replay re-encodes recorded pipelines and bind groups.
//
//   const { graph, result: loss } = captureStep(() => trainStep(slotX, slotY), () => [...params, ...opt.moments()]);
//   for (const i of ...) graph.replay([{ from: xs[i], to: slotX }, { from: ys[i], to: slotY }], [{ from: loss, to: log, toOffset: i }]);
//   graph.dispose();
//
// The capture runs the step for real (it is the first step). While capturing, the step may:
// - record compute dispatches and buffer copies (tfjs ops, runKernel);
// - write host data into buffers acquired during the capture (uploads of tf.scalar etc., uniforms):
//   constants, the same at every replay; a value that changes per step is written before each replay
//   by an onReplay callback (AdamW's bias corrections);
// and nothing else: a readback, a timestamp query, a texture or a host write into an older buffer is
// an error naming it, and the graph is not made.
// State: state() lists the tensors the step replaces (variables it assigns: parameters, optimizer
// moments), read before and after the capture. A replay reads the before-buffers and writes the
// after-buffers, then copies after → before, so the tensors (now on the after-buffers) always hold
// the latest values.
// Buffers: while a graph lives, every buffer it acquired or binds stays out of tfjs's pool (a
// released one is withheld, so no other tensor can get it and no host upload overwrites it); dispose()
// gives them back.
import * as tf from '@tensorflow/tfjs';
import { flushTfjs, gpuBuffer, tfjsBackend, type TfjsWebGPUBackend } from './gpu';

/** A copy of all of `from` into `to` at element `toOffset` (default 0); same dtype width (4 bytes). */
export interface TensorCopy {
  from: tf.Tensor;
  to: tf.Tensor;
  toOffset?: number;
}

type PassCommand = ['pipeline', GPUComputePipeline] | ['bind', number, GPUBindGroup] | ['dispatch', number, number, number];
type Command = ['pass', PassCommand[]] | ['copy', GPUBuffer, number, GPUBuffer, number, number] | ['clear', GPUBuffer, number, number | undefined];

/** A buffer the graph withholds from tfjs's pool, with the reuse flag tfjs released it with. */
interface Withheld {
  buffer: GPUBuffer;
  reuse: boolean;
}

/** Graphs alive now (their buffers are withheld from the pool). */
const live = new Set<StepGraph>();
let capturing: Capture | null = null;

/** The state of a capture in progress: what the step acquires, binds, writes and encodes. */
interface Capture {
  acquired: Set<GPUBuffer>;
  bound: Set<GPUBuffer>;
  commands: Command[];
  replayWrites: { buffer: GPUBuffer; values: () => Float32Array | Int32Array }[];
  unsupported: string[];
  /** Buffers the step released while captured: kept, so that none is handed out again within the step. */
  withheld: Withheld[];
}

/**
 * Inside a capture: before each replay, write values() into t's buffer (t must be a tensor the
 * step made, e.g. a step's hyperparameters as a small tensor). Outside a capture: nothing.
 */
export function onReplay(t: tf.Tensor, values: () => Float32Array | Int32Array): void {
  if (!capturing) return;
  const buffer = gpuBuffer(t);
  if (!capturing.acquired.has(buffer)) throw new Error('onReplay: the tensor must be made by the captured step');
  capturing.replayWrites.push({ buffer, values });
}

export class StepGraph {
  private disposed = false;

  constructor(
    private readonly backend: TfjsWebGPUBackend,
    private readonly commands: Command[],
    private readonly stateCopies: [after: GPUBuffer, before: GPUBuffer, bytes: number][],
    private readonly replayWrites: Capture['replayWrites'],
    /** Buffers the graph acquired or binds: withheld from the pool when released. */
    private readonly keeps: Set<GPUBuffer>,
    private readonly withheld: Withheld[],
    /** Tensors (dataIds) the replays write: the state and the step's result. */
    private readonly written: object[],
  ) {}

  /** Called by the patched releaseBuffer: true if the graph keeps `buffer` (then it is withheld). */
  withhold(buffer: GPUBuffer, reuse: boolean): boolean {
    if (!this.keeps.has(buffer)) return false;
    this.withheld.push({ buffer, reuse });
    return true;
  }

  /**
   * One more step: `before` copies (the step's inputs into the tensors it read while captured), the
   * recorded commands, the state copies, then `after` copies (e.g. a loss into a log); one submit.
   */
  replay(before: TensorCopy[] = [], after: TensorCopy[] = []): void {
    if (this.disposed) throw new Error('StepGraph.replay: the graph is disposed');
    if (tf.backend() !== (this.backend as unknown)) throw new Error('StepGraph.replay: the webgpu backend changed since the capture');
    flushTfjs();
    const device = this.backend.device;
    for (const w of this.replayWrites) device.queue.writeBuffer(w.buffer, 0, w.values());
    const enc = device.createCommandEncoder();
    encodeCopies(enc, before);
    let pass: GPUComputePassEncoder | null = null;
    for (const c of this.commands) {
      if (c[0] === 'pass') {
        pass ??= enc.beginComputePass();
        for (const p of c[1]) {
          if (p[0] === 'pipeline') pass.setPipeline(p[1]);
          else if (p[0] === 'bind') pass.setBindGroup(p[1], p[2]);
          else pass.dispatchWorkgroups(p[1], p[2], p[3]);
        }
        continue;
      }
      pass?.end();
      pass = null;
      if (c[0] === 'copy') enc.copyBufferToBuffer(c[1], c[2], c[3], c[4], c[5]);
      else enc.clearBuffer(c[1], c[2], c[3]);
    }
    pass?.end();
    for (const [from, to, bytes] of this.stateCopies) enc.copyBufferToBuffer(from, 0, to, 0, bytes);
    encodeCopies(enc, after);
    device.queue.submit([enc.finish()]);
    // tfjs caches a tensor's values on the host at its first read; these tensors changed since
    for (const id of [...this.written, ...after.map((c) => c.to.dataId)]) dropHostCopy(this.backend, id);
  }

  /** Gives the withheld buffers back to tfjs's pool (or destroys those tfjs released for good). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    live.delete(this);
    giveBack(this.backend, this.withheld);
  }
}

/** Releases withheld buffers to tfjs's pool as tfjs asked (reuse false: destroyed). */
function giveBack(b: TfjsWebGPUBackend, withheld: Withheld[]): void {
  const release = originalRelease.get(b.bufferManager)!;
  for (const w of withheld.splice(0)) release(w.buffer, w.reuse);
}

/** Forgets the host copy tfjs keeps of a GPU tensor's values after a read (the buffer stays). */
function dropHostCopy(b: TfjsWebGPUBackend, dataId: object): void {
  const d = b.tensorMap.get(dataId) as { resource?: unknown; values?: unknown } | undefined;
  if (d?.resource) d.values = null;
}

/** Encodes copies between tensors (checked: 4-byte dtypes, the destination large enough). */
function encodeCopies(enc: GPUCommandEncoder, copies: TensorCopy[]): void {
  for (const c of copies) {
    const off = c.toOffset ?? 0;
    if (c.from.dtype === 'complex64' || c.to.dtype === 'complex64' || c.from.dtype === 'string' || c.to.dtype === 'string') throw new Error('step graph copy: complex64 and string tensors are not supported');
    if (!Number.isInteger(off) || off < 0 || off + c.from.size > c.to.size) {
      throw new Error(`step graph copy: ${c.from.size} elements at offset ${off} do not fit a tensor of ${c.to.size}`);
    }
    enc.copyBufferToBuffer(gpuBuffer(c.from), 0, gpuBuffer(c.to), 4 * off, 4 * c.from.size);
  }
}

/** Copies between tensors now, in queue order after the work tfjs has recorded (one submit). */
export function copyTensors(copies: TensorCopy[]): void {
  const b = tfjsBackend('copyTensors');
  flushTfjs();
  const enc = b.device.createCommandEncoder();
  encodeCopies(enc, copies);
  b.device.queue.submit([enc.finish()]);
  for (const c of copies) dropHostCopy(b, c.to.dataId);
}

/** A tensor with t's values in a buffer of its own (tf.clone shares t's buffer): a step's input slot. */
export function slotOf(t: tf.Tensor): tf.Tensor {
  const slot = tf.zeros(t.shape, t.dtype);
  copyTensors([{ from: t, to: slot }]);
  return slot;
}

/** tfjs's own releaseBuffer, per buffer manager whose releaseBuffer now consults the capture and the live graphs. */
const originalRelease = new WeakMap<object, (buffer: GPUBuffer, reuse?: boolean) => void>();

/** Makes tfjs's releaseBuffer withhold the buffers of live graphs (once per backend). */
function patchRelease(b: TfjsWebGPUBackend): void {
  const pool = b.bufferManager;
  if (originalRelease.has(pool)) return;
  const release = pool.releaseBuffer.bind(pool);
  originalRelease.set(pool, release);
  pool.releaseBuffer = (buffer: GPUBuffer, reuse = true) => {
    if (capturing && (capturing.acquired.has(buffer) || capturing.bound.has(buffer))) {
      capturing.withheld.push({ buffer, reuse });
      return;
    }
    for (const g of live) if (g.withhold(buffer, reuse)) return;
    release(buffer, reuse);
  };
}

/**
 * Runs `step` once as the graph's capture (synchronously: no awaits, no readbacks) and returns the
 * graph with the step's result. `state` lists the tensors the step replaces (see the header).
 */
export function captureStep<T>(step: () => T, state: () => tf.Tensor[]): { graph: StepGraph; result: T } {
  const b = tfjsBackend('captureStep');
  if (capturing) throw new Error('captureStep: a capture is already in progress (captures do not nest)');
  patchRelease(b);
  flushTfjs();
  const before = state().map((t) => gpuBuffer(t));
  const cap: Capture = { acquired: new Set(), bound: new Set(before), commands: [], replayWrites: [], unsupported: [], withheld: [] };
  const restore = instrument(b, cap);
  capturing = cap;
  let result: T;
  let after: tf.Tensor[];
  try {
    result = step();
    after = state();
    flushTfjs();
    if (after.length !== before.length) throw new Error(`captureStep: state() listed ${before.length} tensors before the step and ${after.length} after`);
    if (cap.unsupported.length) throw new Error(`captureStep: the step did what a graph cannot replay: ${[...new Set(cap.unsupported)].join('; ')}`);
  } catch (e) {
    capturing = null;
    restore();
    giveBack(b, cap.withheld);
    throw e;
  }
  capturing = null;
  restore();
  const stateCopies: [GPUBuffer, GPUBuffer, number][] = [];
  const keeps = new Set([...cap.acquired, ...cap.bound, ...before]);
  after.forEach((t, i) => {
    const a = gpuBuffer(t);
    keeps.add(a);
    if (a !== before[i]) stateCopies.push([a, before[i], 4 * t.size]);
  });
  const written = [...after, ...tensorsIn(result!)].map((t) => t.dataId);
  const graph = new StepGraph(b, cap.commands, stateCopies, cap.replayWrites, keeps, cap.withheld, written);
  live.add(graph);
  // the next replay reads the before-buffers: give them the captured step's results
  const enc = b.device.createCommandEncoder();
  for (const [from, to, bytes] of stateCopies) enc.copyBufferToBuffer(from, 0, to, 0, bytes);
  b.device.queue.submit([enc.finish()]);
  return { graph, result: result! };
}

/** The tensors of a step's result: a tensor, or an array or object of them (others: none). */
function tensorsIn(r: unknown): tf.Tensor[] {
  if (r instanceof tf.Tensor) return [r];
  if (r && typeof r === 'object') return Object.values(r).flatMap((v) => (v instanceof tf.Tensor ? [v] : []));
  return [];
}

/**
 * Hooks the device, queue, encoders and tfjs's buffer manager for one capture; returns the undo.
 * Commands are taken in submit order (a command buffer's commands join the graph when submitted).
 */
function instrument(b: TfjsWebGPUBackend, cap: Capture): () => void {
  const device = b.device;
  const queue = device.queue;
  const undo: (() => void)[] = [];
  const hook = <O extends object, K extends keyof O>(obj: O, key: K, wrap: (orig: O[K]) => O[K]) => {
    const orig = obj[key];
    const own = Object.prototype.hasOwnProperty.call(obj, key);
    obj[key] = wrap(typeof orig === 'function' ? (orig as unknown as (...a: unknown[]) => unknown).bind(obj) as O[K] : orig);
    undo.push(() => (own ? (obj[key] = orig) : delete obj[key]));
  };
  const pending = new Map<GPUCommandBuffer, Command[]>();
  hook(b.bufferManager, 'acquireBuffer', (acquire) => ((...a: Parameters<typeof acquire>) => {
    const buffer = acquire(...a);
    cap.acquired.add(buffer);
    return buffer;
  }) as typeof acquire);
  hook(device, 'createBindGroup', (create) => ((desc: GPUBindGroupDescriptor) => {
    for (const e of desc.entries) {
      const r = e.resource as GPUBufferBinding | GPUBuffer;
      if (r instanceof GPUBuffer) cap.bound.add(r);
      else if ((r as GPUBufferBinding).buffer) cap.bound.add((r as GPUBufferBinding).buffer);
      else cap.unsupported.push('a bind group with a texture or sampler');
    }
    return create(desc);
  }) as typeof create);
  hook(queue, 'writeBuffer', (write) => ((buffer: GPUBuffer, ...rest: unknown[]) => {
    if (!cap.acquired.has(buffer)) cap.unsupported.push('a host write into a buffer made before the step');
    return (write as (...a: unknown[]) => undefined)(buffer, ...rest);
  }) as typeof write);
  hook(queue, 'submit', (submit) => ((cbs: GPUCommandBuffer[]) => {
    for (const cb of cbs) {
      const cmds = pending.get(cb);
      if (!cmds) cap.unsupported.push('a command buffer encoded before the capture');
      else cap.commands.push(...cmds);
      pending.delete(cb);
    }
    return submit(cbs);
  }) as typeof submit);
  for (const m of ['read', 'readSync', 'readToGPU'] as const) {
    hook(b as unknown as Record<string, unknown>, m, (orig) => ((...a: unknown[]) => {
      cap.unsupported.push(`a readback (${m})`);
      return (orig as (...a: unknown[]) => unknown)(...a);
    }));
  }
  hook(device, 'createCommandEncoder', (create) => ((desc?: GPUCommandEncoderDescriptor) => {
    const enc = create(desc);
    const cmds: Command[] = [];
    const e = enc as unknown as Record<string, unknown>;
    const refuse = (name: string) => {
      const orig = (e[name] as (...a: unknown[]) => unknown)?.bind(enc);
      e[name] = (...a: unknown[]) => {
        cap.unsupported.push(`${name} on a command encoder`);
        return orig?.(...a);
      };
    };
    ['beginRenderPass', 'copyBufferToTexture', 'copyTextureToBuffer', 'copyTextureToTexture', 'writeTimestamp', 'resolveQuerySet'].forEach(refuse);
    const copy = enc.copyBufferToBuffer.bind(enc) as (...a: unknown[]) => undefined;
    e.copyBufferToBuffer = (src: GPUBuffer, srcOff: number, dst: GPUBuffer, dstOff: number, size: number) => {
      if (typeof srcOff !== 'number') cap.unsupported.push('copyBufferToBuffer without offsets');
      cap.bound.add(src).add(dst);
      cmds.push(['copy', src, srcOff, dst, dstOff, size]);
      return copy(src, srcOff, dst, dstOff, size);
    };
    const clear = enc.clearBuffer.bind(enc);
    e.clearBuffer = (buffer: GPUBuffer, offset = 0, size?: number) => {
      cap.bound.add(buffer);
      cmds.push(['clear', buffer, offset, size]);
      return clear(buffer, offset, size);
    };
    const begin = enc.beginComputePass.bind(enc);
    e.beginComputePass = (desc?: GPUComputePassDescriptor) => {
      if (desc?.timestampWrites) cap.unsupported.push('a compute pass with timestamp writes');
      const pass = begin(desc);
      const list: PassCommand[] = [];
      cmds.push(['pass', list]);
      const p = pass as unknown as Record<string, unknown>;
      const setPipeline = pass.setPipeline.bind(pass);
      const setBindGroup = pass.setBindGroup.bind(pass) as (...a: unknown[]) => undefined;
      const dispatch = pass.dispatchWorkgroups.bind(pass);
      p.setPipeline = (pl: GPUComputePipeline) => (list.push(['pipeline', pl]), setPipeline(pl));
      p.setBindGroup = (i: number, bg: GPUBindGroup, ...rest: unknown[]) => {
        if (rest.length && (rest[0] as ArrayLike<number>)?.length) cap.unsupported.push('dynamic bind-group offsets');
        list.push(['bind', i, bg]);
        return setBindGroup(i, bg, ...rest);
      };
      p.dispatchWorkgroups = (x: number, y = 1, z = 1) => (list.push(['dispatch', x, y, z]), dispatch(x, y, z));
      const indirect = pass.dispatchWorkgroupsIndirect.bind(pass);
      p.dispatchWorkgroupsIndirect = (...a: Parameters<typeof indirect>) => (cap.unsupported.push('an indirect dispatch'), indirect(...a));
      return pass;
    };
    const finish = enc.finish.bind(enc);
    e.finish = (d?: GPUCommandBufferDescriptor) => {
      const cb = finish(d);
      pending.set(cb, cmds);
      return cb;
    };
    return enc;
  }) as typeof create);
  return () => undo.reverse().forEach((u) => u());
}

let enabled = true;
/** Whether callers should capture their steps (default true); setStepGraphs(false) keeps them eager (tests compare both). */
export function stepGraphsEnabled(): boolean {
  return enabled;
}
/** Turns step graphs on or off for the callers that check stepGraphsEnabled(); returns the previous setting. */
export function setStepGraphs(on: boolean): boolean {
  const old = enabled;
  enabled = on;
  return old;
}

/** Graphs alive now (tests: a disposed graph withholds nothing). */
export function liveStepGraphs(): number {
  return live.size;
}
