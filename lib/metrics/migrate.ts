// Spellings result rows had before the metric catalogue (lib/metrics/catalogue.ts), and the
// rewrite that brings old rows to the catalogue's names. Only names change (task, metric); values,
// notes and provenance stay.
import type { ResultRow } from '../results';
import { engineMetricFields, metricFields, type MetricFields } from './catalogue';

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
