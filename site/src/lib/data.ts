// Everything the site shows, read from data/ only (paper tables, kit results, overall metrics).
// Any malformed or missing required CSV throws an error naming the file and line: the build fails
// instead of publishing a blank page.
import fs from 'node:fs';
import path from 'node:path';
import { computeOverall, readAllResults, readOverallCsv, type OverallRow } from '../../../lib/metrics/overall';
import { PAPER_FILES, readPaperOverall, readPaperValues, type PaperOverall, type PaperValue } from '../../../lib/metrics/paper';
import type { ResultRow, Track } from '../../../lib/results';

export interface SiteData {
  dataDir: string;
  paper: PaperValue[];
  published: PaperOverall[];
  results: Map<Track, ResultRow[]>;
  /** Recomputed from the inputs above (the numbers the site shows). */
  overall: OverallRow[];
  /** data/overall.csv differs from the recomputation (shown as a warning, never silently). */
  overallStale: string | null;
  /** Files offered for download: name -> path under dataDir. */
  files: { name: string; rel: string; exists: boolean }[];
}

/** The data root: set by astro.config.mjs (LLMCB_DATA_DIR overrides), else ./data. */
export function siteDataDir(): string {
  return process.env.LLMCB_SITE_DATA ?? path.resolve(process.env.LLMCB_DATA_DIR ?? 'data');
}

let cache: { dir: string; data: SiteData } | null = null;

/** Loads and validates data/ once per build. */
export function loadSiteData(dataDir = siteDataDir()): SiteData {
  if (cache && cache.dir === dataDir) return cache.data;
  if (!fs.existsSync(dataDir)) throw new Error(`${dataDir}: data directory missing`);
  const paper = readPaperValues(dataDir);
  const published = readPaperOverall(dataDir);
  const results = readAllResults(dataDir);
  const overall = computeOverall(dataDir);
  const overallFile = path.join(dataDir, 'overall.csv');
  let overallStale: string | null = null;
  if (fs.existsSync(overallFile)) {
    const committed = readOverallCsv(overallFile); // validates: a malformed file fails the build
    if (JSON.stringify(committed) !== JSON.stringify(overall)) {
      overallStale = 'data/overall.csv differs from data/paper + data/results: regenerate it with `npx tsx scripts/site-overall.ts`. The site shows the recomputed values.';
    }
  } else {
    overallStale = 'data/overall.csv is absent: generate it with `npx tsx scripts/site-overall.ts`. The site shows values recomputed from data/.';
  }
  const files = [
    ...Object.keys(PAPER_FILES).map((n) => ({ name: `paper-${n}.csv`, rel: path.join('paper', `${n}.csv`) })),
    ...[1, 2, 3, 4, 5, 6].map((t) => ({ name: `results-track${t}.csv`, rel: path.join('results', `track${t}.csv`) })),
    { name: 'overall.csv', rel: 'overall.csv' },
  ].map((f) => ({ ...f, exists: fs.existsSync(path.join(dataDir, f.rel)) }));
  const data = { dataDir, paper, published, results, overall, overallStale, files };
  cache = { dir: dataDir, data };
  return data;
}
