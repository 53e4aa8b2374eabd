// Compresses a model with any registered method and saves it in its stored format (lib/methods/save.ts:
// quantization packed in an HF-style directory with a quantization_config, a sparsity pattern in
// sparse storage, structured pruning as an HF directory; scripts/eval.ts loads each like any model).
// Records the compression's wall time and peak memory (Track 3) and the stored size (Track 4)
// through results.ts.
//
//   npx tsx scripts/compress.ts --model PATH --method METHOD --out DIR [method options]
//     [--method-config JSON]   the method's options as JSON ('{"pattern":"2:4"}'); flags override its keys
//     [--calib wikitext2-valid|kjv-train|FILE | --calib-ids FILE] [--calib-nsamples 128]
//     [--calib-seqlen 2048 (capped at the context)] [--calib-seed 0] [--data DIR (default ../shared/datasets)]
//     [--tokenizer FILE] [--backend auto] [--packing u8|u4|u2|bitstream]
//     [--rows-out DIR (default $LLMCB_DATA_OUT, else tmp/: never the committed data/ unless asked) | --no-rows]
//
// Method options: each option of the method's schema is a flag of the same name in kebab case
// (groupSize: --group-size 128; booleans: --sym / --no-sym; null where allowed: --wbits null). The
// list below gives every method's options, types and defaults.
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, runMain } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { resolveDataDir } from '../lib/data/common';
import { CALIB_FLAGS, calibrationFor, calibSourceFromFlags, describeCalib, type CalibSource } from '../lib/methods/calib';
import { checkMethodConfig, getMethod, methodConfigFromArgs, methodFlagOptions } from '../lib/methods/index';
import { disposeModel, loadModel } from '../lib/models/load';
import { saveCompressed } from '../lib/methods/save';
import { formatPhases } from '../lib/methods/sequential';
import { dirBytes, checkPacking, type Packing } from '../lib/quant/pack';
import { appendResults, makeRow, startRun, trackFile, type ResultRow } from '../lib/results';
import { metricFields } from '../lib/metrics/catalogue';
import { meterCompression, trainMetrics } from '../lib/efficiency/meters';
import { initRuntime, parseBackend } from '../lib/runtime';
helpFromHeader(import.meta.url, { names: true });

interface Args {
  model: string;
  method: string;
  out: string;
  tokenizer?: string;
  backend: string;
  calib: CalibSource;
  calibAsked: boolean; // --calib or --calib-ids given (calibrate even a method that does not need it)
  packing?: Packing;
  rows: boolean;
  rowsOut: string;
  opts: Record<string, unknown>;
}

/** The script's own flags; every other flag sets a method option (the registry's schemas). */
const OWN_FLAGS = {
  model: { type: 'string' },
  method: { type: 'string' },
  out: { type: 'string' },
  tokenizer: { type: 'string' },
  backend: { type: 'string', default: 'auto' },
  data: { type: 'string' },
  packing: { type: 'string' },
  'no-rows': { type: 'boolean', default: false },
  'method-config': { type: 'string' },
  'rows-out': { type: 'string' },
  ...CALIB_FLAGS,
} as const;

function readArgs(argv: string[]): Args {
  const reserved = Object.keys(OWN_FLAGS);
  const { values: v } = parseArgs({ args: argv, options: { ...OWN_FLAGS, ...methodFlagOptions(reserved) }, strict: true });
  if (!v.method) throw new Error('--method is required (--help lists the methods)');
  const opts = methodConfigFromArgs(v.method as string, v['method-config'] as string | undefined, v, reserved);
  if (!v.model) throw new Error('--model PATH is required');
  if (!v.out) throw new Error('--out DIR is required');
  return {
    model: v.model as string,
    method: v.method as string,
    out: v.out as string,
    tokenizer: v.tokenizer as string | undefined,
    backend: v.backend as string,
    calib: calibSourceFromFlags(v, resolveDataDir(v.data as string | undefined)),
    calibAsked: Boolean(v.calib || v['calib-ids']),
    packing: v.packing as Packing | undefined,
    rows: !v['no-rows'],
    rowsOut: (v['rows-out'] as string | undefined) ?? process.env.LLMCB_DATA_OUT ?? path.join(REPO_ROOT, 'tmp'),
    opts,
  };
}

async function main(): Promise<void> {
  const a = readArgs(process.argv.slice(2));
  const mod = getMethod(a.method);
  const opts = checkMethodConfig(a.method, a.opts, `--method ${a.method}`); // full options; a bad key or value is an error naming it
  const runtime = await initRuntime({ backend: parseBackend(a.backend) });
  console.log(`backend ${runtime.backend} on ${runtime.device}`);
  const model = await loadModel(a.model, { tokenizer: a.tokenizer });
  try {
    // Everything is validated before any work: options against the model, packing, calibration.
    mod.validate(opts, model);
    if (a.packing) checkPacking((opts as { bits?: number }).bits ?? 8, a.packing);
    const calib = mod.needsCalib || a.calibAsked ? calibrationFor(model, a.calib) : null;
    if (calib) console.log(`calibration ${describeCalib(calib)}`);
    if (fs.existsSync(a.out) && fs.readdirSync(a.out).length > 0) throw new Error(`--out ${a.out} exists and is not empty`);
    const ctx = startRun(runtime);
    const { result, measurement: meter } = await meterCompression((sample) =>
      mod.compress(model, calib, opts, { sample, onBlockDone: (b, ms, phases) => console.log(`block ${b} done in ${(ms / 1000).toFixed(1)} s${formatPhases(phases)}`) }),
    );
    const seconds = meter.wallS;
    const format = await saveCompressed(model, result, a.out, { packing: a.packing });
    const bytes = dirBytes(a.out);
    console.log(`${result.method} ${JSON.stringify(result.config)}: ${seconds.toFixed(1)} s, peak ${(meter.peakBytes / 2 ** 20).toFixed(1)} MiB of live tensors, saved ${a.out} (${format}, ${bytes} bytes)`);
    if (a.rows) {
      const common = {
        model: model.name, model_family: model.family, method: result.method, method_config: result.config,
        calib: result.calib, seed: calib?.seed ?? null, seqlen: calib?.seqlen ?? null, duration_s: seconds,
      };
      const rows: ResultRow[] = [
        ...trainMetrics(meter, runtime.backend).map((x) => makeRow(ctx, { ...common, track: 3, ...metricFields(3, x.metric), value: x.value, note: x.note })),
        makeRow(ctx, { ...common, track: 4, ...metricFields(4, 'model_size_bytes'), value: bytes, note: `${format} directory ${path.resolve(a.out)}` }),
      ];
      appendResults(trackFile(3, a.rowsOut), rows.filter((r) => r.track === 3));
      appendResults(trackFile(4, a.rowsOut), rows.filter((r) => r.track === 4));
      console.log(`rows appended to ${trackFile(3, a.rowsOut)} and ${trackFile(4, a.rowsOut)}`);
    }
  } finally {
    disposeModel(model);
  }
}

runMain(main);
