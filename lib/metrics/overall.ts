// The paper's overall metrics (DESIGN §1), for the paper's own numbers and for the kit's rows.
//
//   r  = A_c / A   for higher-is-better sub-metrics (accuracy, speed)
//   r  = A / A_c   for lower-is-better ones (perplexity, memory, size, MACs, time)
//   OM = 100 * sqrt(mean over every (model, sub-metric) pair of r^2)
//
// A is the uncompressed baseline (Dense / Full Prec.), except for OM_train, whose reference is the
// most expensive method on each pair (the dense model costs nothing to compress).
import fs from 'node:fs';
import path from 'node:path';
import { formatCsv, parseCsvRecords } from '../csv';
import { readResults, writeFileAtomic, type ResultRow, type Track } from '../results';
import {
  canonicalJson, INFERENCE, INFERENCE_COST, isBaseline, KNOWLEDGE, kitColumn, methodInfo, methodOrder, settingLabel,
} from './names';
import { readPaperOverall, readPaperValues, type PaperValue } from './paper';

export type OmName = 'OM_ka' | 'OM_ia' | 'OM_perf' | 'OM_gen' | 'OM_train' | 'OM_inf' | 'OM_hard' | 'OM_trust';

interface OmDef {
  track: Track;
  /** Paper columns it is taken over; 'all' = every classified sub-metric of the track. */
  over: readonly string[] | 'all';
  /** What A is: the baseline model, or the maximum over the compression methods (Track 3). */
  reference: 'baseline' | 'max-over-methods';
  title: string;
}

/** The eight overall metrics. OM_perf is not a mean of ratios: it combines OM_ka and OM_ia. */
export const OVERALL_METRICS = {
  OM_ka: { track: 1, over: KNOWLEDGE, reference: 'baseline', title: 'knowledge ability' },
  OM_ia: { track: 1, over: INFERENCE, reference: 'baseline', title: 'inference ability (perplexity inverted)' },
  OM_perf: { track: 1, over: [], reference: 'baseline', title: 'compression performance = sqrt((OM_ka² + OM_ia²) / 2)' },
  OM_gen: { track: 2, over: ['WikiText2-PPL'], reference: 'baseline', title: 'generalization (perplexity inverted)' },
  OM_train: { track: 3, over: 'all', reference: 'max-over-methods', title: 'training consumption (time and memory, inverted against the costliest method)' },
  OM_inf: { track: 4, over: INFERENCE_COST, reference: 'baseline', title: 'inference consumption (memory, size, MACs; inverted)' },
  OM_hard: { track: 5, over: 'all', reference: 'baseline', title: 'hardware acceleration (speed in each engine)' },
  OM_trust: { track: 6, over: 'all', reference: 'baseline', title: 'trustworthiness (robustness and truthfulness)' },
} as const satisfies Record<OmName, OmDef>;

/** The overall metric that summarises each track on the overview's radar (paper Fig. 1). */
export const TRACK_OM: Record<Track, OmName> = { 1: 'OM_perf', 2: 'OM_gen', 3: 'OM_train', 4: 'OM_inf', 5: 'OM_hard', 6: 'OM_trust' };

/** One (model, sub-metric) number of one method setting. */
export interface Measurement {
  model: string;
  key: string;
  value: number;
  higherIsBetter: boolean;
}

/** r for one pair; both numbers must be positive (ratios of accuracies, perplexities, costs). */
export function relativeRatio(value: number, reference: number, higherIsBetter: boolean): number {
  if (!(value > 0) || !(reference > 0) || !Number.isFinite(value) || !Number.isFinite(reference)) {
    throw new Error(`overall metric needs positive finite numbers, got value ${value} and reference ${reference}`);
  }
  return higherIsBetter ? value / reference : reference / value;
}

/** 100 * sqrt(mean r^2). */
export function rmsPercent(ratios: readonly number[]): number {
  if (ratios.length === 0) throw new Error('overall metric over zero (model, sub-metric) pairs');
  return 100 * Math.sqrt(ratios.reduce((s, r) => s + r * r, 0) / ratios.length);
}

/** OM_perf from OM_ka and OM_ia. */
export function combinePerf(ka: number, ia: number): number {
  return Math.sqrt((ka * ka + ia * ia) / 2);
}

/** Adds OM_perf to a track's scores from its OM_ka and OM_ia (pairs and missing cells of both). */
function addPerf(scores: Map<OmName, Score>): void {
  const ka = scores.get('OM_ka')!;
  const ia = scores.get('OM_ia')!;
  scores.set('OM_perf', {
    value: ka.value !== null && ia.value !== null ? combinePerf(ka.value, ia.value) : null,
    pairs: ka.pairs + ia.pairs,
    missing: [...ka.missing, ...ia.missing],
  });
}

export interface Score {
  /** Null when no pair could be matched. */
  value: number | null;
  /** (model, sub-metric) pairs used. */
  pairs: number;
  /** 'model/key' pairs the reference has and the method lacks. */
  missing: string[];
}

const pairKey = (model: string, key: string) => `${model}\u0000${key}`;

/**
 * OM of one method's measurements against reference measurements, over the reference's pairs
 * whose key passes `include`. Pairs the method lacks are listed (the site shows them), not invented.
 */
export function scoreAgainst(own: readonly Measurement[], reference: readonly Measurement[], include: (key: string) => boolean): Score {
  const mine = new Map(own.map((m) => [pairKey(m.model, m.key), m]));
  const ratios: number[] = [];
  const missing: string[] = [];
  for (const ref of reference) {
    if (!include(ref.key)) continue;
    const m = mine.get(pairKey(ref.model, ref.key));
    if (!m) {
      missing.push(`${ref.model}/${ref.key}`);
      continue;
    }
    ratios.push(relativeRatio(m.value, ref.value, ref.higherIsBetter));
  }
  return { value: ratios.length ? rmsPercent(ratios) : null, pairs: ratios.length, missing };
}

/** Track 3's reference: on each pair, the largest value over the methods (time and memory costs). */
export function maxOverMethods(groups: readonly (readonly Measurement[])[]): Measurement[] {
  const best = new Map<string, Measurement>();
  for (const g of groups) {
    for (const m of g) {
      const k = pairKey(m.model, m.key);
      const cur = best.get(k);
      if (!cur || m.value > cur.value) best.set(k, m);
    }
  }
  return [...best.values()];
}

const includeFor = (om: OmName) => {
  const over = OVERALL_METRICS[om].over;
  return (key: string) => over === 'all' || (over as readonly string[]).includes(key);
};

// ---------------------------------------------------------------------------------------------
// One row of data/overall.csv.

export type OverallSource = 'paper' | 'kit';

export interface OverallRow {
  /** paper: recomputed from data/paper; kit: from data/results. */
  source: OverallSource;
  track: Track;
  om: OmName;
  method: string;
  /** The paper's setting label ('50%', '2:4', 'INT8'); kit settings are derived from method_config. */
  setting: string;
  /** Kit: canonical JSON of the method config; paper: '' */
  method_config: string;
  value: number | null;
  /** The paper's published value of the same cell (paper rows only), else null. */
  published: number | null;
  pairs: number;
  /** Models the value is taken over, ';'-joined. */
  models: string;
  status: 'ok' | 'no_data';
  note: string;
  /** Provenance of the kit rows behind the value, ';'-joined unique values. */
  backends: string;
  devices: string;
  git_shas: string;
  /** Latest started_at among those rows. */
  latest: string;
}

export const OVERALL_COLUMNS = [
  'source', 'track', 'om', 'method', 'setting', 'method_config', 'value', 'published', 'pairs', 'models', 'status',
  'note', 'backends', 'devices', 'git_shas', 'latest',
] as const satisfies readonly (keyof OverallRow)[];

const round = (v: number) => Math.round(v * 1e6) / 1e6;
const uniq = (xs: string[]) => [...new Set(xs.filter((x) => x !== ''))].sort().join(';');

// ---------------------------------------------------------------------------------------------
// The paper's side: OMs recomputed from its own tables, next to the published ones.

interface PaperGroup {
  track: Track;
  family: string;
  method: string;
  setting: string;
  values: PaperValue[];
}

function groupPaper(values: PaperValue[]): PaperGroup[] {
  const groups = new Map<string, PaperGroup>();
  for (const v of values) {
    const k = `${v.track}|${v.family}|${v.method}|${v.setting}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { track: v.track as Track, family: v.family, method: v.method, setting: v.setting, values: [] }));
    g.values.push(v);
  }
  return [...groups.values()];
}

const asMeasurements = (vs: readonly PaperValue[]): Measurement[] =>
  vs.map((v) => ({ model: v.model, key: v.key, value: v.value, higherIsBetter: v.higherIsBetter }));

/** OM_ka/OM_ia/OM_perf (Track 1), OM_gen (Track 2) and OM_inf (Track 4) from data/paper. */
export function paperOverall(dataDir: string): OverallRow[] {
  const values = readPaperValues(dataDir);
  const published = readPaperOverall(dataDir);
  const groups = groupPaper(values);
  const out: OverallRow[] = [];
  for (const g of groups) {
    const base = groups.find((b) => b.track === g.track && isBaseline(b.method) && (g.track === 2 || b.family === g.family));
    if (!base) throw new Error(`data/paper: Track ${g.track} ${g.family} has no baseline rows for ${g.method} ${g.setting}`);
    const ref = asMeasurements(base.values);
    const own = asMeasurements(g.values);
    const oms: OmName[] = g.track === 1 ? ['OM_ka', 'OM_ia'] : g.track === 2 ? ['OM_gen'] : ['OM_inf'];
    const scores = new Map<OmName, Score>(oms.map((om) => [om, scoreAgainst(own, ref, includeFor(om))]));
    if (g.track === 1) addPerf(scores);
    for (const [om, s] of scores) {
      const pub = published.find((p) => p.track === g.track && p.om === om && p.method === g.method && (g.track === 2 || p.setting === g.setting));
      out.push({
        source: 'paper', track: g.track, om, method: g.method, setting: g.setting, method_config: '',
        value: s.value === null ? null : round(s.value), published: pub ? pub.value : null, pairs: s.pairs,
        models: uniq(g.values.map((v) => v.model)), status: s.value === null ? 'no_data' : 'ok',
        note: s.missing.length ? `missing ${s.missing.join(', ')}` : '', backends: '', devices: '', git_shas: '', latest: '',
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The kit's side: OMs from data/results/track<N>.csv.

/** One method configuration of the kit in one track, with the rows behind each cell. */
export interface KitGroup {
  track: Track;
  method: string;
  setting: string;
  config: string;
  /** Latest ok row per (model, column), preferred metric first (acc_norm before acc). */
  cells: Map<string, { row: ResultRow; key: string; classified: boolean }>;
  /** Every row of the group, ok or not (no_data / not_run rows carry their reasons). */
  rows: ResultRow[];
}

/** Groups a track's rows by method configuration; each (model, paper column) keeps its best row. */
export function groupKitRows(rows: readonly ResultRow[], track: Track): KitGroup[] {
  const groups = new Map<string, KitGroup>();
  const rankOf = new Map<ResultRow, number>();
  for (const r of rows) {
    if (r.track !== track) continue;
    const base = isBaseline(r.method);
    const config = base ? '{}' : canonicalJson(r.method_config);
    const name = base ? 'Dense' : methodInfo(r.method).display;
    const k = `${name}|${config}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { track, method: name, setting: settingLabel(r.method, r.method_config), config, cells: new Map(), rows: [] }));
    g.rows.push(r);
    if (r.status !== 'ok' || r.value === null) continue;
    const col = kitColumn(track, r.task, r.metric);
    rankOf.set(r, col.rank);
    const ck = pairKey(r.model, col.key);
    const cur = g.cells.get(ck);
    const better = !cur || col.rank < rankOf.get(cur.row)! || (col.rank === rankOf.get(cur.row)! && r.started_at > cur.row.started_at);
    if (better) g.cells.set(ck, { row: r, key: col.key, classified: col.classified });
  }
  return [...groups.values()].sort((a, b) => methodOrder(a.method) - methodOrder(b.method) || a.setting.localeCompare(b.setting));
}

/** A row's value as a measurement under a paper column key; null where it cannot be a ratio's term (unclassified, not ok, ≤ 0). */
function measurementOf(r: ResultRow, key: string, classified: boolean): Measurement | null {
  if (!classified || r.status !== 'ok' || r.value === null || !(r.value > 0)) return null;
  return { model: r.model, key, value: r.value, higherIsBetter: r.higher_is_better };
}

function kitMeasurements(g: KitGroup): Measurement[] {
  return [...g.cells.values()].flatMap((c) => measurementOf(c.row, c.key, c.classified) ?? []);
}

/**
 * Track 5's speeds are ratios of two timings, which move with the engine's code and the machine's
 * state: a method's speed on a model is set against the dense speed its own run measured (same
 * run_id: same code, device and session) where there is one, else against the latest dense row.
 * Returns the reference for a method group.
 */
function sameRunBaseline(baseline: readonly KitGroup[], track: Track): (g: KitGroup, latest: readonly Measurement[]) => Measurement[] {
  const byRun = new Map<string, Measurement>(); // run_id|model|column
  for (const b of baseline) {
    for (const r of b.rows) {
      const col = kitColumn(track, r.task, r.metric);
      const m = measurementOf(r, col.key, col.classified);
      if (m) byRun.set(`${r.run_id}|${pairKey(r.model, col.key)}`, m);
    }
  }
  return (g, latest) => {
    const runOf = new Map([...g.cells.values()].map((c) => [pairKey(c.row.model, c.key), c.row.run_id]));
    return latest.map((m) => byRun.get(`${runOf.get(pairKey(m.model, m.key))}|${pairKey(m.model, m.key)}`) ?? m);
  };
}

/** Every OM of the kit's rows in one track; a method with no comparable pair gets a no_data row saying why. */
export function kitOverall(rows: readonly ResultRow[], track: Track): OverallRow[] {
  const groups = groupKitRows(rows, track);
  const oms = (Object.keys(OVERALL_METRICS) as OmName[]).filter((om) => OVERALL_METRICS[om].track === track);
  const baseline = groups.filter((g) => isBaseline(g.method));
  const methods = groups.filter((g) => !isBaseline(g.method));
  const def = OVERALL_METRICS[oms[0]];
  const reference =
    def.reference === 'max-over-methods' ? maxOverMethods(methods.map(kitMeasurements)) : baseline.flatMap(kitMeasurements);
  const out: OverallRow[] = [];
  const sameRun = track === 5 ? sameRunBaseline(baseline, track) : null;
  for (const g of def.reference === 'baseline' ? [...baseline, ...methods] : methods) {
    const own = kitMeasurements(g);
    const ref = sameRun ? sameRun(g, reference) : reference;
    const scores = new Map<OmName, Score>();
    for (const om of oms) if (om !== 'OM_perf') scores.set(om, scoreAgainst(own, ref, includeFor(om)));
    if (track === 1) addPerf(scores);
    const used = [...g.cells.values()].filter((c) => c.classified).map((c) => c.row);
    for (const [om, s] of scores) {
      let note = s.missing.length ? `missing ${s.missing.join(', ')}` : '';
      if (s.value === null) {
        const why = g.rows.filter((r) => r.status !== 'ok').map((r) => `${r.task}/${r.metric}: ${r.status} (${r.note})`);
        const noRef = reference.filter((m) => includeFor(om)(m.key)).length === 0;
        note = [noRef ? (def.reference === 'baseline' ? 'no baseline (dense) rows to compare with' : 'no method rows') : note, ...why]
          .filter(Boolean)
          .join('; ');
      }
      out.push({
        source: 'kit', track, om, method: g.method, setting: g.setting, method_config: g.config,
        value: s.value === null ? null : round(s.value), published: null, pairs: s.pairs,
        models: uniq(g.rows.map((r) => r.model)), status: s.value === null ? 'no_data' : 'ok', note,
        backends: uniq(used.map((r) => r.backend)), devices: uniq(used.map((r) => r.device)),
        git_shas: uniq(used.map((r) => r.git_sha)), latest: used.map((r) => r.started_at).sort().pop() ?? '',
      });
    }
  }
  return out;
}

/** Reads data/results/track<N>.csv for every track that has one (absent = not run yet). */
export function readAllResults(dataDir: string): Map<Track, ResultRow[]> {
  const out = new Map<Track, ResultRow[]>();
  for (const t of [1, 2, 3, 4, 5, 6] as Track[]) {
    const file = path.join(dataDir, 'results', `track${t}.csv`);
    out.set(t, fs.existsSync(file) ? readResults(path.relative(process.cwd(), file) || file) : []);
  }
  return out;
}

/** All rows of data/overall.csv: the paper's recomputed OMs, then the kit's. */
export function computeOverall(dataDir: string): OverallRow[] {
  const results = readAllResults(dataDir);
  const kit = [...results.entries()].flatMap(([t, rows]) => kitOverall(rows, t));
  return [...paperOverall(dataDir), ...kit];
}

function cell(v: unknown): string {
  return v === null ? '' : String(v);
}

export function formatOverallCsv(rows: readonly OverallRow[]): string {
  return formatCsv(OVERALL_COLUMNS, rows.map((r) => OVERALL_COLUMNS.map((c) => cell(r[c]))));
}

/** Writes data/overall.csv atomically (temp file + rename). */
export function writeOverallCsv(file: string, rows: readonly OverallRow[]): void {
  writeFileAtomic(file, formatOverallCsv(rows));
}

/** Reads data/overall.csv back; any malformed cell is an error naming file:line. */
export function readOverallCsv(file: string): OverallRow[] {
  const shown = path.relative(process.cwd(), file) || file;
  if (!fs.existsSync(file)) throw new Error(`${shown}: missing (run: npx tsx scripts/site-overall.ts)`);
  const recs = parseCsvRecords(fs.readFileSync(file, 'utf8'), shown);
  const header = recs.length ? Object.keys(recs[0]) : [];
  if (recs.length && header.join(',') !== OVERALL_COLUMNS.join(',')) {
    throw new Error(`${shown}:1: header is '${header.join(',')}', expected '${OVERALL_COLUMNS.join(',')}'`);
  }
  return recs.map((r, k) => {
    const where = `${shown}:${k + 2}`;
    const numOrNull = (f: string) => {
      if (r[f] === '') return null;
      const v = Number(r[f]);
      if (!Number.isFinite(v)) throw new Error(`${where}: '${f}' is ${JSON.stringify(r[f])}, not a number`);
      return v;
    };
    if (r.source !== 'paper' && r.source !== 'kit') throw new Error(`${where}: 'source' is ${JSON.stringify(r.source)}`);
    if (!(r.om in OVERALL_METRICS)) throw new Error(`${where}: 'om' is ${JSON.stringify(r.om)}`);
    const track = Number(r.track);
    if (OVERALL_METRICS[r.om as OmName].track !== track) throw new Error(`${where}: ${r.om} does not belong to track ${r.track}`);
    if (r.status !== 'ok' && r.status !== 'no_data') throw new Error(`${where}: 'status' is ${JSON.stringify(r.status)}`);
    const value = numOrNull('value');
    if ((value === null) !== (r.status === 'no_data')) throw new Error(`${where}: value must be empty exactly when status is no_data`);
    return {
      source: r.source, track: track as Track, om: r.om as OmName, method: r.method, setting: r.setting,
      method_config: r.method_config, value, published: numOrNull('published'), pairs: numOrNull('pairs') ?? 0,
      models: r.models, status: r.status, note: r.note, backends: r.backends, devices: r.devices, git_shas: r.git_shas,
      latest: r.latest,
    };
  });
}
