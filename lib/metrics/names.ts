// Names shared by the paper's tables and the kit's result rows: method display names, baselines,
// setting labels, and the sub-metrics (the paper's table columns) each overall metric (DESIGN §1)
// is taken over, with the kit (task, metric) pairs that fill them.
import { getMethod, methodNames } from '../methods/index';
import { DISPLAY_SCALE, DISPLAY_UNIT, isCostTrack, METRIC_CATALOGUE, metricDef, metricNames, type MetricDef } from './catalogue';

/** Lower-case and strip everything but letters and digits: 'LLM-Pruner' -> 'llmpruner'. */
export function normName(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]/g, '');
}

export type Family = 'baseline' | 'sparsity' | 'quantization' | 'other';

interface MethodInfo {
  display: string;
  family: Family;
}

/**
 * Display names in the paper's spelling, keyed by normName; order = the paper's row order: the
 * baselines, then the method registry (lib/methods/index.ts) in its order. Structured pruning
 * (LLM-Pruner) sits with sparsity, as in the paper's tables.
 */
export const METHOD_NAMES: Record<string, MethodInfo> = {
  dense: { display: 'Dense', family: 'baseline' },
  fullprec: { display: 'Full Prec.', family: 'baseline' },
  ...Object.fromEntries(
    methodNames().map((name) => {
      const m = getMethod(name);
      return [normName(name), { display: m.display, family: m.kind === 'quantization' ? 'quantization' : 'sparsity' }];
    }),
  ),
};

/** The display names of the methods LLMCBench compares (the registry's inPaper), in the paper's row order. */
export function paperMethodNames(): string[] {
  return methodNames()
    .map(getMethod)
    .filter((m) => m.inPaper)
    .map((m) => m.display);
}

/** Method names that denote the uncompressed reference model (paper: Dense, Full Prec.; kit: dense). */
const BASELINE_NAMES = new Set(['dense', 'fullprec', 'fp16', 'fp32', 'bf16', 'baseline', 'none', 'uncompressed']);

export function isBaseline(method: string): boolean {
  return BASELINE_NAMES.has(normName(method));
}

export function methodInfo(method: string): MethodInfo {
  const known = METHOD_NAMES[normName(method)];
  if (known) return known;
  if (isBaseline(method)) return { display: method, family: 'baseline' };
  return { display: method, family: 'other' };
}

/** Sort key following the paper's row order; unknown methods after, alphabetically. */
export function methodOrder(method: string): number {
  const keys = Object.keys(METHOD_NAMES);
  const k = keys.indexOf(normName(method));
  return k >= 0 ? k : keys.length;
}

const pick = (cfg: Record<string, unknown>, names: string[]): unknown => {
  for (const n of names) if (cfg[n] !== undefined && cfg[n] !== null && cfg[n] !== '') return cfg[n];
  return undefined;
};

/** OmniQuant's training passes per block in the paper (and the kit's default). */
const PAPER_EPOCHS = 20;

/**
 * A short setting label in the paper's style from a kit method_config: '50%', '2:4', 'INT8',
 * 'INT4 g128', 'W8A8', 'INT4 1 epoch'. Baselines are '0' (the paper's Dense setting). Reads the kit's option names
 * (lib/methods) and the spellings the reference codebases use (wbits/w_bit, groupsize/q_group_size, prune_n/prune_m).
 */
export function settingLabel(method: string, cfg: Record<string, unknown>): string {
  if (isBaseline(method)) return '0';
  const parts: string[] = [];
  const pattern = pick(cfg, ['pattern', 'nm', 'sparsity_type']);
  const n = pick(cfg, ['n', 'prune_n']);
  const m = pick(cfg, ['m', 'prune_m']);
  if (typeof pattern === 'string' && /^(\d+:\d+|\d+(\.\d+)?%)$/.test(pattern)) parts.push(pattern); // '2:4' or '50%'
  else if (typeof n === 'number' && typeof m === 'number' && n > 0 && m > 0) parts.push(`${n}:${m}`);
  else {
    const s = pick(cfg, ['sparsity', 'sparsity_ratio', 'ratio', 'pruning_ratio']);
    if (typeof s === 'number') parts.push(`${Math.round((s <= 1 ? s * 100 : s) * 100) / 100}%`);
  }
  const wb = pick(cfg, ['bits', 'weightBits', 'wbits', 'w_bit', 'w_bits']);
  const ab = pick(cfg, ['actBits', 'abits', 'a_bits', 'a_bit', 'act_bits']);
  if (typeof wb === 'number' && typeof ab === 'number' && ab < 16) parts.push(`W${wb}A${ab}`);
  else if (typeof wb === 'number') parts.push(`INT${wb}`);
  const g = pick(cfg, ['group_size', 'groupsize', 'groupSize', 'q_group_size']);
  if (typeof g === 'number' && g > 0 && typeof wb === 'number') parts.push(`g${g}`);
  // Fewer training passes than the paper's (OmniQuant's 1-epoch runs at 7B scale) are another setting: said, so the row stands apart.
  const epochs = pick(cfg, ['epochs']);
  if (typeof epochs === 'number' && epochs < PAPER_EPOCHS) parts.push(`${epochs} epoch${epochs === 1 ? '' : 's'}`);
  return parts.length ? parts.join(' ') : 'default';
}

/** Canonical JSON (sorted keys at every level), so that equal configs group together and hash equally. */
export function canonicalJson(v: unknown): string {
  const sortKeys = (x: unknown): unknown => {
    if (Array.isArray(x)) return x.map(sortKeys);
    if (x && typeof x === 'object') {
      return Object.fromEntries(Object.keys(x as object).sort().map((k) => [k, sortKeys((x as Record<string, unknown>)[k])]));
    }
    return x;
  };
  return JSON.stringify(sortKeys(v));
}

// ---------------------------------------------------------------------------------------------
// Sub-metrics: the paper's columns, and which kit (task, metric) pairs fill them. Kit rows use one
// spelling: the task registry's names for Tracks 1, 2 and 6, the metric catalogue's for Tracks 3-5.

export interface SubMetric {
  /** The paper's column name (also the key in data/paper). */
  key: string;
  track: number;
  higherIsBetter: boolean;
  /** Unit shown in table headers. */
  unit: string;
  /** Kit task names that feed this column. */
  tasks: string[];
  /** Kit metric names, most preferred first (ARC/HellaSwag/PIQA: the paper's numbers are acc_norm). */
  metrics: string[];
  /** Factor from the stored unit to the paper's unit (bytes -> GB, MACs -> TMACs); ratios never use it. */
  scale: number;
}

const sm = (key: string, track: number, higherIsBetter: boolean, unit: string, tasks: string[], metrics: string[]): SubMetric => ({
  key, track, higherIsBetter, unit, tasks, metrics, scale: 1,
});

/** Track 4's paper columns (Table 6), filled by the catalogue metric that names the column. */
const costColumn = (key: string): SubMetric => {
  const name = metricNames(4).find((m) => METRIC_CATALOGUE[4][m].paperColumn === key);
  if (!name) throw new Error(`metric catalogue: no Track 4 metric fills the paper column '${key}'`);
  const d: MetricDef = METRIC_CATALOGUE[4][name];
  return { key, track: 4, higherIsBetter: d.higherIsBetter, unit: DISPLAY_UNIT[d.unit], tasks: [d.task as string], metrics: [name], scale: DISPLAY_SCALE[d.unit] };
};

/** Paper columns with a fixed meaning (Tracks 1, 2, 4). Other tracks take every kit sub-metric. */
export const SUB_METRICS: readonly SubMetric[] = [
  sm('MMLU', 1, true, '%', ['mmlu'], ['acc']),
  sm('ARC-c', 1, true, '%', ['arc_challenge'], ['acc_norm', 'acc']),
  sm('ARC-e', 1, true, '%', ['arc_easy'], ['acc_norm', 'acc']),
  sm('HellaSwag', 1, true, '%', ['hellaswag'], ['acc_norm', 'acc']),
  sm('PIQA', 1, true, '%', ['piqa'], ['acc_norm', 'acc']),
  sm('WinoGrande', 1, true, '%', ['winogrande'], ['acc']),
  sm('QNLI', 1, true, '%', ['qnli'], ['acc']),
  sm('MNLI', 1, true, '%', ['mnli'], ['acc']),
  sm('WikiText2-PPL', 1, false, 'PPL', ['wikitext2'], ['ppl']),
  sm('WikiText2-PPL', 2, false, 'PPL', ['wikitext2'], ['ppl']),
  costColumn('gpu_memory_GB'),
  costColumn('model_size_GB'),
  costColumn('MACs_T'),
];

export const KNOWLEDGE = ['MMLU', 'ARC-c', 'ARC-e'] as const;
export const INFERENCE = ['HellaSwag', 'PIQA', 'WinoGrande', 'QNLI', 'MNLI', 'WikiText2-PPL'] as const;
export const INFERENCE_COST = ['gpu_memory_GB', 'model_size_GB', 'MACs_T'] as const;

/** The catalogue entry for a paper column in a track, or undefined. */
export function subMetric(track: number, key: string): SubMetric | undefined {
  return SUB_METRICS.find((s) => s.track === track && s.key === key);
}

/**
 * Track 6 metrics shown but kept out of OM_trust: AdvGLUE's accuracy on the original (clean) text
 * is a control, not robustness. (Tracks 3-5: the metric catalogue's inOverall says.)
 */
const TRUST_CONTROLS = ['acc_orig'];

/**
 * Where a kit (task, metric) lands in the paper's layout. `rank` orders alternatives for one
 * column (0 = preferred: acc_norm before acc). Other pairs become their own column 'task · metric':
 * in the overall metric (`classified`) for Track 6 (controls aside) and for the catalogue metrics of
 * Tracks 3 and 5 that count in it; outside it for Tracks 1, 2 and 4 (the paper fixes their columns)
 * and for names the catalogue does not know.
 */
export function kitColumn(track: number, task: string, metric: string): KitColumn {
  for (const s of SUB_METRICS) {
    if (s.track !== track || !s.tasks.includes(task)) continue;
    const rank = s.metrics.indexOf(metric);
    if (rank >= 0) return { key: s.key, rank, classified: true, scale: s.scale, unit: s.unit };
  }
  const own = `${task} · ${metric}`;
  if (isCostTrack(track)) {
    const d = metricDef(track, metric);
    const known = d !== undefined && (d.task === null || d.task === task);
    if (!known) return { key: own, rank: 0, classified: false, scale: 1, unit: '' };
    return { key: own, rank: 0, classified: d.inOverall && d.paperColumn === null, scale: DISPLAY_SCALE[d.unit], unit: DISPLAY_UNIT[d.unit] };
  }
  return { key: own, rank: 0, classified: track === 6 && !TRUST_CONTROLS.includes(metric), scale: 1, unit: '' };
}

export interface KitColumn {
  key: string;
  rank: number;
  classified: boolean;
  /** Factor from the stored unit to the paper's unit for display (bytes -> GB, MACs -> TMACs). Ratios never use it. */
  scale: number;
  /** The unit shown after scaling ('' when the task or catalogue gives none). */
  unit: string;
}
