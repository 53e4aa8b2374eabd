// Regressions for what fuzzing the parsers found (scripts/fuzz.ts): each input below crashed a
// reader with an engine error, an error not naming the file, or hung it; each must now be
// refused by the reader's own error naming the file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readGguf } from '../lib/efficiency/gguf';
import { FILE_SEPARATOR, fuzzTarget, splitFiles } from '../lib/fuzz/targets';
import { checkMatrix, loadMatrix } from '../lib/matrix';
import { configFromHf, loadTokenizer } from '../lib/models/hf';
import { llama2cHfConfig, llama2cSources, readLlama2cHeader } from '../lib/models/llama2c';
import { readSafetensorsHeader, readSafetensorsMetadata, writeSafetensorsRaw } from '../lib/models/safetensors';
import { ByteLevelBpe, trainBpe } from '../lib/models/tokenizer-bpe';
import { Llama2cTokenizer } from '../lib/models/tokenizer-llama2c';
import { readPackedModules } from '../lib/quant/pack';
import { loadSparseWeights } from '../lib/quant/sparse';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-fuzzed-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
beforeAll(async () => {
  await tf.setBackend('cpu');
});

function write(name: string, bytes: Uint8Array | string): string {
  const file = path.join(dir, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, bytes);
  return file;
}
const u32 = (v: number) => Buffer.from(new Uint32Array([v]).buffer);
const u64 = (v: number) => Buffer.from(new BigUint64Array([BigInt(v)]).buffer);
const ggufString = (s: string) => Buffer.concat([u64(Buffer.byteLength(s)), Buffer.from(s)]);

describe('parsers refuse what the fuzzer found, naming the file', () => {
  it('llama2.c: a header claiming 12,517,377 layers in a 1.5 kB file fails at once (it hung)', () => {
    const file = write('layers.bin', Buffer.concat([Buffer.from(new Int32Array([8, 16, 12517377, 2, 1, -16, 4]).buffer), Buffer.alloc(1479)]));
    const h = readLlama2cHeader(file);
    const t0 = Date.now();
    expect(() => llama2cSources(file, h, configFromHf(llama2cHfConfig(h), file))).toThrow(`${file}: truncated llama2.c checkpoint: 1507 bytes, the header implies`);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('sparse: m = 1e309 in the sparse metadata is refused (decoding looped forever)', () => {
    const file = path.join(dir, 'sparse-inf.safetensors');
    const tensors = [
      { name: 'w.values', dtype: 'F32', shape: [4], data: new Uint8Array(16) },
      { name: 'w.indices', dtype: 'U8', shape: [1], data: new Uint8Array(1) },
    ];
    writeSafetensorsRaw(file, tensors, { format: 'llmcb-sparse', sparse: '{"w":{"layout":"nm","shape":[2,4],"n":2,"m":1e309}}' });
    expect(() => loadSparseWeights(file)).toThrow(`${file}: sparse weight 'w': n 2 and m null are not an N:M pattern`);
    writeSafetensorsRaw(file, tensors, { format: 'llmcb-sparse', sparse: '{"w": nope' });
    expect(() => loadSparseWeights(file)).toThrow(`${file}: metadata 'sparse' is not JSON`); // was a bare SyntaxError
    writeSafetensorsRaw(file, tensors, { format: 'llmcb-sparse', sparse: '{"w":{"layout":"nm","shape":[2,4],"n":2,"m":4}}' });
    const fits = loadSparseWeights(file); // the same tensors fit 2:4 [2, 4]
    expect([...fits.keys()]).toEqual(['w']);
    tf.dispose([...fits.values()]);
    writeSafetensorsRaw(file, tensors, { format: 'llmcb-sparse', sparse: '{"w":{"layout":"nm","shape":[2,8],"n":2,"m":4}}' });
    expect(() => loadSparseWeights(file)).toThrow(`${file}: sparse weight 'w': 4 values and 1 index bytes do not fit 2:4 [2, 8] (8 values)`);
  });

  it('safetensors: a __metadata__ that is not an object of strings is refused (readers then crashed on it)', () => {
    const json = '{"__metadata__":5}';
    const file = write('meta.safetensors', Buffer.concat([u64(json.length), Buffer.from(json)]));
    expect(() => readSafetensorsMetadata(file)).toThrow(`${file}: __metadata__ must be an object of strings, got 5`);
    expect(() => readSafetensorsHeader(file)).toThrow(`${file}: __metadata__ must be an object of strings`);
  });

  it('GGUF: a tensor of 0 dimensions, a row length that is not whole blocks and alignment 0 name the file', () => {
    const gguf = (nKv: Buffer[], tensor: Buffer) => Buffer.concat([Buffer.from('GGUF'), u32(3), u64(1), u64(nKv.length), ...nKv, tensor]);
    const noDims = write('nodims.gguf', gguf([], Buffer.concat([ggufString('t'), u32(0), u32(0), u64(0)])));
    expect(() => readGguf(noDims)).toThrow(`${noDims}: tensor 't' has 0 dimensions`);
    const q4 = write('q4.gguf', gguf([], Buffer.concat([ggufString('t'), u32(1), u64(33), u32(2), u64(0), Buffer.alloc(64)])));
    expect(() => readGguf(q4)).toThrow(`${q4}: tensor 't': Q4_0 needs the row length (33) to be a multiple of 32`);
    const align = write('align.gguf', gguf([Buffer.concat([ggufString('general.alignment'), u32(4), u32(0)])], Buffer.concat([ggufString('t'), u32(1), u64(1), u32(0), u64(0)])));
    expect(() => readGguf(align)).toThrow(`${align}: general.alignment 0 is not a positive integer`);
  });

  it('llama2.c tokenizer: a vocabulary without byte pieces fails to encode naming its file', () => {
    const pieces = ['<unk>', ' ', 'a'];
    const body = pieces.map((p) => Buffer.concat([Buffer.from(new Float32Array([0]).buffer), u32(Buffer.byteLength(p)), Buffer.from(p)]));
    const file = write('tok3.bin', Buffer.concat([u32(5), ...body]));
    const tok = Llama2cTokenizer.fromFile(file, 3);
    expect(tok.encode('a a')).toEqual([1, 2, 1, 2]);
    expect(() => tok.encode('é')).toThrow(`${file}: llama2.c tokenizer has no byte piece <0xC3>`);
  });

  it('tokenizer.json: invalid JSON, an id out of range and a merge whose result is not a token name the file', () => {
    const json = new ByteLevelBpe(trainBpe('a cat sat on a mat. '.repeat(5), { vocabSize: 270 })).toTokenizerJson() as {
      model: { vocab: Record<string, number>; merges: string[] };
    };
    const tj = (name: string, j: unknown) => write(`${name}/tokenizer.json`, typeof j === 'string' ? j : JSON.stringify(j));
    const bad = tj('badjson', '{"model": ');
    expect(() => ByteLevelBpe.load(path.dirname(bad))).toThrow(`${bad}: invalid JSON`); // was a bare SyntaxError
    const far = tj('far', { ...json, model: { ...json.model, vocab: { ...json.model.vocab, extra: 1e9 } } });
    expect(() => ByteLevelBpe.load(path.dirname(far))).toThrow(`${far}: token "extra" has id 1000000000`);
    expect('zq' in json.model.vocab).toBe(false);
    const merge = tj('merge', { ...json, model: { ...json.model, merges: [...json.model.merges, 'z q'] } });
    expect(() => ByteLevelBpe.load(path.dirname(merge))).toThrow(`${merge}: "zq" (a byte symbol or a merge's result) is not in the vocabulary`); // encode threw without the file
    const hf = tj('hf', { model: 5 });
    expect(() => loadTokenizer(path.dirname(hf), 16)).toThrow(`${hf}: @huggingface/tokenizers cannot load it`);
  });

  it('tokenizer.json: a token id of 2e8 is refused before @huggingface/tokenizers sizes its tables by it (it hung); encode refuses ids the library leaves undefined', () => {
    const json = new ByteLevelBpe(trainBpe('a cat sat on a mat. '.repeat(5), { vocabSize: 270 })).toTokenizerJson() as { model: { vocab: Record<string, number> } };
    const good = write('hf-ok/tokenizer.json', JSON.stringify(json));
    expect(loadTokenizer(path.dirname(good), 270).encode('a cat').length).toBeGreaterThan(0);
    expect(loadTokenizer(path.dirname(good), 270).decode([])).toBe(''); // a text that encodes to no token decodes back (the library threw)
    // The fuzzer's input (test/fixtures/fuzz/): its model encodes pieces its vocabulary lacks, and the library returned undefined ids.
    const tokenizerJson = fuzzTarget('tokenizer-json');
    const parts = splitFiles(tokenizerJson, fs.readFileSync(path.join(import.meta.dirname, 'fixtures', 'fuzz', 'tokenizer-json-null-ids.bin')));
    const holes = write('hf-null/tokenizer.json', parts[0]!);
    write('hf-null/tokenizer_config.json', parts[1]!);
    expect(() => loadTokenizer(path.dirname(holes), 270).encode('Once upon a time, a little girl')).toThrow(`${holes}: encoding "Once upon a time, a little girl" gave the id undefined`);
    const token = Object.keys(json.model.vocab)[100];
    const file = write('hf-far/tokenizer.json', JSON.stringify({ ...json, model: { ...json.model, vocab: { ...json.model.vocab, [token]: 2e8 } } }));
    const t0 = Date.now();
    expect(() => loadTokenizer(path.dirname(file), 270)).toThrow(`${file}: token ${JSON.stringify(token)} has id 200000000, not an integer in 0..`);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('packed: an unknown packing or a missing in_features in config.json names the config (unpacking threw without it)', () => {
    const seed = fs.readFileSync(path.join(import.meta.dirname, '..', 'fuzz', 'corpus', 'packed', 'w4g16.dir'));
    const at = seed.indexOf(FILE_SEPARATOR);
    const cfg = JSON.parse(seed.subarray(0, at).toString('utf8'));
    const st = seed.subarray(at + FILE_SEPARATOR.length);
    const first = Object.keys(cfg.quantization_config.modules)[0];
    const packedDir = (name: string, edit: (m: Record<string, unknown>) => void) => {
      const c = structuredClone(cfg);
      edit(c.quantization_config.modules[first]);
      write(`${name}/config.json`, JSON.stringify(c));
      write(`${name}/model.safetensors`, st);
      return path.join(dir, name);
    };
    const ok = packedDir('packed-ok', () => {});
    expect(readPackedModules(ok).modules.size).toBe(Object.keys(cfg.quantization_config.modules).length);
    const upper = packedDir('packed-U8', (m) => (m.packing = 'U8'));
    expect(() => readPackedModules(upper)).toThrow(`${upper}/config.json: quantization_config.modules['${first}']: unknown packing "U8"`);
    const noCols = packedDir('packed-cols', (m) => delete m.in_features);
    expect(() => readPackedModules(noCols)).toThrow(`${noCols}/config.json: quantization_config.modules['${first}']: in_features undefined is not a positive integer`);
  });

  it('matrix: a method whose config is null is an error naming the matrix, not a TypeError', () => {
    const file = write('matrix.json', JSON.stringify({ methods: [{ id: 'dense', method: 'dense', config: {} }, { id: 'r', method: 'rtn', config: null }] }));
    const run = () => checkMatrix(loadMatrix(file));
    expect(run).toThrow(/the config of method 'rtn' must be a JSON object, got null/);
    expect(run).not.toThrow(TypeError);
  });
});
