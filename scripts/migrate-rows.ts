// Rewrites result CSVs to the metric catalogue's names (lib/metrics/catalogue.ts, lib/metrics/migrate.ts):
// <data>/results/track<N>.csv rows (Track 3 compression/time_s -> compress/wall_time_s, peak_tensor_bytes
// -> peak_memory_bytes, peak_gpu_bytes (the WebGPU pool's high-water) -> gpu_pool_high_water_bytes;
// Track 4 stored_size_bytes -> model_size_bytes; Track 5 *_tok_s -> *_tok_per_s and the kit engine
// 'webgpu' -> 'kit') and the
// engine and metric columns of <data>/bench/track5-speedup.csv. Only names change, never a measured
// value. Idempotent (a second run changes nothing); each file is replaced atomically, and only when
// something changed.
//
//   npx tsx scripts/migrate-rows.ts [--data data] [--dry-run]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpFromHeader } from '../lib/cli';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import { migrateRow, migrateSpeedupRecord } from '../lib/metrics/migrate';
import { readResults, rewriteResults, trackFile, writeFileAtomic, TRACKS, type Track } from '../lib/results';
await helpFromHeader(import.meta.url);

const { values: v } = parseArgs({ options: { data: { type: 'string', default: 'data' }, 'dry-run': { type: 'boolean', default: false } } });
const root = v.data as string;
if (!fs.existsSync(root)) throw new Error(`--data ${root}: no such folder`);
const dry = v['dry-run'] as boolean;
let changedFiles = 0;

for (const t of Object.keys(TRACKS).map(Number) as Track[]) {
  const file = trackFile(t, root);
  const rows = readResults(file);
  const migrated = rows.map(migrateRow);
  const changed = migrated.filter((r, k) => r !== rows[k]).length;
  if (rows.length) console.log(`${file}: ${changed} of ${rows.length} rows renamed`);
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
