// Track 3 (training consumption): the wall time and peak memory of each compression run,
// calibration included, as measured by meterCompression while the subject was prepared.
import type { Cell } from '../matrix';
import { metricFields } from '../metrics/catalogue';
import type { ResultRow } from '../results';
import { cellRow, type Subject, type TrackEnv } from './common';

export const TRACK3_METRICS = [metricFields(3, 'wall_time_s'), metricFields(3, 'peak_memory_bytes')];

export function trainingCell(env: TrackEnv, cell: Cell, s: Subject): ResultRow[] {
  const m = s.train;
  if (!m) throw new Error(`Track 3: ${s.method.id} on ${s.spec.id} has no compression measurement (dense models are not compressed)`);
  const where = `backend ${env.runtime.backend}; peak = live tfjs tensor bytes (model weights included), sampled per block and every 50 ms; host RSS peak ${m.peakRssBytes} B`;
  const pool = m.gpuPoolHighWaterBytes === null ? '' : `; WebGPU pool high-water ${m.gpuPoolHighWaterBytes} B (process lifetime)`;
  return [
    cellRow(env, cell, s, { ...TRACK3_METRICS[0], value: m.wallS, duration_s: m.wallS, note: 'calibration data preparation included' }),
    cellRow(env, cell, s, { ...TRACK3_METRICS[1], value: m.peakBytes, duration_s: m.wallS, note: where + pool }),
  ];
}
