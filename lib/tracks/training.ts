// Track 3 (training consumption): the wall time and peak memory of each compression run,
// the calibration set prepared before (as the reference scripts time it), as measured by
// meterCompression while the subject was prepared.
import type { Cell } from '../matrix';
import { trainMetrics } from '../efficiency/meters';
import { metricFields } from '../metrics/catalogue';
import type { ResultRow } from '../results';
import { cellRow, type Subject, type TrackEnv } from './common';

/** The rows a Track 3 cell always writes (the WebGPU pool's high-water is an extra when there is one). */
export const TRACK3_METRICS = [metricFields(3, 'wall_time_s'), metricFields(3, 'peak_memory_bytes')];

export function trainingCell(env: TrackEnv, cell: Cell, s: Subject): ResultRow[] {
  const m = s.train;
  if (!m) throw new Error(`Track 3: ${s.method.id} on ${s.spec.id} has no compression measurement (dense models are not compressed)`);
  return trainMetrics(m, env.runtime.backend).map((x) => cellRow(env, cell, s, { ...metricFields(3, x.metric), value: x.value, duration_s: m.wallS, note: x.note }));
}
