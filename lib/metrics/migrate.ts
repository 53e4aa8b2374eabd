// Spellings result rows had before the metric catalogue (lib/metrics/catalogue.ts), and the
// rewrite that brings old rows to the catalogue's names. Only names change (task, metric); values,
// notes and provenance stay.
import { cellNote, rowCell, type CalibSettings, type Cell, type MatrixConfig, type MethodSpec } from '../matrix';
import { checkMethodConfig, getMethod } from '../methods/index';
import type { ResultRow } from '../results';
import { engineMetricFields, metricFields, type MetricFields } from './catalogue';
import { canonicalJson } from './names';

interface Legacy {
  track: 3 | 4 | 5;
  /** Old task; null: any (Track 5: the engine). */
  task: string | null;
  metric: string;
  /** The catalogue's fields for it (Track 5: given the row's engine). */
  to: (task: string) => MetricFields;
}

/** Old (task, metric) spellings of Tracks 3-5: compress.ts, reproduce-reference.ts, bench-engines.ts. */
export const LEGACY_METRICS: readonly Legacy[] = [
  { track: 3, task: 'compression', metric: 'time_s', to: () => metricFields(3, 'wall_time_s') },
  // The scripts wrote the WebGPU pool's high-water mark where there was one, else the live-tensor peak.
  { track: 3, task: 'compression', metric: 'peak_gpu_bytes', to: () => metricFields(3, 'gpu_pool_high_water_bytes') },
  { track: 3, task: 'compression', metric: 'peak_tensor_bytes', to: () => metricFields(3, 'peak_memory_bytes') },
  { track: 4, task: 'storage', metric: 'stored_size_bytes', to: () => metricFields(4, 'model_size_bytes') },
  { track: 5, task: null, metric: 'prefill_tok_s', to: (e) => engineMetricFields(e, 'prefill_tok_per_s') },
  { track: 5, task: null, metric: 'decode_tok_s', to: (e) => engineMetricFields(e, 'decode_tok_per_s') },
  { track: 5, task: null, metric: 'throughput_tok_s', to: (e) => engineMetricFields(e, 'throughput_tok_per_s') },
];

/**
 * Old Track 5 engine names -> the matrix's: bench-engines filed the kit's engine under its backend
 * ('webgpu'); the runner and the matrix call it 'kit' (the backend column keeps 'webgpu').
 */
export const LEGACY_ENGINES: Readonly<Record<string, string>> = { webgpu: 'kit' };

/** A row in the catalogue's names (the same object when nothing changes). */
export function migrateRow(row: ResultRow): ResultRow {
  let task = row.task;
  if (row.track === 5 && task in LEGACY_ENGINES) task = LEGACY_ENGINES[task];
  const old = LEGACY_METRICS.find((l) => l.track === row.track && (l.task === null || l.task === row.task) && l.metric === row.metric);
  if (!old && task === row.task) return row;
  return { ...row, ...(old ? old.to(task) : { task }) };
}

/** Columns of a bench CSV that hold result names: the Track 5 speed-ratio table (engine, metric). */
export function migrateSpeedupRecord(rec: Record<string, string>): Record<string, string> {
  const engine = LEGACY_ENGINES[rec.engine] ?? rec.engine;
  const old = LEGACY_METRICS.find((l) => l.track === 5 && l.metric === rec.metric);
  return { ...rec, engine, metric: old ? old.to(engine).metric : rec.metric };
}

// ---------------------------------------------------------------------------------------------
// Cell keys for rows written before the runner stamped them (reproduce-reference.ts,
// bench-engines.ts, early run.ts): a row gets the key of the matrix cell that computes what it
// measured, when a matrix (data/results/matrices/*.json) expresses its protocol exactly; the
// runner then counts the cell as done. A row no matrix expresses keeps no key, with the reason.

/** Old method_config keys (the methods' result configs of the time) -> today's option names. */
const LEGACY_OPTION_KEYS: Readonly<Record<string, string>> = {
  group_size: 'groupSize', act_order: 'actOrder', static_groups: 'staticGroups', n_grid: 'nGrid',
  w_bits: 'weightBits', a_bits: 'actBits', w_quant: 'weightGranularity', act: 'actGranularity', act_static: 'actStatic',
  attention: 'pruneAttention', mlp: 'pruneMlp',
};

/** Result-config keys that describe the outcome, not an option (LLM-Pruner's pruned blocks and its one importance). */
const RESULT_ONLY_KEYS: Readonly<Record<string, readonly string[]>> = { 'llm-pruner': ['layers', 'importance'] };

/** Method names of old rows -> the registry method and the options the name implied. */
const LEGACY_METHODS: Readonly<Record<string, { method: string; implied: Record<string, unknown> }>> = {
  'w8a8-naive': { method: 'smoothquant', implied: { smooth: false } }, // SmoothQuant's naive W8A8 baseline
  smoothquant: { method: 'smoothquant', implied: { smooth: true } },
};

/**
 * Calibration descriptions of old rows (describeCalib) -> the matrix calibration that draws the same windows.
 * ../shared/reference's 128 x 512 WikiText-2 valid ids are exactly the kit's own draw at seed 0
 * (test/resume.test.ts checks it window by window when the files are present).
 */
export const LEGACY_CALIB: Readonly<Record<string, CalibSettings>> = {
  'calib_wikitext2_valid_128x512.json:128x512:seed0': { corpus: 'wikitext2-valid', nsamples: 128, seqlen: 512, seed: 0 },
  'kjv-valid:32x256:seed0': { corpus: 'kjv-valid', nsamples: 32, seqlen: 256, seed: 0 }, // bench-engines.ts on the zoo: the same draw
};

/** A row's method and options in today's names, or why they cannot be read. */
export function rowOptions(row: Pick<ResultRow, 'method' | 'method_config'>): { method: string; config: Record<string, unknown> } | string {
  const legacy = LEGACY_METHODS[row.method];
  const method = legacy?.method ?? row.method;
  const drop = RESULT_ONLY_KEYS[row.method] ?? [];
  const config: Record<string, unknown> = { ...(legacy?.implied ?? {}) };
  for (const [k, v] of Object.entries(row.method_config)) if (!drop.includes(k)) config[LEGACY_OPTION_KEYS[k] ?? k] = v;
  try {
    checkMethodConfig(method, config, `${row.method} ${JSON.stringify(row.method_config)}`);
  } catch (e) {
    return (e as Error).message;
  }
  return { method, config };
}

/** The options a method spec runs with: its config over the method's defaults. */
function resolvedOptions(spec: MethodSpec): Record<string, unknown> {
  return spec.method === 'dense' ? {} : { ...(getMethod(spec.method).defaults as Record<string, unknown>), ...spec.config };
}

/** The matrix method specs whose options agree with every option a row recorded. */
export function matchingSpecs(opts: { method: string; config: Record<string, unknown> }, specs: readonly MethodSpec[]): MethodSpec[] {
  return specs.filter((s) => {
    if (s.method !== opts.method) return false;
    const r = resolvedOptions(s);
    return Object.entries(opts.config).every(([k, v]) => canonicalJson(r[k]) === canonicalJson(v));
  });
}

/** The cell item a row belongs to: its task (sub-task rows: the task before '/'), 'compress', 'inference' or its engine. */
function rowItem(row: ResultRow): string {
  if (row.track === 3) return 'compress';
  if (row.track === 4) return 'inference';
  if (row.track === 5) return row.task;
  return row.task.split('/')[0];
}

/** A matrix with its planned cells (expandCells, as the runner plans them). */
export interface PlannedMatrix {
  matrix: MatrixConfig;
  cells: Cell[];
}

/** The cell of a planned matrix that computes what a row measured, or why there is none. */
export function cellOfRow(row: ResultRow, planned: readonly PlannedMatrix[]): Cell | string {
  const item = rowItem(row);
  const here = planned.filter((p) => p.matrix.backend === row.backend && p.matrix.tracks.includes(row.track) && p.matrix.models.some((m) => m.id === row.model));
  if (here.length === 0) return `no matrix runs ${row.model} on track ${row.track} with backend ${row.backend}`;
  const opts = rowOptions(row);
  if (typeof opts === 'string') return opts;
  const reasons: string[] = [];
  for (const { matrix: mx, cells } of here) {
    if (row.track === 5 && !mx.engines.includes(item)) {
      reasons.push(`engine '${item}' is not a matrix engine (${mx.name})`);
      continue;
    }
    const specs = matchingSpecs(opts, mx.methods);
    if (specs.length !== 1) {
      reasons.push(`${specs.length} method specs of ${mx.name} match ${opts.method} ${JSON.stringify(opts.config)}`);
      continue;
    }
    if (opts.method !== 'dense' && getMethod(opts.method).needsCalib && canonicalJson(LEGACY_CALIB[row.calib] ?? null) !== canonicalJson(mx.calib)) {
      reasons.push(`calibration '${row.calib}' is not ${mx.name}'s ${JSON.stringify(mx.calib)}`);
      continue;
    }
    const b = mx.bench;
    if (row.track === 5 && !row.note.includes(`prompt ${b.promptTokens}, new ${b.newTokens}, batch ${b.batch}, warmup ${b.warmup}, repeats ${b.repeats}`)) {
      reasons.push(`bench settings in the note are not ${mx.name}'s`);
      continue;
    }
    const cell = cells.find((c) => c.track === row.track && c.model.id === row.model && c.method.id === specs[0].id && c.item === item);
    if (cell) return cell;
    reasons.push(`${mx.name} has no cell track ${row.track} ${row.model} ${specs[0].id} ${item}`);
  }
  return reasons.join('; ');
}

/** Rows with cell keys where a planned matrix has their cell; rows already keyed stay as they are. */
export function keyRows(rows: readonly ResultRow[], planned: readonly PlannedMatrix[]): { rows: ResultRow[]; keyed: number; unkeyed: { row: ResultRow; reason: string }[] } {
  let keyed = 0;
  const unkeyed: { row: ResultRow; reason: string }[] = [];
  const out = rows.map((r) => {
    if (rowCell(r) !== null) return r;
    const cell = cellOfRow(r, planned);
    if (typeof cell === 'string') {
      unkeyed.push({ row: r, reason: cell });
      return r;
    }
    keyed++;
    return { ...r, note: cellNote(cell.hash, r.note, cell.data) };
  });
  return { rows: out, keyed, unkeyed };
}
