// Fused causal attention (lib/kernels/attention.ts): launch plans everywhere; on a WebGPU adapter
// (lavapipe here, none in CI) every small registry case against the plain ops, poisoned outputs.
import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';
import { ATTENTION_TILES, attentionTilesFor, causalMask, fusedAttention, planAttention } from '../lib/kernels/attention';
import { attentionChecks, attentionReference } from '../lib/kernels/attention-cases';
import { kernelAttention, withKernels } from '../lib/kernels';
import { maxRelError } from '../lib/kernels/cases';
import { itPassesChecks, TEST_SEED, webgpuAdapterReason } from './kernels-helpers';

describe('attention plan (CPU side)', () => {
  const t = ATTENTION_TILES.q16kv32;
  it('prefill with many row blocks runs unsplit', () => {
    const p = planAttention(1, 32, 8, 1024, 1024, 64, t);
    expect(p).toMatchObject({ rows: 4096, blockQ: 16, rowBlocks: 256, splits: 1, workgroups: [256, 8, 1] });
  });
  it('decode splits the keys until the GPU is busy, and shrinks blockQ to the rows it has', () => {
    const p = planAttention(1, 32, 8, 1, 2048, 64, t);
    expect(p.blockQ).toBe(4); // rep·T = 4 rows per KV head
    expect(p.splits * p.tilesPerSplit).toBeGreaterThanOrEqual(2048 / 32);
    expect(p.workgroups).toEqual([1, 8, p.splits]);
    expect(p.splits).toBe(32); // ceil(264 / 8) = 33 ranges wanted: 2 tiles each covers the 64 tiles in 32
  });
  it("'auto' prefers r32kv32 for prefill at head dims that are multiples of 32, then q32kv32 at hd 128, the default tiles last and for decode", () => {
    expect(attentionTilesFor(128, 2048)).toEqual(['r32kv32', 'q32kv32', 'q16kv32']);
    expect(attentionTilesFor(64, 2048)).toEqual(['r32kv32', 'q16kv32']);
    expect(attentionTilesFor(48, 2048)).toEqual(['q16kv32']);
    expect(attentionTilesFor(128, 1)).toEqual(['q16kv32']);
  });
  it('needs at most 32 KiB of workgroup memory at hd 128 with the default tiles', () => {
    expect(planAttention(1, 32, 8, 2048, 2048, 128, t).sharedBytes).toBeLessThanOrEqual(32768);
  });
});

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('fused attention on webgpu', () => {
  itPassesChecks(attentionChecks(TEST_SEED));
  it("policy 'auto' at hd 128 runs a tiling the device can (r32kv32, q32kv32 or, past their workgroup memory, q16kv32) and equals the plain ops", async () => {
    const [B, H, T, hd] = [1, 2, 40, 128];
    const q = tf.randomNormal([B, H, T, hd], 0, 1, 'float32', 1) as tf.Tensor4D;
    const k = tf.randomNormal([B, H, T, hd], 0, 1, 'float32', 2) as tf.Tensor4D;
    const v = tf.randomNormal([B, H, T, hd], 0, 1, 'float32', 3) as tf.Tensor4D;
    const got = await withKernels({ mode: 'auto', attention: 'auto' }, () => kernelAttention(q, k, v, 0));
    expect(got).not.toBeNull();
    const mask = causalMask(T, 0)!;
    const want = attentionReference(q, k, v, mask);
    expect(await maxRelError(got!, want)).toBeLessThan(1e-5);
    tf.dispose([q, k, v, mask, got!, want]);
  });
  it('names inconsistent cache lengths', () => {
    const q = tf.zeros([1, 2, 3, 8]) as tf.Tensor4D;
    const k = tf.zeros([1, 1, 5, 8]) as tf.Tensor4D;
    expect(() => fusedAttention(q, k, k, 1)).toThrow(/k has 5 positions, expected pastLength 1 \+ T 3/);
    tf.dispose([q, k]);
  });
});
