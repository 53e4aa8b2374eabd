// Times each custom WGSL kernel against the plain tfjs op it replaces (lib/kernels KERNEL_BENCHES:
// GEMM 1024×2048×2048, 1024×4096×4096, 2048×4096×14336; attention prefill T=1024/2048 at hd
// 64/128 and decode over S=2048; the quantized kernels' shapes), every tile variant by default.
// Median of --repeats runs with the device synchronised around each (lib/runtime timeRepeated).
// Writes data/bench/kernels.csv: one row per (case, variant) and one for the plain op.
//   GPU host: bash .gpu/enter.sh node --import tsx scripts/bench-kernels.ts [--kernels gemm] [--tiles 64x64,128x128]
//   here (lavapipe, CPU Vulkan): XDG_RUNTIME_DIR=/tmp npx tsx scripts/bench-kernels.ts --small
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_BENCHES } from '../lib/kernels';
import type { KernelBench } from '../lib/kernels/cases';
import { gitSha } from '../lib/results';
import { initRuntime, parseBackend, timeRepeated, writeBenchCsv, type Timing } from '../lib/runtime';

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    kernels: { type: 'string', default: Object.keys(KERNEL_BENCHES).join(',') },
    tiles: { type: 'string' }, // variants to time (default: every variant of each kernel)
    small: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '10' },
    out: { type: 'string', default: path.join(process.env.LLMCB_DATA_OUT ?? 'data', 'bench/kernels.csv') },
  },
  strict: true,
});

const names = args.kernels!.split(',').filter(Boolean);
for (const n of names) if (!(n in KERNEL_BENCHES)) throw new Error(`--kernels: unknown kernel '${n}' (choose from ${Object.keys(KERNEL_BENCHES).join(', ')})`);
const repeat = { warmup: Number(args.warmup), repeats: Number(args.repeats) };
if (!(Number.isInteger(repeat.warmup) && repeat.warmup >= 0 && Number.isInteger(repeat.repeats) && repeat.repeats >= 1)) {
  throw new Error(`--warmup ${args.warmup} / --repeats ${args.repeats}: non-negative / positive integers`);
}
const rt = await initRuntime({ backend: parseBackend(args.backend!) });
if (rt.backend !== 'webgpu') {
  console.error(`bench-kernels: the custom kernels need the webgpu backend; '${rt.backend}' has none to time (${rt.device})`);
  process.exit(1);
}
console.error(`bench-kernels on ${rt.device}`);
const benches: KernelBench[] = names.flatMap((n) => KERNEL_BENCHES[n as keyof typeof KERNEL_BENCHES]()).filter((b) => !args.small || b.small);
const wanted = args.tiles?.split(',').filter(Boolean);
const known = new Set(benches.flatMap((b) => b.variants));
for (const t of wanted ?? []) if (!known.has(t)) throw new Error(`--tiles: '${t}' is no variant of the chosen kernels (${[...known].join(', ')})`);

const provenance = { backend: rt.backend, device: rt.device, git_sha: gitSha(), started_at: new Date().toISOString() };
const rows: Record<string, string | number>[] = [];
function row(b: KernelBench, variant: string, t: Timing, plainMs: number | null): void {
  const r = {
    kernel: b.kernel, case: b.name, variant, median_ms: t.medianMs, min_ms: t.minMs, max_ms: t.maxMs, repeats: t.repeats,
    gflop_s: b.flops ? b.flops / t.medianMs / 1e6 : '', gb_s: b.bytes ? b.bytes / t.medianMs / 1e6 : '',
    speedup_vs_plain: plainMs === null ? '' : plainMs / t.medianMs, note: '', ...provenance,
  };
  rows.push(r);
  const rate = r.gflop_s !== '' ? `${Number(r.gflop_s).toFixed(1)} GFLOP/s` : r.gb_s !== '' ? `${Number(r.gb_s).toFixed(1)} GB/s` : '';
  console.log(`${b.kernel.padEnd(12)} ${b.name.padEnd(48)} ${variant.padEnd(24)} ${t.medianMs.toFixed(3).padStart(10)} ms  ${rate.padStart(18)}${plainMs === null ? '' : `  ${(plainMs / t.medianMs).toFixed(2)}× plain`}`);
}

for (const b of benches) {
  const variants = wanted ? b.variants.filter((v) => wanted.includes(v)) : b.variants;
  if (variants.length === 0) continue;
  let plainMs: number | null = null;
  for (const v of variants) {
    const s = b.setup(v);
    try {
      if (plainMs === null) {
        const plain = await timeRepeated(() => s.plain().dispose(), repeat);
        row(b, 'tfjs', plain, null);
        plainMs = plain.medianMs;
      }
      let t: Timing;
      try {
        t = await timeRepeated(() => s.kernel().dispose(), repeat);
      } catch (e) {
        // A variant the device cannot run (e.g. over its workgroup memory) is reported, not fatal.
        const note = (e as Error).message.replace(/\s+/g, ' ');
        rows.push({ kernel: b.kernel, case: b.name, variant: v, median_ms: '', min_ms: '', max_ms: '', repeats: 0, gflop_s: '', gb_s: '', speedup_vs_plain: '', note, ...provenance });
        console.log(`${b.kernel.padEnd(12)} ${b.name.padEnd(48)} ${v.padEnd(24)} not run: ${note}`);
        continue;
      }
      row(b, v, t, plainMs);
    } finally {
      s.dispose();
    }
  }
}
writeBenchCsv(args.out!, rows);
console.log(`wrote ${rows.length} rows to ${args.out}`);
