// Exports a kit model (optionally compressed by a method first) as a GGUF file for llama.cpp.
//
//   npx tsx scripts/export-gguf.ts --model models/stories260K/stories260K.bin --out tmp/stories260K.gguf
//   npx tsx scripts/export-gguf.ts --model models/zoo/llama-2m --method gptq --bits 4 --group-size 32 --sym true \
//     --type auto --out tmp/llama-2m-gptq-w4.gguf
// --type: f32 | f16 | q8_0 | q4_0 | q4_1 | auto (auto: the method's own codes where a GGUF format
// holds them exactly, see lib/efficiency/gguf.ts). Prints what was stored how.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { sharedDir } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { exportLlamaGguf, type ExportType } from '../lib/efficiency/gguf';
import { calibrationFromText, corpusText, loadCalibIds } from '../lib/methods/calib';
import { getMethod } from '../lib/methods';
import { disposeModel, loadModel } from '../lib/models/load';
import { initRuntime, parseBackend } from '../lib/runtime';
await helpFromHeader(import.meta.url);

const TYPES: ExportType[] = ['f32', 'f16', 'q8_0', 'q4_0', 'q4_1', 'auto'];

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const a: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) throw new Error(`bad argument '${argv[i]}' (options are --name value)`);
    a[argv[i].slice(2)] = argv[i + 1];
  }
  const known = ['model', 'tokenizer', 'out', 'type', 'embed-type', 'method', 'bits', 'group-size', 'sym', 'pattern', 'calib', 'calib-ids', 'calib-samples', 'calib-seqlen', 'backend', 'name'];
  for (const k of Object.keys(a)) if (!known.includes(k)) throw new Error(`unknown option --${k} (known: ${known.map((x) => `--${x}`).join(', ')})`);
  if (!a.model || !a.out) throw new Error('--model and --out are required');
  const type = (a.type ?? 'auto') as ExportType;
  if (!TYPES.includes(type)) throw new Error(`--type must be one of ${TYPES.join(', ')}, got '${a.type}'`);
  if (a['embed-type'] && a['embed-type'] !== 'f32' && a['embed-type'] !== 'f16') throw new Error(`--embed-type must be f32 or f16`);
  await initRuntime({ backend: parseBackend(a.backend ?? process.env.LLMCB_BACKEND ?? 'auto') });
  const model = await loadModel(a.model, { tokenizer: a.tokenizer });
  try {
    let quantized = null;
    if (a.method && a.method !== 'dense') {
      const mod = getMethod(a.method);
      const opts: Record<string, unknown> = { groupRemainder: 'partial' };
      if (a.bits) opts.bits = Number(a.bits);
      if (a['group-size']) opts.groupSize = Number(a['group-size']);
      if (a.sym) opts.sym = a.sym === 'true';
      if (a.pattern) opts.pattern = a.pattern;
      let calib = null;
      if (mod.needsCalib) {
        const n = Number(a['calib-samples'] ?? 128);
        const seqlen = Math.min(Number(a['calib-seqlen'] ?? 2048), model.config.maxPositions);
        if (a['calib-ids']) calib = loadCalibIds(a['calib-ids'], { nsamples: n, seqlen, vocabSize: model.config.vocabSize });
        else {
          const name = a.calib ?? 'wikitext2-valid';
          const text = existsSync(name) ? readFileSync(name, 'utf8') : corpusText(name, path.join(sharedDir(), 'datasets'));
          calib = calibrationFromText(text, model.tokenizer, name, { nsamples: n, seqlen, seed: 0 });
        }
      }
      const res = await mod.compress(model, calib, opts as never);
      quantized = res.quantized.size ? res.quantized : null;
      console.log(`${a.method}: ${JSON.stringify(res.config)} (calibration: ${res.calib})`);
    }
    const rep = await exportLlamaGguf(model, a.out, { type, quantized, embedType: (a['embed-type'] as 'f32' | 'f16') ?? 'f32', name: a.name ?? null });
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
