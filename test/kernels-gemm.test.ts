// Tiled fp32 GEMM (lib/kernels/gemm.ts): tiling plans everywhere; on a WebGPU adapter (lavapipe
// here, none in CI) every small registry case against tfjs's matMul with poisoned outputs.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { GEMM_TILES, gemm, planGemm } from '../lib/kernels/gemm';
import { gemmChecks } from '../lib/kernels/gemm-cases';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';

describe('gemm plan (CPU side)', () => {
  it('covers non-multiple sizes with ceil workgroups', () => {
    expect(planGemm(130, 132, 65, GEMM_TILES.medium)).toEqual({ threads: 256, sharedBytes: (64 + 64) * 16 * 4, workgroups: [2, 3, 1] });
    expect(planGemm(37, 70, 129, GEMM_TILES.tallV).workgroups).toEqual([3, 1, 1]);
  });
  it('rejects tiles that do not divide', () => {
    expect(() => planGemm(8, 8, 8, { BM: 64, BN: 64, BK: 16, TM: 3, TN: 4 })).toThrow(/TM 3/);
  });
});

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('gemm on webgpu', () => {
  itPassesChecks(gemmChecks(TEST_SEED));
  it('names mismatched shapes', () => {
    const x = tf.zeros([4, 8]) as tf.Tensor2D;
    const w = tf.zeros([3, 7]) as tf.Tensor2D;
    expect(() => gemm(x, w)).toThrow(/gemm: x is \[4, 8\] but W is \[3, 7\]/);
    tf.dispose([x, w]);
  });
});
