// Writes the fuzz seed corpus, fuzz/corpus/<target>/: small valid files of each format, made
// by the kit's own writers (safetensors, GGUF, packed and sparse directories of a tiny random
// LLaMA, a byte-level BPE tokenizer.json), copied from the repository (tok512.bin, zoo configs)
// or cut from the shared datasets (the first records of ARC, PIQA, MMLU, TruthfulQA, QNLI,
// HellaSwag, AdvGLUE; skipped with a note when ../shared is absent). Run it again after a format
// changes; the fuzzer (scripts/fuzz.ts) reads the corpus as committed.
//
//   npx tsx scripts/fuzz-corpus.ts [--out fuzz/corpus]
//
// --out DIR   where to write (default fuzz/corpus); each target's folder is replaced.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { REPO_ROOT, sharedDir } from '../lib/cli';
import { helpFromHeader } from '../lib/help';
import { encodeTensor, writeGguf } from '../lib/efficiency/gguf';
import { DATA_MARKER, joinFiles } from '../lib/fuzz/targets';
import { defaultMatrix } from '../lib/matrix';
import * as magnitude from '../lib/methods/magnitude';
import * as rtn from '../lib/methods/rtn';
import { randomModel } from '../lib/models/random';
import { writeSafetensors } from '../lib/models/safetensors';
import { ByteLevelBpe, trainBpe } from '../lib/models/tokenizer-bpe';
import { savePacked } from '../lib/quant/pack';
import { saveSparseWeights } from '../lib/quant/sparse';
import { mulberry32 } from '../lib/rng';

helpFromHeader(import.meta.url);
const { values } = parseArgs({ options: { out: { type: 'string', default: path.join(REPO_ROOT, 'fuzz', 'corpus') } } });
const out = values.out!;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-fuzz-corpus-'));
await tf.setBackend('cpu');

const rand = mulberry32(7);
const floats = (n: number) => Float32Array.from({ length: n }, () => rand() * 2 - 1);
const bytes = (file: string) => new Uint8Array(fs.readFileSync(file));
const text = (s: string) => new TextEncoder().encode(s);
const joinFramed = (json: Uint8Array, data: Uint8Array) => new Uint8Array(Buffer.concat([json, text(DATA_MARKER), data]));

/** Replaces a target's seed folder with these seeds. */
function seeds(target: string, files: Record<string, Uint8Array>): void {
  const dir = path.join(out, target);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const [name, b] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), b);
  console.log(`${target}: ${Object.keys(files).length} seeds, ${Object.values(files).reduce((a, b) => a + b.length, 0)} bytes`);
}

/** The first `n` lines of a shared dataset file, or null (with a note) when it is absent. */
function sharedLines(rel: string, n: number): Uint8Array | null {
  const file = path.join(sharedDir(), 'datasets', rel);
  if (!fs.existsSync(file)) {
    console.log(`(no ${file}: its seed is skipped)`);
    return null;
  }
  return text(fs.readFileSync(file, 'utf8').split('\n').slice(0, n).join('\n') + '\n');
}
const present = (r: Record<string, Uint8Array | null>) => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== null)) as Record<string, Uint8Array>;

// safetensors: every dtype the readers take, metadata; the same file framed (header JSON, DATA_MARKER, data: see targets.ts).
const st = path.join(tmp, 'small.safetensors');
writeSafetensors(st, [
  { name: 'w', shape: [3, 4], chunks: () => [floats(12)] },
  { name: 'h', shape: [5], dtype: 'F16', chunks: () => [floats(5)] },
  { name: 'b', shape: [2, 2], dtype: 'BF16', chunks: () => [floats(4)] },
  { name: 'empty', shape: [0, 3], chunks: () => [] },
], { format: 'pt', note: 'fuzz seed' });
const stBytes = bytes(st);
const stHeader = Number(new DataView(stBytes.buffer).getBigUint64(0, true));
seeds('safetensors', { 'small.safetensors': stBytes, 'small.framed': joinFramed(stBytes.subarray(8, 8 + stHeader), stBytes.subarray(8 + stHeader)) });

// GGUF: every ggml type the reader decodes, scalar and array metadata.
const gg = path.join(tmp, 'small.gguf');
await writeGguf(
  gg,
  [
    ['general.architecture', { type: 'string', value: 'llama' }],
    ['general.alignment', { type: 'uint32', value: 32 }],
    ['llama.block_count', { type: 'uint32', value: 1 }],
    ['llama.rope.freq_base', { type: 'float32', value: 10000 }],
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', values: ['<unk>', '<s>', 'a'] }],
    ['tokenizer.ggml.scores', { type: 'array', itemType: 'float32', values: [0, 0, -1] }],
    ['general.flag', { type: 'bool', value: true }],
  ],
  [
    { name: 'f32', ne: [4, 2], type: 'F32', data: () => encodeTensor('F32', floats(8)) },
    { name: 'f16', ne: [8], type: 'F16', data: () => encodeTensor('F16', floats(8)) },
    { name: 'q8', ne: [32], type: 'Q8_0', data: () => encodeTensor('Q8_0', floats(32)) },
    { name: 'q4', ne: [32, 2], type: 'Q4_0', data: () => encodeTensor('Q4_0', floats(64)) },
    { name: 'q41', ne: [32], type: 'Q4_1', data: () => encodeTensor('Q4_1', floats(32)) },
  ],
);
seeds('gguf', { 'small.gguf': bytes(gg) });

// llama2.c checkpoints: a tiny header and its weights, classifier shared (vocab > 0) and not (< 0).
function llama2c(vocab: number): Uint8Array {
  const [dim, hidden, layers, heads, kvHeads, seqLen] = [8, 16, 1, 2, 1, 4];
  const V = Math.abs(vocab);
  const hd = dim / heads;
  const n = V * dim + layers * (2 * dim + dim * dim * 2 + 2 * kvHeads * hd * dim + 3 * hidden * dim) + dim + seqLen * hd + (vocab < 0 ? V * dim : 0);
  const header = new Int32Array([dim, hidden, layers, heads, kvHeads, vocab, seqLen]);
  return new Uint8Array(Buffer.concat([Buffer.from(header.buffer), Buffer.from(floats(n).buffer)]));
}
seeds('llama2c', { 'tiny-shared.bin': llama2c(16), 'tiny-untied.bin': llama2c(-16) });
seeds('llama2c-tokenizer', { 'tok512.bin': bytes(path.join(REPO_ROOT, 'models', 'stories260K', 'tok512.bin')) });

// config.json: the zoo's two families and the rope-scaling fixtures.
seeds('hf-config', {
  'llama-700k.json': bytes(path.join(REPO_ROOT, 'models/zoo/llama-700k/config.json')),
  'opt-700k.json': bytes(path.join(REPO_ROOT, 'models/zoo/opt-700k/config.json')),
  'llama3-rope.json': bytes(path.join(REPO_ROOT, 'test/fixtures/models/llama_rope_llama3/config.json')),
  'opt-post-ln.json': bytes(path.join(REPO_ROOT, 'test/fixtures/models/opt_post_ln/config.json')),
});

// tokenizer.json + tokenizer_config.json: a byte-level BPE trained by the kit (the zoo's format), small.
const bpe = new ByteLevelBpe(trainBpe('Once upon a time, there was a little girl named Lily. She liked the sea.\n'.repeat(4), { vocabSize: 280 }));
seeds('tokenizer-json', {
  'bpe280.json': joinFiles([text(JSON.stringify(bpe.toTokenizerJson())), bytes(path.join(REPO_ROOT, 'models/zoo/tokenizer/tokenizer_config.json'))]),
});

// Packed (RTN W4 g16, W8) and sparse (2:4, bitmask) directories of a tiny random LLaMA.
const hf = {
  model_type: 'llama', hidden_size: 32, intermediate_size: 48, num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1,
  vocab_size: 16, max_position_embeddings: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, bos_token_id: 1, eos_token_id: 2,
};
const packedSeeds: Record<string, Uint8Array> = {};
for (const bits of [4, 8]) {
  const model = randomModel(hf, { name: 'fuzz-seed', seed: bits });
  const res = await rtn.compress(model, null, { bits, groupSize: 16 });
  const dir = path.join(tmp, `packed-w${bits}`);
  await savePacked(model, res.quantized, dir, { method: res.method, methodConfig: res.config, calib: res.calib, actQuant: res.actQuant });
  packedSeeds[`w${bits}g16.dir`] = joinFiles([bytes(path.join(dir, 'config.json')), bytes(path.join(dir, 'model.safetensors'))]);
}
seeds('packed', packedSeeds);
const sparseSeeds: Record<string, Uint8Array> = {};
for (const [name, pattern] of [['2of4', { n: 2, m: 4 }], ['bitmask', 'bitmask']] as const) {
  const model = randomModel(hf, { name: 'fuzz-seed', seed: 3 });
  await magnitude.compress(model, null, { pattern: '2:4' }); // a 2:4 model stores as either layout
  const file = path.join(tmp, `sparse-${name}.safetensors`);
  await saveSparseWeights(model, file, pattern);
  sparseSeeds[`${name}.safetensors`] = bytes(file);
}
seeds('sparse', sparseSeeds);

// Dataset files: the first records of the shared datasets (their original formats).
seeds('csv', present({
  'mmlu-abstract-algebra-dev.csv': sharedLines('mmlu/dev/abstract_algebra_dev.csv', 3),
  'truthfulqa.csv': sharedLines('truthfulqa/TruthfulQA.csv', 4),
  'quoted.csv': text('a,b,c\n"x, ""y""",2,\n"multi\nline",,3\r\n'),
}));
seeds('jsonl', present({
  'arc-easy-dev.jsonl': sharedLines('arc/ARC-Easy-Dev.jsonl', 2),
  'piqa-valid.jsonl': sharedLines('piqa/valid.jsonl', 2),
  'winogrande.jsonl': text('{"qID": "3D5G8J4N5CI2K40F4RZLF9OG2CKVTH-2", "sentence": "Kyle doesn\'t wear leg warmers to bed, while Logan almost always does. _ is more likely to live in a colder climate.", "option1": "Kyle", "option2": "Logan", "answer": "2"}\n'),
  'hellaswag.txt': sharedLines('hellaswag/hellaswag_val_full.txt', 12),
  'advglue.json': (() => {
    const file = path.join(sharedDir(), 'datasets', 'advglue', 'dev_ann.json');
    if (!fs.existsSync(file)) return null;
    const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown[]>;
    return text(JSON.stringify(Object.fromEntries(Object.entries(j).map(([k, v]) => [k, v.slice(0, 1)]))));
  })(),
}));
seeds('tsv', present({
  'qnli-dev.tsv': sharedLines('qnli/dev.tsv', 3),
  'mnli.tsv': text('index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label\n0\t1\t1e\tfiction\t( a )\t( b )\t(ROOT a)\t(ROOT b)\tThe cat sat.\tA cat sat.\tentailment\tentailment\n'),
}));

// Matrix files: the smoke matrix's fields as a file would override them.
const mx = defaultMatrix();
seeds('matrix', {
  'small.json': text(JSON.stringify({ name: 'fuzz', tracks: mx.tracks, methods: mx.methods.slice(0, 2), eval: { limit: 8 }, cellTimeoutS: 60 }, null, 1)),
  'empty.json': text('{}\n'),
});
fs.rmSync(tmp, { recursive: true, force: true });
