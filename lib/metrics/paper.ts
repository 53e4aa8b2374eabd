// Readers for data/paper/*.csv (the paper's own numbers, DESIGN §6): validated, every value
// carrying the file and line it came from so that the site can cite it and errors can name it.
import fs from 'node:fs';
import path from 'node:path';
import { parseCsvRecords } from '../csv';
import { isBaseline, methodInfo, subMetric } from './names';

/** One number of the paper: a (method setting, model, column) cell. */
export interface PaperValue {
  track: number;
  /** 'sparsity' | 'quantization' (the paper's table halves); Track 2 infers it from the method. */
  family: string;
  method: string;
  /** The paper's setting ('50%', '2:4', 'INT8', '0', 'FP16'); '' where the table gives none (Track 2). */
  setting: string;
  model: string;
  /** The paper's column name (MMLU, WikiText2-PPL, gpu_memory_GB…). */
  key: string;
  value: number;
  higherIsBetter: boolean;
  /** Where the number is written: 'data/paper/track1_performance.csv:2'. */
  source: string;
}

/** One published overall-metric cell of the paper. */
export interface PaperOverall {
  track: number;
  method: string;
  setting: string;
  om: string;
  value: number;
  source: string;
}

/** The files of data/paper and their exact headers. */
export const PAPER_FILES = {
  track1_performance: ['family', 'method', 'setting', 'model', 'task', 'value'],
  track1_overall: ['method', 'setting', 'OM_ka', 'OM_ia', 'OM_perf'],
  track2_generalization: ['model', 'method', 'metric', 'value'],
  track2_overall: ['method', 'OM_gen'],
  track4_inference: ['family', 'method', 'setting', 'model', 'metric', 'value'],
  track4_overall: ['method', 'setting', 'OM_inf'],
} as const satisfies Record<string, readonly string[]>;
export type PaperFile = keyof typeof PAPER_FILES;

/** Reads one paper CSV; a missing file, a wrong header or a bad cell is an error naming file:line. */
export function readPaperCsv(dataDir: string, name: PaperFile): { rec: Record<string, string>; where: string }[] {
  const file = path.join(dataDir, 'paper', `${name}.csv`);
  const shown = path.relative(process.cwd(), file) || file;
  if (!fs.existsSync(file)) throw new Error(`${shown}: missing (the paper's table ${name} is required)`);
  const text = fs.readFileSync(file, 'utf8');
  const recs = parseCsvRecords(text, shown);
  const header = Object.keys(recs[0] ?? {});
  const want = PAPER_FILES[name] as readonly string[];
  if (recs.length === 0) throw new Error(`${shown}:2: no data rows`);
  if (header.join(',') !== want.join(',')) {
    throw new Error(`${shown}:1: header is '${header.join(',')}', expected '${want.join(',')}'`);
  }
  return recs.map((rec, k) => {
    const where = `${shown}:${k + 2}`;
    for (const h of want) {
      if (rec[h].trim() === '' && h !== 'setting') throw new Error(`${where}: empty '${h}'`);
    }
    return { rec, where };
  });
}

function num(s: string, where: string, field: string): number {
  const v = Number(s);
  if (s.trim() === '' || !Number.isFinite(v)) throw new Error(`${where}: '${field}' is ${JSON.stringify(s)}, not a number`);
  return v;
}

function higherIsBetter(track: number, key: string, where: string): boolean {
  const s = subMetric(track, key);
  if (!s) throw new Error(`${where}: unknown column '${key}' for Track ${track}`);
  return s.higherIsBetter;
}

/** The per-cell numbers of Tracks 1, 2 and 4. */
export function readPaperValues(dataDir: string): PaperValue[] {
  const out: PaperValue[] = [];
  for (const { rec, where } of readPaperCsv(dataDir, 'track1_performance')) {
    out.push({
      track: 1, family: rec.family, method: rec.method, setting: rec.setting, model: rec.model, key: rec.task,
      value: num(rec.value, where, 'value'), higherIsBetter: higherIsBetter(1, rec.task, where), source: where,
    });
  }
  for (const { rec, where } of readPaperCsv(dataDir, 'track2_generalization')) {
    const fam = methodInfo(rec.method).family;
    out.push({
      track: 2, family: fam === 'baseline' ? 'baseline' : fam, method: rec.method, setting: '', model: rec.model,
      key: rec.metric, value: num(rec.value, where, 'value'), higherIsBetter: higherIsBetter(2, rec.metric, where), source: where,
    });
  }
  for (const { rec, where } of readPaperCsv(dataDir, 'track4_inference')) {
    out.push({
      track: 4, family: rec.family, method: rec.method, setting: rec.setting, model: rec.model, key: rec.metric,
      value: num(rec.value, where, 'value'), higherIsBetter: higherIsBetter(4, rec.metric, where), source: where,
    });
  }
  for (const v of out) {
    if (!(v.value > 0)) throw new Error(`${v.source}: value ${v.value} must be positive (overall metrics take ratios)`);
  }
  return out;
}

/** The paper's published overall columns (OM_ka, OM_ia, OM_perf, OM_gen, OM_inf). */
export function readPaperOverall(dataDir: string): PaperOverall[] {
  const out: PaperOverall[] = [];
  const files: [PaperFile, number, string[]][] = [
    ['track1_overall', 1, ['OM_ka', 'OM_ia', 'OM_perf']],
    ['track2_overall', 2, ['OM_gen']],
    ['track4_overall', 4, ['OM_inf']],
  ];
  for (const [name, track, oms] of files) {
    for (const { rec, where } of readPaperCsv(dataDir, name)) {
      for (const om of oms) {
        out.push({ track, method: rec.method, setting: rec.setting ?? '', om, value: num(rec[om], where, om), source: where });
      }
    }
  }
  return out;
}

/** The baseline a paper row is compared with: same track and family, a baseline method. */
export function paperBaselineOf(values: PaperValue[], track: number, family: string): PaperValue[] {
  const base = values.filter((v) => v.track === track && isBaseline(v.method) && (track === 2 || v.family === family));
  if (base.length === 0) throw new Error(`data/paper: Track ${track} (${family}) has no baseline (Dense / Full Prec.) rows`);
  return base;
}
