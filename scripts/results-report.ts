// Writes data/RESULTS.md: what ran where, on which device, in how long, generated from
// data/results/track<N>.csv (per run: tracks, models, row statuses, device, backend, git sha, cell
// wall time) and data/runs.csv (whole runs of scripts/run.ts, loading and compressing included).
// Usage: npx tsx scripts/results-report.ts [--data DIR]   (default: LLMCB_DATA_DIR or data)
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpFromHeader } from '../lib/help';
import { resultsMarkdown } from '../lib/metrics/provenance';
import { writeFileAtomic } from '../lib/results';
helpFromHeader(import.meta.url);

const { values: a } = parseArgs({ options: { data: { type: 'string', default: process.env.LLMCB_DATA_DIR ?? 'data' } }, strict: true });
const file = path.join(a.data!, 'RESULTS.md');
writeFileAtomic(file, resultsMarkdown(a.data!));
console.log(`wrote ${file}`);
