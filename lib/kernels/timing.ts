// GPU time per kernel from timestamp queries: KernelTimes sums it by name; StepTimer times the
// inference executor's steps (it knows its dispatches in advance); profileGpu times whatever a
// region of code dispatches on the tfjs-webgpu device (tfjs's kernels, the kit's own, replayed step
// graphs), each dispatch in a compute pass of its own.
//
//   const times = new KernelTimes();
//   await profileGpu(() => searchBlock(...), times);
//   console.error(times.report(kernelGroups(times)).join('\n'));
import { flushTfjs, tfjsBackend, type TfjsWebGPUBackend } from './gpu';

/** GPU time per kernel name, summed over the dispatches and steps profiled (timestamp queries). */
export class KernelTimes {
  readonly byName = new Map<string, { calls: number; ms: number }>();
  steps = 0;

  add(name: string, ms: number): void {
    const e = this.byName.get(name) ?? { calls: 0, ms: 0 };
    e.calls++;
    e.ms += ms;
    this.byName.set(name, e);
  }

  /** Total GPU ms of the kernels whose names match `re` (all kernels without it). */
  ms(re?: RegExp): number {
    let t = 0;
    for (const [name, e] of this.byName) if (!re || re.test(name)) t += e.ms;
    return t;
  }

  /** Lines for a log, in ms per step: each group's GPU time and share, then the `top` kernels by GPU time. */
  report(groups: [string, RegExp][], top = 8): string[] {
    const steps = Math.max(1, this.steps);
    const total = this.ms();
    const pct = (ms: number) => `${(ms / steps).toFixed(3)} ms (${((100 * ms) / Math.max(total, 1e-9)).toFixed(1)}%)`;
    const per = this.steps === 1 ? '' : ` a step (${this.steps} steps)`;
    const lines = [`GPU time${per}: ${(total / steps).toFixed(3)} ms in ${[...this.byName.values()].reduce((n, e) => n + e.calls, 0) / steps} dispatches`];
    for (const [what, re] of groups) lines.push(`  ${what.padEnd(40)} ${pct(this.ms(re))}`);
    const sorted = [...this.byName].sort((a, b) => b[1].ms - a[1].ms).slice(0, top);
    for (const [name, e] of sorted) lines.push(`  ${name.slice(0, 56).padEnd(56)} ${String(e.calls / steps).padStart(5)} × ${pct(e.ms)}`);
    return lines;
  }
}

/**
 * The timestamp queries of one profiled executor step: two per dispatch (Program.record fills `names` and
 * the query set), resolved into a readback buffer by resolve(enc) at the end of the step's
 * encoder, added to a KernelTimes by collect() once the step is submitted. It owns its query set
 * and buffers; collect() (or destroy() on failure) frees them. Needs the 'timestamp-query' feature.
 */
export class StepTimer {
  readonly names: string[] = [];
  readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private readonly read: GPUBuffer;

  constructor(device: GPUDevice, maxDispatches: number) {
    if (!device.features.has('timestamp-query')) throw new Error("GPU profile: the device has no 'timestamp-query' feature");
    const count = Math.max(2, 2 * maxDispatches);
    this.querySet = device.createQuerySet({ type: 'timestamp', count, label: 'step-timestamps' });
    this.resolved = device.createBuffer({ label: 'step-timestamps', size: 8 * count, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
    this.read = device.createBuffer({ label: 'step-timestamps-readback', size: 8 * count, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }

  /** Records the resolve of the used queries and their copy to the readback buffer. */
  resolve(enc: GPUCommandEncoder): void {
    const used = 2 * this.names.length;
    if (used === 0) return;
    enc.resolveQuerySet(this.querySet, 0, used, this.resolved, 0);
    enc.copyBufferToBuffer(this.resolved, 0, this.read, 0, 8 * used);
  }

  /** After the step's submission: adds each dispatch's GPU time (end − start of its pass) to `times`, then frees everything. */
  async collect(times: KernelTimes): Promise<void> {
    try {
      const used = 2 * this.names.length;
      if (used > 0) {
        await this.read.mapAsync(GPUMapMode.READ);
        const ns = new BigUint64Array(this.read.getMappedRange(), 0, used);
        this.names.forEach((name, i) => times.add(name, Number(ns[2 * i + 1] - ns[2 * i]) / 1e6));
        this.read.unmap();
      }
      times.steps++;
    } finally {
      this.destroy();
    }
  }

  destroy(): void {
    this.querySet.destroy();
    this.resolved.destroy();
    this.read.destroy();
  }
}


/** Queries per query set (WebGPU's largest) and the alignment of a resolve's destination in queries (256 bytes). */
const BANK_QUERIES = 4096;
const RESOLVE_ALIGN = 32;

/** One query set of a profile, with its resolve and readback buffers; names[k] names the dispatch of queries 2k, 2k+1. */
interface Bank {
  set: GPUQuerySet;
  resolved: GPUBuffer;
  read: GPUBuffer;
  names: (string | undefined)[];
  /** The next free query. */
  next: number;
}

let profiling = false;

/**
 * Runs fn with every compute dispatch encoded on the webgpu device in a compute pass of its own
 * with timestamp writes, and adds each one's GPU time to `times` under its kernel's name and grid
 * ('matMulPacked 64×32×1'; times.steps counts the profiles). The passes are split, not the work:
 * results are the same, the time is the GPU's (pass boundaries add a little). Profiles do not nest,
 * and the step being profiled must not time itself (an executor step with times). Everything the
 * profile makes is freed when it returns or throws.
 */
export async function profileGpu<T>(fn: () => T | Promise<T>, times: KernelTimes): Promise<T> {
  const b = tfjsBackend('profileGpu');
  const device = b.device;
  if (!device.features.has('timestamp-query')) throw new Error("GPU profile: the device has no 'timestamp-query' feature");
  if (profiling) throw new Error('profileGpu: a profile is already running (profiles do not nest)');
  flushTfjs();
  const banks: Bank[] = [];
  const newBank = (): Bank => {
    const bank: Bank = {
      set: device.createQuerySet({ type: 'timestamp', count: BANK_QUERIES, label: 'profile-timestamps' }),
      resolved: device.createBuffer({ label: 'profile-timestamps', size: 8 * BANK_QUERIES, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      read: device.createBuffer({ label: 'profile-timestamps-readback', size: 8 * BANK_QUERIES, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      names: [],
      next: 0,
    };
    banks.push(bank);
    return bank;
  };
  const create = device.createCommandEncoder;
  device.createCommandEncoder = (desc?: GPUCommandEncoderDescriptor) => timedEncoder(create.call(device, desc), b, newBank, () => banks.at(-1));
  profiling = true;
  let ok = false;
  try {
    const r = await fn();
    flushTfjs();
    ok = true;
    return r;
  } finally {
    profiling = false;
    if (!ok) {
      try {
        flushTfjs();
      } catch {
        // the profile's failure is the one reported
      }
    }
    device.createCommandEncoder = create;
    try {
      if (ok) await collect(device, banks, times);
    } finally {
      for (const bank of banks) (bank.set.destroy(), bank.resolved.destroy(), bank.read.destroy());
    }
  }
}

/** Reads every bank's timestamps and adds each dispatch's time (end − start) to times. */
async function collect(device: GPUDevice, banks: Bank[], times: KernelTimes): Promise<void> {
  const enc = device.createCommandEncoder();
  for (const bank of banks) if (bank.next > 0) enc.copyBufferToBuffer(bank.resolved, 0, bank.read, 0, 8 * bank.next);
  device.queue.submit([enc.finish()]);
  for (const bank of banks) {
    if (bank.next === 0) continue;
    await bank.read.mapAsync(GPUMapMode.READ, 0, 8 * bank.next);
    const ns = new BigUint64Array(bank.read.getMappedRange(0, 8 * bank.next));
    bank.names.forEach((name, k) => {
      if (name !== undefined) times.add(name, Math.max(0, Number(ns[2 * k + 1] - ns[2 * k])) / 1e6);
    });
    bank.read.unmap();
  }
  times.steps++;
}

/**
 * The encoder with its compute passes replaced by recorders that put each dispatch in a timed pass
 * of its own, and each run of queries it wrote resolved when it finishes.
 */
function timedEncoder(enc: GPUCommandEncoder, b: TfjsWebGPUBackend, newBank: () => Bank, lastBank: () => Bank | undefined): GPUCommandEncoder {
  const begin = enc.beginComputePass.bind(enc);
  const finish = enc.finish.bind(enc);
  const resolve = enc.resolveQuerySet.bind(enc);
  const runs: { bank: Bank; start: number; end: number }[] = []; // query runs this encoder wrote
  /** Two queries for a dispatch named `name`: after this encoder's last run when contiguous, else a new run at an aligned start. */
  const slot = (name: string): { bank: Bank; index: number } => {
    let bank = lastBank();
    const run = runs.at(-1);
    if (!bank || !run || run.bank !== bank || run.end !== bank.next || bank.next + 2 > BANK_QUERIES) {
      let start = bank ? Math.ceil(bank.next / RESOLVE_ALIGN) * RESOLVE_ALIGN : BANK_QUERIES;
      if (!bank || start + 2 > BANK_QUERIES) (bank = newBank()), (start = 0);
      bank.next = start;
      runs.push({ bank, start, end: start });
    }
    const index = bank.next;
    bank.names[index / 2] = name;
    bank.next += 2;
    runs.at(-1)!.end = bank.next;
    return { bank, index };
  };
  enc.beginComputePass = (desc?: GPUComputePassDescriptor) => {
    if (desc?.timestampWrites) throw new Error('profileGpu: a compute pass with timestamp writes of its own (is a profiled executor step inside the profile?)');
    return recorderPass((name) => {
      const { bank, index } = slot(name);
      return begin({ ...desc, timestampWrites: { querySet: bank.set, beginningOfPassWriteIndex: index, endOfPassWriteIndex: index + 1 } });
    }, (p) => pipelineName(b, p));
  };
  enc.finish = (desc?: GPUCommandBufferDescriptor) => {
    for (const r of runs) resolve(r.bank.set, r.start, r.end - r.start, r.bank.resolved, 8 * r.start);
    return finish(desc);
  };
  return enc;
}

/** A compute pass that keeps the pipeline and bind groups set on it and runs each dispatch in a pass of its own, from timedPass(name). */
function recorderPass(timedPass: (name: string) => GPUComputePassEncoder, nameOf: (p: GPUComputePipeline) => string): GPUComputePassEncoder {
  let pipeline: GPUComputePipeline | null = null;
  const groups = new Map<number, unknown[]>(); // index → setBindGroup's other arguments
  const dispatch = (grid: string, run: (p: GPUComputePassEncoder) => void) => {
    if (!pipeline) throw new Error('profileGpu: a dispatch without a pipeline');
    const p = timedPass(`${nameOf(pipeline)} ${grid}`);
    p.setPipeline(pipeline);
    for (const [i, args] of groups) (p.setBindGroup as (...a: unknown[]) => void)(i, ...args);
    run(p);
    p.end();
  };
  const pass = {
    label: '',
    setPipeline: (p: GPUComputePipeline) => void (pipeline = p),
    setBindGroup: (i: number, ...args: unknown[]) => void groups.set(i, args.map((a) => (ArrayBuffer.isView(a) || Array.isArray(a) ? (a as Uint32Array).slice() : a))),
    dispatchWorkgroups: (x: number, y = 1, z = 1) => dispatch(`${x}×${y}×${z}`, (p) => p.dispatchWorkgroups(x, y, z)),
    dispatchWorkgroupsIndirect: (buffer: GPUBuffer, offset: number) => dispatch('indirect', (p) => p.dispatchWorkgroupsIndirect(buffer, offset)),
    end: () => undefined,
    pushDebugGroup: () => undefined,
    popDebugGroup: () => undefined,
    insertDebugMarker: () => undefined,
  };
  return pass as unknown as GPUComputePassEncoder;
}

/** Pipeline → kernel name: tfjs's program key up to its workgroup size ('matMulPacked', 'binary_9_4'), else the pipeline's label (the kit's kernels: their name). */
const names = new WeakMap<GPUComputePipeline, string>();
function pipelineName(b: TfjsWebGPUBackend, p: GPUComputePipeline): string {
  let name = names.get(p);
  if (name === undefined) {
    for (const [key, v] of Object.entries(b.pipelineCache)) if (!(v instanceof Promise)) names.set(v, key.replace(/_\d+,\d+,\d+.*$/, ''));
    name = names.get(p) ?? (p.label || 'unlabelled');
    names.set(p, name);
  }
  return name;
}

/** Report groups for a profile: the `top` kernel names (the grid left out) by GPU time. */
export function kernelGroups(times: KernelTimes, top = 8): [string, RegExp][] {
  const byKernel = new Map<string, number>();
  for (const [name, e] of times.byName) {
    const k = name.slice(0, name.lastIndexOf(' '));
    byKernel.set(k, (byKernel.get(k) ?? 0) + e.ms);
  }
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return [...byKernel].sort((a, b) => b[1] - a[1]).slice(0, top).map(([k]) => [k, new RegExp(`^${escape(k)} `)]);
}
