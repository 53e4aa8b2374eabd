// The kernel layer (lib/kernels/gpu.ts) on the webgpu backend: ordering with tfjs's own queued
// work, uniform params, enable directives, output ownership (no leaks). Skips without an adapter.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { countInt32Mismatches, pickRows } from '../lib/kernels/cases';
import { f32, gpuBuffer, hasSubgroups, paramsStruct, runKernel, u32 } from '../lib/kernels/gpu';
import { webgpuAdapterReason } from './kernels-helpers';

const reason = await webgpuAdapterReason();

const SCALE = (p: string) => `
${p}
${paramsStruct({ n: u32(0), s: f32(0) })}
@group(0) @binding(0) var<storage, read_write> y: array<f32>;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3u) {
  if (g.x < params.n) { y[g.x] = x[g.x] * params.s; }
}`;

describe.skipIf(reason !== null)('kernel layer on webgpu', () => {
  it('compares and picks int32 values past 2^24 exactly (tfjs-webgpu rounds them through f32)', async () => {
    const before = tf.memory().numTensors;
    const n = 65536; // large enough that tfjs runs its ops on the GPU, not forwarded to the CPU
    const a = tf.tensor2d(Int32Array.from({ length: n }, (_, i) => 67108865 + 2 * i), [256, 256], 'int32');
    const b = tf.tensor2d(Int32Array.from({ length: n }, (_, i) => 67108864 + 2 * i + (i % 3 === 0 ? 1 : 0)), [256, 256], 'int32');
    gpuBuffer(a);
    gpuBuffer(b);
    const want = Array.from({ length: n }, (_, i) => i).filter((i) => i % 3 !== 0).length;
    expect(await countInt32Mismatches(a, b)).toBe(want);
    expect(await countInt32Mismatches(a, a)).toBe(0);
    const rows = pickRows(a, [255, 1]);
    expect([...((await rows.data()) as Int32Array).subarray(0, 3)]).toEqual([67108865 + 2 * 255 * 256, 67108865 + 2 * 255 * 256 + 2, 67108865 + 2 * 255 * 256 + 4]);
    expect(((await rows.data()) as Int32Array)[256]).toBe(67108865 + 2 * 256);
    tf.dispose([a, b, rows]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('runs after tfjs work it depends on and before tfjs work that reads it, without leaks', async () => {
    const before = tf.memory().numTensors;
    const n = 1000;
    const out = tf.tidy(() => {
      const x = tf.add(tf.range(0, n), 1); // produced by tfjs in the same pass
      const [y] = runKernel({ name: 'scale', code: SCALE(''), inputs: [x], outputs: [{ shape: [n], dtype: 'float32' }], params: { n: u32(n), s: f32(3) }, workgroups: [Math.ceil(n / 64), 1, 1] });
      return tf.sub(y, tf.mul(x, 3)); // consumed by tfjs: all zeros
    });
    expect(Math.max(...(await out.data()).map(Math.abs))).toBe(0);
    out.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('accepts an enable directive when the device has subgroups', async () => {
    if (!hasSubgroups()) return;
    const x = tf.ones([10]);
    const [y] = runKernel({ name: 'scale-sg', code: SCALE('enable subgroups;'), inputs: [x], outputs: [{ shape: [10], dtype: 'float32' }], params: { n: u32(10), s: f32(-2) }, workgroups: [1, 1, 1] });
    expect([...(await y.data())]).toEqual(new Array(10).fill(-2));
    expect(gpuBuffer(y)).toBeInstanceOf(GPUBuffer);
    tf.dispose([x, y]);
  });

  it('rejects bad workgroup counts naming the kernel', () => {
    const x = tf.ones([10]);
    expect(() => runKernel({ name: 'scale', code: SCALE(''), inputs: [x], outputs: [{ shape: [10], dtype: 'float32' }], params: { n: u32(10), s: f32(1) }, workgroups: [1.5, 1, 1] })).toThrow(/kernel 'scale': workgroup count 1.5/);
    x.dispose();
  });
});

describe('kernel layer off webgpu', () => {
  it('names the backend it needs', async () => {
    const prev = tf.getBackend();
    await tf.setBackend('cpu');
    expect(() => runKernel({ name: 'k', code: '', inputs: [], outputs: [], workgroups: [1, 1, 1] })).toThrow(/kernel 'k' needs the webgpu backend \(active: 'cpu'\)/);
    if (prev) await tf.setBackend(prev);
  });
});
