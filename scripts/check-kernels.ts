// Correctness of every custom WGSL kernel on the GPU (lib/kernels/suites.ts KERNEL_CHECKS): each case runs
// the kernel with its outputs poisoned (NaN) and compares it with the plain tfjs op (or an exact
// host reference); the 'solver' group runs the GPTQ / SparseGPT device solvers against their float64
// host twins. Prints a table, writes data/bench/kernels-check.csv, exits 1 on any failure.
// Inputs are fresh each run: drawn from --seed, by default a random one, printed and written into
// every row (rerun with --seed N to reproduce a failure). The CSV is rewritten after every case.
//   GPU host: bash .gpu/enter.sh node --import tsx scripts/check-kernels.ts
//   here (lavapipe, CPU Vulkan): XDG_RUNTIME_DIR=/tmp npx tsx scripts/check-kernels.ts --small
//   options: --kernels gemm,attention (default: all) --small (cheap cases only) --seed N --out FILE
import { randomInt } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { KERNEL_CHECKS } from '../lib/kernels/suites';
import { dataOutDir, gitSha } from '../lib/results';
import { initRuntime, parseBackend, writeBenchCsv } from '../lib/runtime';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const { values: args } = parseArgs({
  options: {
    backend: { type: 'string', default: 'webgpu' },
    kernels: { type: 'string', default: Object.keys(KERNEL_CHECKS).join(',') },
    small: { type: 'boolean', default: false },
    seed: { type: 'string' }, // inputs' seed (default: drawn at random, printed)
    out: { type: 'string', default: path.join(dataOutDir(), 'bench/kernels-check.csv') },
  },
  strict: true,
});

const names = args.kernels!.split(',').filter(Boolean);
for (const n of names) if (!(n in KERNEL_CHECKS)) throw new Error(`--kernels: unknown kernel '${n}' (choose from ${Object.keys(KERNEL_CHECKS).join(', ')})`);
const rt = await initRuntime({ backend: parseBackend(args.backend!) });
if (rt.backend !== 'webgpu') {
  console.error(`check-kernels: the custom kernels need the webgpu backend; '${rt.backend}' has none to check (${rt.device})`);
  process.exit(1);
}
const seed = args.seed === undefined ? randomInt(2 ** 31) : Number(args.seed);
if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32)) throw new Error(`--seed ${args.seed}: an integer in [0, 2^32)`);
console.error(`check-kernels on ${rt.device}, seed ${seed} (rerun with --seed ${seed} to reproduce)`);
const sha = gitSha();
const startedAt = new Date().toISOString();
const rows: Record<string, string | number | boolean>[] = [];
for (const n of names) {
  for (const c of KERNEL_CHECKS[n as keyof typeof KERNEL_CHECKS](seed)) {
    if (args.small && !c.small) continue;
    const t0 = performance.now();
    let row: Record<string, string | number | boolean>;
    try {
      const r = await c.run();
      const pass = r.poisoned !== false && r.error <= r.tolerance;
      const note = [r.poisoned === false ? 'output buffer was not the poisoned one' : '', r.note ?? ''].filter(Boolean).join('; ');
      row = { kernel: c.kernel, case: c.name, metric: r.metric, error: r.error, tolerance: r.tolerance, poisoned: r.poisoned ?? '', pass, note };
    } catch (e) {
      row = { kernel: c.kernel, case: c.name, metric: '', error: '', tolerance: '', poisoned: false, pass: false, note: (e as Error).message.replace(/\s+/g, ' ') };
    }
    row.ms = Math.round(performance.now() - t0);
    Object.assign(row, { seed, backend: rt.backend, device: rt.device, git_sha: sha, started_at: startedAt });
    rows.push(row);
    writeBenchCsv(args.out!, rows);
    console.log(`${row.pass ? 'ok  ' : 'FAIL'} ${c.kernel.padEnd(14)} ${c.name.padEnd(64)} ${String(row.metric).padEnd(12)} ${typeof row.error === 'number' ? row.error.toExponential(2) : '-'}${row.note ? `  (${row.note})` : ''}`);
  }
}
if (rows.length === 0) throw new Error('check-kernels: no case matched');
const failed = rows.filter((r) => !r.pass).length;
console.log(`${rows.length - failed}/${rows.length} kernel checks passed (seed ${seed}); wrote ${args.out}`);
process.exit(failed ? 1 : 0);
