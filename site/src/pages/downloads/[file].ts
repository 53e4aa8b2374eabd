// The tidy CSVs behind each page, served as static files (copied from data/, or a header-only
// file where a track has not been run, so that every link works).
import fs from 'node:fs';
import path from 'node:path';
import type { APIRoute } from 'astro';
import { formatCsv } from '../../../../lib/csv';
import { formatOverallCsv } from '../../../../lib/metrics/overall';
import { COLUMNS } from '../../../../lib/results';
import { loadSiteData } from '../../lib/data';

export function getStaticPaths() {
  return loadSiteData().files.map((f) => ({ params: { file: f.name } }));
}

export const GET: APIRoute = ({ params }) => {
  const data = loadSiteData();
  const f = data.files.find((x) => x.name === params.file);
  if (!f) throw new Error(`unknown download ${params.file}`);
  let body: string;
  if (f.exists) body = fs.readFileSync(path.join(data.dataDir, f.rel), 'utf8');
  else if (f.name === 'overall.csv') body = formatOverallCsv(data.overall);
  else body = formatCsv(COLUMNS, []);
  return new Response(body, { headers: { 'Content-Type': 'text/csv; charset=utf-8' } });
};
