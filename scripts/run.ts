// Headless runner of the benchmark matrix: any slice, resumable (cells whose config hash already
// has rows under --out are skipped), rows through lib/results.ts, then data/overall.csv and the
// paper-layout tables derived from the rows; it ends with a summary table of the key numbers
// (lib/tracks/summary.ts) and the paths of the CSVs.
//
//   npx tsx scripts/run.ts [--matrix default|smoke|engines|FILE.json] [--slice "tracks=1,4;models=stories260K;methods=gptq-w4"]
//     [--out DIR] [--data DIR] [--no-hub] [--backend webgpu|wasm|cpu|auto] [--limit N] [--cell-timeout-s S]
//     [--budget-s S] [--preload FILE] [--retry] [--redo] [--list] [--no-derived]   (--help says what each does)
//     [--gpus N | --devices 0,2]   (several GPUs of one host: a worker per GPU, lib/shard-pool.ts)
//
// Exit codes: 0 done (or stopped by --budget-s: rerun to continue), 1 a cell failed (or the run could
// not start: a bad flag, another run holds --out), 3 a cell timed out (killed at --cell-timeout-s and
// recorded not_run; the other cells ran; rerun to retry it). 3 wins over 1.
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { printUsage } from '../lib/help';
import { gpuSlots, listNvidiaGpus, parseDevices, slotLabel } from '../lib/gpus';
import { checkMatrix, loadMatrix, parseSlice } from '../lib/matrix';
import { canonicalJson } from '../lib/metrics/names';
import { dataOutDir } from '../lib/results';
import { parseBackend } from '../lib/runtime/backend';
import { poolReport, runShardPool } from '../lib/shard-pool';
import { extendPlan, matrixArg, readPlan, shardRunFlags } from '../lib/slurm';
import { runMatrix } from '../lib/tracks/runner';
import { emptySettings, formatSummary, summaryLines } from '../lib/tracks/summary';
import { writeDerived } from '../lib/tracks/tables';

const USAGE = `usage: npx tsx scripts/run.ts [flags]

  --matrix default|smoke|engines|FILE.json  the matrix (a file overrides the default matrix field by field); default: default
  --slice SPEC          part of the matrix, e.g. "tracks=1,4;models=a,b;methods=gptq-w4,wanda;tasks=wikitext2;engines=kit"
  --out DIR             data root: rows go to DIR/results/track<N>.csv, and a line per run (wall time by track, device,
                        git sha) to DIR/runs.csv (default: LLMCB_DATA_OUT or data). One run at a
                        time: DIR/.run.lock names the run holding it; a second run is refused; a lock left by a dead
                        process on this host is taken over with a warning
  --data DIR            datasets root (default: LLMCB_DATA, else ../shared/datasets when present)
  --no-hub              never download absent datasets
  --backend B           webgpu|wasm|cpu|auto (default: the matrix's); cell processes start the same backend
  --limit N             documents per task (default: the matrix's)
  --cell-timeout-s S    limit in seconds on each cell and on each model × method's loading and compressing (default:
                        the matrix's, 1800; smoke 300). The model × method pairs run one after another in a child
                        process that is killed at the limit: the cell's rows say not_run "timeout after S s", a fresh
                        child goes on, exit code 3. 0: no limit, cells run in this process (a hung cell hangs the run)
  --budget-s S          start no new model × method after S seconds (rerun to continue)
  --preload FILE        a module to import first, here and in every cell process (it may register extra methods or
                        tasks); repeatable
  --retry               also redo cells whose rows say no_data
  --redo                run every cell of the slice again, finished ones too: new rows are added and each cell's latest
                        row counts in the tables (re-measuring after an engine change). Not resumable (a rerun redoes
                        them again); not with --gpus/--devices
  --list                only list the pending cells
  --no-derived          skip data/overall.csv and the paper-layout tables
  --gpus N              several GPUs of one host: one worker per GPU (the first N nvidia-smi lists), each pinned to
                        its GPU and taking the next model × method shard from a shared queue; a shard runs into
                        DIR/shards/<i> (as a Slurm task) and is merged into DIR/results by cell hash when it ends.
                        Resumable: a rerun merges what the shards hold and runs only the shards with pending cells.
                        With --backend wasm|cpu: N worker processes on the CPU. --list prints the shards and GPUs
  --devices I,J         as --gpus, on these GPUs (nvidia-smi's indices)
  --help                this text

exit codes: 0 done (or stopped by --budget-s), 1 a cell failed or the run could not start, 3 a cell timed out`;


async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      matrix: { type: 'string', default: 'default' },
      slice: { type: 'string', default: '' },
      out: { type: 'string', default: dataOutDir() },
      data: { type: 'string' },
      'no-hub': { type: 'boolean', default: false },
      backend: { type: 'string' },
      limit: { type: 'string' },
      'cell-timeout-s': { type: 'string' },
      'budget-s': { type: 'string' },
      preload: { type: 'string', multiple: true, default: [] },
      retry: { type: 'boolean', default: false },
      redo: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      'no-derived': { type: 'boolean', default: false },
      gpus: { type: 'string' },
      devices: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (a.help) {
    printUsage(USAGE, true);
    return 0;
  }
  // Before the matrix is read: a preloaded module may register the methods or tasks it names.
  for (const p of a.preload!) await import(pathToFileURL(path.resolve(p)).href);
  const mx = loadMatrix(a.matrix!);
  if (a.backend) mx.backend = parseBackend(a.backend);
  const limit = numberFlag('limit', a.limit, { min: 1 });
  if (limit !== undefined) mx.eval.limit = limit;
  const timeout = numberFlag('cell-timeout-s', a['cell-timeout-s'], { min: 0 });
  if (timeout !== undefined) mx.cellTimeoutS = timeout === 0 ? null : timeout;
  checkMatrix(mx);
  const slice = parseSlice(a.slice!);
  const budgetS = numberFlag('budget-s', a['budget-s'], { min: 0 }) ?? null;
  const planned = { slice, out: a.out!, dataDir: a.data ?? null, hub: a['no-hub'] ? false : null, retry: a.retry!, redo: a.redo!, preload: a.preload! };
  if (a.gpus !== undefined || a.devices !== undefined) {
    if (a.redo) throw new Error('--redo runs in one process: not with --gpus/--devices (shards resume by pending cells)');
    // several GPUs of one host: the shards of lib/slurm.ts over a worker per GPU (lib/shard-pool.ts)
    const listed = listNvidiaGpus();
    const slots = gpuSlots(parseDevices(a.gpus, a.devices), listed);
    if (listed === null && slots.length > 1 && mx.backend !== 'wasm' && mx.backend !== 'cpu') {
      console.error(`warning: nvidia-smi does not answer, so the workers cannot be pinned by PCI address: on webgpu each uses the adapter Dawn shows it (each logs which)`);
    }
    const pending = async () => (await runMatrix(mx, { ...planned, dryRun: true })).pendingCells;
    if (a.list) {
      const cells = await pending();
      const shards = extendPlan(readPlan(a.out!), cells, slice);
      console.log(`matrix '${mx.name}': ${cells.length} pending cells; workers: ${slots.map(slotLabel).join('; ')}`);
      for (const [i, sh] of shards.entries()) {
        const n = cells.filter((c) => c.model.id === sh.model && c.method.id === sh.method).length;
        if (n) console.log(`  shard ${i}  ${sh.slice}  ${n} pending cell(s)`);
      }
      return 0;
    }
    const runFlags = shardRunFlags({ data: a.data, noHub: a['no-hub'], backend: a.backend, limit: a.limit, cellTimeoutS: a['cell-timeout-s'], preload: a.preload, retry: a.retry });
    const checkPins = slots.length > 1 && mx.backend !== 'wasm' && mx.backend !== 'cpu' && slots.some((s) => s.pciBusId);
    const pool = await runShardPool({ out: a.out!, matrix: matrixArg(a.matrix!), slice, runFlags, slots, pending, checkPins, budgetS, log: (l) => console.error(l) });
    if (!a['no-derived']) for (const f of writeDerived(a.out!)) console.error(`wrote ${f}`);
    for (const l of poolReport(pool, slots)) console.log(l);
    return pool.code;
  }
  const summary = await runMatrix(mx, { ...planned, budgetS, dryRun: a.list! });
  if (a.list) {
    console.log(`matrix '${mx.name}' (${canonicalJson({ backend: mx.backend, eval: mx.eval }).slice(0, 120)}): ${summary.cells} cells, ${summary.pending} pending`);
    for (const c of summary.pendingCells) console.log(`  track ${c.track}  ${c.model.id}  ${c.method.id}  ${c.item}  ${c.hash}`);
    return 0;
  }
  if (!a['no-derived']) for (const f of writeDerived(a.out!)) console.error(`wrote ${f}`);
  const byStatus = new Map<string, number>();
  for (const r of summary.rows) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
  console.log(
    `matrix '${mx.name}': ${summary.cells} cells, ${summary.pending} pending, ${summary.ran} ran, ${summary.rows.length} rows (${[...byStatus].map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}), ` +
      `wall time ${summary.wallS.toFixed(1)} s${summary.stopped ? `, stopped: ${summary.stopped} (rerun to resume)` : ''}`,
  );
  const absent = [...new Set(summary.rows.filter((r) => r.status === 'no_data').map((r) => r.task.split('/')[0]))];
  if (absent.length) {
    console.log(`no data for: ${absent.join(', ')} (rerun with --data DIR or LLMCB_DATA pointing at the datasets: those cells then run by themselves; --retry tries the hub again)`);
  }
  console.log(formatSummary(summaryLines(a.out!), a.out!, emptySettings(a.out!)));
  for (const f of summary.failed) console.error(`FAILED ${f.cell}: ${f.error}`);
  for (const f of summary.timedOut) console.error(`TIMEOUT ${f.cell}: ${f.error} (recorded not_run; rerun to retry)`);
  if (summary.timedOut.length) return 3;
  return summary.failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`run: ${(e as Error).message}`);
    process.exit(1);
  },
);
