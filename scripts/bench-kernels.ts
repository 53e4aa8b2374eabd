// Times each custom WGSL kernel against the plain tfjs op it replaces (lib/kernels/suites.ts KERNEL_BENCHES:
// GEMM 1024×2048×2048, 1024×4096×4096, 2048×4096×14336; attention prefill T=1024/2048 at hd
// 64/128 and decode over S=2048; the quantized kernels' shapes), every tile variant by default.
//
// Each variant is first checked on the bench's own inputs where the bench has a check (the INT8
// GEMM against the portable dot4 kernel, exact; the weight-only GEMV against matMul of the
// dequantized weight): a failing variant gets a 'check failed: ...' row and is not timed.
// Timing: `inner` calls recorded back to back into one submit, timed on the GPU between timestamps
// around them after a clock hold that keeps the SM clock up (lib/runtime timeRecorded, ClockHold),
// median (and min/max) of --repeats such runs, per call.
// --inner auto (default) picks inner so that a run keeps the device busy ~--target-ms: 1 for long
// calls, hundreds for a decode GEMV, whose single call is shorter than one submit round trip.
// A device-to-device copy (copyBufferToBuffer of --copy-bytes, GB/s of bytes read + written) runs
// first whenever a memory-bound kernel is chosen, and those rows carry frac_of_copy_bw.
// The CSV (data/bench/kernels.csv) is rewritten atomically after every row: a run killed by its
// timeout keeps every row it measured.
//   GPU host: bash .gpu/enter.sh node --import tsx scripts/bench-kernels.ts [--kernels w8a8,weightOnly] [--tiles 128x128-sg4-k32-db] [--cases 512x,4096x4096]
//   here (lavapipe, CPU Vulkan): XDG_RUNTIME_DIR=/tmp npx tsx scripts/bench-kernels.ts --small
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_BENCHES } from '../lib/kernels/suites';
import type { BenchSetup, CheckResult, KernelBench } from '../lib/kernels/cases';
import { dataOutDir, gitSha } from '../lib/results';
import { autoInner, initRuntime, parseBackend, setFreeBufferCap, timeDeviceCopy, timeRecorded, writeBenchCsv, type Timing } from '../lib/runtime';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    kernels: { type: 'string', default: Object.keys(KERNEL_BENCHES).join(',') },
    tiles: { type: 'string' }, // variants to time (default: every variant of each kernel)
    cases: { type: 'string' }, // cases to time: names containing one of these (comma-separated), e.g. 512x (default: all)
    small: { type: 'boolean', default: false },
    warmup: { type: 'string', default: '3' },
    repeats: { type: 'string', default: '10' },
    inner: { type: 'string', default: 'auto' }, // calls per timed run, or auto
    'target-ms': { type: 'string', default: '2' }, // --inner auto: device time one timed run aims at
    'copy-bytes': { type: 'string' }, // device copy size (default 1 GiB, 64 MiB with --small; 0: no copy bench)
    out: { type: 'string', default: path.join(dataOutDir(), 'bench/kernels.csv') },
  },
  strict: true,
});

const names = args.kernels!.split(',').filter(Boolean);
for (const n of names) if (!(n in KERNEL_BENCHES)) throw new Error(`--kernels: unknown kernel '${n}' (choose from ${Object.keys(KERNEL_BENCHES).join(', ')})`);
const repeat = { warmup: Number(args.warmup), repeats: Number(args.repeats) };
if (!(Number.isInteger(repeat.warmup) && repeat.warmup >= 0 && Number.isInteger(repeat.repeats) && repeat.repeats >= 1)) {
  throw new Error(`--warmup ${args.warmup} / --repeats ${args.repeats}: non-negative / positive integers`);
}
const fixedInner = args.inner === 'auto' ? null : Number(args.inner);
if (fixedInner !== null && !(Number.isInteger(fixedInner) && fixedInner >= 1)) throw new Error(`--inner ${args.inner}: a positive integer or auto`);
const targetMs = Number(args['target-ms']);
if (!(targetMs > 0)) throw new Error(`--target-ms ${args['target-ms']}: a positive number`);
const copyBytes = Number(args['copy-bytes'] ?? (args.small ? 64 * 2 ** 20 : 2 ** 30));
if (!(Number.isInteger(copyBytes) && copyBytes >= 0 && copyBytes % 4 === 0)) throw new Error(`--copy-bytes ${args['copy-bytes']}: a non-negative multiple of 4`);

const rt = await initRuntime({ backend: parseBackend(args.backend!) });
if (rt.backend !== 'webgpu') {
  console.error(`bench-kernels: the custom kernels need the webgpu backend; '${rt.backend}' has none to time (${rt.device})`);
  process.exit(1);
}
console.error(`bench-kernels on ${rt.device}`);
// The checks poison their outputs through tfjs's buffer pool (runPoisoned): at the default 2 GiB
// cap, the GEMM cases' pooled operands could empty the pool between poisoning and the kernel.
setFreeBufferCap(8 * 2 ** 30);
const cases = args.cases?.split(',').filter(Boolean);
const benches: KernelBench[] = names
  .flatMap((n) => KERNEL_BENCHES[n as keyof typeof KERNEL_BENCHES]())
  .filter((b) => (!args.small || b.small) && (!cases || cases.some((c) => b.name.includes(c))));
if (benches.length === 0) throw new Error(`bench-kernels: no case of --kernels ${args.kernels} matches${cases ? ` --cases ${args.cases}` : ''}${args.small ? ' with --small' : ''}`);
const wanted = args.tiles?.split(',').filter(Boolean);
const known = new Set(benches.flatMap((b) => b.variants));
for (const t of wanted ?? []) if (!known.has(t)) throw new Error(`--tiles: '${t}' is no variant of the chosen kernels (${[...known].join(', ')})`);

const provenance = { backend: rt.backend, device: rt.device, git_sha: gitSha(), started_at: new Date().toISOString() };
type Row = Record<string, string | number>;
const rows: Row[] = [];
const COLUMNS = ['kernel', 'case', 'variant', 'median_ms', 'min_ms', 'max_ms', 'spread_pct', 'repeats', 'inner', 'record_ms', 'gflop_s', 'gb_s', 'frac_of_copy_bw', 'speedup_vs_plain', 'check', 'note'];

/** Appends a row (every column present, in one order) and rewrites the CSV at once. */
function emit(r: Row): void {
  const full: Row = {};
  for (const c of COLUMNS) full[c] = r[c] ?? '';
  rows.push({ ...full, ...provenance });
  writeBenchCsv(args.out!, rows);
}

function timingCols(t: Timing): Row {
  return {
    median_ms: t.medianMs, min_ms: t.minMs, max_ms: t.maxMs, spread_pct: (100 * (t.maxMs - t.minMs)) / t.medianMs,
    repeats: t.repeats, inner: t.inner ?? 1, record_ms: t.recordMs ?? '', note: t.note ?? '',
  };
}

const oneLine = (e: unknown) => (e instanceof Error ? e.message : String(e)).replace(/\s+/g, ' ');
const describeCheck = (c: CheckResult) => `${c.metric}=${c.error} (tolerance ${c.tolerance})`;

let copyGbS: number | null = null;
if (copyBytes > 0 && benches.some((b) => b.bytes)) {
  try {
    const t = await timeDeviceCopy(copyBytes, { ...repeat, inner: fixedInner ?? 4 });
    copyGbS = t.gbS;
    emit({ kernel: 'd2d-copy', case: `${copyBytes} B`, variant: 'copyBufferToBuffer', ...timingCols(t), gb_s: t.gbS, note: 'GB/s of bytes read + written' });
    console.log(`${'d2d-copy'.padEnd(12)} ${`${copyBytes} B`.padEnd(48)} ${'copyBufferToBuffer'.padEnd(28)} ${t.medianMs.toFixed(3).padStart(10)} ms  ${t.gbS.toFixed(1).padStart(10)} GB/s`);
  } catch (e) {
    emit({ kernel: 'd2d-copy', case: `${copyBytes} B`, variant: 'copyBufferToBuffer', repeats: 0, note: `not run: ${oneLine(e)}` });
  }
}

/** Times fn per call: recorded back to back, inner fixed or chosen for ~targetMs a run. */
async function time(fn: () => void): Promise<Timing> {
  const inner = fixedInner ?? (await autoInner(fn, targetMs));
  return timeRecorded(fn, { ...repeat, inner });
}

for (const b of benches) {
  const variants = wanted ? b.variants.filter((v) => wanted.includes(v)) : b.variants;
  if (variants.length === 0) continue;
  let plainMs: number | null = null;
  const base = { kernel: b.kernel, case: b.name };
  const rate = (t: Timing): Row => {
    const gbS = b.bytes ? b.bytes / t.medianMs / 1e6 : null;
    return { gflop_s: b.flops ? b.flops / t.medianMs / 1e6 : '', gb_s: gbS ?? '', frac_of_copy_bw: gbS !== null && copyGbS ? gbS / copyGbS : '' };
  };
  const log = (variant: string, t: Timing | null, what: string) =>
    console.log(`${b.kernel.padEnd(12)} ${b.name.padEnd(48)} ${variant.padEnd(28)} ${t ? `${t.medianMs.toFixed(4).padStart(10)} ms ×${String(t.inner ?? 1).padEnd(5)}` : ''} ${what}`);
  try {
    for (const v of variants) {
      let s: BenchSetup;
      try {
        s = b.setup(v);
      } catch (e) {
        emit({ ...base, variant: v, repeats: 0, note: `not run: ${oneLine(e)}` });
        log(v, null, `not run: ${oneLine(e)}`);
        continue;
      }
      try {
        if (plainMs === null) {
          const plain = await time(() => s.plain().dispose());
          plainMs = plain.medianMs;
          const r = rate(plain);
          emit({ ...base, variant: 'tfjs', ...timingCols(plain), ...r });
          log('tfjs', plain, r.gb_s !== '' ? `${Number(r.gb_s).toFixed(1)} GB/s` : `${Number(r.gflop_s).toFixed(1)} GFLOP/s`);
        }
        let checked = '';
        if (b.check) {
          const c = await b.check(v);
          checked = describeCheck(c);
          if (!(c.poisoned && c.error <= c.tolerance)) {
            const note = `check failed: ${checked}${c.poisoned ? '' : ', output buffer was not the poisoned one'}`;
            emit({ ...base, variant: v, repeats: 0, check: checked, note });
            log(v, null, note);
            continue;
          }
        }
        const t = await time(() => s.kernel().dispose());
        const r = rate(t);
        emit({ ...base, variant: v, ...timingCols(t), ...r, speedup_vs_plain: plainMs / t.medianMs, check: checked });
        const frac = r.frac_of_copy_bw !== '' ? ` (${(100 * Number(r.frac_of_copy_bw)).toFixed(0)}% of copy)` : '';
        log(v, t, `${r.gb_s !== '' ? `${Number(r.gb_s).toFixed(1)} GB/s${frac}` : `${Number(r.gflop_s).toFixed(1)} GFLOP/s`}  ${(plainMs / t.medianMs).toFixed(2)}× plain`);
      } catch (e) {
        // A variant the device cannot run (e.g. over its workgroup memory) is reported, not fatal.
        emit({ ...base, variant: v, repeats: 0, note: `not run: ${oneLine(e)}` });
        log(v, null, `not run: ${oneLine(e)}`);
      } finally {
        s.dispose();
      }
    }
  } finally {
    b.release?.();
  }
}
if (rows.length === 0) console.log('no rows: no kernel variant matched');
else console.log(`wrote ${rows.length} rows to ${args.out}`);
