// Each track figure as a download: figures/<id>.svg (as on the page), .png (rendered from that SVG
// by resvg, 2x) and .csv (the rows the figure draws).
import type { APIRoute } from 'astro';
import { Resvg } from '@resvg/resvg-js';
import { formatCsv } from '../../../../lib/csv';
import { allTrackFigures, renderSvg } from '../../lib/charts';
import { loadSiteData } from '../../lib/data';

const KINDS = ['svg', 'png', 'csv'] as const;
const TYPES: Record<(typeof KINDS)[number], string> = { svg: 'image/svg+xml', png: 'image/png', csv: 'text/csv; charset=utf-8' };

export function getStaticPaths() {
  return allTrackFigures(loadSiteData()).flatMap((f) => KINDS.map((k) => ({ params: { file: `${f.id}.${k}` } })));
}

export const GET: APIRoute = async ({ params }) => {
  const [, id, kind] = (params.file ?? '').match(/^(.+)\.(svg|png|csv)$/) ?? [];
  const fig = allTrackFigures(loadSiteData()).find((f) => f.id === id);
  if (!fig) throw new Error(`unknown figure download '${params.file}'`);
  const k = kind as (typeof KINDS)[number];
  let body: string | Uint8Array;
  if (k === 'csv') {
    const cols = [...new Set(fig.rows.flatMap((r) => Object.keys(r)))];
    body = formatCsv(cols, fig.rows.map((r) => cols.map((c) => (r[c] === null || r[c] === undefined ? '' : String(r[c])))));
  } else {
    const svg = await renderSvg(fig.spec, fig.title);
    body = k === 'svg' ? svg : new Resvg(svg, { background: 'white', fitTo: { mode: 'zoom', value: 2 } }).render().asPng();
  }
  return new Response(body, { headers: { 'Content-Type': TYPES[k] } });
};
