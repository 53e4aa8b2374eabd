// The fused attention kernel's correctness checks and benchmarks against the plain ops
// (lib/kernels/suites.ts registers them); kept out of attention.ts so that the forward pass does not
// load them.
import * as tf from '@tensorflow/tfjs';
import { maxTensorElements } from '../runtime/backend';
import { seededNormal } from '../runtime/bench';
import { ATTENTION_DEFAULTS, ATTENTION_TILES, attentionPlain, attentionTilesFor, causalMask, fusedAttention, type AttentionTileName, type AttentionTiles } from './attention';
import { attentionOnGemm } from './attention-grad';
import { caseSeed, maxRelError, maxRelErrorOf, runPoisoned, weightedSumAndGrads, type BenchSetup, type CheckResult, type KernelBench, type KernelCheck } from './cases';
import { GEMM_DEFAULTS, GEMM_TILES } from './gemm';

/**
 * attentionPlain as the reference of checks and benches: one KV head group at a time when the
 * scores [B·KV, rep·T, S] would exceed one storage binding (long prefills); same math per head.
 */
export function attentionReference(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor4D | null): tf.Tensor2D {
  const [B, H, T, hd] = q.shape;
  const [, KV, S] = k.shape;
  if (B * H * T * S <= maxTensorElements()) return attentionPlain(q, k, v, mask);
  const rep = H / KV;
  return tf.tidy(() => {
    const groups = Array.from({ length: KV }, (_, g) => {
      const qg = tf.slice(q, [0, g * rep, 0, 0], [B, rep, T, hd]) as tf.Tensor4D; // [B, rep, T, hd]
      const kg = tf.slice(k, [0, g, 0, 0], [B, 1, S, hd]) as tf.Tensor4D; // [B, 1, S, hd]
      const vg = tf.slice(v, [0, g, 0, 0], [B, 1, S, hd]) as tf.Tensor4D; // [B, 1, S, hd]
      return attentionPlain(qg, kg, vg, mask); // [B·T, rep·hd]: heads g·rep.. of every row
    });
    return tf.concat(groups, 1) as tf.Tensor2D; // [B·T, H·hd]
  });
}

/** Seeded q, k, v for checks and benches (k/v cover past + T positions). */
function attentionOperands(B: number, H: number, KV: number, T: number, past: number, hd: number, seed: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
  const S = past + T;
  return [
    tf.tensor4d(seededNormal(B * H * T * hd, seed), [B, H, T, hd]), // [B, H, T, hd]
    tf.tensor4d(seededNormal(B * KV * S * hd, seed + 1), [B, KV, S, hd]), // [B, KV, S, hd]
    tf.tensor4d(seededNormal(B * KV * S * hd, seed + 2), [B, KV, S, hd]), // [B, KV, S, hd]
  ];
}

type Shape = { B: number; H: number; KV: number; T: number; past: number; hd: number };
const describeShape = (s: Shape) => `B=${s.B} H=${s.H} KV=${s.KV} T=${s.T} past=${s.past} hd=${s.hd}`;

/** Correctness cases: GQA/MHA, odd T and hd, KV cache, decode with split keys, and the bench shapes. */
export function attentionChecks(seed: number): KernelCheck[] {
  const small: Shape[] = [
    { B: 1, H: 4, KV: 2, T: 5, past: 0, hd: 8 },
    { B: 2, H: 4, KV: 4, T: 33, past: 0, hd: 16 },
    { B: 1, H: 6, KV: 2, T: 1, past: 40, hd: 8 },
    { B: 1, H: 4, KV: 1, T: 7, past: 9, hd: 32 },
    { B: 2, H: 2, KV: 1, T: 70, past: 3, hd: 20 },
    { B: 1, H: 8, KV: 2, T: 1, past: 300, hd: 64 },
    { B: 2, H: 8, KV: 4, T: 544, past: 5, hd: 32 }, // ≥ 264 row blocks: no key split, many key tiles a block (the online rescaling)
  ];
  const big: Shape[] = [
    { B: 1, H: 32, KV: 8, T: 1024, past: 0, hd: 64 },
    { B: 1, H: 32, KV: 8, T: 2048, past: 0, hd: 128 },
    { B: 1, H: 32, KV: 8, T: 1, past: 2047, hd: 64 },
    { B: 1, H: 32, KV: 8, T: 1, past: 2047, hd: 128 },
    { B: 1, H: 32, KV: 8, T: 16, past: 1000, hd: 128 },
  ];
  const cases = [
    ...small.map((s) => ({ s, tiles: ATTENTION_DEFAULTS.tiles, small: true })),
    // every tiling on one odd shape (the register-blocked one at hd 32, its narrowest head)
    ...(Object.keys(ATTENTION_TILES) as AttentionTileName[]).map((tiles) => ({ s: (ATTENTION_TILES[tiles] as AttentionTiles).registers ? { ...small[4], hd: 32 } : small[4], tiles, small: true })),
    // the register-blocked kernel: fewer rows than its 32 (GQA), MHA over two row blocks, decode with split keys, cache
    ...[
      { B: 1, H: 4, KV: 2, T: 5, past: 0, hd: 32 },
      { B: 2, H: 4, KV: 4, T: 33, past: 0, hd: 64 },
      { B: 1, H: 8, KV: 2, T: 1, past: 300, hd: 64 },
      { B: 1, H: 4, KV: 1, T: 7, past: 9, hd: 32 },
      small[6],
    ].map((s) => ({ s, tiles: 'r32kv32' as const, small: true })),
    ...big.filter((s) => s.hd % 32 === 0 && s.T === 1).map((s) => ({ s, tiles: 'r32kv32' as const, small: false })), // decode (the executor's steps); prefill below
    { s: { B: 1, H: 4, KV: 2, T: 70, past: 3, hd: 64 }, tiles: 'q32kv32' as const, small: true }, // 'auto''s hd-128 tiling at the widest head lavapipe's workgroup memory fits
    ...big.map((s) => ({ s, tiles: ATTENTION_DEFAULTS.tiles, small: false })),
    // and the tilings the policy's 'auto' prefers at these shapes (prefill: r32kv32, and q32kv32 at hd 128)
    ...big.flatMap((s) => attentionTilesFor(s.hd, s.T).filter((tiles) => tiles !== ATTENTION_DEFAULTS.tiles).map((tiles) => ({ s, tiles, small: false }))),
  ];
  const fused = cases.map(({ s, tiles, small: isSmall }, i): KernelCheck => ({
    kernel: 'attention',
    name: `${describeShape(s)} tiles=${tiles}`,
    small: isSmall,
    async run(): Promise<CheckResult> {
      const [q, k, v] = attentionOperands(s.B, s.H, s.KV, s.T, s.past, s.hd, caseSeed(seed, 200 + 3 * i));
      const mask = causalMask(s.T, s.past);
      const want = attentionReference(q, k, v, mask);
      const { outputs, poisoned } = await runPoisoned([want.size], () => [fusedAttention(q, k, v, s.past, ATTENTION_TILES[tiles])]);
      try {
        return { metric: 'max_rel_err', error: await maxRelError(outputs[0], want), tolerance: 1e-5, poisoned };
      } finally {
        tf.dispose([q, k, v, want, ...outputs, ...(mask ? [mask] : [])]);
      }
    },
  }));
  return [...fused, ...gradChecks(seed)];
}

/**
 * attentionOnGemm's output and gradients (dq, dk, dv of Σ out·c for a seeded c) against
 * attentionPlain's: GQA with a KV cache, MHA, and a 7B head at T = 2048 (8 of its 32 heads). The error
 * is the largest of the four, Infinity unless every product ran on the GEMM.
 */
function gradChecks(seed: number): KernelCheck[] {
  const shapes: [Shape, boolean][] = [
    [{ B: 2, H: 4, KV: 2, T: 33, past: 5, hd: 16 }, true],
    [{ B: 1, H: 3, KV: 3, T: 70, past: 0, hd: 32 }, true],
    [{ B: 1, H: 8, KV: 8, T: 2048, past: 0, hd: 128 }, false],
  ];
  return shapes.map(([s, small], i) => ({
    kernel: 'attention',
    name: `gradients on the GEMM ${describeShape(s)} tiles=${GEMM_DEFAULTS.tiles}`,
    small,
    async run(): Promise<CheckResult> {
      const ops = attentionOperands(s.B, s.H, s.KV, s.T, s.past, s.hd, caseSeed(seed, 500 + 3 * i));
      const c = tf.tensor2d(seededNormal(s.B * s.T * s.H * s.hd, caseSeed(seed, 560 + i)), [s.B * s.T, s.H * s.hd]); // the loss's weights
      const mask = causalMask(s.T, s.past);
      let products = 0;
      const tiles = GEMM_TILES[GEMM_DEFAULTS.tiles];
      const want = weightedSumAndGrads((q, k, v) => attentionPlain(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, mask), ops, c);
      const got = weightedSumAndGrads((q, k, v) => attentionOnGemm(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D, s.past, () => (products++, tiles)), ops, c);
      try {
        const error = await maxRelErrorOf(got, want);
        const all = s.B * s.KV * 2 * 3; // per head group: two products, each with two backward
        return { metric: 'max_rel_err', error: products === all ? error : Infinity, tolerance: 1e-5, poisoned: null, note: `value, dq, dk, dv; ${products} of ${all} GEMM products` };
      } finally {
        tf.dispose([...ops, c, ...want, ...got, ...(mask ? [mask] : [])]);
      }
    },
  }));
}

/** Prefill T = 1024/2048 at hd 64/128 and decode over S = 2048, fused against the plain ops. */
export function attentionBenches(): KernelBench[] {
  const shapes: [Shape, boolean][] = [
    [{ B: 1, H: 32, KV: 8, T: 1024, past: 0, hd: 64 }, false],
    [{ B: 1, H: 32, KV: 8, T: 1024, past: 0, hd: 128 }, false],
    [{ B: 1, H: 32, KV: 8, T: 2048, past: 0, hd: 64 }, false],
    [{ B: 1, H: 32, KV: 8, T: 2048, past: 0, hd: 128 }, false],
    [{ B: 1, H: 32, KV: 8, T: 1, past: 2047, hd: 64 }, false],
    [{ B: 1, H: 32, KV: 8, T: 1, past: 2047, hd: 128 }, false],
    [{ B: 1, H: 4, KV: 2, T: 64, past: 0, hd: 16 }, true],
    [{ B: 1, H: 4, KV: 2, T: 1, past: 127, hd: 16 }, true],
  ];
  return shapes.map(([s, small]) => ({
    kernel: 'attention',
    name: `${s.T === 1 ? 'decode' : 'prefill'} ${describeShape(s)}`,
    small,
    // QKᵀ and PV over the visible keys: T·past + T(T+1)/2 (row, key) pairs, 2 FLOPs × hd each, twice.
    flops: 4 * s.B * s.H * s.hd * (s.T * s.past + (s.T * (s.T + 1)) / 2),
    variants: Object.keys(ATTENTION_TILES),
    setup(variant: string): BenchSetup {
      const tiles = ATTENTION_TILES[variant as AttentionTileName];
      if (!tiles) throw new Error(`attention: unknown tiles '${variant}' (choose from ${Object.keys(ATTENTION_TILES).join(', ')})`);
      const [q, k, v] = attentionOperands(s.B, s.H, s.KV, s.T, s.past, s.hd, 9);
      const mask = causalMask(s.T, s.past);
      return {
        kernel: () => fusedAttention(q, k, v, s.past, tiles),
        plain: () => attentionReference(q, k, v, mask), // the model's plain path (per KV group when the scores exceed one binding)
        dispose: () => tf.dispose([q, k, v, ...(mask ? [mask] : [])]),
      };
    },
  }));
}
