import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import {
  BackendError,
  checkLeaks,
  initRuntime,
  measurePeakMemory,
  parseBackend,
  TensorLeakError,
  tfjsFlags,
  timeRegion,
} from '../lib/runtime';

describe('runtime', () => {
  it('auto picks a hardware webgpu adapter, else wasm, and says why it skipped webgpu', async () => {
    const info = await initRuntime({ backend: 'auto' });
    expect(tf.getBackend()).toBe(info.backend);
    expect(['webgpu', 'wasm']).toContain(info.backend);
    if (info.backend === 'wasm') {
      // No GPU, or only a software adapter (Mesa's llvmpipe): never silently cpu, never llvmpipe.
      expect(info.skipped[0]).toMatchObject({ backend: 'webgpu' });
      expect(info.skipped[0].reason).toMatch(/backend 'webgpu' cannot start: (no GPU adapter|the adapter is a software rasterizer)/);
    }
    if (process.env.CI) expect(info.backend).toBe('wasm'); // CI machines have no GPU
  });

  it('a software adapter is skipped by auto but used when webgpu is asked for by name', async (ctx) => {
    const forced = await initRuntime({ backend: 'webgpu' }).catch(() => null);
    if (!forced) return ctx.skip();
    const software = /software|llvmpipe|swiftshader/i.test(`${forced.device} ${JSON.stringify(forced.details)}`);
    const auto = await initRuntime({ backend: 'auto' });
    expect(auto.backend).toBe(software ? 'wasm' : 'webgpu');
  });

  it('LLMCB_TFJS_FLAGS: typed values of registered flags, set when a backend starts; a bad entry names itself', async () => {
    await initRuntime({ backend: 'wasm' });
    expect(tfjsFlags('TOPK_K_CPU_HANDOFF_THRESHOLD=64, CHECK_COMPUTATION_FOR_ERRORS=true,KEEP_INTERMEDIATE_TENSORS=false')).toEqual([
      ['TOPK_K_CPU_HANDOFF_THRESHOLD', 64],
      ['CHECK_COMPUTATION_FOR_ERRORS', true],
      ['KEEP_INTERMEDIATE_TENSORS', false],
    ]);
    expect(() => tfjsFlags('NO_SUCH_FLAG=3')).toThrow(/'NO_SUCH_FLAG' is not a tfjs flag/);
    expect(() => tfjsFlags('DEBUG')).toThrow(/'DEBUG' is not NAME=VALUE/);
    const before = tf.env().get('TOPK_K_CPU_HANDOFF_THRESHOLD');
    process.env.LLMCB_TFJS_FLAGS = 'TOPK_K_CPU_HANDOFF_THRESHOLD=7';
    try {
      await initRuntime({ backend: 'cpu' }); // a backend started after the variable is set
      expect(tf.env().get('TOPK_K_CPU_HANDOFF_THRESHOLD')).toBe(7);
    } finally {
      delete process.env.LLMCB_TFJS_FLAGS;
      tf.env().set('TOPK_K_CPU_HANDOFF_THRESHOLD', before);
      await initRuntime({ backend: 'wasm' });
    }
  });

  it('starts wasm when asked and describes the device', async () => {
    const info = await initRuntime({ backend: 'wasm' });
    expect(info.backend).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    expect(info.device).toMatch(/\(wasm\)$/);
    expect(info.details).toHaveProperty('cpuModel');
    expect(info.skipped).toEqual([]);
  });

  it('forcing webgpu without a GPU adapter is an error naming the backend and the reason', async (ctx) => {
    const auto = await initRuntime({ backend: 'auto' });
    if (!/no GPU adapter/.test(auto.skipped[0]?.reason ?? '')) return ctx.skip(); // this machine has an adapter
    await expect(initRuntime({ backend: 'webgpu' })).rejects.toThrow(
      /backend 'webgpu' cannot start: no GPU adapter found/,
    );
    await expect(initRuntime({ backend: 'webgpu' })).rejects.toBeInstanceOf(BackendError);
  });

  it('rejects unknown backend names', () => {
    expect(() => parseBackend('cuda')).toThrow(/backend 'cuda' cannot start: unknown backend/);
  });

  it('the leak checker catches a deliberately leaked tensor and passes clean code', async () => {
    await initRuntime({ backend: 'wasm' });
    const leaked: tf.Tensor[] = [];
    await expect(
      checkLeaks('leaky', () => {
        leaked.push(tf.ones([4]));
      }),
    ).rejects.toThrow(TensorLeakError);
    leaked.forEach((t) => t.dispose());
    const kept = await checkLeaks(
      'clean',
      () => tf.tidy(() => tf.add(tf.ones([4]), tf.ones([4]))),
      (t) => [t],
    );
    expect(Array.from(kept.dataSync())).toEqual([2, 2, 2, 2]);
    kept.dispose();
  });

  it('measures peak memory of a region and times it', async () => {
    await initRuntime({ backend: 'wasm' });
    const before = tf.memory().numBytes;
    const { peak } = await measurePeakMemory((probe) => {
      const big = tf.zeros([1024, 1024]); // 4 MiB
      probe.sample();
      big.dispose();
    });
    expect(peak.peakTensorBytes - before).toBeGreaterThanOrEqual(4 * 1024 * 1024);
    expect(tf.memory().numBytes).toBe(before);
    const { ms, result } = await timeRegion(() => tf.tidy(() => tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).sum().dataSync()[0]));
    expect(result).toBe(64 * 64 * 64);
    expect(ms).toBeGreaterThan(0);
  });
});
