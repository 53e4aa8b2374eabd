// Tables and figures derived from the tidy rows: the paper-layout tables (Tracks 1, 2 and 4 in
// the paper's row and column order), data/overall.csv, and vega-lite specs for the notebooks.
import fs from 'node:fs';
import path from 'node:path';
import { formatCsv } from '../csv';
import { INFERENCE, INFERENCE_COST, KNOWLEDGE, kitColumn } from '../metrics/names';
import { groupKitRows, kitOverall, paperOverall, writeOverallCsv, type OverallRow } from '../metrics/overall';
import { readResults, trackFile, writeFileAtomic, type ResultRow, type Track } from '../results';

/** The paper's column order per track (Track 2: one column per model). */
export const PAPER_COLUMNS: Partial<Record<Track, readonly string[]>> = {
  1: [...KNOWLEDGE, ...INFERENCE],
  2: ['WikiText2-PPL'],
  4: INFERENCE_COST,
};

export interface Table {
  header: string[];
  rows: (string | number | null)[][];
}

/** Every row of a track under a data root. */
export function trackRows(out: string, track: Track): ResultRow[] {
  return readResults(trackFile(track, out));
}

/**
 * A paper-layout table: one row per method setting in the paper's order, one column per
 * (model, paper column), values in the paper's units (bytes → GB, MACs → TMACs, fractions → %).
 */
export function paperLayout(track: Track, rows: readonly ResultRow[]): Table {
  const cols = PAPER_COLUMNS[track];
  if (!cols) throw new Error(`Track ${track} has no paper-layout table (the paper gives Tracks 1, 2 and 4)`);
  const groups = groupKitRows(rows, track);
  const models = [...new Set(rows.filter((r) => r.track === track).map((r) => r.model))].sort();
  const header = ['method', 'setting', ...models.flatMap((m) => cols.map((c) => (track === 2 ? m : `${m} ${c}`)))];
  const body = groups.map((g) => {
    const cells = models.flatMap((m) =>
      cols.map((c) => {
        const cell = g.cells.get(`${m}\u0000${c}`);
        if (!cell) return null;
        const scale = kitColumn(track, cell.row.task, cell.row.metric).scale;
        const pct = cell.row.higher_is_better && (cell.row.value as number) <= 1 && track === 1 ? 100 : 1;
        return Number(((cell.row.value as number) * scale * pct).toPrecision(6));
      }),
    );
    return [g.method, g.setting, ...cells];
  });
  return { header, rows: body };
}

export function tableCsv(t: Table): string {
  return formatCsv(t.header, t.rows.map((r) => r.map((v) => (v === null ? '' : String(v)))));
}

/** The overall metrics of the kit's rows under `out` (and the paper's, recomputed, when dataDir has data/paper). */
export function overallRows(out: string, paperDataDir = 'data'): OverallRow[] {
  const paper = fs.existsSync(path.join(paperDataDir, 'paper')) ? paperOverall(paperDataDir) : [];
  const kit = ([1, 2, 3, 4, 5, 6] as Track[]).flatMap((t) => kitOverall(trackRows(out, t), t));
  return [...paper, ...kit];
}

/** Writes <out>/overall.csv and <out>/tables/track{1,2,4}_paper_layout.csv; returns the files written. */
export function writeDerived(out: string, paperDataDir = 'data'): string[] {
  const files: string[] = [];
  const overall = path.join(out, 'overall.csv');
  writeOverallCsv(overall, overallRows(out, paperDataDir));
  files.push(overall);
  for (const t of [1, 2, 4] as Track[]) {
    const rows = trackRows(out, t);
    if (rows.length === 0) continue;
    const f = path.join(out, 'tables', `track${t}_paper_layout.csv`);
    writeFileAtomic(f, tableCsv(paperLayout(t, rows)));
    files.push(f);
  }
  return files;
}

/** The latest ok value per (model, method config, task, metric), as plain objects for arquero. */
export function tidy(rows: readonly ResultRow[]): Record<string, unknown>[] {
  const latest = new Map<string, ResultRow>();
  for (const r of rows) {
    if (r.status !== 'ok') continue;
    const k = [r.model, r.method, JSON.stringify(r.method_config), r.task, r.metric].join('\u0000');
    const cur = latest.get(k);
    if (!cur || r.started_at >= cur.started_at) latest.set(k, r);
  }
  return [...latest.values()].map((r) => ({
    model: r.model, method: r.method, config: JSON.stringify(r.method_config), task: r.task, metric: r.metric,
    value: r.value, stderr: r.stderr, n: r.n, backend: r.backend,
  }));
}

/** A vega-lite bar chart: value per method configuration, one panel per (task, metric), colour by model. */
export function barSpec(data: Record<string, unknown>[], title: string): Record<string, unknown> {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    data: { values: data.map((d) => ({ ...d, label: `${d.method} ${d.config === '{}' ? '' : d.config}`.trim(), panel: `${d.task} · ${d.metric}` })) },
    facet: { field: 'panel', type: 'nominal', title: null },
    columns: 3,
    resolve: { scale: { x: 'independent' } },
    spec: {
      width: 220,
      height: { step: 14 },
      mark: 'bar',
      encoding: {
        y: { field: 'label', type: 'nominal', title: null, sort: null },
        x: { field: 'value', type: 'quantitative', title: null },
        color: { field: 'model', type: 'nominal' },
        yOffset: { field: 'model' },
        tooltip: [{ field: 'model' }, { field: 'label' }, { field: 'value', format: '.4g' }],
      },
    },
  };
}

/** Renders a vega-lite spec to SVG (vega's headless renderer, no browser). */
export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const compiled = vl.compile(spec as never).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
