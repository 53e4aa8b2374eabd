// A WebGPU validation error must stop the process (Dawn reports it asynchronously and tfjs would
// otherwise return garbage), and batching must respect the device's largest buffer binding.
// tfjs-webgpu's pool of released buffers stays under its cap when shapes vary.
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
});
