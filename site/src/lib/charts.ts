// Figures as vega-lite specs, compiled and rendered to SVG at build time (the page needs no
// JavaScript). Each mark's `description` becomes an SVG <title>, so hovering a point shows its value.
import * as vega from 'vega';
import * as vl from 'vega-lite';
import type { TopLevelSpec } from 'vega-lite';
import { DISPLAY_SCALE, DISPLAY_UNIT, METRIC_CATALOGUE } from '../../../lib/metrics/catalogue';
import { groupKitRows, OVERALL_METRICS, TRACK_OM, type KitGroup, type OmName, type OverallRow } from '../../../lib/metrics/overall';
import { decodeSpeedups } from '../../../lib/tracks/summary';
import { isBaseline, paperMethodNames } from '../../../lib/metrics/names';
import type { Track } from '../../../lib/results';
import type { SiteData } from './data';
import { oursLabel, pairWithPaper, paperSettingOf, sameMethod } from './pairing';
import { fmt, TRACK_TITLES } from './tables';

const SERIES = ['paper', 'ours'] as const;
const COLORS = ['#1f77b4', '#d9480f'];

/** Compiles vega-lite, renders SVG headlessly, and makes it accessible and hoverable. */
export async function renderSvg(spec: TopLevelSpec, label: string): Promise<string> {
  const compiled = vl.compile(spec).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  try {
    let svg = await view.toSVG();
    svg = svg.replace(/<(path|line|rect|circle|text|symbol)\b([^>]*?)aria-label="([^"]*)"([^>]*?)\/>/g, '<$1$2aria-label="$3"$4><title>$3</title></$1>');
    const esc = label.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    svg = svg.replace(/^<svg /, `<svg role="img" aria-label="${esc}" preserveAspectRatio="xMidYMid meet" `);
    return svg;
  } finally {
    view.finalize();
  }
}

const baseConfig = {
  background: null,
  view: { stroke: null },
  font: 'system-ui, sans-serif',
  axis: { labelFontSize: 11, titleFontSize: 12 },
  legend: { labelFontSize: 11, titleFontSize: 12 },
} as const;

export interface RadarPoint {
  axis: string;
  series: (typeof SERIES)[number];
  value: number | null;
  note: string;
}

/** Of several kit overall rows (configurations), the one a single number shows: with a value, over the most (model, sub-metric) pairs, first on ties. */
function widest(rows: readonly OverallRow[]): OverallRow | undefined {
  return rows.filter((o) => o.value !== null).reduce<OverallRow | undefined>((best, o) => (!best || o.pairs > best.pairs ? o : best), undefined);
}

/**
 * A method's six overall metrics, the paper's and ours, at one setting: the paper's for the method
 * (paperSettingOf: its first in the paper's tables; published values, Track 2's without a setting)
 * and the kit's at the same setting (pairWithPaper); where the kit has no rows at it, another
 * setting, named in the note and in `settings`.
 */
export function radarData(data: SiteData, method: string): { points: RadarPoint[]; settings: string } {
  const points: RadarPoint[] = [];
  const setting = paperSettingOf(data.paper, method);
  const settingsUsed = new Set<string>();
  for (const t of [1, 2, 3, 4, 5, 6] as Track[]) {
    const om = TRACK_OM[t];
    const p = data.published.find((x) => x.track === t && x.om === om && sameMethod(x.method, method) && (x.setting === '' || x.setting === setting));
    if (p && p.setting) settingsUsed.add(`paper ${p.setting}`);
    points.push({ axis: om, series: 'paper', value: p ? p.value : null, note: p ? `${p.setting ? `${p.setting}, ` : ''}${p.source}` : 'not in data/paper' });
    const pairing = pairWithPaper(method, setting, data.overall.filter((o) => o.source === 'kit' && o.track === t && o.om === om));
    const k = widest(pairing.items);
    if (k) settingsUsed.add(`ours ${oursLabel(pairing, k.setting)}`);
    // Rows but no value (e.g. OM_perf without OM_ka's tasks): 'no data' and why; no rows: 'not run'.
    const settings = [...new Set(pairing.items.map((o) => o.setting))].join(', ');
    const why = pairing.items.length ? `no data: rows of ${settings} but no ${om} (the Track ${t} page says which cells are missing)` : 'not run';
    points.push({ axis: om, series: 'ours', value: k ? k.value : null, note: k ? `${oursLabel(pairing, k.setting)}, ${k.models}` : why });
  }
  return { points, settings: [...settingsUsed].join(', ') };
}

/** Radius of the outermost ring: values above it (Track 3's toy-scale OM_train) sit on it, their true value in the axis label. */
export const RADAR_CLAMP = 200;
const RADAR_RING = 50;
const SHAPES = ['circle', 'triangle-up'];
const DASHES = [[1, 0], [5, 3]];

/**
 * Paper Fig. 1: one radar per method over the tracks' overall metrics that have a value (paper or
 * ours), on a linear scale from 0 to at most RADAR_CLAMP with the 100 (= dense) ring drawn solid;
 * a value past the outer ring is drawn on it, hollow, and its true value is in the axis label and the
 * hover title. Paper and ours differ by colour, point shape and line dash.
 */
export function radarSpec(method: string, points: RadarPoint[]): TopLevelSpec {
  const axes = [1, 2, 3, 4, 5, 6].map((t) => TRACK_OM[t as Track]).filter((a) => points.some((p) => p.axis === a && p.value !== null));
  const maxV = Math.max(100, ...points.map((p) => p.value ?? 0));
  const R = Math.min(RADAR_CLAMP, Math.ceil(maxV / RADAR_RING) * RADAR_RING);
  // At least three corners, so that a method with one or two axes still gets readable rings.
  const corners = Math.max(axes.length, 3);
  const angle = (k: number) => Math.PI / 2 - (2 * Math.PI * k) / corners;
  const xy = (k: number, v: number) => ({ x: v * Math.cos(angle(k)), y: v * Math.sin(angle(k)) });
  const rings: { ring: number; k: number; x: number; y: number }[] = [];
  for (let ring = RADAR_RING; ring <= R; ring += RADAR_RING) {
    for (let k = 0; k <= corners; k++) rings.push({ ring, k, ...xy(k % corners, ring) });
  }
  const spokes = axes.map((a, k) => ({ a, x0: 0, y0: 0, ...xy(k, R) }));
  const labels = axes.map((a, k) => {
    const off = points.filter((p) => p.axis === a && p.value !== null && p.value > R).map((p) => `${p.series} ${fmt(p.value as number)}`);
    const { x, y } = xy(k, R * 1.18);
    return { label: a, sub: off.length ? `${off.join(', ')} ▸` : '', x, y, align: Math.abs(x) < R * 0.2 ? 'center' : x > 0 ? 'left' : 'right' };
  });
  const poly: Record<string, unknown>[] = [];
  const dots: Record<string, unknown>[] = [];
  for (const s of SERIES) {
    const present = axes.map((a, k) => ({ a, k, p: points.find((p) => p.axis === a && p.series === s) })).filter((x) => x.p && x.p.value !== null);
    present.forEach((x, i) => {
      const v = x.p!.value as number;
      const pt = { series: s, order: i, ...xy(x.k, Math.min(v, R)) };
      poly.push(pt);
      dots.push({ ...pt, fo: v > R ? 0 : 1, desc: `${method} · ${x.a} · ${s}: ${fmt(v)}${v > R ? ` (drawn at ${R})` : ''} (${x.p!.note})` });
    });
    if (present.length > 2) poly.push({ series: s, order: present.length, ...xy(present[0].k, Math.min(present[0].p!.value as number, R)) });
  }
  const lim = R * 1.5;
  const enc = {
    x: { field: 'x', type: 'quantitative', scale: { domain: [-lim, lim] }, axis: null },
    y: { field: 'y', type: 'quantitative', scale: { domain: [-lim, lim] }, axis: null },
  } as const;
  const series = (range: unknown[]) => ({ field: 'series', type: 'nominal', scale: { domain: [...SERIES], range }, legend: { orient: 'bottom', title: null } });
  const empty = axes.length === 0;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    description: `Radar chart of ${method}: overall metrics of the six tracks, paper and ours`,
    width: 260,
    height: 260,
    config: baseConfig,
    layer: [
      // The 100 (= dense) ring solid, the others dotted.
      ...[true, false].map((dense) => ({
        data: { values: rings.filter((r) => (r.ring === 100) === dense) },
        mark: { type: 'line', stroke: '#999', strokeWidth: dense ? 1.2 : 0.6, strokeDash: dense ? [1, 0] : [2, 3] },
        encoding: { ...enc, detail: { field: 'ring' }, order: { field: 'k' } },
      })),
      {
        // Ring values between the first two axes, clear of the axis names.
        data: { values: rings.filter((r) => r.k === 0).map((r) => ({ ...xy(0.5, r.ring), text: r.ring === 100 ? '100 = dense' : String(r.ring) })) },
        mark: { type: 'text', dx: 2, dy: -2, align: 'left', fontSize: 9, fill: '#777' },
        encoding: { ...enc, text: { field: 'text' } },
      },
      { data: { values: spokes }, mark: { type: 'rule', stroke: '#aaa', strokeWidth: 0.6 }, encoding: { x: { ...enc.x, field: 'x0' }, y: { ...enc.y, field: 'y0' }, x2: { field: 'x' }, y2: { field: 'y' } } },
      // Axis names, and under them the true value of any point past the outer ring.
      ...(['left', 'center', 'right'] as const).flatMap((align) => [
        {
          data: { values: (empty ? [{ label: 'no data on any track', sub: '', x: 0, y: 0, align: 'center' }] : labels).filter((l) => l.align === align) },
          mark: { type: 'text', fontSize: 11, fontWeight: 600, fill: '#444', baseline: 'bottom', align },
          encoding: { ...enc, text: { field: 'label' } },
        },
        {
          data: { values: labels.filter((l) => l.sub && l.align === align) },
          mark: { type: 'text', fontSize: 9, fill: '#666', baseline: 'top', dy: 3, align },
          encoding: { ...enc, text: { field: 'sub' } },
        },
      ]),
      {
        data: { values: poly.length ? poly : [{ series: 'paper', order: 0, x: 0, y: 0 }] },
        mark: { type: 'line', strokeWidth: 2, opacity: poly.length ? 0.9 : 0 },
        encoding: { ...enc, color: series(COLORS), strokeDash: series(DASHES), detail: { field: 'series' }, order: { field: 'order' } },
      },
      {
        data: { values: dots.length ? dots : [{ series: 'paper', x: 0, y: 0, fo: 1, desc: 'no data' }] },
        mark: { type: 'point', filled: true, size: 60, strokeWidth: 1.5, opacity: dots.length ? 1 : 0 },
        encoding: {
          ...enc, fill: series(COLORS), stroke: series(COLORS), shape: series(SHAPES),
          fillOpacity: { field: 'fo', type: 'quantitative', scale: null },
          description: { field: 'desc' },
        },
      },
    ],
  } as unknown as TopLevelSpec;
}

/** Powers of ten from lo to hi (both powers of ten): the ticks of a log axis, one label per decade. */
function decades(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.round(Math.log10(lo)); e <= Math.round(Math.log10(hi)); e++) out.push(10 ** e);
  return out;
}

export interface OmBar {
  row: string;
  series: string;
  value: number | null;
}

/**
 * An overall metric of a track (default: the track's radar axis) per method setting: published and
 * ours. Ours sits in a paper row only at the paper's setting (pairWithPaper; Track 2's table names
 * none: the method's setting in the other tables, written in the row); every other kit setting is a
 * row of its own, named by it. Missing values are labelled.
 */
export function omBars(data: SiteData, track: Track, om: OmName = TRACK_OM[track]): { bars: OmBar[]; om: OmName } {
  const bars: OmBar[] = [];
  const rowLabel = (m: string, s: string) => (s && s !== '0' && s !== 'FP16' ? `${m} ${s}` : m);
  const kit = data.overall.filter((o) => o.source === 'kit' && o.track === track && o.om === om && !isBaseline(o.method));
  const paired = new Set<OverallRow>();
  for (const p of data.published.filter((x) => x.track === track && x.om === om && !isBaseline(x.method))) {
    const pairing = pairWithPaper(p.method, p.setting || paperSettingOf(data.paper, p.method), kit);
    const ours = pairing.exact ? pairing.items : [];
    ours.forEach((o) => paired.add(o));
    const k = widest(ours);
    const row = p.setting ? rowLabel(p.method, p.setting) : k ? `${p.method} (ours ${k.setting})` : p.method;
    bars.push({ row, series: 'paper (published)', value: p.value });
    bars.push({ row, series: 'ours', value: k?.value ?? null });
  }
  const paperRows = new Set(bars.map((b) => b.row));
  const others = new Map<string, OverallRow[]>();
  for (const k of kit.filter((o) => !paired.has(o))) {
    const row = rowLabel(k.method, k.setting);
    // The kit's label may spell a paper label with another meaning (AWQ 'INT8' per channel, the paper's in groups of 128).
    const key = paperRows.has(row) ? `${row} (not the paper's)` : row;
    others.set(key, [...(others.get(key) ?? []), k]);
  }
  for (const [row, rows] of others) bars.push({ row, series: 'ours', value: widest(rows)?.value ?? null });
  if (bars.length === 0) {
    for (const m of paperMethodNames()) bars.push({ row: m, series: 'ours', value: null });
  }
  return { bars, om };
}

export function omBarSpec(track: Track, bars: OmBar[], om: OmName): TopLevelSpec {
  const rows = [...new Set(bars.map((b) => b.row))];
  const series = [...new Set(bars.map((b) => b.series))];
  const palette: Record<string, string> = { 'paper (published)': '#1f77b4', ours: '#d9480f' };
  // Track 3 at toy scale spans decades (OM_train of a 10 ms method against a minutes-long one): a log axis.
  const vals = bars.map((b) => b.value).filter((v): v is number => v !== null && v > 0);
  const log = vals.length > 0 && Math.max(...vals) / Math.min(...vals) > 50;
  // One decade below the smallest value (and below 100), so that every bar, dense's included, has a length.
  const floor = log ? 10 ** (Math.floor(Math.log10(Math.min(...vals, 100))) - 1) : 0;
  const top = log ? 10 ** Math.ceil(Math.log10(Math.max(...vals))) : 0;
  const xScale = log ? { type: 'log', domain: [floor, top] } : {};
  const xAxis = log ? { values: decades(floor, top), format: floor < 1 ? '~g' : '~s' } : { tickCount: 6, labelOverlap: 'greedy' };
  const withText = bars.map((b) => ({
    ...b,
    shown: b.value ?? floor,
    label: b.value === null ? (b.series === 'ours' ? 'not run' : 'no data') : fmt(b.value),
    desc: `${b.row} · ${b.series}: ${b.value === null ? (b.series === 'ours' ? 'not run' : 'no data') : fmt(b.value)}`,
  }));
  const y = { field: 'row', type: 'nominal', sort: rows, title: null } as const;
  const yOffset = { field: 'series', type: 'nominal', sort: series } as const;
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    description: `Track ${track} ${om} per method: ${OVERALL_METRICS[om].title}`,
    width: 300,
    height: { step: Math.max(9, Math.ceil(14 / series.length)) } as unknown as number, // a row is at least 14 px: its label fits
    config: baseConfig,
    data: { values: withText },
    encoding: { y, yOffset },
    layer: [
      {
        mark: { type: 'bar' },
        encoding: {
          x: { field: 'shown', type: 'quantitative', scale: xScale, axis: xAxis, title: `${om} (${log ? 'log scale; ' : ''}100 = dense)` },
          // A log axis has no zero: bars start at its left end.
          ...(log ? { x2: { datum: floor } } : {}),
          color: { field: 'series', type: 'nominal', scale: { domain: series, range: series.map((s) => palette[s] ?? '#777') }, legend: { orient: 'bottom', title: null } },
          description: { field: 'desc' },
        },
      },
      {
        mark: { type: 'text', align: 'left', dx: 3, fontSize: 8, fill: '#555' },
        encoding: { x: { field: 'shown', type: 'quantitative', scale: xScale }, text: { field: 'label' } },
      },
      { data: { values: [{ ref: 100 }] }, mark: { type: 'rule', strokeDash: [4, 3], stroke: '#888' }, encoding: { x: { field: 'ref', type: 'quantitative' }, y: null, yOffset: null } as never },
    ],
  } as unknown as TopLevelSpec;
}

/** Track 2: each method's perplexity ratio (dense / compressed) per model, paper and ours. */
export function generalizationSpec(data: SiteData): TopLevelSpec {
  const values: Record<string, unknown>[] = [];
  const dense = new Map(data.paper.filter((v) => v.track === 2 && isBaseline(v.method)).map((v) => [v.model, v.value]));
  for (const v of data.paper.filter((x) => x.track === 2 && !isBaseline(x.method))) {
    const d = dense.get(v.model);
    if (d) values.push({ model: v.model, method: v.method, side: 'paper', r: d / v.value, desc: `paper · ${v.model} · ${v.method}: PPL ${v.value} vs dense ${d} (r = ${(d / v.value).toFixed(3)}; ${v.source})` });
  }
  // Ours: each method at its paper setting (pairWithPaper), else at the kit's settings, named in the legend.
  const groups = groupKitRows(data.results.get(2) ?? [], 2);
  const ppl = (g: KitGroup) => [...g.cells.values()].filter((c) => c.key === 'WikiText2-PPL').map((c) => c.row);
  const kitDense = new Map(groups.filter((g) => isBaseline(g.method)).flatMap(ppl).map((r) => [r.model, r.value as number]));
  for (const method of new Set(groups.filter((g) => !isBaseline(g.method)).map((g) => g.method))) {
    const pairing = pairWithPaper(method, paperSettingOf(data.paper, method), groups);
    for (const g of pairing.items) {
      const label = pairing.exact ? method : `${method} ${g.setting}`;
      for (const r of ppl(g)) {
        const d = kitDense.get(r.model);
        if (d && r.value) values.push({ model: r.model, method: label, side: 'ours', r: d / r.value, desc: `ours · ${r.model} · ${method} ${oursLabel(pairing, g.setting)}: PPL ${r.value} vs dense ${d} (${r.device}, ${r.git_sha.slice(0, 10)})` });
      }
    }
  }
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(1, ...values.map((v) => v.r as number)))));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    description: 'Perplexity ratio dense/compressed per model and method (1 = no loss), paper and ours',
    width: 420,
    height: { step: 14 } as unknown as number,
    config: baseConfig,
    data: { values },
    mark: { type: 'point', filled: true, size: 45 },
    encoding: {
      y: { field: 'model', type: 'nominal', title: null, sort: [...new Set(values.map((v) => v.model as string))] },
      x: { field: 'r', type: 'quantitative', scale: { type: 'log', domain: [lo, 1.5] }, axis: { values: decades(lo, 1), format: '~g' }, title: 'PPL dense / PPL compressed (log; 1 = lossless)' },
      color: { field: 'method', type: 'nominal', legend: { orient: 'bottom', title: null, columns: 4 } },
      shape: { field: 'side', type: 'nominal', scale: { domain: ['paper', 'ours'], range: ['circle', 'triangle-up'] }, legend: { orient: 'bottom', title: null } },
      description: { field: 'desc' },
    },
  } as unknown as TopLevelSpec;
}

/** The methods that get a radar: the paper's, plus any the kit ran. */
export function radarMethods(data: SiteData): string[] {
  const paper = paperMethodNames();
  const kit = data.overall.filter((o) => o.source === 'kit' && !isBaseline(o.method)).map((o) => o.method);
  return [...new Set([...paper, ...kit])];
}

export { TRACK_TITLES };

/** One measured number of a method setting, for the per-track dot plots. */
export interface Dot {
  row: string; // method and setting
  series: string; // model, or engine · model
  value: number;
}

/**
 * Track 3: compression wall time or peak memory per method setting and model, in the catalogue's
 * display unit (bytes: GB, or MB when every value is under 0.1 GB, as at toy scale).
 */
export function compressionDots(data: SiteData, metric: 'wall_time_s' | 'peak_memory_bytes'): { dots: Dot[]; unit: string } {
  const unit = METRIC_CATALOGUE[3][metric].unit;
  const raw = groupKitRows(data.results.get(3) ?? [], 3).flatMap((g) =>
    [...g.cells.values()].filter((c) => c.row.metric === metric).map((c) => ({ row: `${g.method} ${g.setting}`, series: c.row.model, value: c.row.value as number })),
  );
  const mb = unit === 'bytes' && raw.every((d) => d.value * DISPLAY_SCALE.bytes < 0.1);
  const scale = mb ? 1e-6 : DISPLAY_SCALE[unit];
  return { dots: raw.map((d) => ({ ...d, value: d.value * scale })), unit: mb ? 'MB' : DISPLAY_UNIT[unit] };
}

/** Track 5: decode speed-up over dense per method setting, engine and model. */
export function speedupDots(data: SiteData): Dot[] {
  return decodeSpeedups(data.results.get(5) ?? []).filter((s) => !isBaseline(s.method)).map((s) => ({ row: `${s.method} ${s.setting}`, series: `${s.engine} · ${s.model}`, value: s.speedup }));
}

/** A dot per (method setting, series): log axis when the values span more than 50x; `ref` draws a dashed reference line. */
export function dotSpec(description: string, dots: Dot[], xTitle: string, ref: number | null): TopLevelSpec {
  const vals = dots.map((d) => d.value).filter((v) => v > 0);
  const log = vals.length > 0 && Math.max(...vals) / Math.min(...vals) > 50;
  const lo = log ? 10 ** Math.floor(Math.log10(Math.min(...vals))) : 0;
  const hi = log ? 10 ** Math.ceil(Math.log10(Math.max(...vals))) : 0;
  const x = { field: 'value', type: 'quantitative', title: `${xTitle}${log ? ' (log scale)' : ''}`, ...(log ? { scale: { type: 'log', domain: [lo, hi] }, axis: { values: decades(lo, hi), format: lo < 1 ? '~g' : '~s' } } : { axis: { tickCount: 4, labelOverlap: 'greedy' } }) };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    description,
    width: 300,
    height: { step: 14 } as unknown as number,
    config: baseConfig,
    layer: [
      {
        data: { values: dots.map((d) => ({ ...d, desc: `${d.row} · ${d.series}: ${fmt(d.value)}` })) },
        mark: { type: 'point', filled: true, size: 40, opacity: 0.85 },
        encoding: {
          y: { field: 'row', type: 'nominal', title: null, sort: [...new Set(dots.map((d) => d.row))] },
          x,
          color: { field: 'series', type: 'nominal', legend: { orient: 'bottom', title: null, columns: 2 } },
          shape: { field: 'series', type: 'nominal', legend: { orient: 'bottom', title: null, columns: 2 } },
          description: { field: 'desc' },
        },
      },
      ...(ref === null ? [] : [{ data: { values: [{ ref }] }, mark: { type: 'rule', strokeDash: [4, 3], stroke: '#888' }, encoding: { x: { field: 'ref', type: 'quantitative' } } }]),
    ],
  } as unknown as TopLevelSpec;
}

/** A track page's figure: its vega-lite spec, what it shows, and the rows behind it (its CSV). */
export interface TrackFigure {
  id: string; // file stem of its downloads: figures/<id>.svg, .png, .csv
  title: string;
  caption: string;
  spec: TopLevelSpec;
  rows: Record<string, unknown>[];
}

/**
 * The figures of a track page, in page order: a bar chart of each of the track's overall metrics
 * that has a value on either side (method settings without any value left out: the table lists
 * them), or of the radar's axis when none has.
 */
export function trackFigures(data: SiteData, track: Track): TrackFigure[] {
  const oms = (Object.keys(OVERALL_METRICS) as OmName[]).filter((o) => OVERALL_METRICS[o].track === track);
  const charts = oms.map((o) => omBars(data, track, o)).map(({ bars, om }) => ({ om, bars: bars.filter((b) => bars.some((x) => x.row === b.row && x.value !== null)) }));
  const shown = charts.filter((c) => c.bars.length > 0);
  const figures: TrackFigure[] = (shown.length ? shown : [omBars(data, track)]).map(({ bars, om }) => ({
    id: `track${track}-${om}`,
    title: `${om} per method`,
    caption: `${om} per method setting: ${OVERALL_METRICS[om].title}. Dashed line: dense (100).${track === 3 ? ' Log axis: at toy scale the values span decades (see above).' : ''} Hover a bar for its value.`,
    spec: omBarSpec(track, bars, om),
    rows: bars.map((b) => ({ ...b })),
  }));
  const dots = (id: string, title: string, caption: string, rows: Dot[], xTitle: string, ref: number | null) => {
    if (rows.length) figures.push({ id, title, caption, spec: dotSpec(`${title} per method setting`, rows, xTitle, ref), rows: rows.map((d) => ({ ...d })) });
  };
  if (track === 3) {
    const time = compressionDots(data, 'wall_time_s');
    const mem = compressionDots(data, 'peak_memory_bytes');
    dots('track3-wall-time', 'Compression wall time', `Compression wall time per method setting and model: ${METRIC_CATALOGUE[3].wall_time_s.description}.`, time.dots, `wall time (${time.unit})`, null);
    dots('track3-peak-memory', 'Compression peak memory', `Peak memory per method setting and model: ${METRIC_CATALOGUE[3].peak_memory_bytes.description}.`, mem.dots, `peak memory (${mem.unit})`, null);
  }
  if (track === 5) {
    dots('track5-speedups', 'Decode speed-up over dense', 'Decode tokens/s over dense on the same model and engine, per method setting, engine and model. Dashed line: 1 (as fast as dense).', speedupDots(data), 'decode speed-up over dense (×)', 1);
  }
  if (track === 2) {
    const spec = generalizationSpec(data);
    figures.push({
      id: 'track2-ppl-ratio', title: 'Perplexity ratios', spec,
      caption: 'PPL dense / PPL compressed for each model and method (log scale; 1 = lossless). Circles: paper; triangles: ours, each method at its setting in the paper\'s other tables (Table 4 names none) or, where the kit has no rows at it, named with the kit\'s setting.',
      rows: ((spec as { data: { values: Record<string, unknown>[] } }).data.values).map(({ desc: _d, ...r }) => r),
    });
  }
  return figures;
}

/** Every track figure of the site, for the download endpoints. */
export function allTrackFigures(data: SiteData): TrackFigure[] {
  return ([1, 2, 3, 4, 5, 6] as Track[]).flatMap((t) => trackFigures(data, t));
}
