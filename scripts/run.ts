// Headless runner of the benchmark matrix: any slice, resumable (cells whose config hash already
// has rows under --out are skipped), rows through lib/results.ts, then data/overall.csv and the
// paper-layout tables derived from the rows.
//
//   npx tsx scripts/run.ts [--matrix default|smoke|FILE.json] [--slice "tracks=1,4;models=stories260K;methods=gptq-w4"]
//     [--out DIR] [--data DIR] [--no-hub] [--backend webgpu|wasm|cpu|auto] [--limit N] [--cell-timeout-s S]
//     [--budget-s S] [--retry] [--list] [--no-derived]
//
// Exit codes: 0 done (or stopped by --budget-s: rerun to continue), 1 a cell failed, 3 a cell timed
// out (recorded not_run; the process exits so that its work stops; rerun to continue).
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { canonicalJson, checkMatrix, MATRICES, matrixFromJson, parseSlice, type MatrixConfig } from '../lib/matrix';
import { parseBackend } from '../lib/runtime/backend';
import { runMatrix } from '../lib/tracks/runner';
import { writeDerived } from '../lib/tracks/tables';

const USAGE = `usage: npx tsx scripts/run.ts [--matrix default|smoke|FILE.json] [--slice SPEC] [--out DIR] [--data DIR] [--no-hub]
  [--backend webgpu|wasm|cpu|auto] [--limit N] [--cell-timeout-s S] [--budget-s S] [--retry] [--list] [--no-derived]
  --slice "tracks=1,4;models=a,b;methods=gptq-w4,wanda;tasks=wikitext2;engines=kit"`;

function loadMatrix(name: string): MatrixConfig {
  if (name in MATRICES) return MATRICES[name as keyof typeof MATRICES]();
  if (!fs.existsSync(name)) throw new Error(`--matrix '${name}' is neither ${Object.keys(MATRICES).join(', ')} nor a JSON file`);
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(name, 'utf8'));
  } catch (e) {
    throw new Error(`--matrix ${name}: not JSON: ${(e as Error).message}`);
  }
  return matrixFromJson(j, name);
}

function num(name: string, v: string | undefined, min: number): number | null {
  if (v === undefined) return null;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new Error(`--${name} ${v}: expected a number ≥ ${min}`);
  return n;
}

async function main(): Promise<number> {
  const { values: a } = parseArgs({
    options: {
      matrix: { type: 'string', default: 'default' },
      slice: { type: 'string', default: '' },
      out: { type: 'string', default: process.env.LLMCB_DATA_OUT ?? 'data' },
      data: { type: 'string' },
      'no-hub': { type: 'boolean', default: false },
      backend: { type: 'string' },
      limit: { type: 'string' },
      'cell-timeout-s': { type: 'string' },
      'budget-s': { type: 'string' },
      retry: { type: 'boolean', default: false },
      list: { type: 'boolean', default: false },
      'no-derived': { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (a.help) {
    console.log(USAGE);
    return 0;
  }
  const mx = loadMatrix(a.matrix!);
  if (a.backend) mx.backend = parseBackend(a.backend);
  const limit = num('limit', a.limit, 1);
  if (limit !== null) mx.eval.limit = limit;
  const timeout = num('cell-timeout-s', a['cell-timeout-s'], 1);
  if (timeout !== null) mx.cellTimeoutS = timeout;
  checkMatrix(mx);
  const slice = parseSlice(a.slice!);
  const summary = await runMatrix(mx, {
    slice, out: a.out!, dataDir: a.data ?? null, hub: a['no-hub'] ? false : null, retry: a.retry!, budgetS: num('budget-s', a['budget-s'], 0),
    dryRun: a.list!,
  });
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
  for (const f of summary.failed) console.error(`FAILED ${f.cell}: ${f.error}`);
  if (summary.stopped === 'timeout') return 3;
  return summary.failed.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(`run: ${(e as Error).message}`);
    process.exit(1);
  },
);
