// Correctness checks and benchmarks of the quantized kernels (w8a8.ts, wq-gemm.ts) for the
// registries of lib/kernels/suites.ts (scripts/check-kernels.ts, scripts/bench-kernels.ts, the
// vitest suites). References are plain: JS integer math for the INT8 accumulators and the
// activation codes, tfjs matMul on the fake-quantized operands for the linears.
import * as tf from '@tensorflow/tfjs';
import { mulberry32 } from '../rng';
import { seededNormal } from '../runtime/bench';
import { dequantizeMatrix, quantizeMatrix, roundHalfEven, type QuantizedMatrix } from '../quant/quantizer';
import { caseSeed, countInt32Mismatches, maxRelError, pickRows, runPoisoned, type BenchSetup, type CheckResult, type KernelBench, type KernelCheck } from './cases';
import { deviceLimits, gpuBuffer, hasSubgroups, subgroupSizes } from './gpu';
import { packI8Rows, packW8A8, packWeightOnly, weightOnlyFromRows, type PackedLinear, type PackedW8A8, type PackedWeightOnly } from './packed-linear';
import { INT8_AUTO, INT8_TILES, int8GemmDequant, tileSharedBytes, int8Matmul, quantizeActInt8, subgroupMatrixInt8Support, type Int8Options, type Int8Tile, type Int8TileName } from './w8a8';
import { dequantizeWeightOnly, GEMV_CODEGENS, WEIGHT_ONLY_DEFAULTS, weightOnlyLinear, type GemvCodegen, type GemvReduction } from './wq-gemm';

const f = Math.fround;

/** Seeded signed INT8 codes [rows, cols], with the extremes −128 and 127 in every row. */
export function randomI8(rows: number, cols: number, seed: number): Int8Array {
  const r = mulberry32(seed);
  const c = new Int8Array(rows * cols);
  for (let i = 0; i < c.length; i++) c[i] = Math.floor(r() * 256) - 128;
  for (let i = 0; i < rows; i++) {
    c[i * cols] = -128;
    c[i * cols + cols - 1] = 127;
  }
  return c;
}

/** JS reference: acc [M, N] = Σ_k a[m, k] · b[n, k] in exact integers. */
export function int8MatmulRef(a: Int8Array, b: Int8Array, M: number, N: number, K: number): Int32Array {
  const out = new Int32Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[m * K + k] * b[n * K + k];
      out[m * N + n] = s;
    }
  }
  return out;
}

/** JS reference of the per-token activation quantization (act.ts in fp32): codes [M, K] and scales [M]. */
export function quantizeActRef(x: Float32Array, M: number, K: number): { codes: Int8Array; scales: Float32Array } {
  const codes = new Int8Array(M * K);
  const scales = new Float32Array(M);
  for (let m = 0; m < M; m++) {
    let amax = 0;
    for (let k = 0; k < K; k++) amax = Math.max(amax, Math.abs(x[m * K + k]));
    const s = f(f(Math.max(amax, f(1e-5))) / 127);
    scales[m] = s;
    for (let k = 0; k < K; k++) codes[m * K + k] = Math.max(-128, Math.min(127, roundHalfEven(f(x[m * K + k] / s))));
  }
  return { codes, scales };
}

/** Packed codes int32 [rows, kWords] of signed codes [rows, cols]. */
function packedI8(c: Int8Array, rows: number, cols: number): tf.Tensor2D {
  const { words, kWords } = packI8Rows(c, 0, rows, cols);
  return tf.tensor2d(words, [rows, kWords], 'int32');
}

/** Unpacks int32 words [rows, kWords] back to signed codes [rows, cols]. */
export function unpackI8(words: Int32Array, rows: number, kWords: number, cols: number): Int8Array {
  const bytes = new Int8Array(words.buffer, words.byteOffset, rows * kWords * 4);
  const out = new Int8Array(rows * cols);
  for (let r = 0; r < rows; r++) out.set(bytes.subarray(r * kWords * 4, r * kWords * 4 + cols), r * cols);
  return out;
}

/** The tilings whose workgroup memory fits this device. */
function fittingTiles(): Int8TileName[] {
  const limit = deviceLimits()?.maxComputeWorkgroupStorageSize ?? 0;
  return (Object.keys(INT8_TILES) as Int8TileName[]).filter((t) => tileSharedBytes(INT8_TILES[t]) <= limit);
}

/** Emulated tilings that also take the pattern and launch-group checks in the small (vitest) set: double-buffered, two launch groups. */
const EMULATED_PATTERN_TILES: string[] = ['64x64-sg4-k32-db', '128x128-sg4-k32-db'];

/**
 * A tiling with the same per-subgroup tiles, K step, padding and staging but fewer subgroups, so
 * that its workgroup memory fits `limit` (the emulation of tilings too big for a CPU Vulkan's
 * 32 KiB: the generator's code paths for those options, on a smaller workgroup).
 */
function shrinkTile(t: Int8Tile, limit: number): Int8Tile | null {
  let s = { ...t };
  while (tileSharedBytes(s) > limit) {
    if (s.wm === 1 && s.wn === 1) return null;
    s = s.wm >= s.wn ? { ...s, wm: s.wm / 2 } : { ...s, wn: s.wn / 2 };
  }
  return s;
}

/**
 * The INT8 paths this device can run: dot4, each tiling emulated (shrunk to fewer subgroups where
 * its workgroup memory does not fit), and each tiling on subgroup matrices where supported.
 * `tile` is the INT8_TILES name the variant stands for.
 */
function int8Variants(): { label: string; opts: Int8Options; tile?: string }[] {
  const limit = deviceLimits()?.maxComputeWorkgroupStorageSize ?? 0;
  const v: { label: string; opts: Int8Options; tile?: string }[] = [{ label: 'dot4', opts: { path: 'dot4' } }];
  for (const tile of Object.keys(INT8_TILES) as Int8TileName[]) {
    const t: Int8Tile = INT8_TILES[tile];
    const s = shrinkTile(t, limit);
    if (!s) continue;
    const label = s === t || tileSharedBytes(t) <= limit ? `sm-emulated ${tile}` : `sm-emulated ${tile} shrunk to ${s.wm}x${s.wn} subgroups`;
    v.push({ label, opts: { path: 'sm-emulated', tile: tileSharedBytes(t) <= limit ? tile : s }, tile });
  }
  if (subgroupMatrixInt8Support().ok) {
    for (const tile of fittingTiles()) v.push({ label: `sm ${tile}`, opts: { path: 'subgroup-matrix', tile }, tile });
    v.push({ label: `sm ${INT8_AUTO.large} bool-syntax`, opts: { path: 'subgroup-matrix', tile: INT8_AUTO.large, syntax: 'bool' }, tile: INT8_AUTO.large });
    v.push({ label: 'sm auto', opts: { path: 'subgroup-matrix', tile: 'auto' }, tile: 'auto' });
  }
  return v;
}

/** Seeded W [N, K] quantized symmetric INT8 (per channel or per group), packed for the W8A8 kernels. */
function w8a8Weight(N: number, K: number, groupSize: number, seed: number): { q: QuantizedMatrix; p: PackedW8A8 } {
  const W = seededNormal(N * K, seed, 1 / Math.sqrt(K));
  const q = quantizeMatrix(W, N, K, { bits: 8, groupSize, sym: true, groupRemainder: 'partial' });
  return { q, p: packW8A8(q) };
}

/** Uploads tensors now, so that they cannot take the poisoned buffers meant for a kernel's outputs. */
function upload(...ts: (tf.Tensor | undefined)[]): void {
  for (const t of ts) if (t) gpuBuffer(t);
}

const int32Mismatches = (got: Int32Array, want: Int32Array) => got.reduce((n, v, i) => n + (v === want[i] ? 0 : 1), 0);

/**
 * Operand patterns that name the broken step when an INT8 GEMM is wrong: one 16×16×32 tile with
 * the left operand an identity (acc = bᵀ: the left load's layout), the right operand one-hot in the
 * upper K half (acc[m, n] = a[m, n + 16]: the right load's layout and K offset), non-negative codes
 * (signedness apart from layout), signed codes, three K steps (the K loop and its barriers) and
 * several result tiles (subgroup and workgroup placement, edges).
 */
function int8Patterns(seed: number): { name: string; M: number; K: number; N: number; a: Int8Array; b: Int8Array }[] {
  const gen = (rows: number, cols: number, salt: number, lo: number) => {
    const r = mulberry32(caseSeed(seed, salt));
    return Int8Array.from({ length: rows * cols }, () => lo + Math.floor(r() * (128 - lo)));
  };
  const identity = Int8Array.from({ length: 16 * 32 }, (_, i) => (Math.floor(i / 32) === i % 32 ? 1 : 0));
  const oneHot = Int8Array.from({ length: 16 * 32 }, (_, i) => (i % 32 === Math.floor(i / 32) + 16 ? 1 : 0));
  return [
    { name: 'tile identity-left', M: 16, K: 32, N: 16, a: identity, b: gen(16, 32, 1, -128) },
    { name: 'tile one-hot-right', M: 16, K: 32, N: 16, a: gen(16, 32, 2, -128), b: oneHot },
    { name: 'tile non-negative', M: 16, K: 32, N: 16, a: gen(16, 32, 3, 0), b: gen(16, 32, 4, 0) },
    { name: 'tile signed', M: 16, K: 32, N: 16, a: randomI8(16, 32, caseSeed(seed, 5)), b: randomI8(16, 32, caseSeed(seed, 6)) },
    { name: 'k-steps', M: 16, K: 96, N: 16, a: randomI8(16, 96, caseSeed(seed, 7)), b: randomI8(16, 96, caseSeed(seed, 8)) },
    { name: 'tiles', M: 48, K: 64, N: 80, a: randomI8(48, 64, caseSeed(seed, 9)), b: randomI8(80, 64, caseSeed(seed, 10)) },
  ];
}

/** One exact INT8 GEMM check of codes a [M, K] · b [N, K]ᵀ against JS integer math. */
function int8Check(name: string, small: boolean, M: number, K: number, N: number, a: Int8Array, b: Int8Array, opts: Int8Options): KernelCheck {
  return {
    kernel: 'int8-gemm',
    name,
    small,
    async run(): Promise<CheckResult> {
      const [ta, tb] = [packedI8(a, M, K), packedI8(b, N, K)];
      upload(ta, tb);
      const { outputs, poisoned } = await runPoisoned([M * N], () => [int8Matmul(ta, tb, opts)]);
      try {
        const got = (await outputs[0].data()) as Int32Array;
        return { metric: 'int32_mismatches', error: int32Mismatches(got, int8MatmulRef(a, b, M, N, K)), tolerance: 0, poisoned };
      } finally {
        tf.dispose([ta, tb, ...outputs]);
      }
    },
  };
}

/** Correctness cases of the W8A8 kernels (INT8 GEMM exact, activation codes, the fused linear). */
export function w8a8Checks(seed: number): KernelCheck[] {
  const checks: KernelCheck[] = [];
  // The patterns first, on dot4 (the reference kernel: CI runs it), on every subgroup-matrix
  // tiling (and the deprecated syntax) and on two emulated tilings (one double-buffered), so that
  // a wrong kernel names its broken step.
  const patternVariants = int8Variants().filter((v) => v.opts.path !== 'sm-emulated' || EMULATED_PATTERN_TILES.includes(v.tile!));
  for (const { label, opts } of patternVariants) {
    for (const p of int8Patterns(seed)) checks.push(int8Check(`${p.name} M=${p.M} K=${p.K} N=${p.N} ${label}`, true, p.M, p.K, p.N, p.a, p.b, opts));
  }
  // Odd shapes (edges in M, N and K, a partial last K step), then one with several launch groups
  // along M (the last one partial), three N tiles and seven K steps (both staging buffers reused).
  const odd: [number, number, number][] = [[37, 70, 129], [130, 96, 65], [1, 33, 17], [200, 1000, 300]];
  const launch: [number, number, number] = [1100, 200, 300];
  // Emulated tilings are slow on a CPU Vulkan: the vitest suites take every one on the first odd
  // shape and two on the launch-group shape.
  for (const { label, opts, tile } of int8Variants()) {
    const emulated = opts.path === 'sm-emulated';
    const shapes: [number, number, number][] = emulated ? [...odd.slice(0, 3), launch] : opts.syntax === 'bool' ? odd : [...odd, launch];
    for (const [M, K, N] of shapes) {
      const small = !emulated ? M * N * K < 1e8 : M === odd[0][0] || (M === launch[0] && EMULATED_PATTERN_TILES.includes(tile!));
      checks.push(int8Check(`M=${M} K=${K} N=${N} ${label} (int32 accumulators vs JS)`, small, M, K, N, randomI8(M, K, caseSeed(seed, M + K)), randomI8(N, K, caseSeed(seed, N + K + 1)), opts));
    }
  }
  // Large shapes: the subgroup-matrix kernel against the portable one (JS would take minutes).
  if (subgroupMatrixInt8Support().ok) {
    for (const [M, K, N] of [[1024, 4096, 4096], [333, 4096, 1000]] as [number, number, number][]) {
      for (const tile of fittingTiles()) {
        checks.push({
          kernel: 'int8-gemm',
          name: `M=${M} K=${K} N=${N} sm ${tile} vs dot4 (int32 accumulators)`,
          small: false,
          async run(): Promise<CheckResult> {
            const [ta, tb] = [packedI8(randomI8(M, K, caseSeed(seed, 5)), M, K), packedI8(randomI8(N, K, caseSeed(seed, 6)), N, K)];
            const want = int8Matmul(ta, tb, { path: 'dot4' });
            upload(ta, tb, want);
            const { outputs, poisoned } = await runPoisoned([M * N], () => [int8Matmul(ta, tb, { path: 'subgroup-matrix', tile })]);
            try {
              const error = int32Mismatches((await outputs[0].data()) as Int32Array, (await want.data()) as Int32Array);
              return { metric: 'int32_mismatches', error, tolerance: 0, poisoned };
            } finally {
              tf.dispose([ta, tb, want, ...outputs]);
            }
          },
        });
      }
    }
  }
  for (const [M, K] of [[7, 100], [64, 4096], [3, 5]] as [number, number][]) {
    checks.push({
      kernel: 'w8a8-act-quant',
      name: `M=${M} K=${K} (codes and scales vs JS, ties excused; zero padding codes)`,
      small: true,
      async run(): Promise<CheckResult> {
        const xs = seededNormal(M * K, caseSeed(seed, M * 31 + K), 2);
        const x = tf.tensor2d(xs, [M, K]);
        const kWords = Math.ceil(K / 16) * 4;
        upload(x);
        const { outputs, poisoned } = await runPoisoned([M * kWords, M], () => {
          const r = quantizeActInt8(x, kWords);
          return [r.codes, r.scales];
        });
        try {
          const words = (await outputs[0].data()) as Int32Array;
          const codes = unpackI8(words, M, kWords, K);
          const scales = (await outputs[1].data()) as Float32Array;
          const ref = quantizeActRef(xs, M, K);
          // Past K, each row is padded with zero codes up to kWords words.
          const padding = unpackI8(words, M, kWords, 4 * kWords).filter((c, i) => i % (4 * kWords) >= K && c !== 0).length;
          // A code may differ from JS only where x / s sits within a few ulp of a .5 tie (GPU division
          // is not correctly rounded); a scale may differ by 1 ulp for the same reason.
          let bad = padding;
          for (let m = 0; m < M; m++) {
            if (Math.abs(scales[m] - ref.scales[m]) > ref.scales[m] * 2 ** -22) bad++;
            for (let k = 0; k < K; k++) {
              const t = xs[m * K + k] / scales[m];
              const nearTie = Math.abs(Math.abs(t - Math.trunc(t)) - 0.5) < 1e-5;
              if (codes[m * K + k] !== ref.codes[m * K + k] && !nearTie) bad++;
            }
          }
          return { metric: 'code_or_scale_mismatches', error: bad, tolerance: 0, poisoned };
        } finally {
          tf.dispose([x, ...outputs]);
        }
      },
    });
  }
  const linearCases: { M: number; K: number; N: number; gs: number; bias: boolean }[] = [
    { M: 37, K: 70, N: 129, gs: -1, bias: true },
    { M: 130, K: 256, N: 65, gs: 32, bias: false },
    { M: 5, K: 200, N: 33, gs: 128, bias: true },
    { M: 1, K: 96, N: 17, gs: -1, bias: false },
  ];
  for (const { label, opts } of int8Variants()) {
    for (const [s, c] of linearCases.entries()) {
      if (c.gs !== -1 && opts.path !== 'dot4') continue; // per-group weights always take dot4
      checks.push({
        kernel: 'w8a8-linear',
        name: `M=${c.M} K=${c.K} N=${c.N} g=${c.gs}${c.bias ? ' bias' : ''} ${label} (vs matMul of the dequantized codes)`,
        small: opts.path !== 'sm-emulated' || (s === 0 && opts.tile === INT8_AUTO.large),
        run: () => checkW8A8Linear(c, opts, caseSeed(seed, 1000 + s)),
      });
    }
  }
  return checks;
}

/** GEMM + epilogue against tfjs: y = (codes·s_x) · W_fqᵀ + b on the kernel's own activation codes. */
async function checkW8A8Linear(c: { M: number; K: number; N: number; gs: number; bias: boolean }, opts: Int8Options, seed: number): Promise<CheckResult> {
  const x = tf.tensor2d(seededNormal(c.M * c.K, seed, 3), [c.M, c.K]);
  const { q, p } = w8a8Weight(c.N, c.K, c.gs, seed + 1);
  const b = c.bias ? tf.tensor1d(seededNormal(c.N, seed + 2)) : undefined;
  const { codes, scales } = quantizeActInt8(x, p.kWords);
  upload(codes, scales, p.codes, p.scales, b);
  const { outputs, poisoned } = await runPoisoned([c.M * c.N], () => [int8GemmDequant(codes, scales, p, b, opts)]);
  const xq = unpackI8((await codes.data()) as Int32Array, c.M, p.kWords, c.K);
  const want = tf.tidy(() => {
    const xfq = tf.mul(tf.tensor2d(Float32Array.from(xq), [c.M, c.K]), tf.reshape(scales, [c.M, 1])); // [M, K]
    const y = tf.matMul(xfq, tf.tensor2d(dequantizeMatrix(q), [c.N, c.K]), false, true); // [M, N]
    return b ? tf.add(y, b) : y;
  });
  try {
    return { metric: 'max_rel_err', error: await maxRelError(outputs[0], want), tolerance: 1e-5, poisoned };
  } finally {
    tf.dispose([x, p.codes, p.scales, codes, scales, want, ...outputs, ...(b ? [b] : [])]);
  }
}

type GemvVariant = { reduction: GemvReduction; rowsPerGroup: number; unroll: number; codegen: GemvCodegen; label: string };

/**
 * GEMV settings this device can run, as [rows per group, unroll] pairs per reduction: `subgroup`
 * where the subgroup size is fixed (else those pairs fall back to `workgroup`), `workgroup` always.
 * Labels are `<reduction>-r<rows>-u<unroll>`, with `-<codegen>` appended unless it is 'loop'.
 */
function gemvVariants(subgroupPairs: [number, number][], workgroupPairs: [number, number][], codegen: GemvCodegen = 'loop'): GemvVariant[] {
  const s = subgroupSizes();
  const sub = hasSubgroups() && s && s.min === s.max;
  const pairs: [GemvReduction, [number, number][]][] = sub ? [['subgroup', subgroupPairs], ['workgroup', workgroupPairs]] : [['workgroup', [...subgroupPairs, ...workgroupPairs]]];
  const seen = new Set<string>();
  return pairs.flatMap(([reduction, ps]) =>
    ps.map(([rowsPerGroup, unroll]) => ({ reduction, rowsPerGroup, unroll, codegen, label: `${reduction}-r${rowsPerGroup}-u${unroll}${codegen === 'loop' ? '' : `-${codegen}`}` })).filter((v) => !seen.has(v.label) && seen.add(v.label)),
  );
}

/**
 * The small checks' GEMV settings: rows per group 1, 2, 4 and unroll 1, 2, 4 on subgroups, 8 rows
 * with the workgroup reduction (8 rows × B 8: more sums than lanes), each codegen; 'unrolled' on
 * one chunk per lane (chunks past the row in a lane's pass), the default pair and the workgroup
 * one, 'unrolled-contiguous' with four chunks per lane (one scale per row and pass at g128 W4),
 * 'pipelined' on one, two and four chunks per lane (carried loads over one pass, several, ragged).
 */
const gemvCheckVariants = () => [
  ...gemvVariants([[1, 1], [2, 4], [4, 2]], [[8, 1]]),
  ...gemvVariants([[1, 1], [4, 2]], [[8, 1]], 'unrolled'),
  ...gemvVariants([[2, 4]], [], 'unrolled-contiguous'),
  ...gemvVariants([[1, 1], [4, 2]], [[8, 1]], 'words'),
  ...gemvVariants([[1, 1], [2, 4], [4, 2]], [[8, 1]], 'pipelined'),
];
/** The GEMV settings the benches sweep, each pair with each codegen. */
const GEMV_BENCH_PAIRS: { subgroup: [number, number][]; workgroup: [number, number][] } = { subgroup: [[1, 4], [2, 2], [2, 4], [4, 2], [4, 4], [8, 1], [8, 2]], workgroup: [[4, 2]] };
const gemvBenchVariants = () => GEMV_CODEGENS.flatMap((c) => gemvVariants(GEMV_BENCH_PAIRS.subgroup, GEMV_BENCH_PAIRS.workgroup, c));

/** Correctness cases of the weight-only kernels: GEMV (B ≤ 8), the dequantize+matMul path, and the dequantization itself. */
export function weightOnlyChecks(seed: number): KernelCheck[] {
  // Scale/zero steps: 'chunk' (group a multiple of a 16-byte chunk's codes), 'row' (per channel),
  // 'word' (g=8, 16 with W4; g=8 with W8); x read as vec4 (K % 4 = 0) or scalars; partial last
  // chunks, also in a lane's later pass (K = 1100); several row groups per workgroup (N = 2200).
  const cases: { bits: 4 | 8; gs: number; sym: boolean; B: number; N: number; K: number; small: boolean }[] = [
    { bits: 4, gs: 32, sym: false, B: 1, N: 19, K: 96, small: true },
    { bits: 4, gs: 64, sym: true, B: 3, N: 70, K: 200, small: true },
    { bits: 4, gs: 128, sym: false, B: 8, N: 33, K: 300, small: true },
    { bits: 4, gs: -1, sym: true, B: 1, N: 21, K: 100, small: true },
    { bits: 4, gs: 8, sym: false, B: 2, N: 50, K: 72, small: true },
    { bits: 4, gs: 16, sym: false, B: 1, N: 2200, K: 64, small: true },
    { bits: 4, gs: 128, sym: false, B: 1, N: 40, K: 1100, small: true }, // the partial last chunk in a lane's second pass (32 lanes)
    { bits: 8, gs: 32, sym: true, B: 2, N: 17, K: 130, small: true },
    { bits: 8, gs: 128, sym: false, B: 1, N: 40, K: 256, small: true },
    { bits: 8, gs: -1, sym: false, B: 5, N: 9, K: 37, small: true },
    { bits: 8, gs: 8, sym: false, B: 1, N: 30, K: 50, small: true },
    { bits: 4, gs: 128, sym: false, B: 16, N: 33, K: 256, small: true },
    { bits: 4, gs: 128, sym: false, B: 1, N: 4096, K: 4096, small: false },
    { bits: 4, gs: 128, sym: false, B: 1, N: 14336, K: 4096, small: false },
    { bits: 8, gs: -1, sym: true, B: 4, N: 4096, K: 14336, small: false },
  ];
  const defaults = gemvVariants([[WEIGHT_ONLY_DEFAULTS.rowsPerGroup, WEIGHT_ONLY_DEFAULTS.unroll]], [[WEIGHT_ONLY_DEFAULTS.rowsPerGroup, WEIGHT_ONLY_DEFAULTS.unroll]], WEIGHT_ONLY_DEFAULTS.codegen);
  const checks: KernelCheck[] = cases.flatMap((c, ci) => (c.small && c.B <= WEIGHT_ONLY_DEFAULTS.maxGemvBatch ? gemvCheckVariants() : defaults).map(({ reduction, rowsPerGroup, unroll, codegen, label }) => ({
    kernel: 'wq-gemm',
    name: `W${c.bits} g=${c.gs} ${c.sym ? 'sym' : 'asym'} B=${c.B} N=${c.N} K=${c.K} ${label} (vs matMul of dequantizeMatrix)`,
    small: c.small,
    async run(): Promise<CheckResult> {
      const cs = caseSeed(seed, 2000 + ci);
      const W = seededNormal(c.N * c.K, cs, 1 / Math.sqrt(c.K));
      const q = quantizeMatrix(W, c.N, c.K, { bits: c.bits, groupSize: c.gs, sym: c.sym, groupRemainder: 'partial' });
      const p = packWeightOnly(q);
      const x = tf.tensor2d(seededNormal(c.B * c.K, cs + 1), [c.B, c.K]);
      const b = tf.tensor1d(seededNormal(c.N, cs + 2));
      upload(x, b, p.qweight, p.scales, p.zeros);
      // Past the GEMV batch the output is matMul's then the bias add's: poison a buffer for each.
      const sizes = c.B > WEIGHT_ONLY_DEFAULTS.maxGemvBatch ? [c.B * c.N, c.B * c.N] : [c.B * c.N];
      const { outputs, poisoned } = await runPoisoned(sizes, () => [weightOnlyLinear(x, p, b, { reduction, rowsPerGroup, unroll, codegen })]);
      const want = tf.tidy(() => tf.add(tf.matMul(x, tf.tensor2d(dequantizeMatrix(q), [c.N, c.K]), false, true), b));
      try {
        return { metric: 'max_rel_err', error: await maxRelError(outputs[0], want), tolerance: 1e-5, poisoned };
      } finally {
        tf.dispose([x, b, want, p.qweight, p.scales, p.zeros, ...outputs]);
      }
    },
  })));
  checks.push({
    kernel: 'wq-dequant',
    name: 'W4 g=64 asym N=33 K=200 (bit-identical to dequantizeMatrix)',
    small: true,
    async run(): Promise<CheckResult> {
      const q = quantizeMatrix(seededNormal(33 * 200, caseSeed(seed, 3000)), 33, 200, { bits: 4, groupSize: 64, sym: false, groupRemainder: 'partial' });
      const p = packWeightOnly(q);
      upload(p.qweight, p.scales, p.zeros);
      const { outputs, poisoned } = await runPoisoned([33 * 200], () => [dequantizeWeightOnly(p)]);
      try {
        const got = (await outputs[0].data()) as Float32Array;
        const want = dequantizeMatrix(q);
        return { metric: 'value_mismatches', error: got.reduce((n, v, i) => n + (v === want[i] ? 0 : 1), 0), tolerance: 0, poisoned };
      } finally {
        tf.dispose([p.qweight, p.scales, p.zeros, ...outputs]);
      }
    },
  });
  return checks;
}

/** Number of true elements of a boolean tensor, counted on the device (one scalar read back). */
async function countTrue(t: tf.Tensor): Promise<number> {
  const n = tf.tidy(() => tf.sum(tf.cast(t, 'int32')));
  try {
    return (await n.data())[0];
  } finally {
    n.dispose();
  }
}

/** Elements where got differs from want by more than tol · max|want| (NaN counts), on the device. */
async function countFar(got: tf.Tensor, want: tf.Tensor, tol: number): Promise<number> {
  const far = tf.tidy(() => tf.logicalNot(tf.lessEqual(tf.abs(tf.sub(got, want)), tf.mul(tf.max(tf.abs(want)), tol))));
  try {
    return await countTrue(far);
  } finally {
    far.dispose();
  }
}

/**
 * Mismatches of 8 rows (the first, the last, 6 seeded) of the INT8 GEMM outputs acc [M, N] (int32)
 * and y [M, N] (fp32, per-channel epilogue, no bias) against JS: exact integer dot products of the
 * packed codes and fround(fround(acc · s_x) · s_w) within 1e-6 relative.
 */
async function int8RowsVsJs(codes: tf.Tensor2D, sx: tf.Tensor1D, p: PackedW8A8, acc: tf.Tensor, y: tf.Tensor, M: number, N: number, K: number, seed: number): Promise<number> {
  const r = mulberry32(seed);
  const rows = [...new Set([0, M - 1, ...Array.from({ length: 6 }, () => Math.floor(r() * M))])];
  const sx2 = tf.reshape(sx, [M, 1]) as tf.Tensor2D;
  const picked = [pickRows(codes, rows), pickRows(acc as tf.Tensor2D, rows), pickRows(y as tf.Tensor2D, rows), pickRows(sx2, rows)];
  sx2.dispose();
  try {
    const [a, gotAcc, gotY, s] = (await Promise.all(picked.map((t) => t.data()))) as [Int32Array, Int32Array, Float32Array, Float32Array];
    const b = (await p.codes.data()) as Int32Array; // [N, kWords]
    const sw = (await p.scales.data()) as Float32Array; // [N, 1]
    const kWords = p.kWords;
    const a8 = new Int8Array(a.buffer, a.byteOffset, rows.length * kWords * 4);
    const b8 = new Int8Array(b.buffer, b.byteOffset, N * kWords * 4);
    let bad = 0;
    for (let i = 0; i < rows.length; i++) {
      for (let n = 0; n < N; n++) {
        let sum = 0;
        for (let k = 0; k < K; k++) sum += a8[i * kWords * 4 + k] * b8[n * kWords * 4 + k];
        const wantY = Math.fround(Math.fround(sum * s[i]) * sw[n]);
        if (gotAcc[i * N + n] !== sum) bad++;
        if (!(Math.abs(gotY[i * N + n] - wantY) <= 1e-6 * Math.abs(wantY))) bad++;
      }
    }
    return bad;
  } finally {
    tf.dispose(picked);
  }
}

/** Bench variant label → INT8 GEMM options: 'dot4', a subgroup-matrix tile, or 'sm-emulated:<tile>' (devices without subgroup matrices, small cases). */
function int8BenchOptions(variant: string): Int8Options {
  if (variant === 'dot4') return { path: 'dot4' };
  const emulated = variant.startsWith('sm-emulated:');
  const tile = emulated ? variant.slice('sm-emulated:'.length) : variant;
  if (!(tile in INT8_TILES)) throw new Error(`int8-gemm: unknown variant '${variant}' (dot4, ${Object.keys(INT8_TILES).join(', ')}, or sm-emulated:<tile>)`);
  return { path: emulated ? 'sm-emulated' : 'subgroup-matrix', tile: tile as Int8TileName };
}

/**
 * INT8 GEMM (with the dequantizing epilogue) at the issue's shapes, per tile, against tfjs's fp32
 * matMul. Operands are made once per case and shared by its variants; each variant is checked on
 * them first: int32 accumulators exactly equal to the dot4 kernel's, and the dequantized output
 * within 1e-6 of dot4's (the same fp32 epilogue).
 */
export function w8a8Benches(): KernelBench[] {
  // The large GEMMs, then a 512-token prefill of the 1.2B bench model (bench-forward: q/o, k/v, gate/up, down), where few tiles fill the GPU.
  const shapes: [number, number, number, boolean][] = [[4096, 4096, 4096, false], [1024, 4096, 4096, false], [2048, 4096, 14336, false], [512, 2048, 2048, false], [512, 2048, 512, false], [512, 2048, 8192, false], [512, 8192, 2048, false], [64, 96, 160, true], [300, 200, 130, true]];
  const sm = subgroupMatrixInt8Support().ok;
  return shapes.map(([M, K, N, small]) => {
    // Without subgroup matrices, the small cases time the emulation of two tilings (checks the bench's own plumbing).
    const variants = ['dot4', ...(sm ? fittingTiles() : small ? fittingTiles().filter((t) => EMULATED_BENCH_TILES.includes(t)).map((t) => `sm-emulated:${t}`) : [])];
    type Ops = { x: tf.Tensor2D; w: tf.Tensor2D; p: PackedW8A8; codes: tf.Tensor2D; scales: tf.Tensor1D };
    let ops: Ops | null = null;
    let ref: { acc: tf.Tensor2D; y: tf.Tensor2D } | null = null;
    const operands = (): Ops => {
      if (ops) return ops;
      const x = tf.tensor2d(seededNormal(M * K, 1), [M, K]); // [M, K]
      const w = tf.tensor2d(seededNormal(N * K, 2, 1 / Math.sqrt(K)), [N, K]); // [N, K]
      const p = randomPackedLinear('w8a8', N, K, 3) as PackedW8A8;
      const { codes, scales } = quantizeActInt8(x, p.kWords); // [M, kWords], [M]
      upload(x, w, p.codes, p.scales);
      return (ops = { x, w, p, codes, scales });
    };
    return {
      kernel: 'int8-gemm',
      name: `${M}x${K}x${N}`,
      small,
      flops: 2 * M * K * N,
      variants,
      setup(variant: string): BenchSetup {
        const opts = int8BenchOptions(variant);
        const o = operands();
        return {
          kernel: () => int8GemmDequant(o.codes, o.scales, o.p, undefined, opts),
          plain: () => tf.matMul(o.x, o.w, false, true),
          dispose: () => {},
        };
      },
      async check(variant: string): Promise<CheckResult> {
        const opts = int8BenchOptions(variant);
        const o = operands();
        ref ??= { acc: int8Matmul(o.codes, o.p.codes, { path: 'dot4' }), y: int8GemmDequant(o.codes, o.scales, o.p, undefined, { path: 'dot4' }) };
        const { outputs, poisoned } = await runPoisoned([M * N, M * N], () => [int8Matmul(o.codes, o.p.codes, opts), int8GemmDequant(o.codes, o.scales, o.p, undefined, opts)]);
        try {
          if (variant === 'dot4') {
            // The reference itself: sampled rows against exact JS integer math and the fp32 epilogue.
            const error = await int8RowsVsJs(o.codes, o.scales, o.p, outputs[0], outputs[1], M, N, K, caseSeed(M, N));
            return { metric: 'mismatches_in_8_rows_vs_js (int32 exact; fp32 > 1e-6 rel)', error, tolerance: 0, poisoned };
          }
          const mismatches = await countInt32Mismatches(outputs[0], ref.acc);
          const far = await countFar(outputs[1], ref.y, 1e-6);
          return { metric: 'mismatches_vs_dot4 (int32 exact; fp32 > 1e-6 rel)', error: mismatches + far, tolerance: 0, poisoned };
        } finally {
          tf.dispose(outputs);
        }
      },
      release() {
        if (ops) tf.dispose([ops.x, ops.w, ops.p.codes, ops.p.scales, ops.codes, ops.scales]);
        if (ref) tf.dispose([ref.acc, ref.y]);
        ops = null;
        ref = null;
      },
    };
  });
}

/** Tilings the small benches emulate on devices without subgroup matrices. */
const EMULATED_BENCH_TILES: string[] = ['64x64-sg4-k32-db', '128x128-sg8-k32-pf'];

/**
 * A packed linear [N, K] with random codes and scales, built directly in the packed layout (large
 * shapes: no fp32 round trip through JS quantization). For speed measurements and checks against
 * a reference on the same packed values. 'w8a8': per-channel INT8; 'w4' / 'w8': weight-only
 * asymmetric with `groupSize` (-1: per channel) and random zero points.
 */
export function randomPackedLinear(kind: 'w8a8' | 'w4' | 'w8', N: number, K: number, seed: number, groupSize = 128): PackedLinear {
  const r = mulberry32(seed + 1);
  if (kind === 'w8a8') {
    const { words, kWords } = packI8Rows(randomI8(N, K, seed), 0, N, K);
    return {
      kind: 'w8a8',
      outFeatures: N,
      inFeatures: K,
      kWords,
      groupSize: -1,
      codes: tf.tensor2d(words, [N, kWords], 'int32'),
      scales: tf.tensor2d(Float32Array.from({ length: N }, () => 1e-3 * (1 + r())), [N, 1]),
    };
  }
  const bits = kind === 'w4' ? 4 : 8;
  const rowBytes = Math.ceil((K * bits) / 8);
  const qweight = new Uint8Array(N * rowBytes);
  const w = new Uint32Array(qweight.buffer, 0, Math.floor(qweight.length / 4));
  for (let i = 0; i < w.length; i++) w[i] = Math.floor(r() * 2 ** 32);
  for (let i = w.length * 4; i < qweight.length; i++) qweight[i] = Math.floor(r() * 256);
  const G = groupSize === -1 ? 1 : Math.ceil(K / groupSize);
  const scales = Float32Array.from({ length: N * G }, () => 1e-2 * (1 + r()));
  const zeros = Float32Array.from({ length: N * G }, () => Math.floor(r() * 2 ** bits));
  return weightOnlyFromRows({ rows: N, cols: K, bits, groupSize, qweight, scales, zeros });
}

/** Bytes a weight-only GEMV moves per call: packed codes, fp32 scales and zeros, x [B, K] and y [B, N]. */
function gemvBytes(N: number, K: number, bits: 4 | 8, gs: number, B: number): number {
  const G = gs === -1 ? 1 : Math.ceil(K / gs);
  return N * (Math.ceil((K * bits) / 8) + G * 8) + 4 * B * (K + N);
}

/** Weight bytes the GEMV benches cycle through, so that back-to-back calls read HBM, not the L2 (50 MB on the H100/H200). */
const GEMV_FLUSH_BYTES = 256 * 2 ** 20;

/**
 * Weight-only GEMV at decode shapes (out × in, batch 1), W4 g128 and W8 per channel, against
 * tfjs's fp32 matMul of the dequantized weight. The kernel cycles through enough distinct weight
 * copies (≥ GEMV_FLUSH_BYTES together) that each call streams its weight from memory; every copy
 * is checked (max rel err ≤ 1e-5 against matMul of its dequantized weight) before the timing.
 */
export function weightOnlyBenches(): KernelBench[] {
  const shapes: [number, number, 4 | 8, number, boolean][] = [[4096, 4096, 4, 128, false], [14336, 4096, 4, 128, false], [4096, 14336, 4, 128, false], [4096, 4096, 8, -1, false], [96, 160, 4, 32, true], [1000, 512, 4, 128, true]];
  return shapes.map(([N, K, bits, gs, small]) => {
    const bytes = gemvBytes(N, K, bits, gs, 1);
    const copies = small ? 2 : Math.min(64, Math.max(1, Math.ceil(GEMV_FLUSH_BYTES / bytes)));
    type Ops = { x: tf.Tensor2D; ps: PackedWeightOnly[]; dense: tf.Tensor2D };
    let ops: Ops | null = null;
    const operands = (): Ops => {
      if (ops) return ops;
      const x = tf.tensor2d(seededNormal(K, 1), [1, K]); // [1, K]
      const ps = Array.from({ length: copies }, (_, i) => randomPackedLinear(bits === 4 ? 'w4' : 'w8', N, K, 10 + i, gs) as PackedWeightOnly);
      for (const p of ps) upload(p.qweight, p.scales, p.zeros);
      upload(x);
      return (ops = { x, ps, dense: dequantizeWeightOnly(ps[0]) }); // dense [N, K] fp32 for the plain matMul
    };
    const variantOpts = (variant: string) => {
      const v = gemvBenchVariants().find((g) => g.label === variant);
      if (!v) throw new Error(`wq-gemv: unknown variant '${variant}' (${gemvBenchVariants().map((g) => g.label).join(', ')})`);
      return { reduction: v.reduction, rowsPerGroup: v.rowsPerGroup, unroll: v.unroll, codegen: v.codegen };
    };
    return {
      kernel: 'wq-gemv',
      name: `W${bits} g${gs} ${N}x${K} B=1`,
      small,
      flops: 2 * N * K,
      bytes,
      variants: gemvBenchVariants().map((v) => v.label),
      setup(variant: string): BenchSetup {
        const opts = variantOpts(variant);
        const o = operands();
        let i = 0;
        return {
          kernel: () => weightOnlyLinear(o.x, o.ps[i++ % copies], undefined, opts),
          plain: () => tf.matMul(o.x, o.dense, false, true),
          dispose: () => {},
        };
      },
      // Reference per copy: matMul of the GPU dequantization (bit-identical to dequantizeMatrix: the wq-dequant check).
      async check(variant: string): Promise<CheckResult> {
        const opts = variantOpts(variant);
        const o = operands();
        let error = 0;
        let poisonedAll = true;
        for (const p of o.ps) {
          const want = tf.tidy(() => tf.matMul(o.x, dequantizeWeightOnly(p), false, true)); // [1, N]
          upload(want);
          const { outputs, poisoned } = await runPoisoned([N], () => [weightOnlyLinear(o.x, p, undefined, opts)]);
          try {
            error = Math.max(error, await maxRelError(outputs[0], want));
            poisonedAll &&= poisoned;
          } finally {
            tf.dispose([want, ...outputs]);
          }
        }
        return { metric: `max_rel_err over ${copies} weight copies`, error, tolerance: 1e-5, poisoned: poisonedAll };
      },
      release() {
        if (ops) tf.dispose([ops.x, ops.dense, ...ops.ps.flatMap((p) => [p.qweight, p.scales, p.zeros])]);
        ops = null;
      },
    };
  });
}
