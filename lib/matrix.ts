// The benchmark matrix (models × method configs × tasks × engines, per track), its expansion into
// cells, the config hash that identifies each cell, and resumability: a cell whose hash already
// has rows in data/results is finished and is skipped. Rows carry their cell's hash in the note
// as "cell=<hash>", so the result files themselves are the record of what is done.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './cli';
import { dataIdentity } from './data/verify';
import { calibDataFiles } from './methods/calib';
import { canonicalJson } from './metrics/names';
import { checkMethodConfig, getMethod } from './methods/index';
import { readResults, trackFile, type ResultRow, type RowStatus, type Track } from './results';
import { TASKS } from './tasks/index';

/** A model spec's path made absolute against the repository root (hub ids stay as they are). */
export function resolveModelPath(m: ModelSpec): string {
  if (path.isAbsolute(m.path)) return m.path;
  const p = path.join(REPO_ROOT, m.path);
  return fs.existsSync(p) ? p : m.path;
}

/** A model of the matrix: an id for rows and slices, and where its weights are. */
export interface ModelSpec {
  id: string; // short name, also the slice key ('stories260K', 'zoo-llama-s')
  path: string; // llama2.c .bin, HF directory, or hub id (loadModel's argument)
}

/** A method configuration: the registry name plus the options that define it. */
export interface MethodSpec {
  id: string; // slice key, e.g. 'wanda-2:4'
  method: string; // METHODS registry name, or 'dense' for the uncompressed model
  config: Record<string, unknown>; // options passed to compress() and recorded as method_config
}

/** Options of the evaluation tasks (Tracks 1, 2, 6). */
export interface EvalSettings {
  limit: number | null; // documents (perplexity: windows) per task, seeded subset; null: all
  seqlen: number | null; // perplexity window; null: 2048 capped at the model context
  bos: boolean | null; // null: each task's paper default
  seed: number; // subset and bootstrap seed
  batchTokens: number | null; // tokens per forward batch; null: the scorer default
}

/** Calibration for methods that need it. */
export interface CalibSettings {
  corpus: string; // CALIB_CORPORA name or a text file
  nsamples: number; // windows (paper: 128)
  seqlen: number; // tokens per window (paper: 2048, capped at the model context)
  seed: number; // Python random seed (paper scripts: 0)
}

/** Track 4 meter settings (see lib/efficiency/meters.ts). */
export interface InferenceSettings {
  promptTokens: number; // fixed prompt length of the memory measurement
  batch: number; // sequences generated together
  newTokens: number; // tokens generated per sequence
  macSeqlen: number; // sequence length at which MACs per token are stated
  quantMacs: 'count' | 'paper' | 'bitops'; // how a quantized MAC is counted (meters.ts QUANT_MAC_CONVENTIONS)
}

/** Track 5 settings: the engine benchmark (lib/efficiency/engines). */
export interface BenchMatrixSettings {
  promptTokens: number; // prefill length
  newTokens: number; // decode length
  batch: number; // sequences together
  warmup: number; // untimed runs
  repeats: number; // timed runs (medians)
}

export interface MatrixConfig {
  name: string;
  tracks: Track[]; // tracks to run
  models: ModelSpec[];
  methods: MethodSpec[]; // the first 'dense' entry is every track's baseline
  tasks: string[]; // TASKS names; each goes to its own track (1 or 6); 'wikitext2' also feeds Track 2
  engines: string[]; // Track 5 engines (lib/tracks/hardware.ts TRACK5_ENGINES): 'kit', 'llama.cpp-cpu', 'llama.cpp-vulkan', 'pytorch-fp32', 'pytorch-bf16'
  eval: EvalSettings;
  calib: CalibSettings;
  inference: InferenceSettings;
  bench: BenchMatrixSettings;
  backend: 'webgpu' | 'wasm' | 'cpu' | 'auto'; // tfjs backend
  cellTimeoutS: number | null; // a cell (or a pair's loading and compressing) running longer is killed and recorded not_run; null: no limit, cells run in the runner's process
}

/** The paper's method list (Track 1 tables): sparsity at 50% / 2:4, quantization at INT8, plus W4. */
export const PAPER_METHODS: MethodSpec[] = [
  { id: 'dense', method: 'dense', config: {} },
  { id: 'llm-pruner-50%', method: 'llm-pruner', config: { ratio: 0.5 } },
  { id: 'wanda-50%', method: 'wanda', config: { pattern: '50%' } },
  { id: 'wanda-2:4', method: 'wanda', config: { pattern: '2:4' } },
  { id: 'sparsegpt-50%', method: 'sparsegpt', config: { pattern: '50%' } },
  { id: 'sparsegpt-2:4', method: 'sparsegpt', config: { pattern: '2:4' } },
  { id: 'gptq-w8', method: 'gptq', config: { bits: 8 } },
  { id: 'gptq-w4', method: 'gptq', config: { bits: 4, groupSize: 128, groupRemainder: 'partial' } },
  { id: 'smoothquant-w8a8', method: 'smoothquant', config: { weightBits: 8, actBits: 8 } },
  { id: 'awq-w8', method: 'awq', config: { bits: 8, groupSize: 128, groupRemainder: 'partial' } },
  { id: 'awq-w4', method: 'awq', config: { bits: 4, groupSize: 128, groupRemainder: 'partial' } },
  { id: 'omniquant-w8', method: 'omniquant', config: { bits: 8 } },
  { id: 'omniquant-w4', method: 'omniquant', config: { bits: 4 } },
];

export const ALL_TASKS = ['mmlu', 'arc_challenge', 'arc_easy', 'hellaswag', 'piqa', 'winogrande', 'qnli', 'mnli', 'wikitext2', 'advglue', 'truthfulqa'];

export const STORIES260K: ModelSpec = { id: 'stories260K', path: 'models/stories260K/stories260K.bin' };

/** Zoo models under models/zoo/<id>/ (HF directories with a config.json), sorted by id. */
export function zooModels(root = 'models/zoo'): ModelSpec[] {
  const abs = path.resolve(REPO_ROOT, root);
  if (!fs.existsSync(abs)) return [];
  return fs
    .readdirSync(abs)
    .filter((d) => fs.existsSync(path.join(abs, d, 'config.json')))
    .sort()
    .map((d) => ({ id: d, path: path.join(root, d) }));
}

const evalDefaults: EvalSettings = {
  limit: null, // full splits (the paper's protocol)
  seqlen: null, // 2048 capped at the context (DESIGN §1)
  bos: null, // the paper's per-task choice
  seed: 0, // DESIGN §1
  batchTokens: null, // scorer default
};

const calibDefaults: CalibSettings = {
  corpus: 'wikitext2-valid', // C4 is absent here (DESIGN §1)
  nsamples: 128, // GPTQ/SparseGPT/Wanda papers
  seqlen: 2048, // capped at the model context
  seed: 0, // reference scripts
};

const inferenceDefaults: InferenceSettings = {
  promptTokens: 128, // a fixed prompt, as Track 5's default
  batch: 1, // single stream
  newTokens: 64, // generation length of the memory measurement
  macSeqlen: 128, // MACs per token stated at 128 tokens (attention grows with it)
  quantMacs: 'paper', // the paper's Table 6 convention: an INT8 MAC costs a quarter of an fp16 MAC
};

const benchDefaults: BenchMatrixSettings = {
  promptTokens: 128, // engines/types.ts benchDefaults
  newTokens: 64,
  batch: 1,
  warmup: 1,
  repeats: 5,
};

/** The full default matrix: every paper method on the zoo and stories260K, every task, tracks 1-6. */
export function defaultMatrix(): MatrixConfig {
  return {
    name: 'default',
    tracks: [1, 2, 3, 4, 5, 6],
    models: [STORIES260K, ...zooModels()],
    methods: PAPER_METHODS,
    tasks: ALL_TASKS,
    engines: ['kit', 'llama.cpp-cpu'],
    eval: { ...evalDefaults },
    calib: { ...calibDefaults },
    inference: { ...inferenceDefaults },
    bench: { ...benchDefaults },
    backend: 'auto',
    cellTimeoutS: 1800,
  };
}

/** The zoo's smallest model of each family: with stories260K, the smoke matrix's models. */
export const SMOKE_ZOO = ['llama-700k', 'opt-700k'];

/** The smallest configuration (the main command, CI, notebooks headless): stories260K and the zoo's smallest models on wasm, small limits. */
export function smokeMatrix(): MatrixConfig {
  return {
    name: 'smoke',
    tracks: [1, 2, 3, 4, 5, 6],
    models: [STORIES260K, ...zooModels().filter((m) => SMOKE_ZOO.includes(m.id))],
    methods: [
      { id: 'dense', method: 'dense', config: {} },
      { id: 'wanda-50%', method: 'wanda', config: { pattern: '50%' } },
      { id: 'sparsegpt-2:4', method: 'sparsegpt', config: { pattern: '2:4' } },
      { id: 'rtn-w8', method: 'rtn', config: { bits: 8 } },
      { id: 'gptq-w4', method: 'gptq', config: { bits: 4, groupSize: 32, groupRemainder: 'partial' } },
    ],
    tasks: ['wikitext2', 'arc_easy', 'piqa', 'truthfulqa', 'advglue'],
    engines: ['kit'],
    eval: { ...evalDefaults, limit: 4, seqlen: 128 },
    calib: { ...calibDefaults, nsamples: 8, seqlen: 128 },
    inference: { ...inferenceDefaults, promptTokens: 16, newTokens: 8, macSeqlen: 128 },
    bench: { promptTokens: 16, newTokens: 8, batch: 1, warmup: 1, repeats: 2 },
    backend: 'wasm',
    cellTimeoutS: 300,
  };
}

/** The zoo's largest model of each family: with stories260K, the engines matrix's models. */
export const ENGINES_ZOO = ['llama-2m', 'opt-2m', 'glm-2m'];

/**
 * Track 5's engine comparison: every paper method on stories260K and each zoo family's largest
 * model, in the kit's executor, llama.cpp (Vulkan) and PyTorch/transformers (fp32 and bf16, eager).
 * Kept out of the default matrix: PyTorch's per-cell HF export and Python worker cost seconds a
 * cell, minutes over the default matrix's 130 model × method pairs. Its kit cells are the default
 * matrix's (same settings, same cell keys).
 */
export function enginesMatrix(): MatrixConfig {
  return {
    ...defaultMatrix(),
    name: 'engines',
    tracks: [5],
    models: [STORIES260K, ...zooModels().filter((m) => ENGINES_ZOO.includes(m.id))],
    engines: ['kit', 'llama.cpp-vulkan', 'pytorch-fp32', 'pytorch-bf16'],
  };
}

export const MATRICES = { default: defaultMatrix, smoke: smokeMatrix, engines: enginesMatrix } satisfies Record<string, () => MatrixConfig>;

/** Keys a matrix JSON file may set, each nested settings object with the keys it may set. */
const NESTED = ['eval', 'calib', 'inference', 'bench'] as const;

/**
 * A matrix from a JSON object (a matrix file's content): it overrides the default matrix field by
 * field (eval, calib, inference and bench merge one level). An unknown key, at the top or in a
 * nested settings object, is an error naming it and listing the valid ones (a typo must not
 * silently keep a default); methods and tasks are checked by checkMatrix.
 */
export function matrixFromJson(j: unknown, name: string): MatrixConfig {
  if (typeof j !== 'object' || j === null || Array.isArray(j)) throw new Error(`matrix ${name}: expected a JSON object`);
  const d = defaultMatrix();
  const given = j as Record<string, unknown>;
  const unknownKeys = (obj: Record<string, unknown>, valid: string[], where: string) => {
    const bad = Object.keys(obj).filter((k) => !valid.includes(k));
    if (bad.length) throw new Error(`matrix ${name}: unknown key ${bad.map((k) => `'${where}${k}'`).join(', ')} (valid: ${valid.join(', ')})`);
  };
  unknownKeys(given, Object.keys(d), '');
  for (const k of NESTED) {
    const v = given[k];
    if (v === undefined) continue;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`matrix ${name}: '${k}' must be an object`);
    unknownKeys(v as Record<string, unknown>, Object.keys(d[k]), `${k}.`);
  }
  const m = given as Partial<MatrixConfig>;
  return {
    ...d, ...m, name: m.name ?? name,
    eval: { ...d.eval, ...m.eval }, calib: { ...d.calib, ...m.calib }, inference: { ...d.inference, ...m.inference }, bench: { ...d.bench, ...m.bench },
  };
}

// ---------------------------------------------------------------------------------------------
// Cells

/** What a cell measures: a task (Tracks 1, 2, 6), the compression (3), the inference meter (4), an engine (5). */
export interface Cell {
  track: Track;
  model: ModelSpec;
  method: MethodSpec;
  item: string; // task name, 'compress', 'inference' or engine name
  /** Identity of the dataset files the cell reads (the task's, and the calibration corpus's when
   * the method calibrates): lib/data/verify.ts dataIdentity; null when it reads none. In the hash. */
  data: string | null;
  hash: string; // config hash (16 hex digits)
}

/** A filter over the matrix: each list, when given, keeps only the named entries. */
export interface Slice {
  tracks?: Track[];
  models?: string[];
  methods?: string[]; // MethodSpec ids or registry names
  tasks?: string[];
  engines?: string[];
}

/** Identity of a model's weights without reading them: path, byte size, and mtime-independent. */
export function modelIdentity(m: ModelSpec): Record<string, unknown> {
  let bytes: number | null = null;
  const p = resolveModelPath(m);
  if (fs.existsSync(p)) {
    const st = fs.statSync(p);
    bytes = st.isDirectory()
      ? fs.readdirSync(p).reduce((s, f) => s + (fs.statSync(path.join(p, f)).isFile() ? fs.statSync(path.join(p, f)).size : 0), 0)
      : st.size;
  }
  return { id: m.id, path: m.path, bytes };
}

/**
 * The options that define a cell's result: anything else (paths of outputs, timeouts) is not hashed.
 * `data` is the identity of the dataset files it reads (absent from the key when it reads none), so
 * a cell computed without its data, or on a corrupt or changed copy, is another cell than one on
 * the data now present.
 */
export function cellConfig(mx: MatrixConfig, track: Track, model: ModelSpec, method: MethodSpec, item: string, taskVersion = '', data: string | null = null): Record<string, unknown> {
  const needs: Record<string, unknown> = { track, model: modelIdentity(model), method: method.method, config: method.config, item, backend: mx.backend };
  if (data !== null) needs.data = data;
  if (method.method !== 'dense') needs.calib = mx.calib; // methods without calibration ignore it; harmless in the key
  if (track === 1 || track === 2 || track === 6) Object.assign(needs, { eval: mx.eval, taskVersion });
  if (track === 4) needs.inference = mx.inference;
  if (track === 5) needs.bench = mx.bench;
  return needs;
}

export function hashConfig(cfg: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson(cfg)).digest('hex').slice(0, 16);
}

const keep = <T>(list: T[] | undefined, v: T) => !list || list.length === 0 || list.includes(v);

/** What expandCells needs to know about a task: its track, version and local data files. */
export interface TaskInfo {
  track: Track;
  version: string;
  dataFiles: readonly string[]; // paths under the data root (Task.dataFiles)
}

/**
 * Every cell of the matrix that passes the slice. taskInfo gives each task's track (1 or 6),
 * version and data files; dataDir is the datasets root (null: none), whose files make each cell's
 * data identity. Track 2 is WikiText-2 perplexity on every model × method; Track 3 has no dense
 * cell (the dense model costs nothing to compress).
 */
export function expandCells(mx: MatrixConfig, slice: Slice, taskInfo: (task: string) => TaskInfo, dataDir: string | null = null): Cell[] {
  const cells: Cell[] = [];
  const tracks = mx.tracks.filter((t) => keep(slice.tracks, t));
  for (const model of mx.models) {
    if (!keep(slice.models, model.id)) continue;
    for (const method of mx.methods) {
      if (slice.methods?.length && !slice.methods.includes(method.id) && !slice.methods.includes(method.method)) continue;
      const calibFiles = method.method !== 'dense' && getMethod(method.method).needsCalib ? calibDataFiles(mx.calib.corpus) : [];
      const add = (track: Track, item: string, version = '', taskFiles: readonly string[] = []) => {
        const data = dataIdentity(dataDir, [...taskFiles, ...calibFiles]);
        cells.push({ track, model, method, item, data, hash: hashConfig(cellConfig(mx, track, model, method, item, version, data)) });
      };
      for (const task of mx.tasks) {
        if (!keep(slice.tasks, task)) continue;
        const { track, version, dataFiles } = taskInfo(task);
        if (tracks.includes(track)) add(track, task, version, dataFiles);
        if (task === 'wikitext2' && tracks.includes(2)) add(2, task, version, dataFiles);
      }
      if (tracks.includes(3) && method.method !== 'dense') add(3, 'compress');
      if (tracks.includes(4)) add(4, 'inference');
      if (tracks.includes(5)) for (const e of mx.engines) if (keep(slice.engines, e)) add(5, e);
    }
  }
  return cells;
}

const CELL_RE = /(?:^|;\s*)cell=([0-9a-f]{16})(?:;|$)/;

/** The cell hash a row was written for, or null (rows written outside the matrix runner). */
export function rowCell(row: Pick<ResultRow, 'note'>): string | null {
  const m = CELL_RE.exec(row.note);
  return m ? m[1] : null;
}

/** A row note that starts with the cell's hash, then its data identity (when it reads data). */
export function cellNote(hash: string, note: string, data: string | null = null): string {
  const head = data === null ? `cell=${hash}` : `cell=${hash}; data=${data}`;
  return note ? `${head}; ${note}` : head;
}

/** How good a row status is: lower is better (ok, then no_data, then not_run). */
export const STATUS_RANK: Record<RowStatus, number> = { ok: 0, no_data: 1, not_run: 2 };

/** Per cell hash, the best status among its rows. */
export function bestStatusByCell(rows: Iterable<Pick<ResultRow, 'note' | 'status'>>): Map<string, RowStatus> {
  const out = new Map<string, RowStatus>();
  for (const r of rows) {
    const h = rowCell(r);
    if (!h) continue;
    const cur = out.get(h);
    if (!cur || STATUS_RANK[r.status] < STATUS_RANK[cur]) out.set(h, r.status);
  }
  return out;
}

/** Status per cell hash found in the result files under root (the best status of its rows). */
export function finishedCells(root: string, tracks: Track[] = [1, 2, 3, 4, 5, 6]): Map<string, RowStatus> {
  return bestStatusByCell(tracks.flatMap((t) => readResults(trackFile(t, root))));
}

/**
 * Whether a cell must run: it has no rows, or only not_run rows (skipped for a reason that may be
 * gone: an engine now present, a method now implemented), or retry asks to redo no_data cells too.
 */
export function cellPending(status: RowStatus | undefined, retry: boolean): boolean {
  if (status === undefined || status === 'not_run') return true;
  return retry && status === 'no_data';
}

/** Parses "--slice tracks=1,4;models=stories260K;methods=gptq-w4,wanda" into a Slice. */
export function parseSlice(spec: string): Slice {
  const s: Slice = {};
  for (const part of spec.split(';').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 0) throw new Error(`--slice: '${part}' is not key=value,value (keys: tracks, models, methods, tasks, engines)`);
    const key = part.slice(0, eq).trim();
    const vals = part.slice(eq + 1).split(',').map((v) => v.trim()).filter(Boolean);
    if (key === 'tracks') {
      s.tracks = vals.map((v) => {
        const n = Number(v);
        if (![1, 2, 3, 4, 5, 6].includes(n)) throw new Error(`--slice: track '${v}' is not 1-6`);
        return n as Track;
      });
    } else if (key === 'models' || key === 'methods' || key === 'tasks' || key === 'engines') s[key] = vals;
    else throw new Error(`--slice: unknown key '${key}' (keys: tracks, models, methods, tasks, engines)`);
  }
  return s;
}

/** Checks that every slice name exists in the matrix (a typo would otherwise select nothing). */
export function checkSlice(mx: MatrixConfig, s: Slice): void {
  const check = (what: string, given: string[] | undefined, known: string[]) => {
    for (const g of given ?? []) if (!known.includes(g)) throw new Error(`--slice ${what}: '${g}' is not in matrix '${mx.name}' (has ${known.join(', ') || 'none'})`);
  };
  check('models', s.models, mx.models.map((m) => m.id));
  check('methods', s.methods, [...new Set([...mx.methods.map((m) => m.id), ...mx.methods.map((m) => m.method)])]);
  check('tasks', s.tasks, mx.tasks);
  check('engines', s.engines, mx.engines);
  for (const t of s.tracks ?? []) if (!mx.tracks.includes(t)) throw new Error(`--slice tracks: ${t} is not in matrix '${mx.name}' (has ${mx.tracks.join(', ')})`);
}

/** Validates a matrix before any work: unique ids, one dense baseline, sane numbers. */
export function checkMatrix(mx: MatrixConfig): void {
  const dup = (what: string, ids: string[]) => {
    const seen = new Set<string>();
    for (const id of ids) {
      if (seen.has(id)) throw new Error(`matrix '${mx.name}': duplicate ${what} id '${id}'`);
      seen.add(id);
    }
  };
  dup('model', mx.models.map((m) => m.id));
  dup('method', mx.methods.map((m) => m.id));
  if (mx.models.length === 0) throw new Error(`matrix '${mx.name}': no models`);
  if (!mx.methods.some((m) => m.method === 'dense')) throw new Error(`matrix '${mx.name}': no 'dense' method (every overall metric needs the baseline)`);
  for (const m of mx.methods) checkMethodConfig(m.method, m.config, `matrix '${mx.name}' method '${m.id}'`);
  for (const t of mx.tasks) if (!(t in TASKS)) throw new Error(`matrix '${mx.name}': unknown task '${t}' (known: ${Object.keys(TASKS).join(', ')})`);
  const pos = (name: string, v: number) => {
    if (!Number.isInteger(v) || v < 1) throw new Error(`matrix '${mx.name}': ${name} must be a positive integer, got ${v}`);
  };
  pos('inference.promptTokens', mx.inference.promptTokens);
  pos('inference.batch', mx.inference.batch);
  pos('inference.newTokens', mx.inference.newTokens);
  pos('inference.macSeqlen', mx.inference.macSeqlen);
  pos('calib.nsamples', mx.calib.nsamples);
  if (mx.cellTimeoutS !== null && !(mx.cellTimeoutS > 0)) throw new Error(`matrix '${mx.name}': cellTimeoutS must be > 0 seconds or null (no limit), got ${mx.cellTimeoutS}`);
  if (!['count', 'paper', 'bitops'].includes(mx.inference.quantMacs)) throw new Error(`matrix '${mx.name}': inference.quantMacs '${mx.inference.quantMacs}' is not count, paper or bitops`);
}

/** A matrix by name (MATRICES) or from a JSON file (which overrides the default matrix field by field). */
export function loadMatrix(name: string): MatrixConfig {
  if (name in MATRICES) return MATRICES[name as keyof typeof MATRICES]();
  if (!fs.existsSync(name)) throw new Error(`--matrix '${name}' is neither ${Object.keys(MATRICES).join(', ')} nor a JSON file`);
  let j: unknown;
  try {
    j = JSON.parse(fs.readFileSync(name, 'utf8'));
  } catch (e) {
    throw new Error(`--matrix ${name}: not JSON: ${(e as Error).message}`);
  }
  return matrixFromJson(j, name);
}
