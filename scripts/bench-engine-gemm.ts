// The executor's fp32 GEMM (lib/engine/kernels.ts gemmKernel) per tiling at the shapes a ~1.2B
// LLaMA forward runs (512-token prefill, 4096- and 16384-token scoring steps; q/o, k/v, gate/up,
// down and the 128k LM head), each tiling first checked against a float64 host product. Time per
// call: `inner` dispatches recorded into one encoder, timed on the GPU after a clock hold (lib/runtime
// timeEncoded; on a software adapter from submit to completion), divided; median of --repeats.
// Prints a table and writes data/bench/engine-gemm.csv as rows come. --splits times split-K as well
// (K in that many chunks, then the reduce pass: tile column 'tallV/s4').
//   bash .gpul/enter.sh node --import tsx scripts/bench-engine-gemm.ts [--shapes prefill|all|none] [--tiles a,b]
//     [--splits 1,2,4,8] [--repeats 7]
// (--shapes none: the checks only; --tiles: those of GEMM_TILES only.)
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Arena, Program, type Buf } from '../lib/engine/gpu';
import { GEMM_TILES, type GemmTile } from '../lib/engine/kernels';
import { dataOutDir, gitSha } from '../lib/results';
import { initRuntime, median, timeEncoded, writeBenchCsv } from '../lib/runtime';
import { engineDevice } from '../lib/engine/gpu';
import { gemmSpecs, gemmTileError, randomFloats } from '../lib/engine/check';
import { printUsage } from '../lib/help';

const { values: a } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'all' },
    tiles: { type: 'string' },
    repeats: { type: 'string', default: '7' },
    splits: { type: 'string', default: '1' },
    out: { type: 'string', default: path.join(dataOutDir(), 'bench/engine-gemm.csv') },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (a.help) {
  printUsage(`usage: bench-engine-gemm.ts [--shapes prefill|all|none] [--tiles NAMES] [--splits 1,2,4] [--repeats N] [--out FILE]\n  tiles: ${Object.keys(GEMM_TILES).join(', ')}`);
  process.exit(0);
}
const repeats = Number(a.repeats);
const rt = await initRuntime({ backend: 'webgpu' });
const device = engineDevice();
const prov = { backend: rt.backend, device: rt.device, git_sha: gitSha(), started_at: new Date().toISOString() };
const rows: Record<string, string | number>[] = [];
const allTiles = Object.entries(GEMM_TILES) as [string, GemmTile][];
const picked = a.tiles?.split(',').filter(Boolean) ?? allTiles.map(([n]) => n);
for (const n of picked) if (!(n in GEMM_TILES)) throw new Error(`--tiles: unknown '${n}' (${Object.keys(GEMM_TILES).join(', ')})`);
if (!['prefill', 'all', 'none'].includes(a.shapes!)) throw new Error(`--shapes: '${a.shapes}' (prefill, all, none)`);
const splitCounts = a.splits!.split(',').map(Number);
if (!splitCounts.every((n) => Number.isInteger(n) && n >= 1)) throw new Error(`--splits: positive integers, got '${a.splits}'`);
/** [label, tiling, K chunks] of every picked tiling and split count. */
const tiles = allTiles.filter(([n]) => picked.includes(n)).flatMap(([n, t]) => splitCounts.map((sp) => [sp === 1 ? n : `${n}/s${sp}`, t, sp] as [string, GemmTile, number]));

/** One GEMM y [M, N] = x [M, K] · W [N, K]ᵀ with a tiling (in `splits` K chunks and a reduce pass), on buffers of an arena; returns a run function (ms a call, and whether a clock hold timed it). */
function gemm(arena: Arena, t: GemmTile, splits: number, M: number, K: number, N: number, x: Buf, w: Buf, y: Buf): (inner: number) => Promise<{ ms: number; held: boolean }> {
  const shape = { M };
  const specs = gemmSpecs(arena, t, splits, M, K, N, x, w, y);
  const prog = new Program(arena, specs, 'gemm-bench');
  return (inner: number) =>
    timeEncoded(device, (enc) => {
      for (let i = 0; i < inner; i++) prog.record(enc, shape);
    }, inner);
}

// --- correctness first: each tiling on odd shapes (K a multiple of 4 and not: vector and scalar loads) against float64 ---
const bad = new Set<string>();
for (const [M, K, N] of [[77, 68, 130], [33, 67, 70], [77, 300, 130]]) {
  for (const [name, t, splits] of tiles) {
    if (bad.has(name)) continue;
    // A tiling this device cannot run (workgroup memory, threads) is named and not timed.
    const rel = await gemmTileError(t, M, K, N, splits).catch((e: Error) => e);
    const ok = typeof rel === 'number' && rel < 1e-5;
    if (!ok) bad.add(name);
    const what = typeof rel === 'number' ? `max_rel ${rel.toExponential(2)}` : `error: ${rel.message}`;
    console.log(`${ok ? 'ok  ' : 'FAIL'} check ${name.padEnd(8)} M=${M} K=${K} N=${N} ${what}`);
    rows.push({ shape: `${M}x${K}x${N}`, what: 'check', tile: name, median_ms: '', min_ms: '', tflop_s: '', note: `${what}${ok ? '' : ' FAILED: not timed'}`, ...prov });
  }
}
// --- timing ---
const prefill: [number, number, number, string][] = [[512, 2048, 2048, 'q/o'], [512, 2048, 512, 'k/v'], [512, 2048, 8192, 'gate/up'], [512, 8192, 2048, 'down'], [512, 2048, 128256, 'lm head']];
const scoring: [number, number, number, string][] = [[4096, 2048, 2048, 'q/o'], [4096, 2048, 8192, 'gate/up'], [4096, 8192, 2048, 'down'], [16384, 2048, 8192, 'gate/up'], [2048, 2048, 128256, 'lm head']];
const shapes = a.shapes === 'none' ? [] : a.shapes === 'prefill' ? prefill : [...prefill, ...scoring];
for (const [M, K, N, what] of shapes) {
  const arena = new Arena(device);
  try {
    const x = arena.upload('x', randomFloats(M * K, 3));
    const w = arena.upload('w', randomFloats(N * K, 4));
    const y = arena.storage('y', 4 * M * N);
    const flops = 2 * M * K * N;
    const line: string[] = [];
    for (const [name, t, splits] of tiles) {
      if (bad.has(name)) continue;
      if (splits > 1 && 4 * splits * M * N > device.limits.maxStorageBufferBindingSize) {
        line.push(`${name} -`); // its partial sums would not fit one storage binding (the executor never splits such a GEMM)
        continue;
      }
      const run = gemm(arena, t, splits, M, K, N, x, w, y);
      const once = (await run(1)).ms;
      const inner = Math.max(1, Math.min(50, Math.ceil(20 / once)));
      await run(inner);
      const runs: { ms: number; held: boolean }[] = [];
      for (let r = 0; r < repeats; r++) runs.push(await run(inner));
      const ms = runs.map((x) => x.ms);
      const med = median(ms);
      const clock = runs.every((x) => x.held) ? 'GPU-timed after a clock hold' : 'wall clock from the submit (no clock hold)';
      rows.push({ shape: `${M}x${K}x${N}`, what, tile: name, median_ms: med, min_ms: Math.min(...ms), tflop_s: flops / med / 1e9, note: `inner ${inner}; ${clock}`, ...prov });
      writeBenchCsv(a.out!, rows);
      line.push(`${name} ${(flops / med / 1e9).toFixed(1)}`);
    }
    console.log(`${`${M}x${K}x${N}`.padEnd(18)} ${what.padEnd(8)} TFLOP/s: ${line.join('  ')}`);
  } finally {
    arena.destroy();
  }
}
writeBenchCsv(a.out!, rows);
console.log(`wrote ${a.out}`);
