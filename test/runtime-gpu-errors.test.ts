// A WebGPU validation error must stop the process (Dawn reports it asynchronously and tfjs would
// otherwise return garbage), and batching must respect the device's largest buffer binding.
// tfjs-webgpu's pool of released buffers stays under its cap when shapes vary, and host values
// are uploaded by queue writes (no buffer created per upload) without racing queued work.
// Needs a WebGPU adapter (lavapipe or a GPU); skips with the reason elsewhere (CI has none).
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { tensorScorer } from '../lib/eval/model-scorer';
import { disposeModel } from '../lib/models/load';
import { randomModel } from '../lib/models/random';
import * as tf from '@tensorflow/tfjs';
import { maxTensorElements, setFreeBufferCap } from '../lib/runtime';
import { webgpuAdapterReason } from './kernels-helpers';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('WebGPU errors and limits', () => {
  it('an oversized binding ends the process with the error instead of a wrong value', async () => {
    const script = path.resolve('test/fixtures/scripts/gpu-overflow.ts');
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd() });
    const err = (await run.then(() => null, (e) => e)) as { code: number; stderr: string; stdout: string } | null;
    expect(err, 'the process should have failed').not.toBeNull();
    expect(err!.code).toBe(70);
    expect(err!.stderr).toMatch(/fatal WebGPU .*Error/);
    expect(err!.stdout).not.toMatch(/value/);
  });

  it('the tfjs scorer bounds logits and attention scores by the binding size', () => {
    const cap = maxTensorElements();
    expect(Number.isFinite(cap) && cap > 0).toBe(true);
    const model = randomModel({ model_type: 'llama', hidden_size: 16, intermediate_size: 32, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 2, vocab_size: 32, max_position_embeddings: 64 });
    try {
      const s = tensorScorer(model);
      expect(s.opts.maxLogitElements).toBeLessThanOrEqual(cap);
      expect(s.opts.maxAttentionElements).toBeLessThanOrEqual(cap);
    } finally {
      disposeModel(model);
    }
  });

  it('the pool of released buffers stays under its cap while shapes vary, and results stay right', async () => {
    const pool = (tf.backend() as unknown as { bufferManager: { numBytesAllocated: number; numBytesUsed: number } }).bufferManager;
    const cap = 4 * 2 ** 20;
    const old = setFreeBufferCap(cap);
    try {
      for (let n = 100_000; n < 400_000; n += 25_000) {
        // a distinct size each time: without the cap every one would stay pooled
        const y = tf.tidy(() => tf.sum(tf.mul(tf.ones([n]), 2)));
        expect((await y.data())[0]).toBe(2 * n);
        y.dispose();
        expect(pool.numBytesAllocated - pool.numBytesUsed).toBeLessThanOrEqual(cap);
      }
    } finally {
      setFreeBufferCap(old);
    }
  });

  it('past the cap the buffers pooled longest are destroyed first: one just released is reused, not allocated again', () => {
    type Pool = { acquireBuffer(size: number, usage: number): GPUBuffer; releaseBuffer(b: GPUBuffer): void; freeBuffers: Map<string, GPUBuffer[]> };
    const pool = (tf.backend() as unknown as { bufferManager: Pool }).bufferManager;
    const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
    const MiB = 2 ** 20;
    const old = setFreeBufferCap(4 * MiB);
    try {
      const a = pool.acquireBuffer(3 * MiB, usage);
      pool.releaseBuffer(a);
      const b = pool.acquireBuffer(2 * MiB, usage);
      pool.releaseBuffer(b); // 5 MiB pooled: a (the older) goes, b stays
      expect(pool.freeBuffers.get(`${3 * MiB}_${usage}`) ?? []).not.toContain(a);
      expect(pool.freeBuffers.get(`${2 * MiB}_${usage}`)).toContain(b);
      const again = pool.acquireBuffer(2 * MiB, usage);
      expect(again).toBe(b);
      pool.releaseBuffer(again);
    } finally {
      setFreeBufferCap(old);
    }
  });

  it('host values upload without a new buffer each, and many uploads queued before a submit keep their own values', async () => {
    const device = (tf.backend() as unknown as { device: GPUDevice }).device;
    const base = tf.fill([4096], 0.25); // above tfjs's CPU hand-off size, so the adds run on the GPU
    const round = (k: number) =>
      Array.from({ length: 60 }, (_, i) =>
        tf.tidy(() => {
          const ints = tf.tensor1d(Int32Array.from({ length: 4096 }, (_, j) => (j === 0 ? i : 0)), 'int32');
          const flags = tf.tensor1d(Array.from({ length: 4096 }, (_, j) => j === 1), 'bool');
          // + a scalar, + an int32 vector, + a bool-selected constant: three uploads per item
          return tf.sum(tf.add(tf.add(tf.add(base, tf.scalar(k * i)), tf.cast(ints, 'float32')), tf.where(flags, tf.fill([4096], 0.5), tf.zerosLike(base))));
        }),
      );
    const check = async (k: number, ys: tf.Tensor[]) => {
      const got = await Promise.all(ys.map(async (y) => (await y.data())[0]));
      ys.forEach((y) => y.dispose());
      expect(got).toEqual(got.map((_, i) => 1024 + 4096 * k * i + i + 0.5)); // exact in fp32
    };
    await check(1, round(1)); // warms the pool
    const create = device.createBuffer.bind(device);
    let created = 0; // upload staging buffers
    device.createBuffer = (d) => ((created += d.usage & GPUBufferUsage.MAP_WRITE ? 1 : 0), create(d));
    try {
      await check(2, round(2));
    } finally {
      device.createBuffer = create;
      base.dispose();
    }
    expect(created).toBe(0); // tfjs's own upload creates a staging buffer per upload: 180 here
  });
});
