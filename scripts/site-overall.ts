// Recomputes data/overall.csv: the paper's overall metrics from data/paper (next to the published
// ones) and the kit's from data/results/track<N>.csv. Usage: npx tsx scripts/site-overall.ts [--data DIR]
import path from 'node:path';
import { computeOverall, writeOverallCsv } from '../lib/metrics/overall';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

const args = process.argv.slice(2);
const k = args.indexOf('--data');
const dataDir = k >= 0 ? args[k + 1] : process.env.LLMCB_DATA_DIR ?? 'data';
if (k >= 0 && !dataDir) throw new Error('--data needs a directory');
const rows = computeOverall(dataDir);
const file = path.join(dataDir, 'overall.csv');
writeOverallCsv(file, rows);
const kit = rows.filter((r) => r.source === 'kit');
console.log(`${file}: ${rows.length - kit.length} paper rows, ${kit.length} kit rows (${kit.filter((r) => r.status === 'ok').length} with a value)`);
for (const r of rows.filter((r) => r.source === 'paper' && r.published !== null && r.value !== null)) {
  const d = (r.value as number) - (r.published as number);
  if (Math.abs(d) > 0.01) console.log(`  note: Track ${r.track} ${r.om} ${r.method} ${r.setting}: recomputed ${r.value?.toFixed(2)}, published ${r.published} (Δ ${d.toFixed(2)})`);
}
