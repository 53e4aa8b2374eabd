// Sustained clocks and GPU-side brackets for short timed runs on webgpu (timeRecorded,
// timeDeviceCopy). NVIDIA's power management drops the SM clock to a few hundred MHz when the GPU
// idles between short bursts: on the H100 a kernel bench ran at 345–585 MHz, against 1,980 MHz
// under load (nvidia-smi's clock log at 624d085), so a 2 ms batch timed after a host pause ran at
// whatever clock the pause had left, and the same kernel moved by 1.7× between runs. A timed run
// therefore keeps the GPU busy up to its work: a register-only kernel (chains of FMAs, one store
// that never happens, no memory traffic) is submitted for `holdMs` before the host records the
// work, and timestamps taken at the end of small marker passes, recorded into the work's own
// command encoder before and after it, bracket the work on the GPU: the host's submit and
// completion latencies stay outside. A gap between the hold's end and the opening marker (the
// recording outlasted the hold) is returned, so that the caller lengthens the next hold.
// Owned here for the process's lifetime (a few KB of buffers per device), like tfjs's pipelines.

const ITERS_START = 256; // FMA pairs per invocation in the first calibration run
const WORKGROUPS = 4096; // × 256 invocations: enough to fill every SM many times over
const MARKS = 3; // timestamps: end of the hold, end of the opening marker, end of the closing marker

const CODE = /* wgsl */ `
@group(0) @binding(0) var<storage, read_write> sink: array<f32>;
@group(0) @binding(1) var<uniform> iters: vec4<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  var a = f32(g.x & 1023u) * 1e-6;
  var b = 1.0;
  for (var i = 0u; i < iters.x; i++) {
    a = fma(a, 0.9999, 1e-7);
    b = fma(b, 0.9999, a);
  }
  if (b == -1.0) { sink[g.x & 255u] = a; } // never true: keeps the chain alive
}`;

export class ClockHold {
  private readonly pipeline: GPUComputePipeline;
  private readonly sink: GPUBuffer;
  private readonly holdIters: GPUBuffer;
  private readonly markIters: GPUBuffer;
  private readonly holdGroup: GPUBindGroup;
  private readonly markGroup: GPUBindGroup;
  private readonly querySet: GPUQuerySet;
  private readonly resolved: GPUBuffer;
  private readonly read: GPUBuffer;
  private itersPerMs = 0;

  private constructor(private readonly device: GPUDevice) {
    const module = device.createShaderModule({ code: CODE, label: 'clock-hold' });
    this.pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: 'clock-hold' });
    this.sink = device.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE, label: 'clock-hold-sink' });
    this.holdIters = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'clock-hold-iters' });
    this.markIters = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: 'clock-mark-iters' });
    device.queue.writeBuffer(this.markIters, 0, new Uint32Array([0, 0, 0, 0]));
    const group = (iters: GPUBuffer) =>
      device.createBindGroup({ layout: this.pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: this.sink } }, { binding: 1, resource: { buffer: iters } }] });
    this.holdGroup = group(this.holdIters);
    this.markGroup = group(this.markIters);
    this.querySet = device.createQuerySet({ type: 'timestamp', count: MARKS, label: 'clock-hold' });
    this.resolved = device.createBuffer({ size: 8 * MARKS, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC, label: 'clock-hold-stamps' });
    this.read = device.createBuffer({ size: 8 * MARKS, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST, label: 'clock-hold-readback' });
  }

  private static held = new WeakMap<GPUDevice, ClockHold>();

  /** The device's hold, calibrated on first use; null where the device has no timestamp queries. */
  static async for(device: GPUDevice): Promise<ClockHold | null> {
    if (!device.features.has('timestamp-query')) return null;
    let h = ClockHold.held.get(device);
    if (!h) {
      h = new ClockHold(device);
      await h.calibrate();
      ClockHold.held.set(device, h);
    }
    return h;
  }

  /** One pass into `enc`: the hold (iters FMA pairs, WORKGROUPS groups) or a marker (one group, no loop), its end stamped at `mark`. */
  private pass(enc: GPUCommandEncoder, hold: boolean, mark: number | null): void {
    const pass = enc.beginComputePass(mark === null ? {} : { timestampWrites: { querySet: this.querySet, endOfPassWriteIndex: mark } });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, hold ? this.holdGroup : this.markGroup);
    pass.dispatchWorkgroups(hold ? WORKGROUPS : 1);
    pass.end();
  }

  /** The hold alone, submitted now, its end stamped at `mark`. */
  private submitHold(mark: number | null): void {
    const enc = this.device.createCommandEncoder();
    this.pass(enc, true, mark);
    this.device.queue.submit([enc.finish()]);
  }

  /** Wall time of one hold of `iters`, submitted alone (the clocks ramp up over the calibration's runs). */
  private async timeIters(iters: number): Promise<number> {
    this.device.queue.writeBuffer(this.holdIters, 0, new Uint32Array([iters, 0, 0, 0]));
    await this.device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    this.submitHold(null);
    await this.device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  }

  /** Iterations per ms: doubled until one hold takes ≥ 10 ms, then measured twice more at that length. */
  private async calibrate(): Promise<void> {
    let iters = ITERS_START;
    let ms = await this.timeIters(iters);
    while (ms < 10 && iters < 2 ** 30) ms = await this.timeIters((iters *= 2));
    for (let i = 0; i < 2; i++) ms = await this.timeIters(iters);
    this.itersPerMs = iters / ms;
  }

  /** Submits about `ms` of hold, then record the timed work into one encoder between open() and close(). */
  hold(ms: number): void {
    this.device.queue.writeBuffer(this.holdIters, 0, new Uint32Array([Math.max(1, Math.round(ms * this.itersPerMs)), 0, 0, 0]));
    this.submitHold(0);
  }

  /** Records the opening marker into `enc`, before the timed work. */
  open(enc: GPUCommandEncoder): void {
    this.pass(enc, false, 1);
  }

  /** Records the closing marker into `enc`, after the timed work, and the copy-out of the three stamps; submit `enc`, then read(). */
  close(enc: GPUCommandEncoder): void {
    this.pass(enc, false, 2);
    enc.resolveQuerySet(this.querySet, 0, MARKS, this.resolved, 0);
    enc.copyBufferToBuffer(this.resolved, 0, this.read, 0, 8 * MARKS);
  }

  /** Once the work is submitted: its GPU span between the markers (ms), and the idle gap between the hold's end and the opening marker (ms). */
  async stamps(): Promise<{ ms: number; gapMs: number }> {
    await this.read.mapAsync(GPUMapMode.READ);
    const [held, opened, closed] = Array.from(new BigUint64Array(this.read.getMappedRange().slice(0)), Number);
    this.read.unmap();
    return { ms: (closed - opened) / 1e6, gapMs: Math.max(0, opened - held) / 1e6 };
  }
}
