// The matrix on a Slurm cluster (lib/slurm.ts): plans one array task per model × method pair with
// pending cells, writes the sbatch script, submits it when asked, and merges the shards' rows into
// --out by cell hash. The plan is kept in <out>/shards/plan.json, so a task resubmitted alone
// (--only K) runs the same pair into the same shard folder, which resumes where it stopped.
//
//   npx tsx scripts/slurm.ts --matrix smoke --out runs/smoke --submit --wait   (plan, submit, wait, merge)
//   npx tsx scripts/slurm.ts --out runs/smoke --only 3 --submit --wait          (resubmit task 3, merge)
//   npx tsx scripts/slurm.ts --out runs/smoke --merge                           (merge what the shards have)
import fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { printUsage } from '../lib/help';
import { checkMatrix, loadMatrix, parseSlice } from '../lib/matrix';
import { writeFileAtomic } from '../lib/results';
import { parseBackend } from '../lib/runtime/backend';
import { arrayScript, matrixArg, mergeShards, planFile, readPlan, shardRunFlags, shardsOf, writePlan, type Shard } from '../lib/slurm';
import { runMatrix } from '../lib/tracks/runner';

const USAGE = `usage: npx tsx scripts/slurm.ts [flags]

  --matrix default|smoke|engines|FILE.json  the matrix (default: default); --slice SPEC: part of it (as run.ts)
  --out DIR           where the merged rows go (DIR/results) and the shards run (DIR/shards/<task>); required
  --data DIR, --no-hub, --backend B, --limit N, --cell-timeout-s S, --preload FILE
                      passed to every task's run.ts (as run.ts)
  --gpus N            GPUs per task (default 1 with --backend webgpu, else 0)
  --cpus N            CPUs per task (default 4); --mem-gb N (default 32)
  --time-min N        time limit per task (default: (its most cells + 1) × the cell time limit)
  --partition P       Slurm partition (default: the cluster's)
  --only K[,K...]     only these array tasks (resubmit one that failed or was killed)
  --replan            plan anew from the pending cells (default: reuse DIR/shards/plan.json when present)
  --dry-run           print the script and stop
  --submit            sbatch it (else it is written to DIR/shards/array.sh with the command to submit it)
  --wait              with --submit: wait until every task ends, then merge
  --merge             merge the shards' rows into DIR/results now
  --help              this text`;

const { values: a } = parseArgs({
  options: {
    matrix: { type: 'string', default: 'default' },
    slice: { type: 'string', default: '' },
    out: { type: 'string' },
    data: { type: 'string' },
    'no-hub': { type: 'boolean', default: false },
    backend: { type: 'string' },
    limit: { type: 'string' },
    'cell-timeout-s': { type: 'string' },
    preload: { type: 'string', multiple: true, default: [] },
    gpus: { type: 'string' },
    cpus: { type: 'string', default: '4' },
    'mem-gb': { type: 'string', default: '32' },
    'time-min': { type: 'string' },
    partition: { type: 'string' },
    only: { type: 'string' },
    replan: { type: 'boolean', default: false },
    'dry-run': { type: 'boolean', default: false },
    submit: { type: 'boolean', default: false },
    wait: { type: 'boolean', default: false },
    merge: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
  strict: true,
});
if (a.help) {
  printUsage(USAGE);
  process.exit(0);
}
if (!a.out) throw new Error('slurm: --out DIR is required');
const out = path.resolve(a.out);

const report = (added: Record<number, number>) => console.log(`merged into ${out}/results: ${Object.entries(added).map(([t, n]) => `track ${t} +${n}`).join(', ')} rows`);
if (a.merge && !a.submit) {
  report(mergeShards(out));
  process.exit(0);
}

// Every flag a task's run.ts gets, besides its slice and shard folder.
const matrixFile = matrixArg(a.matrix!);
const runFlags = shardRunFlags({ data: a.data, noHub: a['no-hub'], backend: a.backend, limit: a.limit, cellTimeoutS: a['cell-timeout-s'], preload: a.preload });
const mx = loadMatrix(a.matrix!);
if (a.backend) mx.backend = parseBackend(a.backend);
checkMatrix(mx);
let shards: Shard[];
if (fs.existsSync(planFile(out)) && !a.replan) shards = readPlan(out);
else {
  const slice = parseSlice(a.slice!);
  const plan = await runMatrix(mx, { slice, out, dataDir: a.data ?? null, hub: a['no-hub'] ? false : null, dryRun: true, preload: a.preload! });
  shards = shardsOf(plan.pendingCells, slice);
  if (!a['dry-run']) writePlan(out, matrixFile, shards);
}
const limitS = a['cell-timeout-s'] ? numberFlag('cell-timeout-s', a['cell-timeout-s'], { min: 0 }) || 1800 : (mx.cellTimeoutS ?? 1800);
const script = arrayScript({
  matrix: matrixFile,
  out,
  shards,
  runFlags,
  gpus: a.gpus ? numberFlag('gpus', a.gpus, { integer: true, min: 0 }) : (a.backend ?? mx.backend) === 'webgpu' ? 1 : 0,
  cpus: numberFlag('cpus', a.cpus!, { integer: true, min: 1 }),
  memGb: numberFlag('mem-gb', a['mem-gb']!, { integer: true, min: 1 }),
  timeMin: a['time-min'] ? numberFlag('time-min', a['time-min'], { integer: true, min: 1 }) : Math.ceil(((Math.max(0, ...shards.map((s) => s.cells)) + 1) * limitS) / 60),
  partition: a.partition ?? null,
  only: a.only ? a.only.split(',').map((k) => numberFlag('only', k, { integer: true, min: 0 })) : null,
  node: process.execPath,
});
if (a['dry-run']) {
  process.stdout.write(script);
  process.exit(0);
}
const file = path.join(out, 'shards', 'array.sh');
writeFileAtomic(file, script);
console.log(`${shards.length} task(s), one per model × method pair with pending cells; script ${file}`);
if (!a.submit) {
  console.log(`submit with: sbatch ${file}   (then: npx tsx scripts/slurm.ts --out ${a.out} --merge)`);
  process.exit(0);
}
let code = 0;
try {
  // --wait: sbatch returns when every array task has ended (non-zero when one failed).
  console.log(execFileSync('sbatch', [...(a.wait ? ['--wait'] : []), '--parsable', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim());
} catch (e) {
  console.error(`sbatch: ${(e as Error).message.split('\n')[0]} (a task failed or was cancelled: resubmit it with --only K)`);
  code = 1;
}
if (a.wait) report(mergeShards(out));
process.exit(code);
