// Table models for the track pages: the paper's table in its own layout (rows = method settings,
// column groups = models, OM columns last), the kit's in the same layout, and the differences.
// Every value cell carries its provenance; absent cells say why ("not run", "no data: reason").
import { groupKitRows, OVERALL_METRICS, type KitGroup, type OmName, type OverallRow } from '../../../lib/metrics/overall';
import {
  INFERENCE, INFERENCE_COST, isBaseline, KNOWLEDGE, kitColumn, methodInfo, paperMethodNames, subMetric,
} from '../../../lib/metrics/names';
import { METRIC_CATALOGUE, metricNames } from '../../../lib/metrics/catalogue';
import type { PaperOverall, PaperValue } from '../../../lib/metrics/paper';
import { runProvenance } from '../../../lib/metrics/provenance';
import type { ResultRow, Track } from '../../../lib/results';
import type { SiteData } from './data';
import { pairWithPaper, paperSettingOf } from './pairing';

export type CellKind = 'value' | 'om' | 'no_data' | 'not_run' | 'diff' | 'text';

export interface Cell {
  kind: CellKind;
  text: string;
  /** One-line hover text. */
  title?: string;
  /** Expandable provenance (label -> value). */
  prov?: [string, string][];
  /** 'good' / 'bad' / 'warn' for differences. */
  tone?: 'good' | 'bad' | 'warn';
}

export interface Column {
  key: string;
  label: string;
  unit?: string;
}

export interface ColumnGroup {
  label: string;
  columns: Column[];
}

export interface Row {
  head: string[];
  cells: Cell[];
}

export interface Section {
  label: string | null;
  rows: Row[];
}

export interface TableModel {
  id: string;
  caption: string;
  rowHeads: string[];
  groups: ColumnGroup[];
  sections: Section[];
  notes: string[];
}

export const TRACK_TITLES: Record<Track, string> = {
  1: 'Compression performance',
  2: 'Generalization',
  3: 'Training consumption',
  4: 'Inference consumption',
  5: 'Hardware acceleration',
  6: 'Trustworthiness',
};

/** Which paper tables a track has (data/paper), and which files are behind the page. */
export const TRACK_PAPER_FILES: Record<Track, string[]> = {
  1: ['track1_performance', 'track1_overall'],
  2: ['track2_generalization', 'track2_overall'],
  3: [],
  4: ['track4_inference', 'track4_overall'],
  5: [],
  6: [],
};

/** Column layout of each paper table: [label, keys, OMs shown at its right]. */
const LAYOUTS: Record<Track, { id: string; label: string; keys: readonly string[] | null; oms: OmName[] }[]> = {
  1: [
    { id: 'knowledge', label: 'Knowledge ability (paper Table 2)', keys: KNOWLEDGE, oms: ['OM_ka'] },
    { id: 'inference', label: 'Inference ability (paper Table 3)', keys: INFERENCE, oms: ['OM_ia', 'OM_perf'] },
  ],
  2: [{ id: 'generalization', label: 'WikiText-2 perplexity across models (paper Table 4)', keys: ['WikiText2-PPL'], oms: ['OM_gen'] }],
  3: [{ id: 'training', label: 'Compression time and peak memory (paper Table 5)', keys: null, oms: ['OM_train'] }],
  4: [{ id: 'inference-cost', label: 'Inference memory, model size and MACs (paper Table 6)', keys: INFERENCE_COST, oms: ['OM_inf'] }],
  5: [{ id: 'acceleration', label: 'Speed in inference engines (paper Table 7)', keys: null, oms: ['OM_hard'] }],
  6: [{ id: 'trust', label: 'Robustness and truthfulness (paper Table 8)', keys: null, oms: ['OM_trust'] }],
};

/** Columns a track is expected to have before any kit row exists (tracks without a paper table). */
const EXPECTED: Record<Track, string[]> = {
  1: [], 2: [], 4: [],
  3: metricNames(3).filter((m) => METRIC_CATALOGUE[3][m].inOverall).map((m) => `${METRIC_CATALOGUE[3][m].task} · ${m}`),
  5: ['tokens/s (each engine)'],
  6: ['AdvGLUE acc', 'TruthfulQA MC1', 'TruthfulQA MC2'],
};

const NOT_RUN = 'not run';

/** Where Track 2's kit rows come from (the paper's Table 4 has no setting column). */
const TRACK2_SETTING_NOTE = 'The paper\'s Table 4 names no setting: ours is each method at its setting in the paper\'s other tables (Tables 2, 3 and 6), written after the method; other kit settings are listed as not in the paper.';

export function fmt(v: number): string {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
  return v.toFixed(2);
}

/** Accuracy-like kit metrics stored as fractions are shown in percent, as in the paper. */
function displayKit(r: ResultRow, track: number): { text: string; shown: number } {
  const col = kitColumn(track, r.task, r.metric);
  const v = r.value as number;
  const pct = /^(acc|accnorm|accorig|mc1|mc2|accuracy|f1|em)$/.test(r.metric.toLowerCase().replace(/[^a-z0-9]/g, '')) && v <= 1;
  const shown = pct ? v * 100 : v * col.scale;
  return { text: fmt(shown), shown };
}

function paperCell(v: PaperValue, table: string): Cell {
  return {
    kind: 'value',
    text: fmt(v.value),
    title: `paper ${table}: ${v.model}, ${v.method} ${v.setting}, ${v.key} = ${v.value} (${v.source})`,
    prov: [
      ['source', `LLMCBench paper, ${table}`],
      ['file', v.source],
      ['model', v.model],
      ['method', `${v.method}${v.setting ? ` (${v.setting})` : ''}`],
      ['column', v.key],
      ['value', String(v.value)],
    ],
  };
}

function kitCell(r: ResultRow, track: number): Cell {
  const { text } = displayKit(r, track);
  const date = r.started_at.slice(0, 10);
  return {
    kind: 'value',
    text,
    title: `${r.model} · ${r.method} ${JSON.stringify(r.method_config)} · ${r.task}/${r.metric} = ${r.value} · ${r.device} · ${r.backend} · ${date} · ${r.git_sha.slice(0, 10)}`,
    prov: [
      ['model', `${r.model} (${r.model_family}${r.model_params ? `, ${r.model_params.toLocaleString('en-US')} params` : ''})`],
      ['method config', `${r.method} ${JSON.stringify(r.method_config)}`],
      ['task / metric', `${r.task} / ${r.metric}${r.higher_is_better ? ' (higher is better)' : ' (lower is better)'}`],
      ['stored value', `${r.value}${r.stderr !== null ? ` ± ${r.stderr}` : ''}${r.n !== null ? `, n = ${r.n}` : ''}`],
      ['device', r.device],
      ['backend', r.backend],
      ['date', r.started_at],
      ['git sha', r.git_sha],
      ['run', r.run_id],
      ['protocol', `seqlen ${r.seqlen ?? '—'}, bos ${r.bos ?? '—'}, calib ${r.calib}, seed ${r.seed ?? '—'}`],
    ],
  };
}

function absentCell(rows: ResultRow[]): Cell {
  const r = rows.find((x) => x.status !== 'ok');
  if (!r) return { kind: 'not_run', text: NOT_RUN, title: 'no result row in data/results for this cell' };
  const label = r.status === 'no_data' ? 'no data' : 'not run';
  return {
    kind: r.status === 'no_data' ? 'no_data' : 'not_run',
    text: `${label}: ${r.note}`,
    title: `${label}: ${r.note} (${r.model}, ${r.task}/${r.metric}, ${r.started_at.slice(0, 10)}, ${r.git_sha.slice(0, 10)})`,
    prov: [
      ['status', r.status],
      ['reason', r.note],
      ['model', r.model],
      ['method config', `${r.method} ${JSON.stringify(r.method_config)}`],
      ['task / metric', `${r.task} / ${r.metric}`],
      ['device', r.device],
      ['backend', r.backend],
      ['date', r.started_at],
      ['git sha', r.git_sha],
    ],
  };
}

function omCell(o: OverallRow | undefined, label: string): Cell {
  if (!o) return { kind: 'not_run', text: NOT_RUN, title: `${label}: no overall value` };
  if (o.value === null) return { kind: 'no_data', text: 'no data', title: `${label}: ${o.note}`, prov: [['why', o.note || 'no comparable pair']] };
  const prov: [string, string][] = [
    ['computed from', o.source === 'paper' ? 'data/paper (this table)' : `data/results/track${o.track}.csv`],
    ['pairs', String(o.pairs)],
    ['models', o.models],
  ];
  if (o.source === 'kit') {
    prov.push(['method config', o.method_config], ['devices', o.devices], ['backends', o.backends], ['git shas', o.git_shas], ['latest run', o.latest]);
  }
  if (o.note) prov.push(['note', o.note]);
  return { kind: 'om', text: fmt(o.value), title: `${label} = ${o.value} over ${o.pairs} (model, sub-metric) pairs`, prov };
}

function publishedCell(p: { value: number; source: string } | undefined, om: string): Cell {
  if (!p) return { kind: 'no_data', text: 'no data', title: `${om}: not published` };
  return { kind: 'om', text: fmt(p.value), title: `${om} as published (${p.source})`, prov: [['source', 'LLMCBench paper (published overall column)'], ['file', p.source]] };
}

/** The paper's overall value as published, flagged (⚠) when recomputing it from the paper's own table gives another number. */
function paperOmCell(pub: { value: number; source: string } | undefined, re: OverallRow | undefined, om: string): Cell {
  const recomputed = re && re.value !== null ? re.value : null;
  if (!pub) {
    if (recomputed === null) return { kind: 'no_data', text: 'no data', title: `${om}: not in data/paper` };
    return { ...omCell(re, `${om} recomputed`), title: `${om} recomputed from the paper's table (not published)` };
  }
  const cell = publishedCell(pub, om);
  if (recomputed === null) return cell;
  cell.prov!.push(['recomputed', `${fmt(recomputed)} (from the paper's own table, ${re!.pairs} pairs)`]);
  const off = recomputed - pub.value;
  if (Math.abs(off) > 0.01) {
    cell.tone = Math.abs(off) / pub.value < 0.01 ? 'warn' : 'bad';
    cell.text = `${fmt(pub.value)} ⚠`;
    cell.title = `published ${fmt(pub.value)} vs recomputed ${fmt(recomputed)} (Δ ${fmt(off)}): ${cell.tone === 'bad' ? 'the paper disagrees with its own table' : 'within 1%: the table rounds its inputs'}`;
  }
  return cell;
}

/** A row identity of the paper's tables. */
interface PaperRowKey {
  family: string;
  method: string;
  setting: string;
}

function paperRows(paper: PaperValue[], track: Track): PaperRowKey[] {
  const seen = new Map<string, PaperRowKey>();
  for (const v of paper) {
    if (v.track !== track) continue;
    const k = `${v.family}|${v.method}|${v.setting}`;
    if (!seen.has(k)) seen.set(k, { family: v.family, method: v.method, setting: v.setting });
  }
  return [...seen.values()];
}

/** The paper's published overall value of a paper row (Track 2's are per method, without a setting). */
function publishedOf(data: SiteData, track: Track, om: OmName, pr: PaperRowKey): PaperOverall | undefined {
  return data.published.find((x) => x.track === track && x.om === om && x.method === pr.method && (track === 2 || x.setting === pr.setting));
}

/** The paper's method rows for tracks without a paper table: Dense and the methods it compares. */
function defaultRows(): PaperRowKey[] {
  return ['Dense', ...paperMethodNames()].map((m) => ({
    family: methodInfo(m).family, method: m, setting: '',
  }));
}

function sectionsOf<T extends { family: string }>(rows: T[]): { label: string | null; rows: T[] }[] {
  const fams = [...new Set(rows.map((r) => r.family))];
  const hasHalves = fams.includes('sparsity') && fams.includes('quantization');
  if (!hasHalves) return [{ label: null, rows }];
  const label = (f: string) => f.charAt(0).toUpperCase() + f.slice(1);
  return fams.map((f) => ({ label: label(f), rows: rows.filter((r) => r.family === f) }));
}

const familyOfModel = (m: string) => m.replace(/-[^-]*$/, '') || m;

function modelGroups(models: string[], keys: readonly string[], track: Track, unitOf: (key: string) => string | undefined = (k) => subMetric(track, k)?.unit): ColumnGroup[] {
  if (keys.length === 1 && models.length > 1) {
    // Track 2 style: one column per model, grouped by model family.
    const fams = [...new Set(models.map(familyOfModel))];
    return fams.map((f) => ({ label: f, columns: models.filter((m) => familyOfModel(m) === f).map((m) => ({ key: `${m}\u0000${keys[0]}`, label: m })) }));
  }
  return models.map((m) => ({
    label: m,
    columns: keys.map((k) => ({ key: `${m}\u0000${k}`, label: k, unit: unitOf(k) })),
  }));
}

const omGroup = (oms: OmName[]): ColumnGroup => ({ label: 'Overall', columns: oms.map((o) => ({ key: `om:${o}`, label: o })) });

/** The paper's table(s) of a track in the paper's layout; none for tracks 3, 5, 6 (not in data/paper). */
export function paperTables(data: SiteData, track: Track): TableModel[] {
  const values = data.paper.filter((v) => v.track === track);
  if (values.length === 0) return [];
  const models = [...new Set(values.map((v) => v.model))];
  const rows = paperRows(data.paper, track);
  return LAYOUTS[track].map((layout) => {
    const keys = layout.keys as readonly string[];
    const groups = [...modelGroups(models, keys, track), omGroup(layout.oms)];
    const tableName = layout.label.match(/Table \d+/)?.[0] ?? `Track ${track}`;
    const sections = sectionsOf(rows).map((s) => ({
      label: s.label,
      rows: s.rows.map((pr) => {
        const cells: Cell[] = [];
        for (const g of groups.slice(0, -1)) {
          for (const c of g.columns) {
            const [model, key] = c.key.split('\u0000');
            const v = values.find((x) => x.model === model && x.key === key && x.method === pr.method && x.setting === pr.setting && x.family === pr.family);
            cells.push(v ? paperCell(v, tableName) : { kind: 'no_data', text: 'no data', title: 'not in the paper' });
          }
        }
        for (const om of layout.oms) {
          cells.push(publishedCell(publishedOf(data, track, om, pr), om));
        }
        return { head: track === 2 ? [pr.method] : [pr.method, pr.setting], cells };
      }),
    }));
    return {
      id: `paper-${layout.id}`,
      caption: `Paper: ${layout.label}`,
      rowHeads: track === 2 ? ['Method'] : ['Method', 'Setting'],
      groups,
      sections,
      notes: [`Numbers from data/paper/${TRACK_PAPER_FILES[track].join('.csv, data/paper/')}.csv; overall columns as published.`],
    };
  });
}

/** One row of the kit's tables: its head, the kit group behind it, and the paper row it stands beside. */
interface KitRowPlan {
  family: string;
  head: string[];
  group: KitGroup | null;
  /** The paper row of the same method and setting (pairWithPaper); null for a setting the paper does not report, or no paper table. */
  paper: PaperRowKey | null;
}

/**
 * The kit's rows in the paper's order: under each paper row, the kit groups at its setting
 * (pairWithPaper; Track 2's table names none: the method's setting in the other tables), or one
 * "not run" row; then every other kit group, named by its own setting. Tracks without a paper
 * table list all of a method's groups under it.
 */
function kitRowPlan(data: SiteData, track: Track): KitRowPlan[] {
  const groups = groupKitRows(data.results.get(track) ?? [], track);
  const base = paperRows(data.paper, track);
  const prs = base.length ? base : defaultRows();
  // Track 2's heads have no Setting column: the kit's setting goes next to the method.
  const head = (method: string, setting: string) =>
    track === 2 ? [setting && setting !== '0' ? `${method} (${setting})` : method] : [method, setting || '—'];
  const used = new Set<KitGroup>();
  const plan: KitRowPlan[] = [];
  for (const pr of prs) {
    const pairing = pairWithPaper(pr.method, base.length ? pr.setting || paperSettingOf(data.paper, pr.method) : null, groups);
    const ms = pairing.exact || !base.length ? pairing.items : [];
    const paper = base.length ? pr : null;
    if (ms.length === 0) plan.push({ family: pr.family, head: head(pr.method, track === 2 ? '' : pr.setting), group: null, paper });
    // A baseline group matches both of the paper's baselines (Dense, Full Prec.): list it under each.
    for (const g of ms) {
      plan.push({ family: pr.family, head: head(pr.method, isBaseline(g.method) ? pr.setting : g.setting), group: g, paper });
      used.add(g);
    }
  }
  for (const g of groups.filter((x) => !used.has(x))) {
    plan.push({ family: 'not in the paper', head: head(g.method, g.setting), group: g, paper: null });
  }
  return plan;
}

/** The kit's table(s) of a track in the paper's layout. */
export function kitTables(data: SiteData, track: Track): TableModel[] {
  const rows = data.results.get(track) ?? [];
  const plan = kitRowPlan(data, track);
  const models = [...new Set(rows.map((r) => r.model))];
  const overall = data.overall.filter((o) => o.source === 'kit' && o.track === track);
  return LAYOUTS[track].map((layout) => {
    let keys: string[];
    if (layout.keys) {
      keys = [...layout.keys];
    } else {
      keys = withoutSubtasks([...new Set(rows.map((r) => kitColumn(track, r.task, r.metric).key))]);
      if (keys.length === 0) keys = EXPECTED[track];
    }
    const extra = layout.keys
      ? withoutSubtasks([...new Set(rows.map((r) => kitColumn(track, r.task, r.metric)).filter((c) => !c.classified).map((c) => c.key))])
      : [];
    // Track 1's extra (unclassified) columns go to the second table only, once.
    const withExtra = layout === LAYOUTS[track][LAYOUTS[track].length - 1] ? [...keys, ...extra] : keys;
    const shownModels = models.length ? models : ['(no model run yet)'];
    const units = new Map(rows.map((r) => kitColumn(track, r.task, r.metric)).map((c) => [c.key, c.unit || undefined]));
    const groups = [...modelGroups(shownModels, withExtra, track, (k) => units.get(k) ?? subMetric(track, k)?.unit), omGroup(layout.oms)];
    const sections = sectionsOf(plan).map((s) => ({
      label: s.label,
      rows: s.rows.map((p) => {
        const cells: Cell[] = [];
        for (const g of groups.slice(0, -1)) {
          for (const c of g.columns) {
            const [model, key] = c.key.split('\u0000');
            const cell = p.group?.cells.get(`${model}\u0000${key}`);
            if (cell) cells.push(kitCell(cell.row, track));
            else {
              const failed = (p.group?.rows ?? []).filter((r) => r.model === model && kitColumn(track, r.task, r.metric).key === key);
              cells.push(absentCell(failed));
            }
          }
        }
        for (const om of layout.oms) {
          const o = p.group ? overall.find((x) => x.om === om && x.method === p.group!.method && x.method_config === p.group!.config) : undefined;
          cells.push(omCell(o, om));
        }
        return { head: p.head, cells };
      }),
    }));
    const notes: string[] = [];
    if (rows.length === 0) notes.push(`No rows in data/results/track${track}.csv yet: every cell says "not run".`);
    else notes.push(`Rows from data/results/track${track}.csv; each cell is the latest ok row (acc_norm preferred where the paper used it). Accuracies in percent.`);
    if (track === 2) notes.push(TRACK2_SETTING_NOTE);
    if (extra.length && withExtra.length > keys.length) notes.push(`Columns outside the paper's overall metric: ${extra.join(', ')}.`);
    if (rows.some((r) => r.task.includes('/'))) notes.push(`Per-subject and per-subset rows (${[...new Set(rows.filter((r) => r.task.includes('/')).map((r) => r.task.split('/')[0]))].join(', ')}) are in the CSV.`);
    return {
      id: `kit-${layout.id}`,
      caption: `Ours: ${layout.label.replace(/ \(paper Table \d+\)/, '')}, same layout`,
      rowHeads: track === 2 ? ['Method'] : ['Method', 'Setting'],
      groups,
      sections,
      notes,
    };
  });
}

/** Drops 'task/subset · metric' columns whose 'task · metric' is there too (MMLU subjects, AdvGLUE subsets: kept in the CSV). */
function withoutSubtasks(keys: string[]): string[] {
  return keys.filter((k) => {
    const m = k.match(/^([^/]+)\/[^ ]+ · (.+)$/);
    return !m || !keys.includes(`${m[1]} · ${m[2]}`);
  });
}

const ABSENT: readonly CellKind[] = ['not_run', 'no_data', 'text'];

/**
 * A table without its rows that have no value at all (every cell not run, no data or '—'): they
 * become one line at the end that names them and says why. Null when no row has a value.
 */
export function foldEmptyRows(t: TableModel): TableModel | null {
  const empty = (r: Row) => r.cells.every((c) => ABSENT.includes(c.kind));
  const folded = t.sections.flatMap((s) => s.rows.filter(empty));
  const kept = t.sections.map((s) => ({ ...s, rows: s.rows.filter((r) => !empty(r)) })).filter((s) => s.rows.length > 0);
  if (kept.length === 0) return null;
  if (folded.length === 0) return t;
  const why = [...new Set(folded.flatMap((r) => r.cells.filter((c) => c.kind !== 'text').map((c) => c.text.replace(/^(no data|not run).*/, '$1'))))].join(' / ') || 'no value';
  const names = folded.map((r) => r.head.filter((h) => h && h !== '—').join(' ')).join(', ');
  return { ...t, sections: [...kept, { label: `${folded.length} row(s) without any value (${why}): ${names}`, rows: [] }] };
}

/** Overall metrics side by side: published, recomputed from the paper's table, ours, and differences. */
export function diffTable(data: SiteData, track: Track): TableModel {
  const oms = (Object.keys(OVERALL_METRICS) as OmName[]).filter((o) => OVERALL_METRICS[o].track === track);
  const plan = kitRowPlan(data, track);
  const groups: ColumnGroup[] = oms.map((om) => ({
    label: om,
    columns: [
      { key: `${om}:paper`, label: 'paper' },
      { key: `${om}:kit`, label: 'ours' },
      { key: `${om}:d`, label: 'ours − paper' },
    ],
  }));
  const rows: Row[] = plan.map((p) => {
    const pr = p.paper;
    const cells: Cell[] = [];
    for (const om of oms) {
      const pub = pr ? publishedOf(data, track, om, pr) : undefined;
      const re = pr ? data.overall.find((x) => x.source === 'paper' && x.track === track && x.om === om && x.method === pr.method && x.setting === pr.setting) : undefined;
      const kit = p.group ? data.overall.find((x) => x.source === 'kit' && x.om === om && x.method === p.group!.method && x.method_config === p.group!.config) : undefined;
      cells.push(paperOmCell(pub, re, om));
      cells.push(omCell(kit, `${om} ours`));
      const ref = pub?.value ?? re?.value ?? null;
      if (kit && kit.value !== null && ref !== null) {
        const d = kit.value - ref;
        cells.push({ kind: 'diff', text: `${d >= 0 ? '+' : '−'}${fmt(Math.abs(d))}`, title: `ours ${fmt(kit.value)} − paper ${fmt(ref)}`, tone: d >= 0 ? 'good' : 'bad' });
      } else cells.push({ kind: 'text', text: '—', title: 'needs both sides' });
    }
    return { head: p.head, cells };
  });
  return {
    id: 'diff',
    caption: `Overall metrics: the paper (as published; ⚠ where recomputing from its own table disagrees) and ours`,
    rowHeads: track === 2 ? ['Method'] : ['Method', 'Setting'],
    groups,
    sections: sectionsOf(plan.map((p, k) => ({ family: p.family, row: rows[k] }))).map((s) => ({ label: s.label, rows: s.rows.map((x) => x.row) })),
    notes: [
      'Each side is relative to its own dense model (DESIGN §1), so the overall columns compare across different models; per-cell values do not.',
      '⚠ marks a published value more than 0.01 from the one recomputed from the paper\'s own table (hover or open it for both).',
      ...(track === 2 ? [TRACK2_SETTING_NOTE] : []),
    ],
  };
}

/** Per-cell differences, only where the kit ran one of the paper's own models. */
export function sharedModelDiff(data: SiteData, track: Track): TableModel | null {
  const kitRows = data.results.get(track) ?? [];
  const paperModels = new Set(data.paper.filter((v) => v.track === track).map((v) => v.model));
  const shared = [...new Set(kitRows.map((r) => r.model))].filter((m) => paperModels.has(m));
  if (shared.length === 0) return null;
  const plan = kitRowPlan(data, track).filter((p) => p.group);
  const keys = [...new Set(data.paper.filter((v) => v.track === track).map((v) => v.key))];
  const groups = modelGroups(shared, keys, track);
  const rows: Row[] = plan.map((p) => {
    const cells: Cell[] = [];
    for (const g of groups) {
      for (const c of g.columns) {
        const [model, key] = c.key.split('\u0000');
        const kc = p.group!.cells.get(`${model}\u0000${key}`);
        const pv = p.paper && data.paper.find((v) => v.track === track && v.model === model && v.key === key && v.method === p.paper!.method && v.setting === p.paper!.setting);
        if (!kc || !pv) {
          cells.push({ kind: 'text', text: '—', title: 'needs both sides' });
          continue;
        }
        const ours = displayKit(kc.row, track).shown;
        const d = ours - pv.value;
        cells.push({ kind: 'diff', text: `${d >= 0 ? '+' : '−'}${fmt(Math.abs(d))}`, title: `ours ${fmt(ours)} − paper ${fmt(pv.value)} (${pv.source})` });
      }
    }
    return { head: p.head, cells };
  });
  return {
    id: 'diff-cells', caption: 'Per-cell differences on the paper\'s own models (ours − paper)',
    rowHeads: track === 2 ? ['Method'] : ['Method', 'Setting'], groups, sections: [{ label: null, rows }], notes: [],
  };
}


/**
 * Provenance of the kit's rows, one line per run: when, which tracks and models, how many rows of
 * each status, the device, backend and git sha, the wall time of its cells (each cell once: the
 * longest duration among its rows) and the hashes of the dataset files its cells read.
 */
export function provenanceTable(data: SiteData): TableModel {
  const rows = [...data.results.values()].flat();
  const runs = runProvenance(rows);
  const text = (t: string): Cell => ({ kind: 'value', text: t || '—', title: t || 'none' });
  const columns = ['started', 'tracks', 'models', 'rows (ok / no data / not run)', 'device', 'backend', 'git sha', 'cell wall time (s)', 'datasets (file hashes)'];
  return {
    id: 'provenance',
    caption: 'Which runs produced the rows in data/results: device, backend, git sha, wall time and dataset hashes',
    rowHeads: ['Run'],
    groups: [{ label: 'Provenance', columns: columns.map((c) => ({ key: c, label: c })) }],
    sections: [{
      label: null,
      rows: runs.map((r) => ({
        head: [r.runId.slice(0, 8)],
        cells: [
          text(r.startedAt.replace('T', ' ').slice(0, 16)),
          text(r.tracks.join(', ')),
          text(r.models.join(', ')),
          text(`${r.ok} / ${r.noData} / ${r.notRun}`),
          text(r.devices.join(', ')),
          text(r.backends.join(', ')),
          text(r.gitShas.join(', ')),
          text(r.cellWallS.toFixed(1)),
          text(r.datasets.join(', ')),
        ],
      })),
    }],
    notes: [
      `${rows.length} rows from ${runs.length} runs in data/results/track1-6.csv. Wall time: the sum over the run's cells of each cell's duration (a cell's rows share it); loading and compressing are outside it (Track 3 measures compression).`,
      'Dataset hashes: the data identity of the files a cell read (part of its cell key); rows without one read no dataset or predate the hashes.',
    ],
  };
}
