// Track 3 (training consumption): the wall time and peak memory of each compression run,
// calibration included, as measured by meterCompression while the subject was prepared.
import type { Cell } from '../matrix';
import type { ResultRow } from '../results';
import { cellRow, type Subject, type TrackEnv } from './common';

export const TRACK3_METRICS = [
  { task: 'compress', metric: 'wall_time_s', higher_is_better: false },
  { task: 'compress', metric: 'peak_memory_bytes', higher_is_better: false },
];
/** On webgpu also: the peak GPU bytes held by live tensors (one block plus activations under layer streaming). */
export const TRACK3_GPU_METRIC = { task: 'compress', metric: 'peak_gpu_bytes', higher_is_better: false };

export function trainingCell(env: TrackEnv, cell: Cell, s: Subject): ResultRow[] {
  const m = s.train;
  if (!m) throw new Error(`Track 3: ${s.method.id} on ${s.spec.id} has no compression measurement (dense models are not compressed)`);
  const where = `backend ${env.runtime.backend}; peak = live tfjs tensor bytes (model weights included), sampled per block and every 50 ms; host RSS peak ${m.peakRssBytes} B`;
  const pool = m.gpuPoolHighWaterBytes === null ? '' : `; WebGPU pool high-water ${m.gpuPoolHighWaterBytes} B (process lifetime)`;
  const gpu = m.peakGpuBytes === null ? '' : `; peak_gpu_bytes ${m.peakGpuBytes} (GPU bytes held by live tensors)`;
  const rows = [
    cellRow(env, cell, s, { ...TRACK3_METRICS[0], value: m.wallS, duration_s: m.wallS, note: `calibration data preparation included${gpu}` }),
    cellRow(env, cell, s, { ...TRACK3_METRICS[1], value: m.peakBytes, duration_s: m.wallS, note: where + pool + gpu }),
  ];
  if (m.peakGpuBytes !== null) {
    rows.push(cellRow(env, cell, s, { ...TRACK3_GPU_METRIC, value: m.peakGpuBytes, duration_s: m.wallS, note: `GPU bytes held by live tensors, sampled per block and every 50 ms (layer streaming: one block's weights plus activations)${pool}` }));
  }
  return rows;
}
