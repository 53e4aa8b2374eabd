// Prints a prompt and its continuation from any model the kit loads.
//   npx tsx scripts/generate.ts --model PATH --prompt TEXT --max-new-tokens N
//     [--greedy | --temperature T --seed S] [--backend webgpu|wasm|cpu] [--tokenizer FILE] [--no-bos] [--json]
// PATH: an HF directory, a llama2.c .bin (tokenizer .bin beside it or --tokenizer) or a hub id.
import { parseArgs } from 'node:util';
import { numberFlag } from '../lib/cli';
import { printUsage } from '../lib/help';
import { initRuntime, parseBackend } from '../lib/runtime';
import { disposeModel, loadModel } from '../lib/models/load';
import { generate, GENERATE_DEFAULTS } from '../lib/models/transformer';

const USAGE =
  'usage: npx tsx scripts/generate.ts --model PATH --prompt TEXT [--max-new-tokens N] [--greedy | --temperature T --seed S] ' +
  '[--backend webgpu|wasm|cpu|auto] [--tokenizer FILE] [--no-bos] [--json]';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      model: { type: 'string' },
      prompt: { type: 'string' },
      'max-new-tokens': { type: 'string', default: String(GENERATE_DEFAULTS.maxNewTokens) },
      greedy: { type: 'boolean', default: false },
      temperature: { type: 'string' },
      seed: { type: 'string', default: String(GENERATE_DEFAULTS.seed) },
      backend: { type: 'string', default: process.env.LLMCB_BACKEND ?? 'auto' },
      tokenizer: { type: 'string' },
      'no-bos': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    printUsage(USAGE);
    return;
  }
  if (!values.model || values.prompt === undefined) throw new Error(`--model and --prompt are required\n${USAGE}`);
  const maxNewTokens = numberFlag('max-new-tokens', values['max-new-tokens']!, { integer: true, min: 0 });
  const seed = numberFlag('seed', values.seed!, { integer: true, min: 0 });
  if (values.greedy && values.temperature !== undefined) throw new Error('--greedy and --temperature are exclusive');
  const temperature = values.temperature === undefined ? undefined : Number(values.temperature);
  if (temperature !== undefined && !(temperature > 0)) throw new Error(`--temperature must be > 0, got '${values.temperature}'`);
  const greedy = temperature === undefined; // greedy unless a temperature is given

  const runtime = await initRuntime({ backend: parseBackend(values.backend!) });
  const model = await loadModel(values.model, { tokenizer: values.tokenizer });
  try {
    const bos = !values['no-bos'] && model.tokenizer.bosId !== null;
    const promptIds = model.tokenizer.encode(values.prompt, { bos });
    const t0 = performance.now();
    const newIds = await generate(model, promptIds, { maxNewTokens, greedy, temperature, seed });
    const seconds = (performance.now() - t0) / 1000;
    const text = model.tokenizer.decode([...promptIds, ...newIds]);
    if (values.json) {
      console.log(
        JSON.stringify({
          model: model.name, source: model.source, backend: runtime.backend, device: runtime.device,
          prompt: values.prompt, prompt_ids: promptIds, new_ids: newIds, text,
          continuation: model.tokenizer.decode(newIds), greedy, temperature: greedy ? null : temperature,
          seed: greedy ? null : seed, seconds,
        }),
      );
    } else {
      console.log(text);
      console.error(`[${model.name} on ${runtime.backend}: ${newIds.length} tokens in ${seconds.toFixed(2)} s]`);
    }
  } finally {
    disposeModel(model);
  }
}

main().catch((e: Error) => {
  console.error(`generate: ${e.message}`);
  process.exit(1);
});
