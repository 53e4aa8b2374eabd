// The clock hold of the GPU benches (lib/runtime/clock-hold.ts): its markers bracket exactly the
// work recorded between them, not the hold before it nor the host's waits, and it reports the GPU
// idling between the hold and the work. Skips without an adapter or without timestamp queries
// (the benches then time from the submit).
import { describe, expect, it } from 'vitest';
import { timeEncoded, webgpuAdapterInfo, webgpuDevice } from '../lib/runtime';
import { ClockHold } from '../lib/runtime/clock-hold';
import { webgpuAdapterReason } from './kernels-helpers';

const adapter = await webgpuAdapterReason();
const device = adapter === null ? webgpuDevice() : null;
const reason = adapter ?? (device && !device.features.has('timestamp-query') ? "the adapter has no 'timestamp-query'" : null);

/** One bracketed run: `work` records into the markers' encoder; `beforeSubmit` runs between the hold and the submit. */
async function bracket(hold: ClockHold, holdMs: number, work: (enc: GPUCommandEncoder) => void, beforeSubmit = async () => {}) {
  const d = device!;
  hold.hold(holdMs);
  await beforeSubmit();
  const enc = d.createCommandEncoder();
  hold.open(enc);
  work(enc);
  hold.close(enc);
  d.queue.submit([enc.finish()]);
  return hold.stamps();
}

describe.skipIf(reason !== null)('clock hold (webgpu)', () => {
  it('times the work between the markers, not the hold before it', async () => {
    const d = device!;
    const hold = (await ClockHold.for(d))!;
    expect(await ClockHold.for(d)).toBe(hold); // one per device, calibrated once
    // Nothing between the markers: far shorter than the 100 ms hold before them (a few µs on a GPU;
    // bounds loose enough for a CPU adapter on a busy machine).
    const empty = await bracket(hold, 100, () => {});
    const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const [a, b] = [d.createBuffer({ size: 32 * 2 ** 20, usage }), d.createBuffer({ size: 32 * 2 ** 20, usage })];
    const work = await bracket(hold, 100, (enc) => {
      for (let i = 0; i < 8; i++) enc.copyBufferToBuffer(i % 2 ? b : a, 0, i % 2 ? a : b, 0, 32 * 2 ** 20);
    });
    [a, b].forEach((x) => x.destroy());
    expect(empty.ms).toBeLessThan(50);
    expect(work.ms).toBeGreaterThan(empty.ms);
    expect(work.gapMs).toBeGreaterThanOrEqual(0);
  });

  it('reports the GPU idling between the hold and the opening marker', async () => {
    const hold = (await ClockHold.for(device!))!;
    const idle = await bracket(hold, 1, () => {}, async () => {
      await device!.queue.onSubmittedWorkDone(); // the hold is over before the markers are submitted
      await new Promise((r) => setTimeout(r, 60));
    });
    expect(idle.gapMs).toBeGreaterThan(30);
    expect(idle.ms).toBeLessThan(30); // the idle time is not the work's
  });
});

describe.skipIf(adapter !== null)('timeEncoded (webgpu)', () => {
  it('records the work once, submits it, and says whether a clock hold timed it', async () => {
    const d = webgpuDevice()!;
    const src = d.createBuffer({ size: 16, usage: GPUBufferUsage.COPY_SRC, mappedAtCreation: true });
    new Float32Array(src.getMappedRange()).set([1, 2, 3, 4]);
    src.unmap();
    const read = d.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    let records = 0;
    const t = await timeEncoded(d, (enc) => {
      records++;
      enc.copyBufferToBuffer(src, 0, read, 0, 16);
    }, 4);
    await read.mapAsync(GPUMapMode.READ);
    expect(Array.from(new Float32Array(read.getMappedRange().slice(0)))).toEqual([1, 2, 3, 4]);
    read.unmap();
    [src, read].forEach((b) => b.destroy());
    expect(records).toBe(1);
    expect(t.held).toBe(!webgpuAdapterInfo()!.isFallbackAdapter && d.features.has('timestamp-query'));
    expect(t.ms).toBeGreaterThanOrEqual(0);
  });
});
