// Tiled fp32 GEMM (lib/kernels/gemm.ts): tiling plans everywhere; on a WebGPU adapter (lavapipe
// here, none in CI) every small registry case against tfjs's matMul with poisoned outputs.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { GEMM_TILES, gemm, planGemm } from '../lib/kernels/gemm';
import { gemmChecks } from '../lib/kernels/gemm-cases';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';

describe('gemm plan (CPU side)', () => {
  it('covers non-multiple sizes with ceil workgroups and picks vec4 loads only when `in` allows', () => {
    const p = planGemm(130, 132, 65, GEMM_TILES['64x64']);
    expect(p).toEqual({ threads: 256, sharedBytes: (64 + 64) * 16 * 4, workgroups: [2, 3, 1], vec: 4 });
    expect(planGemm(37, 70, 129, GEMM_TILES['32x32']).vec).toBe(1);
  });
  it('rejects tiles that do not divide', () => {
    expect(() => planGemm(8, 8, 8, { tileRows: 64, tileCols: 64, tileK: 16, threadRows: 3, threadCols: 4 })).toThrow(/threadRows 3/);
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
