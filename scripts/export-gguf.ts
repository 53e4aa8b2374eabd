// Exports a kit model (optionally compressed by a method first) as a GGUF file for llama.cpp.
//
//   npx tsx scripts/export-gguf.ts --model models/stories260K/stories260K.bin --out tmp/stories260K.gguf
//   npx tsx scripts/export-gguf.ts --model models/zoo/llama-2m --method gptq --bits 4 --group-size 32 --sym \
//     --type auto --out tmp/llama-2m-gptq-w4.gguf
// --type: f32 | f16 | q8_0 | q4_0 | q4_1 | auto (auto: the method's own codes where a GGUF format
// holds them exactly, see lib/efficiency/gguf.ts). [--embed-type f32|f16] [--name NAME] [--tokenizer FILE]
// [--backend auto]. --method takes the method's option flags, --method-config JSON and the calibration
// flags as scripts/compress.ts ([--calib ...] [--calib-nsamples N] [--calib-seqlen N] [--calib-seed S]
// [--data DIR]). Prints what was stored how.
import { parseArgs } from 'node:util';
import { resolveDataDir } from '../lib/data/common';
import { exportLlamaGguf, type ExportType } from '../lib/efficiency/gguf';
import { helpFromHeader } from '../lib/help';
import { CALIB_FLAGS, calibrationFor, calibSourceFromFlags } from '../lib/methods/calib';
import { checkMethodConfig, getMethod, methodConfigFromArgs, methodFlagOptions } from '../lib/methods/index';
import { disposeModel, loadModel } from '../lib/models/load';
import { initRuntime, parseBackend } from '../lib/runtime';
helpFromHeader(import.meta.url, { names: true });

const TYPES: ExportType[] = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'auto'];

/** The script's own flags; every other flag sets an option of --method (the registry's schemas). */
const OWN_FLAGS = {
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  out: { type: 'string' },
  type: { type: 'string', default: 'auto' },
  'embed-type': { type: 'string', default: 'f32' },
  name: { type: 'string' },
  backend: { type: 'string' },
  data: { type: 'string' },
  method: { type: 'string', default: 'dense' },
  'method-config': { type: 'string' },
  ...CALIB_FLAGS,
} as const;

async function main(): Promise<void> {
  const reserved = Object.keys(OWN_FLAGS);
  const { values: a } = parseArgs({ options: { ...OWN_FLAGS, ...methodFlagOptions(reserved) }, strict: true });
  if (!a.model || !a.out) throw new Error('--model and --out are required');
  const type = a.type as ExportType;
  if (!TYPES.includes(type)) throw new Error(`--type must be one of ${TYPES.join(', ')}, got '${a.type}'`);
  if (a['embed-type'] !== 'f32' && a['embed-type'] !== 'f16') throw new Error(`--embed-type must be f32 or f16, got '${a['embed-type']}'`);
  const method = a.method as string;
  const opts = checkMethodConfig(method, methodConfigFromArgs(method, a['method-config'] as string | undefined, a, reserved), `--method ${method}`);
  const calibSource = calibSourceFromFlags(a, resolveDataDir(a.data as string | undefined));
  await initRuntime({ backend: parseBackend((a.backend as string | undefined) ?? process.env.LLMCB_BACKEND ?? 'auto') });
  const model = await loadModel(a.model as string, { tokenizer: a.tokenizer as string | undefined });
  try {
    let quantized = null;
    if (method !== 'dense') {
      const mod = getMethod(method);
      mod.validate(opts, model);
      const res = await mod.compress(model, mod.needsCalib ? calibrationFor(model, calibSource) : null, opts);
      quantized = res.quantized.size ? res.quantized : null;
      console.log(`${method}: ${JSON.stringify(res.config)} (calibration: ${res.calib})`);
    }
    const rep = await exportLlamaGguf(model, a.out as string, { type, quantized, embedType: a['embed-type'] as 'f32' | 'f16', name: (a.name as string | undefined) ?? null });
    console.log(`${rep.file}: ${rep.bytes} bytes, file type ${rep.fileType}`);
    console.log(rep.summary);
    for (const t of rep.tensors) if (t.how === 'codes' && t.maxScaleRelErr) console.log(`  ${t.name}: ${t.type} from the method's codes, scales rounded to fp16 (max relative change ${t.maxScaleRelErr.toExponential(2)})`);
  } finally {
    disposeModel(model);
  }
}

main().catch((e) => {
  console.error(`export-gguf: ${(e as Error).message}`);
  process.exit(1);
});
