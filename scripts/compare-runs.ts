// Is a re-run reproducible? Compares the scores (Tracks 1, 2, 6) of the cells two data roots both
// ran (lib/metrics/rerun.ts): accuracies and every other score must be equal, perplexities within
// 0.01%. Prints a table by track and metric and every mismatch; writes one row per track and metric
// (with both runs' devices and git shas) to --out; exits 1 on any mismatch or when no cell is shared.
//   npx tsx scripts/run.ts --slice "tracks=1,2,6;models=llama-700k" --out tmp/rerun   (a second run of a slice)
//   npx tsx scripts/compare-runs.ts --a data --b tmp/rerun [--out data/bench/rerun.csv]
import { existsSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpFromHeader } from '../lib/help';
import { compareRuns, SCORE_TRACKS } from '../lib/metrics/rerun';
import { readResults, trackFile, type ResultRow } from '../lib/results';
import { writeBenchCsv } from '../lib/runtime';
helpFromHeader(import.meta.url);

const { values: a } = parseArgs({
  options: {
    a: { type: 'string' }, // the first run's data root (its results/ folder holds track<N>.csv)
    b: { type: 'string' }, // the second run's
    out: { type: 'string', default: 'data/bench/rerun.csv' },
  },
  strict: true,
});
for (const k of ['a', 'b'] as const) {
  if (!a[k]) fail(`--${k} DIR is required (a data root with results/track<N>.csv)`);
  if (!existsSync(path.join(a[k]!, 'results'))) fail(`--${k} ${a[k]}: no results/ folder there`);
}

function fail(why: string): never {
  console.error(`compare-runs: ${why}`);
  process.exit(1);
}

const rows = (root: string): ResultRow[] => SCORE_TRACKS.flatMap((t) => readResults(trackFile(t, root)));
const { metrics, mismatches, pairs } = compareRuns(rows(a.a!), rows(a.b!));
if (metrics.length === 0) fail(`${a.a} and ${a.b} share no ok score row of a matrix cell`);
// Provenance of the rows compared (not of everything under the roots).
const runOf = (side: 0 | 1) => ({
  device: [...new Set(pairs.map((p) => p[side].device))].join(' / '),
  sha: [...new Set(pairs.map((p) => p[side].git_sha.slice(0, 10)))].join(' / '),
});
const [pa, pb] = [runOf(0), runOf(1)];
console.log('track  metric     cells  identical  max rel diff  tolerance  pass');
for (const m of metrics) console.log(`${String(m.track).padEnd(6)} ${m.metric.padEnd(10)} ${String(m.compared).padStart(5)}  ${String(m.identical).padStart(9)}  ${m.maxRelDiff.toExponential(2).padStart(12)}  ${m.tolerance.toExponential(0).padStart(9)}  ${m.pass}`);
for (const x of mismatches) console.log(`MISMATCH track ${x.track} ${x.model} ${x.method} ${x.task} ${x.metric}: ${x.a} vs ${x.b} (rel ${x.relDiff.toExponential(2)})`);
writeBenchCsv(a.out!, metrics.map((m) => ({
  track: m.track, metric: m.metric, cells: m.compared, identical: m.identical, max_rel_diff: m.maxRelDiff, tolerance: m.tolerance, pass: m.pass,
  run_a: a.a, device_a: pa.device, git_sha_a: pa.sha, run_b: a.b, device_b: pb.device, git_sha_b: pb.sha,
})));
console.log(`wrote ${a.out}; ${mismatches.length === 0 ? 'reproduced' : `${mismatches.length} mismatch(es)`}`);
process.exit(mismatches.length === 0 ? 0 : 1);
