// The executor's fp32 GEMM (lib/engine/kernels.ts gemmKernel) per tiling at the shapes a ~1.2B
// LLaMA forward runs (512-token prefill, 4096- and 16384-token scoring steps; q/o, k/v, gate/up,
// down and the 128k LM head), each tiling first checked against a float64 host product. Time per
// call: `inner` dispatches recorded into one compute pass, submit to completion, divided; median
// of --repeats. Prints a table and writes data/bench/engine-gemm.csv as rows come.
//   bash .gpul/enter.sh node --import tsx scripts/bench-engine-gemm.ts [--shapes prefill|all] [--repeats 7]
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Arena, Program, type Buf } from '../lib/engine/gpu';
import { GEMM_TILES, gemmKernel, type GemmTile } from '../lib/engine/kernels';
import { gitSha } from '../lib/results';
import { initRuntime, median, writeBenchCsv } from '../lib/runtime';
import { engineDevice } from '../lib/engine/gpu';
import { mulberry32 } from '../lib/rng';

const { values: a } = parseArgs({
  options: {
    shapes: { type: 'string', default: 'all' },
    repeats: { type: 'string', default: '7' },
    out: { type: 'string', default: path.join(process.env.LLMCB_DATA_OUT ?? 'data', 'bench/engine-gemm.csv') },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (a.help) {
  console.log('usage: bench-engine-gemm.ts [--shapes prefill|all] [--repeats N] [--out FILE]');
  process.exit(0);
}
const repeats = Number(a.repeats);
const rt = await initRuntime({ backend: 'webgpu' });
const device = engineDevice();
const prov = { backend: rt.backend, device: rt.device, git_sha: gitSha(), started_at: new Date().toISOString() };
const rows: Record<string, string | number>[] = [];
const tiles = Object.entries(GEMM_TILES) as [string, GemmTile][];
const rand = (n: number, seed: number) => {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
};

/** One GEMM y [M, N] = x [M, K] · W [N, K]ᵀ with a tiling, on buffers of an arena; returns a run function. */
function gemm(arena: Arena, t: GemmTile, M: number, K: number, N: number, x: Buf, w: Buf, y: Buf): (inner: number) => Promise<number> {
  const kernel = gemmKernel(K, N, t, 'store', false);
  const shape = { M };
  const prog = new Program(arena, [{ kernel, buffers: [y, x, w], params: (s: typeof shape) => ({ M: s.M, ldy: N, colOff: 0 }), workgroups: (s: typeof shape) => [Math.ceil(N / t.BN), Math.ceil(s.M / t.BM), 1] }], 'gemm-bench');
  return async (inner: number) => {
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (let i = 0; i < inner; i++) prog.record(pass, shape);
    pass.end();
    await device.queue.onSubmittedWorkDone();
    const t0 = performance.now();
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / inner;
  };
}

async function read(arena: Arena, b: Buf, n: number): Promise<Float32Array> {
  const tmp = device.createBuffer({ size: 4 * n, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(b.buffer, 0, tmp, 0, 4 * n);
  device.queue.submit([enc.finish()]);
  await tmp.mapAsync(GPUMapMode.READ);
  const out = new Float32Array(tmp.getMappedRange()).slice();
  tmp.destroy();
  return out;
}

// --- correctness first: each tiling on an odd shape against float64 ---
const bad = new Set<string>();
{
  const [M, K, N] = [77, 68, 130];
  const xs = rand(M * K, 1);
  const ws = rand(N * K, 2);
  for (const [name, t] of tiles) {
    const arena = new Arena(device);
    try {
      const x = arena.upload('x', xs);
      const w = arena.upload('w', ws);
      const y = arena.storage('y', 4 * M * N);
      await gemm(arena, t, M, K, N, x, w, y)(1);
      const got = await read(arena, y, M * N);
      let err = 0;
      let scale = 0;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += xs[m * K + k] * ws[n * K + k];
          err = Math.max(err, Math.abs(got[m * N + n] - s));
          scale = Math.max(scale, Math.abs(s));
        }
      }
      const rel = Number.isNaN(err) ? Infinity : err / scale;
      if (!(rel < 1e-5)) bad.add(name);
      console.log(`${rel < 1e-5 ? 'ok  ' : 'FAIL'} check ${name.padEnd(8)} M=${M} K=${K} N=${N} max_rel ${rel.toExponential(2)}`);
      rows.push({ shape: `${M}x${K}x${N}`, what: 'check', tile: name, median_ms: '', min_ms: '', tflop_s: '', note: `max_rel ${rel.toExponential(2)}${rel < 1e-5 ? '' : ' FAILED: not timed'}`, ...prov });
    } finally {
      arena.destroy();
    }
  }
}
// --- timing ---
const prefill: [number, number, number, string][] = [[512, 2048, 2048, 'q/o'], [512, 2048, 512, 'k/v'], [512, 2048, 8192, 'gate/up'], [512, 8192, 2048, 'down'], [512, 2048, 128256, 'lm head']];
const scoring: [number, number, number, string][] = [[4096, 2048, 2048, 'q/o'], [4096, 2048, 8192, 'gate/up'], [4096, 8192, 2048, 'down'], [16384, 2048, 8192, 'gate/up'], [2048, 2048, 128256, 'lm head']];
const shapes = a.shapes === 'prefill' ? prefill : [...prefill, ...scoring];
for (const [M, K, N, what] of shapes) {
  const arena = new Arena(device);
  try {
    const x = arena.upload('x', rand(M * K, 3));
    const w = arena.upload('w', rand(N * K, 4));
    const y = arena.storage('y', 4 * M * N);
    const flops = 2 * M * K * N;
    const line: string[] = [];
    for (const [name, t] of tiles) {
      if (bad.has(name)) continue;
      const run = gemm(arena, t, M, K, N, x, w, y);
      const once = await run(1);
      const inner = Math.max(1, Math.min(50, Math.ceil(20 / once)));
      await run(inner);
      const ms: number[] = [];
      for (let r = 0; r < repeats; r++) ms.push(await run(inner));
      const med = median(ms);
      rows.push({ shape: `${M}x${K}x${N}`, what, tile: name, median_ms: med, min_ms: Math.min(...ms), tflop_s: flops / med / 1e9, note: `inner ${inner}`, ...prov });
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
