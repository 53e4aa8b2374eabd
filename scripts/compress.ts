// Compresses a model with any registered method and saves it in its stored format (lib/methods/save.ts:
// quantization packed in an HF-style directory with a quantization_config, a sparsity pattern in
// sparse storage, structured pruning as an HF directory; scripts/eval.ts loads each like any model).
// Records the compression's wall time and peak memory (Track 3) and the stored size (Track 4)
// through results.ts.
//
//   npx tsx scripts/compress.ts --model PATH --method METHOD (--help lists them) [--method-config JSON]
//     [--bits 4] [--group-size 128] [--group-remainder error|partial] [--sym] [--packing u8|u4|u2|bitstream]
//     [--percdamp 0.01] [--blocksize 128] [--act-order] [--static-groups]          (gptq)
//     [--no-clip] [--n-grid 20]                                                     (awq)
//     [--alpha 0.5] [--no-smooth] [--act per_token|per_tensor] [--act-static]       (smoothquant)
//     [--epochs 20] [--lr 0.005] [--mode weight|weight-act] [--no-lwc] [--no-let]   (omniquant)
//     [--method-config '{"pattern":"2:4"}']  any method's options as JSON (wanda, sparsegpt, magnitude,
//                                            llm-pruner ...); flags above override its keys
//     [--calib wikitext2-valid | --calib-ids FILE] [--nsamples 128 --seqlen 2048 --seed 0]
//     [--data-root ../shared/datasets] [--tokenizer FILE] [--backend auto] [--batch 8]
//     [--rows-out DIR (default $LLMCB_DATA_OUT, else tmp/: never the committed data/ unless asked) | --no-rows]
//     --out DIR
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { helpFromHeader, numberFlag, REPO_ROOT, sharedDir } from '../lib/cli';
import { calibDefaults, capSeqlen, checkCalibForModel, corpusText, describeCalib, loadCalibIds, sampleCalibration, type CalibSet } from '../lib/methods/calib';
import { checkMethodConfig, getMethod } from '../lib/methods/index';
import { disposeModel, loadModel } from '../lib/models/load';
import { saveCompressed } from '../lib/methods/save';
import { compressionPeak } from '../lib/efficiency/meters';
import { dirBytes, checkPacking, type Packing } from '../lib/quant/pack';
import { appendResults, makeRow, startRun, trackFile, type ResultRow } from '../lib/results';
import { initRuntime, measurePeakMemory, parseBackend, syncDevice } from '../lib/runtime';
await helpFromHeader(import.meta.url, { names: true });

interface Args {
  model: string;
  method: string;
  out: string;
  tokenizer?: string;
  backend: string;
  calib: string | null;
  calibIds: string | null;
  nsamples: number;
  seqlen: number;
  seed: number;
  dataRoot: string;
  packing?: Packing;
  rows: boolean;
  rowsOut: string;
  opts: Record<string, unknown>;
}

/** Method options set by flags (given flags only, so the method's defaults fill the rest). */
const NUMBER_OPTIONS = { bits: 'bits', 'group-size': 'groupSize', percdamp: 'percdamp', blocksize: 'blocksize', 'n-grid': 'nGrid', alpha: 'alpha', epochs: 'epochs', lr: 'lr', batch: 'batchSize' } as const;
const STRING_OPTIONS = { 'group-remainder': 'groupRemainder', act: 'actGranularity', mode: 'mode' } as const;
/** Switches: the option each sets and the value it sets. */
const SWITCH_OPTIONS = {
  sym: ['sym', true], 'act-order': ['actOrder', true], 'static-groups': ['staticGroups', true], 'no-clip': ['clip', false],
  'no-smooth': ['smooth', false], 'act-static': ['actStatic', true], 'no-lwc': ['lwc', false], 'no-let': ['let', false],
} as const;

const keysOf = <K extends string>(table: Record<K, unknown>) => Object.keys(table) as K[];

/** parseArgs option configs of one type for the flags of a table. */
function flagsOf<K extends string, T extends 'string' | 'boolean'>(table: Record<K, unknown>, type: T): Record<K, { type: T }> {
  return Object.fromEntries(keysOf(table).map((k) => [k, { type }])) as Record<K, { type: T }>;
}

function readArgs(argv: string[]): Args {
  const { values: v } = parseArgs({
    args: argv,
    options: {
      model: { type: 'string' },
      method: { type: 'string' },
      out: { type: 'string' },
      tokenizer: { type: 'string' },
      backend: { type: 'string', default: 'auto' },
      calib: { type: 'string' },
      'calib-ids': { type: 'string' },
      nsamples: { type: 'string' },
      seqlen: { type: 'string' },
      seed: { type: 'string' },
      'data-root': { type: 'string', default: path.join(sharedDir(), 'datasets') },
      packing: { type: 'string' },
      'no-rows': { type: 'boolean', default: false },
      'method-config': { type: 'string' },
      'rows-out': { type: 'string' },
      ...flagsOf(NUMBER_OPTIONS, 'string'),
      ...flagsOf(STRING_OPTIONS, 'string'),
      ...flagsOf(SWITCH_OPTIONS, 'boolean'),
    },
    strict: true,
  });
  let opts: Record<string, unknown> = {};
  if (v['method-config']) {
    try {
      opts = JSON.parse(v['method-config']) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`--method-config: not JSON: ${(e as Error).message}`);
    }
    if (!opts || typeof opts !== 'object' || Array.isArray(opts)) throw new Error('--method-config: a JSON object of method options');
  }
  for (const flag of keysOf(NUMBER_OPTIONS)) if (v[flag] !== undefined) opts[NUMBER_OPTIONS[flag]] = numberFlag(flag, v[flag]);
  for (const flag of keysOf(STRING_OPTIONS)) if (v[flag] !== undefined) opts[STRING_OPTIONS[flag]] = v[flag];
  for (const flag of keysOf(SWITCH_OPTIONS)) if (v[flag]) opts[SWITCH_OPTIONS[flag][0]] = SWITCH_OPTIONS[flag][1];
  if (v['act-static']) opts.actGranularity = v.act ?? 'per_tensor'; // static scales are per-tensor
  if (!v.model) throw new Error('--model PATH is required');
  if (!v.method) throw new Error('--method is required (--help lists the methods)');
  if (!v.out) throw new Error('--out DIR is required');
  if (v.calib && v['calib-ids']) throw new Error('give --calib or --calib-ids, not both');
  return {
    model: v.model,
    method: v.method,
    out: v.out,
    tokenizer: v.tokenizer,
    backend: v.backend!,
    calib: v.calib ?? null,
    calibIds: v['calib-ids'] ?? null,
    nsamples: numberFlag('nsamples', v.nsamples) ?? calibDefaults.nsamples,
    seqlen: numberFlag('seqlen', v.seqlen) ?? calibDefaults.seqlen,
    seed: numberFlag('seed', v.seed) ?? calibDefaults.seed,
    dataRoot: v['data-root']!,
    packing: v.packing as Packing | undefined,
    rows: !v['no-rows'],
    rowsOut: v['rows-out'] ?? process.env.LLMCB_DATA_OUT ?? path.join(REPO_ROOT, 'tmp'),
    opts,
  };
}

async function main(): Promise<void> {
  const a = readArgs(process.argv.slice(2));
  const mod = getMethod(a.method);
  checkMethodConfig(a.method, a.opts, `--method ${a.method}`); // an option (flag or key) this method does not have is an error
  const runtime = await initRuntime({ backend: parseBackend(a.backend) });
  console.log(`backend ${runtime.backend} on ${runtime.device}`);
  const model = await loadModel(a.model, { tokenizer: a.tokenizer });
  try {
    const opts = { ...mod.defaults, ...a.opts };
    // Everything is validated before any work: options against the model, packing, calibration.
    mod.validate(opts, model);
    if (a.packing) checkPacking((opts as { bits?: number }).bits ?? 8, a.packing);
    let calib: CalibSet | null = null;
    if (mod.needsCalib || a.calib || a.calibIds) {
      const seqlen = capSeqlen(a.seqlen, model);
      if (a.calibIds) calib = loadCalibIds(a.calibIds, { vocabSize: model.config.vocabSize });
      else {
        const name = a.calib ?? 'wikitext2-valid';
        const text = corpusText(name, a.dataRoot);
        calib = sampleCalibration(model.tokenizer.encode(text, { bos: false }), name, { nsamples: a.nsamples, seqlen, seed: a.seed });
      }
      checkCalibForModel(calib, model);
      console.log(`calibration ${describeCalib(calib)}`);
    }
    if (fs.existsSync(a.out) && fs.readdirSync(a.out).length > 0) throw new Error(`--out ${a.out} exists and is not empty`);
    const ctx = startRun(runtime);
    await syncDevice();
    const t0 = performance.now();
    const { result, peak } = await measurePeakMemory(async (probe) => {
      const r = await mod.compress(model, calib, opts, {
        sample: () => probe.sample(),
        onBlockDone: (b, ms) => console.log(`block ${b} done in ${(ms / 1000).toFixed(1)} s`),
      });
      await syncDevice();
      return r;
    });
    const seconds = (performance.now() - t0) / 1000;
    const format = await saveCompressed(model, result, a.out, { packing: a.packing });
    const bytes = dirBytes(a.out);
    const mem = compressionPeak(peak);
    console.log(`${result.method} ${JSON.stringify(result.config)}: ${seconds.toFixed(1)} s, ${mem.metric} ${(mem.value / 2 ** 20).toFixed(1)} MiB, saved ${a.out} (${format}, ${bytes} bytes)`);
    if (a.rows) {
      const common = {
        model: model.name, model_family: model.family, method: result.method, method_config: result.config,
        higher_is_better: false, calib: result.calib, seed: calib?.seed ?? null, seqlen: calib?.seqlen ?? null, duration_s: seconds,
      };
      const rows: ResultRow[] = [
        makeRow(ctx, { ...common, track: 3, task: 'compression', metric: 'time_s', value: seconds, note: `${mem.metric} ${mem.value}` }),
        makeRow(ctx, { ...common, track: 3, task: 'compression', metric: mem.metric, value: mem.value, note: mem.note }),
        makeRow(ctx, { ...common, track: 4, task: 'storage', metric: 'stored_size_bytes', value: bytes, note: `${format} directory ${path.resolve(a.out)}` }),
      ];
      appendResults(trackFile(3, a.rowsOut), rows.filter((r) => r.track === 3));
      appendResults(trackFile(4, a.rowsOut), rows.filter((r) => r.track === 4));
      console.log(`rows appended to ${trackFile(3, a.rowsOut)} and ${trackFile(4, a.rowsOut)}`);
    }
  } finally {
    disposeModel(model);
  }
}

main().catch((e) => {
  console.error(e instanceof Error ? (process.env.DEBUG ? e.stack : e.message) : e);
  process.exit(1);
});
