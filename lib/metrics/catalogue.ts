// The metric catalogue of Tracks 3-5 (tasks declare the metrics of Tracks 1, 2 and 6): one name per
// metric, with the row task it is filed under, its unit, its direction and what it measures. Every
// row writer (the runner's track cells, compress.ts, reproduce-reference.ts, bench-engines.ts), the
// overall metrics and the site take names from here; a misspelt name is a compile error.

export type CostTrack = 3 | 4 | 5;

export interface MetricDef {
  /** The row's task column; null for Track 5, where the task is the engine's matrix name. */
  task: string | null;
  /** Unit of the stored value. */
  unit: 's' | 'bytes' | 'MACs' | 'tokens/s' | 'ms';
  higherIsBetter: boolean;
  /** Counted in the track's overall metric (OM_train, OM_inf, OM_hard). */
  inOverall: boolean;
  /** The paper's column it fills (Track 4: Table 6), when it has one. */
  paperColumn: string | null;
  description: string;
}

/** Every metric of Tracks 3-5, by track and name. */
export const METRIC_CATALOGUE = {
  3: {
    wall_time_s: {
      task: 'compress', unit: 's', higherIsBetter: false, inOverall: true, paperColumn: null,
      description: 'wall time of the compression, calibration data preparation included',
    },
    peak_memory_bytes: {
      task: 'compress', unit: 'bytes', higherIsBetter: false, inOverall: true, paperColumn: null,
      description: 'peak live tfjs tensor bytes during the compression (model weights included), comparable across backends',
    },
    gpu_pool_high_water_bytes: {
      task: 'compress', unit: 'bytes', higherIsBetter: false, inOverall: false, paperColumn: null,
      description: "WebGPU only: tfjs's buffer-pool high-water mark, over the process lifetime (the pool keeps freed buffers): not the track's memory",
    },
    peak_gpu_tensor_bytes: {
      task: 'compress', unit: 'bytes', higherIsBetter: false, inOverall: false, paperColumn: null,
      description: "WebGPU only: peak GPU bytes held by live tensors (torch.cuda.max_memory_allocated's analogue; with layer streaming one block's weights plus activations)",
    },
  },
  4: {
    peak_memory_bytes: {
      task: 'generate', unit: 'bytes', higherIsBetter: false, inOverall: true, paperColumn: 'gpu_memory_GB',
      description: 'peak memory while generating a fixed prompt and number of new tokens',
    },
    model_size_bytes: {
      task: 'storage', unit: 'bytes', higherIsBetter: false, inOverall: true, paperColumn: 'model_size_GB',
      description: 'bytes of the model stored in its compressed format',
    },
    macs_per_token: {
      task: 'macs', unit: 'MACs', higherIsBetter: false, inOverall: true, paperColumn: 'MACs_T',
      description: 'multiply-accumulates per token at a stated sequence length (zeros skipped)',
    },
  },
  5: {
    prefill_tok_per_s: {
      task: null, unit: 'tokens/s', higherIsBetter: true, inOverall: true, paperColumn: null,
      description: 'prompt tokens (times batch) per second until the first new token',
    },
    decode_tok_per_s: {
      task: null, unit: 'tokens/s', higherIsBetter: true, inOverall: true, paperColumn: null,
      description: 'new tokens (times batch) per second after the first one',
    },
    throughput_tok_per_s: {
      task: null, unit: 'tokens/s', higherIsBetter: true, inOverall: true, paperColumn: null,
      description: 'all tokens, prompt and new, per second of the whole run',
    },
    ttft_ms: {
      task: null, unit: 'ms', higherIsBetter: false, inOverall: false, paperColumn: null,
      description: 'time to the first new token (latency: shown, kept out of OM_hard, which is speed)',
    },
    itl_ms: {
      task: null, unit: 'ms', higherIsBetter: false, inOverall: false, paperColumn: null,
      description: 'median time between new tokens of one stream (latency: kept out of OM_hard)',
    },
    peak_memory_bytes: {
      task: null, unit: 'bytes', higherIsBetter: false, inOverall: false, paperColumn: null,
      description: "the engine's peak memory during the measured runs (kept out of OM_hard)",
    },
  },
} as const satisfies Record<CostTrack, Record<string, MetricDef>>;

/** A metric name of a track ('wall_time_s' of Track 3, 'decode_tok_per_s' of Track 5, ...). */
export type MetricName<T extends CostTrack> = keyof (typeof METRIC_CATALOGUE)[T] & string;

export const isCostTrack = (track: number): track is CostTrack => track === 3 || track === 4 || track === 5;

/** The catalogue entry of a track's metric, or undefined when the name is not in the catalogue. */
export function metricDef(track: number, metric: string): MetricDef | undefined {
  if (!isCostTrack(track)) return undefined;
  return (METRIC_CATALOGUE[track] as Record<string, MetricDef>)[metric];
}

/** The metric names of a track, in catalogue order. */
export function metricNames<T extends CostTrack>(track: T): MetricName<T>[] {
  return Object.keys(METRIC_CATALOGUE[track]) as MetricName<T>[];
}

/** The row fields a metric fixes: task (Track 5: the engine), metric and direction. */
export interface MetricFields {
  task: string;
  metric: string;
  higher_is_better: boolean;
}

/** Row fields of a Track 3 or 4 metric (their task is fixed by the catalogue). */
export function metricFields<T extends 3 | 4>(track: T, metric: MetricName<T>): MetricFields {
  const d = metricDef(track, metric);
  if (!d) throw new Error(`metric catalogue: Track ${track} has no metric '${metric}' (has ${metricNames(track).join(', ')})`);
  return { task: d.task as string, metric, higher_is_better: d.higherIsBetter };
}

/** Row fields of a Track 5 metric measured in an engine (the engine's matrix name is the task). */
export function engineMetricFields(engine: string, metric: MetricName<5>): MetricFields {
  return { task: engine, metric, higher_is_better: METRIC_CATALOGUE[5][metric].higherIsBetter };
}

/** Factor from a stored unit to the paper's display unit (bytes -> GB, MACs -> TMACs). */
export const DISPLAY_SCALE: Record<MetricDef['unit'], number> = { s: 1, bytes: 1e-9, MACs: 1e-12, 'tokens/s': 1, ms: 1 };
/** The display unit of each stored unit (after DISPLAY_SCALE). */
export const DISPLAY_UNIT: Record<MetricDef['unit'], string> = { s: 's', bytes: 'GB', MACs: 'TMACs', 'tokens/s': 'tokens/s', ms: 'ms' };

