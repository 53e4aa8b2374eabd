// The console summary of a run: one line per (method setting, model) with each track's key number
// (Track 1 perplexity and mean accuracy, Track 4 stored size, Track 5 decode speed-up over dense)
// and, on the method's first line, the six overall metrics of paper Fig. 1 (taken over all models).
// Everything else is in the CSVs whose paths the summary ends with.
import path from 'node:path';
import { METRIC_CATALOGUE } from '../metrics/catalogue';
import { INFERENCE, isBaseline, KNOWLEDGE, kitColumn, methodOrder } from '../metrics/names';
import { groupKitRows, kitOverall, TRACK_OM, type KitGroup, type OmName } from '../metrics/overall';
import { trackFile, type ResultRow, type Track } from '../results';
import { trackRows } from './tables';

const TRACK_LIST = [1, 2, 3, 4, 5, 6] as const satisfies readonly Track[];

/** The Track 1 accuracy columns (the paper's knowledge and inference columns, perplexity aside). */
const ACCURACY_KEYS: readonly string[] = [...KNOWLEDGE, ...INFERENCE].filter((k) => k !== 'WikiText2-PPL');
const SIZE = METRIC_CATALOGUE[4].model_size_bytes;
const SIZE_KEY = kitColumn(4, SIZE.task, 'model_size_bytes').key;
const SPEED_METRIC = 'decode_tok_per_s' satisfies keyof (typeof METRIC_CATALOGUE)[5];

export interface SummaryLine {
  method: string; // display name ('Dense' for the baseline)
  setting: string; // the paper-style setting label ('50%', 'INT4 g32', '0' for dense)
  model: string;
  ppl: number | null; // WikiText-2 perplexity (Track 1, else Track 2)
  accuracy: number | null; // mean of the Track 1 accuracies measured on this model, in percent
  accuracies: number; // how many accuracies the mean is over
  sizeBytes: number | null; // Track 4 stored model size
  speedup: number | null; // Track 5: geometric mean over engines of decode tokens/s relative to dense on the same model and engine
  /** The tracks' overall metrics (TRACK_OM), over all models: on the method setting's first line only. */
  om: Partial<Record<OmName, number | null>> | null;
}

/** The column heads of the printed table, in order. */
export const SUMMARY_COLUMNS = ['method', 'setting', 'model', 'PPL', 'acc %', 'size MB', 'speed-up', ...TRACK_LIST.map((t) => TRACK_OM[t])] as const;

const cellValue = (g: KitGroup | undefined, model: string, key: string): number | null =>
  (g?.cells.get(`${model}\u0000${key}`)?.row.value as number | undefined) ?? null;

/** The summary of the rows under a data root (`out`/results/track<N>.csv). */
export function summaryLines(out: string): SummaryLine[] {
  const rows = new Map(TRACK_LIST.map((t) => [t, trackRows(out, t)]));
  const groups = new Map(TRACK_LIST.map((t) => [t, groupKitRows(rows.get(t)!, t)]));
  const overall = TRACK_LIST.flatMap((t) => kitOverall(rows.get(t)!, t));
  // Method settings over all tracks, in the paper's order.
  const settings = new Map<string, { method: string; setting: string; config: string }>();
  for (const gs of groups.values()) for (const g of gs) settings.set(`${g.method}|${g.config}`, { method: g.method, setting: g.setting, config: g.config });
  const ordered = [...settings.values()].sort((a, b) => methodOrder(a.method) - methodOrder(b.method) || a.setting.localeCompare(b.setting));
  const find = (t: Track, s: { method: string; config: string }) => groups.get(t)!.find((g) => g.method === s.method && g.config === s.config);
  const speedups = decodeSpeedups(rows.get(5)!);
  const lines: SummaryLine[] = [];
  for (const s of ordered) {
    const own = new Map(TRACK_LIST.map((t) => [t, find(t, s)]));
    if (TRACK_LIST.every((t) => (own.get(t)?.cells.size ?? 0) === 0)) continue; // no ok row: listed by emptySettings
    const models = [...new Set(TRACK_LIST.flatMap((t) => own.get(t)?.rows.map((r) => r.model) ?? []))];
    const om = Object.fromEntries(
      TRACK_LIST.map((t) => [TRACK_OM[t], overall.find((o) => o.track === t && o.om === TRACK_OM[t] && o.method === s.method && o.method_config === s.config)?.value ?? null]),
    );
    models.forEach((model, k) => {
      const accs = ACCURACY_KEYS.map((key) => cellValue(own.get(1), model, key)).filter((v): v is number => v !== null);
      const ratios = speedups.filter((x) => x.method === s.method && x.config === s.config && x.model === model).map((x) => x.speedup);
      lines.push({
        method: s.method, setting: s.setting, model,
        ppl: cellValue(own.get(1), model, 'WikiText2-PPL') ?? cellValue(own.get(2), model, 'WikiText2-PPL'),
        accuracy: accs.length ? (100 * accs.reduce((a, b) => a + b, 0)) / accs.length : null,
        accuracies: accs.length,
        sizeBytes: cellValue(own.get(4), model, SIZE_KEY),
        speedup: ratios.length ? Math.exp(ratios.reduce((a, r) => a + Math.log(r), 0) / ratios.length) : null,
        om: k === 0 ? om : null,
      });
    });
  }
  return lines;
}

export interface Speedup {
  method: string; // display name
  setting: string;
  config: string; // canonical JSON of the method config
  model: string;
  engine: string; // the row's task: the engine's matrix name
  speedup: number; // decode tokens/s over dense's on the same model and engine
}

/** Track 5: each method setting's decode tokens/s over dense's, per model and engine (where both are ok). */
export function decodeSpeedups(rows: readonly ResultRow[]): Speedup[] {
  const groups = groupKitRows(rows, 5);
  const dense = groups.find((g) => isBaseline(g.method));
  const out: Speedup[] = [];
  for (const g of groups) {
    for (const c of g.cells.values()) {
      if (c.row.metric !== SPEED_METRIC) continue;
      const ref = cellValue(dense, c.row.model, c.key);
      const v = c.row.value as number;
      if (ref !== null && ref > 0 && v > 0) out.push({ method: g.method, setting: g.setting, config: g.config, model: c.row.model, engine: c.row.task, speedup: v / ref });
    }
  }
  return out;
}

/**
 * Method settings whose rows are all not ok (not run, no data): one line per track and reason (the
 * first row's), naming the settings and models it covers.
 */
export function emptySettings(out: string): string[] {
  const lines: string[] = [];
  for (const t of TRACK_LIST) {
    const byReason = new Map<string, { settings: string[]; models: Set<string> }>();
    for (const g of groupKitRows(trackRows(out, t), t)) {
      if (g.cells.size > 0) continue;
      const r = g.rows[0];
      const reason = `${r.status}, ${r.note.replace(/^cell=\w+; (data=\w+; )?/, '')}`;
      const e = byReason.get(reason) ?? { settings: [], models: new Set<string>() };
      e.settings.push(`${g.method} ${g.setting}`);
      for (const x of g.rows) e.models.add(x.model);
      byReason.set(reason, e);
    }
    for (const [reason, e] of byReason) lines.push(`Track ${t}, ${e.settings.join(', ')} on ${[...e.models].join(', ')}: ${reason}`);
  }
  return lines;
}

/** A number for the console: 2 decimals, exponent form past 10^5 (Track 3's toy-scale ratios). */
export function fmtNumber(v: number | null, digits = 2): string {
  if (v === null) return '—';
  return Math.abs(v) >= 1e5 ? v.toExponential(2) : v.toFixed(digits);
}

/** The summary as an aligned text table, followed by where the rest is. */
export function formatSummary(lines: readonly SummaryLine[], out: string, empty: readonly string[] = []): string {
  if (lines.length === 0 && empty.length === 0) return `summary: no result rows under ${out}/results`;
  const body = lines.map((l) => [
    l.om ? l.method : '',
    l.om ? l.setting : '',
    l.model,
    fmtNumber(l.ppl),
    l.accuracy === null ? '—' : `${l.accuracy.toFixed(1)} (${l.accuracies})`,
    fmtNumber(l.sizeBytes === null ? null : l.sizeBytes / 1e6, 3),
    l.speedup === null ? '—' : `${l.speedup.toFixed(2)}x`,
    ...TRACK_LIST.map((t) => (l.om ? fmtNumber(l.om[TRACK_OM[t]] ?? null, 1) : '')),
  ]);
  const table = [[...SUMMARY_COLUMNS], ...body];
  const widths = table[0].map((_, j) => Math.max(...table.map((r) => r[j].length)));
  const text = table.map((r) => r.map((c, j) => (j < 3 ? c.padEnd(widths[j]) : c.padStart(widths[j]))).join('  ').trimEnd());
  const rule = '-'.repeat(Math.max(...text.map((t) => t.length)));
  return [
    rule, text[0], rule, ...text.slice(1), rule,
    ...empty.map((e) => `without any value: ${e}`),
    'PPL: WikiText-2 perplexity; acc %: mean of the Track 1 accuracies (how many); size: stored model (Track 4); speed-up: decode tokens/s over dense (Track 5, geometric mean over engines).',
    'OM_*: overall metrics of paper Fig. 1 over all models (100 = dense; OM_train is relative to the costliest method). —: no ok row (no data, not run or not in the matrix).',
    `per-cell rows: ${TRACK_LIST.map((t) => trackFile(t, out)).join(', ')}`,
    `overall metrics: ${path.join(out, 'overall.csv')}; paper-layout tables: ${path.join(out, 'tables')}/; site (committed data/): npm run site:build`,
  ].join('\n');
}
