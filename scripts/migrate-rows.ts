// Rewrites result CSVs to the metric catalogue's names (lib/metrics/catalogue.ts, lib/metrics/migrate.ts):
// <data>/results/track<N>.csv rows (Track 3 compression/time_s -> compress/wall_time_s, peak_tensor_bytes
// -> peak_memory_bytes, peak_gpu_bytes (the WebGPU pool's high-water) -> gpu_pool_high_water_bytes;
// Track 4 stored_size_bytes -> model_size_bytes; Track 5 *_tok_s -> *_tok_per_s and the kit engine
// 'webgpu' -> 'kit') and the
// engine and metric columns of <data>/bench/track5-speedup.csv. Then it gives rows written before the
// runner stamped cell keys (reproduce-reference.ts, bench-engines.ts) the key of the matrix cell that
// computes what they measured, where a matrix of <data>/results/matrices/*.json expresses their
// protocol exactly (lib/metrics/migrate.ts cellOfRow); the runner then resumes on them. Rows no
// matrix expresses keep no key; the reasons are printed. Keys hold the data identity of the datasets
// root (--datasets, else resolveDataDir's search), so one must be present.
// Only names and keys change, never a measured value. Idempotent (a second run changes nothing);
// each file is replaced atomically, and only when something changed.
//
//   npx tsx scripts/migrate-rows.ts [--data data] [--matrices DIR] [--datasets DIR] [--dry-run]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import { resolveDataDir } from '../lib/data/common';
import { expandCells, loadMatrix } from '../lib/matrix';
import { keyRows, migrateRow, migrateSpeedupRecord, type PlannedMatrix } from '../lib/metrics/migrate';
import { taskTrack } from '../lib/tracks/evaluation';
import { readResults, rewriteResults, trackFile, writeFileAtomic, TRACKS, type Track } from '../lib/results';
helpFromHeader(import.meta.url);

const { values: v } = parseArgs({
  options: { data: { type: 'string', default: 'data' }, matrices: { type: 'string' }, datasets: { type: 'string' }, 'dry-run': { type: 'boolean', default: false } },
});
const root = v.data as string;
if (!fs.existsSync(root)) throw new Error(`--data ${root}: no such folder`);
const dry = v['dry-run'] as boolean;
const matricesDir = v.matrices ?? path.join(root, 'results', 'matrices');
const matrixFiles = fs.existsSync(matricesDir) ? fs.readdirSync(matricesDir).filter((f) => f.endsWith('.json')).sort() : [];
const datasets = resolveDataDir(v.datasets ?? null, REPO_ROOT);
if (matrixFiles.length > 0 && datasets === null) throw new Error('no datasets root (--datasets or ../shared/datasets): cell keys hold the data identity, so keying needs the datasets');
const planned: PlannedMatrix[] = matrixFiles.map((f) => {
  const matrix = loadMatrix(path.join(matricesDir, f));
  return { matrix, cells: expandCells(matrix, {}, taskTrack, datasets) };
});
console.log(`matrices: ${planned.map((p) => `${p.matrix.name} (${p.cells.length} cells)`).join(', ') || 'none'}; datasets ${datasets ?? 'none'}`);
let changedFiles = 0;

for (const t of Object.keys(TRACKS).map(Number) as Track[]) {
  const file = trackFile(t, root);
  const rows = readResults(file);
  const renamed = rows.map(migrateRow);
  const keys = keyRows(renamed, planned);
  const migrated = keys.rows;
  const changed = migrated.filter((r, k) => r !== rows[k]).length;
  if (rows.length) console.log(`${file}: ${renamed.filter((r, k) => r !== rows[k]).length} of ${rows.length} rows renamed, ${keys.keyed} given cell keys`);
  const why = new Map<string, number>();
  for (const u of keys.unkeyed) why.set(u.reason, (why.get(u.reason) ?? 0) + 1);
  for (const [reason, n] of why) console.log(`  ${n} row(s) without a cell: ${reason}`);
  if (changed === 0 || dry) continue;
  rewriteResults(file, migrated);
  changedFiles++;
}

const speedup = path.join(root, 'bench', 'track5-speedup.csv');
if (fs.existsSync(speedup)) {
  const text = fs.readFileSync(speedup, 'utf8');
  const recs = parseCsvRecords(text, speedup);
  const header = text.slice(0, text.indexOf('\n')).split(',');
  for (const col of ['engine', 'metric']) if (!header.includes(col)) throw new Error(`${speedup}: no '${col}' column (header: ${header.join(',')})`);
  const out = recs.map(migrateSpeedupRecord);
  const changed = out.filter((r, k) => r.engine !== recs[k].engine || r.metric !== recs[k].metric).length;
  console.log(`${speedup}: ${changed} of ${recs.length} rows renamed`);
  if (changed > 0 && !dry) {
    writeFileAtomic(speedup, formatCsv(header, out.map((r) => header.map((h) => r[h]))));
    changedFiles++;
  }
}
console.log(dry ? 'dry run: nothing written' : `${changedFiles} file(s) rewritten`);
