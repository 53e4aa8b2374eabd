// The clock hold of the GPU benches (lib/runtime/clock-hold.ts): its timestamps bracket exactly the
// work submitted between open() and close(), and report the GPU's idle gap after the hold. Skips
// without an adapter or without timestamp queries (the benches then time from the submit).
import { describe, expect, it } from 'vitest';
import { webgpuDevice } from '../lib/runtime';
import { ClockHold } from '../lib/runtime/clock-hold';
import { webgpuAdapterReason } from './kernels-helpers';

const adapter = await webgpuAdapterReason();
const device = adapter === null ? webgpuDevice() : null;
const reason = adapter ?? (device && !device.features.has('timestamp-query') ? "the adapter has no 'timestamp-query'" : null);

/** Submits `copies` copies of `bytes` between two buffers (its own command buffer); returns the buffers' release. */
function submitCopies(d: GPUDevice, bytes: number, copies: number): () => void {
  const usage = GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const [a, b] = [d.createBuffer({ size: bytes, usage }), d.createBuffer({ size: bytes, usage })];
  const enc = d.createCommandEncoder();
  for (let i = 0; i < copies; i++) enc.copyBufferToBuffer(i % 2 ? b : a, 0, i % 2 ? a : b, 0, bytes);
  d.queue.submit([enc.finish()]);
  return () => [a, b].forEach((x) => x.destroy());
}

describe.skipIf(reason !== null)('clock hold (webgpu)', () => {
  it('times the work between open and close, not the hold before it', async () => {
    const d = device!;
    const hold = (await ClockHold.for(d))!;
    expect(await ClockHold.for(d)).toBe(hold); // one per device, calibrated once
    // No work between the markers: a span of a few µs, whatever the hold was.
    hold.hold(30);
    hold.open();
    const empty = await hold.close();
    // 8 copies of 32 MiB between the markers: a span of its own, and from the hold's end at least as long.
    hold.hold(30);
    hold.open();
    const release = submitCopies(d, 32 * 2 ** 20, 8);
    const work = await hold.close();
    release();
    expect(work.ms).toBeGreaterThan(0);
    expect(work.ms).toBeGreaterThan(10 * empty.ms);
    expect(work.fromHoldMs).toBeGreaterThanOrEqual(work.ms);
    expect(work.gapMs).toBeGreaterThanOrEqual(0);
  });

  it('reports the GPU idling between the hold and the opening marker', async () => {
    const hold = (await ClockHold.for(device!))!;
    hold.hold(1);
    await device!.queue.onSubmittedWorkDone(); // the hold is over before the marker is submitted
    await new Promise((r) => setTimeout(r, 20));
    hold.open();
    const idle = await hold.close();
    expect(idle.gapMs).toBeGreaterThan(5);
  });
});
