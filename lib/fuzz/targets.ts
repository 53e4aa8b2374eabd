// The fuzz targets: one per parser of outside data. A target gets the paths of the files one fuzz
// input was written to and drives the kit's reader on them as a run would (header, then every
// tensor or record). Every reader of a target runs on every input; an input passes when each
// returns or throws one of its own errors; anything else is a crash (see isNamedError in ./harness).
//
// An input of a multi-file target (a model directory) holds its files one after another, split by
// FILE_SEPARATOR, in the order of `files`; a file the input has no part for is absent.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import path from 'node:path';
import { parseCsvRecords } from '../csv';
import { readAdvGlueJson } from '../data/advglue';
import { readArcJsonl } from '../data/arc';
import { readJsonl, readTsv } from '../data/common';
import { readMnli, readQnliTsv } from '../data/glue';
import { readHellaSwagText } from '../data/hellaswag';
import { readMmluCsv } from '../data/mmlu';
import { readTruthfulQACsv } from '../data/truthfulqa';
import { readWinogrande } from '../data/winogrande';
import { readGguf, readGgufTensor } from '../efficiency/gguf';
import { checkMatrix, loadMatrix } from '../matrix';
import { configFromHf, loadTokenizer, readJson } from '../models/hf';
import { llama2cHfConfig, llama2cSources, readLlama2cHeader } from '../models/llama2c';
import { readSafetensorsHeader, readSafetensorsMetadata, readTensor, readTensorBytes } from '../models/safetensors';
import { ByteLevelBpe } from '../models/tokenizer-bpe';
import { Llama2cTokenizer } from '../models/tokenizer-llama2c';
import { readPackedModules, withDequantized } from '../quant/pack';
import { loadSparseWeights } from '../quant/sparse';

/** Ends the header JSON of a framed safetensors input (see the safetensors target). */
export const DATA_MARKER = '\n@@llmcb-fuzz-data@@\n';

/** Separates the files of a multi-file input. */
export const FILE_SEPARATOR = '\n@@llmcb-fuzz-next-file@@\n';

/** One reader of a target's files: it returns, or throws (its own named error when the input is bad). */
export type Reader = (paths: string[], dir: string) => void | Promise<void>;

export interface FuzzTarget {
  /** Name on the command line, of the corpus folder (fuzz/corpus/<name>/) and in fuzz.csv. */
  name: string;
  /** The readers it drives. */
  parsers: string;
  /** File names the input is written to, in one folder (see FILE_SEPARATOR). */
  files: string[];
  /** Turns the fuzzer's bytes into the first file's bytes (e.g. adds a header length); default: as is. */
  frame?: (bytes: Uint8Array) => Uint8Array;
  /** The readers, each run on the written files (`dir` is their folder) whatever the others did. */
  readers: Reader[];
  /** Also the reader's own error: a message that starts so (default: only messages naming the input's folder). */
  namedPrefix?: string;
  /** Set up once per process before the first run (e.g. a tensor backend). */
  init?: () => Promise<void>;
}

const TEXT = 'Once upon a time, a little girl named Lily 😀 saw\n the <0x0A> sea.\t"Hi!" 123';

/** A tokenizer's round trip on a short text: loading checks it is usable, not only parseable. */
function useTokenizer(tok: { encode(text: string, o?: { bos?: boolean }): number[]; decode(ids: readonly number[]): string }): void {
  tok.decode(tok.encode(TEXT));
}

export const TARGETS: FuzzTarget[] = [
  {
    name: 'safetensors',
    parsers: 'lib/models/safetensors.ts: readSafetensorsHeader, readSafetensorsMetadata, readTensor, readTensorBytes',
    files: ['model.safetensors'],
    // An input that starts with '{' is a header's JSON, then DATA_MARKER and the data: it gets
    // the true length prefix, so mutated JSON reaches the field checks instead of failing the
    // length check; other inputs are whole files.
    frame(bytes) {
      if (bytes[0] !== 0x7b) return bytes;
      const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(DATA_MARKER);
      const json = at < 0 ? bytes : bytes.subarray(0, at);
      const data = at < 0 ? new Uint8Array(0) : bytes.subarray(at + DATA_MARKER.length);
      const out = new Uint8Array(8 + json.length + data.length);
      new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
      out.set(json, 8);
      out.set(data, 8 + json.length);
      return out;
    },
    readers: [
      ([file]) => void readSafetensorsMetadata(file),
      ([file]) => readSafetensorsHeader(file).entries.forEach((e) => readTensor(file, e)),
      ([file]) => readSafetensorsHeader(file, { U8: 1, I32: 4, F32: 4, F16: 2, BF16: 2 }).entries.forEach((e) => readTensorBytes(file, e)),
    ],
  },
  {
    name: 'gguf',
    parsers: 'lib/efficiency/gguf.ts: readGguf, readGgufTensor',
    files: ['model.gguf'],
    readers: [([file]) => readGguf(file).tensors.forEach((t) => readGgufTensor(file, t))],
  },
  {
    name: 'llama2c',
    parsers: 'lib/models/llama2c.ts: readLlama2cHeader, llama2cSources (every tensor read); hf.ts configFromHf',
    files: ['model.bin'],
    readers: [
      ([file]) => {
        const h = readLlama2cHeader(file);
        for (const s of llama2cSources(file, h, configFromHf(llama2cHfConfig(h), file))) s.read();
      },
    ],
  },
  {
    name: 'llama2c-tokenizer',
    parsers: 'lib/models/tokenizer-llama2c.ts: Llama2cTokenizer.fromFile (vocabulary 512, as the seed), encode, decode',
    files: ['tokenizer.bin'],
    readers: [([file]) => useTokenizer(Llama2cTokenizer.fromFile(file, 512))],
  },
  {
    name: 'hf-config',
    parsers: 'lib/models/hf.ts: readJson, configFromHf (config.json)',
    files: ['config.json'],
    readers: [([file]) => void configFromHf(readJson(file), file)],
  },
  {
    name: 'tokenizer-json',
    parsers: 'lib/models/hf.ts: loadTokenizer (tokenizer.json + tokenizer_config.json, @huggingface/tokenizers); tokenizer-bpe.ts: ByteLevelBpe.load; encode, decode',
    files: ['tokenizer.json', 'tokenizer_config.json'],
    readers: [(_paths, dir) => useTokenizer(loadTokenizer(dir, 1024)), (_paths, dir) => useTokenizer(ByteLevelBpe.load(dir))],
  },
  {
    name: 'packed',
    parsers: 'lib/quant/pack.ts: readPackedModules, withDequantized (a packed model directory: config.json + model.safetensors)',
    files: ['config.json', 'model.safetensors'],
    readers: [
      (_paths, dir) => {
        const { modules, tensors, hf } = readPackedModules(dir);
        withDequantized(modules, tensors);
        const { quantization_config: _q, ...plain } = hf;
        configFromHf(plain, path.join(dir, 'config.json'));
      },
    ],
  },
  {
    name: 'sparse',
    parsers: 'lib/quant/sparse.ts: loadSparseWeights (the kit\'s sparse model.safetensors)',
    files: ['model.safetensors'],
    async init() {
      await tf.setBackend('cpu');
    },
    readers: [([file]) => tf.dispose([...loadSparseWeights(file).values()])],
  },
  {
    name: 'csv',
    parsers: 'lib/csv.ts: parseCsvRecords; lib/data: readMmluCsv, readTruthfulQACsv',
    files: ['data.csv'],
    readers: [([file]) => void parseCsvRecords(fs.readFileSync(file, 'utf8'), file), ([file]) => void readMmluCsv(file, 'fuzz'), ([file]) => void readTruthfulQACsv(file)],
  },
  {
    name: 'jsonl',
    parsers: 'lib/data: readJsonl, readArcJsonl, readWinogrande, readAdvGlueJson, readHellaSwagText',
    files: ['data.jsonl'],
    readers: [
      ([file]) => void readJsonl(file),
      ([file]) => void readArcJsonl(file),
      ([file]) => void readWinogrande(file),
      ([file]) => void readAdvGlueJson(file),
      ([file]) => void readHellaSwagText(file),
    ],
  },
  {
    name: 'tsv',
    parsers: 'lib/data: readTsv, readQnliTsv, readMnli',
    files: ['data.tsv'],
    readers: [([file]) => void readTsv(file), ([file]) => void readQnliTsv(file), ([file]) => void readMnli(file)],
  },
  {
    name: 'matrix',
    parsers: 'lib/matrix.ts: loadMatrix (a matrix JSON file), checkMatrix',
    files: ['matrix.json'],
    namedPrefix: "matrix '", // checkMatrix names the matrix by the name its file gives it
    readers: [([file]) => checkMatrix(loadMatrix(file))],
  },
];

/** The target of this name; an unknown name is an error listing the known ones. */
export function fuzzTarget(name: string): FuzzTarget {
  const t = TARGETS.find((x) => x.name === name);
  if (!t) throw new Error(`unknown fuzz target '${name}' (known: ${TARGETS.map((x) => x.name).join(', ')})`);
  return t;
}

/** Splits an input into the target's files (an absent part: that file is not written). */
export function splitFiles(target: FuzzTarget, bytes: Uint8Array): (Uint8Array | null)[] {
  const sep = new TextEncoder().encode(FILE_SEPARATOR);
  const parts: Uint8Array[] = [];
  let start = 0;
  for (let k = 0; k < target.files.length - 1; k++) {
    const at = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).indexOf(sep, start);
    if (at < 0) break;
    parts.push(bytes.subarray(start, at));
    start = at + sep.length;
  }
  parts.push(bytes.subarray(start));
  const files: (Uint8Array | null)[] = target.files.map((_, k) => parts[k] ?? null);
  if (target.frame && files[0]) files[0] = target.frame(files[0]);
  return files;
}

/** Joins files into one input (the inverse of splitFiles, without framing): how seeds are stored. */
export function joinFiles(files: Uint8Array[]): Uint8Array {
  const sep = new TextEncoder().encode(FILE_SEPARATOR);
  return Buffer.concat(files.flatMap((f, k) => (k === 0 ? [f] : [sep, f])));
}
