// Kit side of the HF-format proof: compares the token ids and logits that transformers produced
// (scripts/py/zoo_hf_check.py) with the kit's tokenizer and forward() on the same zoo directories.
// Writes data/zoo/hf_parity.csv and exits 1 when ids differ or max |logit diff| > tolerance.
//
//   npx tsx scripts/zoo-hf-check.ts --logits $OUT/data/zoo/hf_logits.json --zoo $OUT/models/zoo --out data/zoo/hf_parity_llama.csv
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { formatCsv, parseCsvRecords } from '../lib/csv';
import { disposeModel, loadModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import { writeFileAtomic } from '../lib/results';
import { initRuntime, parseBackend } from '../lib/runtime';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

interface Options {
  logits: string; // JSON written by scripts/py/zoo_hf_check.py
  zoo: string; // directory holding the zoo model directories
  out: string; // the parity table to write (rows of other models already in it are kept)
  tol: number; // max |logit difference| accepted (the 1e-4)
  backend: string; // tfjs backend
}
const DEFAULTS: Options = { logits: 'data/zoo/hf_logits.json', zoo: 'models/zoo', out: 'data/zoo/hf_parity.csv', tol: 1e-4, backend: process.env.LLMCB_BACKEND ?? 'auto' };

function parseArgs(argv: string[]): Options {
  const o = { ...DEFAULTS };
  const keys: Record<string, keyof Options> = { '--logits': 'logits', '--zoo': 'zoo', '--out': 'out', '--tol': 'tol', '--backend': 'backend' };
  for (let i = 0; i < argv.length; i += 2) {
    const k = keys[argv[i]];
    if (!k || argv[i + 1] === undefined) throw new Error(`bad option ${argv[i]} (use ${Object.keys(keys).join(', ')} with a value)`);
    (o as Record<string, unknown>)[k] = k === 'tol' ? Number(argv[i + 1]) : argv[i + 1];
  }
  return o;
}

interface HfLogits {
  text: string;
  transformers: string;
  torch: string;
  device: string;
  models: Record<string, { class: string; ids: number[]; logits: number[][] }>;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  if (!fs.existsSync(o.logits)) throw new Error(`${o.logits} not found: run scripts/py/zoo_hf_check.py first (GPU host with transformers)`);
  const ref = JSON.parse(fs.readFileSync(o.logits, 'utf8')) as HfLogits;
  const rt = await initRuntime({ backend: parseBackend(o.backend) });
  const rows: string[][] = [];
  let ok = true;
  for (const [name, r] of Object.entries(ref.models)) {
    const model = await loadModel(path.join(o.zoo, name));
    try {
      const ids = model.tokenizer.encode(ref.text);
      const idsEqual = ids.length === r.ids.length && ids.every((x, i) => x === r.ids[i]);
      const T = r.ids.length;
      const V = model.config.vocabSize;
      const out = tf.tidy(() => forward(model, tf.tensor2d(r.ids, [1, T], 'int32')).reshape([T, V]));
      const kit = (await out.array()) as number[][]; // async: WebGPU in Node has no synchronous read
      out.dispose();
      let maxDiff = 0;
      let maxAbs = 0;
      for (let t = 0; t < T; t++) {
        for (let v = 0; v < V; v++) {
          maxDiff = Math.max(maxDiff, Math.abs(kit[t][v] - r.logits[t][v]));
          maxAbs = Math.max(maxAbs, Math.abs(r.logits[t][v]));
        }
      }
      const pass = idsEqual && maxDiff <= o.tol;
      ok &&= pass;
      rows.push([name, model.family, r.class, String(T), String(idsEqual), String(maxDiff), String(maxAbs), String(o.tol), String(pass), rt.backend, rt.device, ref.device, ref.transformers, ref.torch]);
      console.log(`${name} (${r.class}): ids ${idsEqual ? 'equal' : 'DIFFER'}, max |logit diff| ${maxDiff.toExponential(3)} (max |logit| ${maxAbs.toFixed(2)}) -> ${pass ? 'pass' : 'FAIL'}`);
    } finally {
      disposeModel(model);
    }
  }
  // Rows of other models (checked by an earlier command) are kept; this run's models are replaced.
  const file = o.out;
  const columns = ['model', 'family', 'hf_class', 'tokens', 'ids_equal', 'max_abs_diff', 'max_abs_logit', 'tol', 'pass', 'kit_backend', 'kit_device', 'hf_device', 'transformers', 'torch'];
  const kept = fs.existsSync(file)
    ? parseCsvRecords(fs.readFileSync(file, 'utf8'), file).filter((r) => !(r.model in ref.models)).map((r) => columns.map((c) => r[c]))
    : [];
  writeFileAtomic(file, formatCsv(columns, [...kept, ...rows].sort((a, b) => (a[0] < b[0] ? -1 : 1))));
  console.log(`wrote ${file}`);
  if (!ok) process.exit(1);
}

main().catch((e) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
