// GGUF writer: half-precision rounding, ggml block formats on literal blocks, exact packing of the
// kit's integer codes, the container read back (by our reader and node-llama-cpp's), the RoPE row
// permutation, and stories260K exported and run in llama.cpp (CPU): same tokens, same greedy
// continuation and the same perplexity as the kit.
import * as tf from '@tensorflow/tfjs';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeTensor, encodeTensor, exportLlamaGguf, hfToGgufRopeRows, llamaGgufUnsupported, packCodes, readGguf, readGgufTensor, writeGguf,
} from '../lib/efficiency/gguf';
import { countParams } from '../lib/efficiency/macs';
import { measureStoredSize } from '../lib/efficiency/meters';
import { llamaCppPerplexity, openLlama } from '../lib/efficiency/engines/llamacpp';
import { kitPerplexity } from '../lib/efficiency/engines/webgpu';
import { loadLlama2c } from '../lib/models/llama2c';
import type { Model } from '../lib/models/types';
import { permuteRopeRows } from '../lib/models/weights';
import { f16Bits, f16Value } from '../lib/models/safetensors';
import { quantizeMatrix } from '../lib/quant/quantizer';
import { compress as rtnCompress } from '../lib/methods/rtn';
import { compress as prunerCompress } from '../lib/methods/llm-pruner';
import { textCalib } from './model-helpers';
import { loadLlama2c as reload } from '../lib/models/llama2c';
import { initRuntime } from '../lib/runtime';

const repoRoot = path.resolve(__dirname, '..');
const shared = process.env.LLMCB_SHARED ?? path.resolve(repoRoot, '../shared');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'gguf-test-'));

describe('half precision', () => {
  it('rounds to nearest even, with subnormals, overflow and signed zero', () => {
    expect(f16Bits(1)).toBe(0x3c00);
    expect(f16Bits(-2)).toBe(0xc000);
    expect(f16Bits(65504)).toBe(0x7bff);
    expect(f16Bits(65520)).toBe(0x7c00); // rounds up to inf
    expect(f16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f16Bits(2 ** -25)).toBe(0x0000); // tie to even: zero
    expect(f16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(f16Bits(-0)).toBe(0x8000);
    expect(f16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie: stays even
    expect(f16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie: rounds up to even
    expect(f16Value(0x3555)).toBeCloseTo(0.333251953125, 12);
    for (const v of [0.1, -3.75, 1e-3, 1234.5]) expect(Math.abs(f16Value(f16Bits(v)) - v) / Math.abs(v)).toBeLessThan(2 ** -11);
  });
});

describe('ggml block formats', () => {
  const block = Float32Array.from({ length: 32 }, (_, i) => (i - 12) / 4); // -3 .. 4.75

  it('Q8_0: d = amax/127, q = round(x/d)', () => {
    const b = encodeTensor('Q8_0', block);
    expect(b.length).toBe(34);
    const d = f16Value(new DataView(b.buffer).getUint16(0, true));
    expect(d).toBe(f16Value(f16Bits(4.75 / 127)));
    expect(new Int8Array(b.buffer, 2, 32)[31]).toBe(127);
    expect(new Int8Array(b.buffer, 2, 32)[0]).toBe(Math.round(-3 / (4.75 / 127)));
    const back = decodeTensor('Q8_0', b, 32);
    for (let i = 0; i < 32; i++) expect(Math.abs(back[i] - block[i])).toBeLessThanOrEqual(d / 2 + 1e-3);
  });

  it('Q4_0: d = max/-8 with the signed extreme, nibbles low = first half', () => {
    const b = encodeTensor('Q4_0', block);
    expect(b.length).toBe(18);
    const d = f16Value(new DataView(b.buffer).getUint16(0, true));
    expect(d).toBe(f16Value(f16Bits(4.75 / -8)));
    // x = 4.75 (j = 31, high nibble of byte 15) → q = 0; x = -3 (j = 0, low nibble of byte 0) → 8 + trunc(-3/d... ) 
    expect(b[2 + 15] >> 4).toBe(0);
    expect(b[2] & 15).toBe(Math.min(15, Math.trunc(-3 / (4.75 / -8) + 8.5)));
    const back = decodeTensor('Q4_0', b, 32);
    for (let i = 0; i < 32; i++) expect(Math.abs(back[i] - block[i])).toBeLessThanOrEqual(Math.abs(d) / 2 + 1e-3);
  });

  it('Q4_1: d = (max-min)/15, m = min', () => {
    const b = encodeTensor('Q4_1', block);
    expect(b.length).toBe(20);
    const dv = new DataView(b.buffer);
    expect(f16Value(dv.getUint16(0, true))).toBe(f16Value(f16Bits(7.75 / 15)));
    expect(f16Value(dv.getUint16(2, true))).toBe(-3);
    expect(b[4] & 15).toBe(0); // the minimum
    expect(b[4 + 15] >> 4).toBe(15); // the maximum
  });

  it('F32 and F16 round-trip; partial blocks are refused', () => {
    expect(Array.from(decodeTensor('F32', encodeTensor('F32', block), 32))).toEqual(Array.from(block));
    expect(Array.from(decodeTensor('F16', encodeTensor('F16', block), 32))).toEqual(Array.from(block)); // quarters are exact in fp16
    expect(() => encodeTensor('Q8_0', new Float32Array(33), 'w')).toThrow(/w: 33 values are not whole Q8_0 blocks/);
  });
});

describe('packing the kit codes', () => {
  const rows = 2;
  const cols = 64;
  const W = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 5)));

  it('sym 4-bit g32 → Q4_0 and asym 4-bit g32 → Q4_1 reproduce the dequantized values (fp16 scales)', () => {
    for (const [sym, type] of [[true, 'Q4_0'], [false, 'Q4_1']] as const) {
      const q = quantizeMatrix(W, rows, cols, { bits: 4, groupSize: 32, sym, groupRemainder: 'error' });
      const p = packCodes(type, q);
      if (!('bytes' in p)) throw new Error(p.reason);
      const back = decodeTensor(type, p.bytes, rows * cols);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          const g = r * 2 + Math.floor(c / 32);
          // Codes are kept; only the scale (and Q4_1's offset) pass through fp16.
          const want = f16Value(f16Bits(q.scales[g])) * (q.codes[r * cols + c] - (type === 'Q4_0' ? q.zeros[g] : 0)) + (type === 'Q4_1' ? f16Value(f16Bits(-q.scales[g] * q.zeros[g])) : 0);
          expect(back[r * cols + c]).toBeCloseTo(want, 5);
        }
      }
      expect(p.maxScaleRelErr).toBeLessThan(2 ** -11);
    }
  });

  it('8-bit sym per channel → Q8_0 exactly; a group that spans blocks or a misfit is refused with the reason', () => {
    const q8 = quantizeMatrix(W, rows, cols, { bits: 8, groupSize: -1, sym: true, groupRemainder: 'error' });
    const p = packCodes('Q8_0', q8);
    expect('bytes' in p).toBe(true);
    const q16 = quantizeMatrix(W, rows, cols, { bits: 4, groupSize: 16, sym: true, groupRemainder: 'error' });
    const r = packCodes('Q4_0', q16);
    expect('reason' in r && r.reason).toMatch(/span more than one quantization group/);
    const asym4 = quantizeMatrix(W, rows, cols, { bits: 4, groupSize: 32, sym: false, groupRemainder: 'error' });
    const r2 = packCodes('Q4_0', asym4); // asymmetric codes minus zero leave Q4_0's −8..7 somewhere
    expect('reason' in r2 && r2.reason).toMatch(/outside Q4_0's range/);
  });
});

describe('GGUF container', () => {
  it('writes header, typed metadata and aligned tensors that read back', async () => {
    const file = path.join(tmp, 'tiny.gguf');
    const a = Float32Array.from({ length: 64 }, (_, i) => i / 8);
    await writeGguf(
      file,
      [
        ['general.architecture', { type: 'string', value: 'llama' }],
        ['test.u32', { type: 'uint32', value: 7 }],
        ['test.f32', { type: 'float32', value: 0.5 }],
        ['test.flag', { type: 'bool', value: true }],
        ['test.arr', { type: 'array', itemType: 'int32', values: [1, -2, 3] }],
        ['test.strs', { type: 'array', itemType: 'string', values: ['a', 'bé'] }],
      ],
      [
        { name: 'a', ne: [32, 2], type: 'F32', data: () => encodeTensor('F32', a) },
        { name: 'b', ne: [32, 2], type: 'Q8_0', data: () => encodeTensor('Q8_0', a) },
      ],
    );
    const g = readGguf(file);
    expect(g.version).toBe(3);
    expect(g.metadata.get('test.u32')).toBe(7);
    expect(g.metadata.get('test.flag')).toBe(true);
    expect(g.metadata.get('test.arr')).toEqual([1, -2, 3]);
    expect(g.metadata.get('test.strs')).toEqual(['a', 'bé']);
    expect(g.tensors.map((t) => [t.name, t.type, t.ne])).toEqual([['a', 'F32', [32, 2]], ['b', 'Q8_0', [32, 2]]]);
    for (const t of g.tensors) expect(t.offset % 32).toBe(0);
    expect(Array.from(readGgufTensor(file, g.tensors[0]))).toEqual(Array.from(a));
    // node-llama-cpp's own parser agrees.
    const { readGgufFileInfo } = await import('node-llama-cpp');
    const info = await readGgufFileInfo(file, { logWarnings: false });
    expect(info.version).toBe(3);
    expect(info.tensorInfo?.map((t) => t.name)).toEqual(['a', 'b']);
    await expect(writeGguf(file, [['k', { type: 'uint32', value: 1 }], ['k', { type: 'uint32', value: 2 }]], [])).rejects.toThrow(/given twice/);
    await expect(writeGguf(file, [], [{ name: 'x', ne: [33], type: 'Q4_0', data: () => new Uint8Array(0) }])).rejects.toThrow(/multiple of 32/);
  });

  it('HF → GGUF RoPE rows is the inverse of the loader\'s GGUF/llama2.c → HF permutation', () => {
    const heads = 2;
    const hd = 4;
    const cols = 3;
    const w = Float32Array.from({ length: heads * hd * cols }, (_, i) => i);
    expect(Array.from(permuteRopeRows(hfToGgufRopeRows(w, heads, hd, cols), heads, hd, cols))).toEqual(Array.from(w));
    // Head 0, HF rows [0,1 | 2,3] (halves) → interleaved [0,2,1,3].
    const rows = hfToGgufRopeRows(w, heads, hd, cols);
    expect([0, 1, 2, 3].map((r) => rows[r * cols] / cols)).toEqual([0, 2, 1, 3]);
  });
});

describe('stories260K in llama.cpp (CPU)', () => {
  let model: Model;
  beforeAll(async () => {
    const rt = await initRuntime({ backend: 'wasm' });
    expect(rt.backend).toBe('wasm');
    model = loadLlama2c(path.join(repoRoot, 'models/stories260K/stories260K.bin'));
  });
  afterAll(() => {
    for (const t of model?.weights.values() ?? []) t.dispose();
  });

  it('F32 export: same tokenization, the known greedy continuation, perplexity equal to the kit', async () => {
    const before = tf.memory().numTensors;
    const file = path.join(tmp, 'stories260K-f32.gguf');
    const rep = await exportLlamaGguf(model, file, { type: 'f32' });
    expect(rep.fileType).toBe('F32');
    expect(tf.memory().numTensors).toBe(before);
    const llama = await openLlama(false);
    try {
      const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
      const text = 'Once upon a time';
      const ids = model.tokenizer.encode(text, { bos: true });
      expect([llama.gpu, ...lm.tokenize(text)]).toEqual([false, ...ids.slice(1)]);
      const ctx = await lm.createContext({ contextSize: 64, threads: 1 });
      const out: number[] = [];
      for await (const t of ctx.getSequence().evaluate(ids as never[], { temperature: 0 })) {
        out.push(t as number);
        if (out.length >= 30) break;
      }
      expect(model.tokenizer.decode([...ids, ...out])).toMatch(/^Once upon a time, there was a little girl named Lily\. She loved to play outside in the park\./);
      await ctx.dispose();
      const corpus = model.tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big dog. The dog was very friendly and wanted to play with Lily.'.repeat(4));
      const a = await llamaCppPerplexity(lm, corpus, 64, 2);
      const b = await kitPerplexity(model, corpus, 64, 2);
      expect(a.tokens).toBe(b.tokens);
      // llama.cpp's CPU kernels take machine-dependent SIMD paths: 1.2e-4 on an AVX2-only EPYC, < 1e-4 in CI.
      expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(5e-4);
      await lm.dispose();
    } finally {
      await llama.dispose();
    }
  }, 120_000);

  it('LLM-Pruner with blocks of differing widths: the export refuses it, naming why; Track 4 stores it as fp32 safetensors', async () => {
    const pruned = loadLlama2c(path.join(repoRoot, 'models/stories260K/stories260K.bin'));
    const text = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. ';
    await prunerCompress(pruned, await textCalib(text.repeat(20), { seqlen: 32 }), { ratio: 0.5, nsamples: 4, seqlen: 32 }); // blocks 1-3 halved
    try {
      const why = /blocks of differing widths \(num_attention_heads_per_layer, num_key_value_heads_per_layer, intermediate_size_per_layer: LLM-Pruner\)/;
      expect(llamaGgufUnsupported(pruned.config)).toMatch(why);
      await expect(exportLlamaGguf(pruned, path.join(tmp, 'pruned.gguf'), { type: 'f32' })).rejects.toThrow(why);
      const size = await measureStoredSize(pruned, 'structured', {}, null);
      expect(size.format).toBe('safetensors fp32');
      const weights = 4 * countParams(pruned);
      expect(size.bytes).toBeGreaterThan(weights);
      expect(size.bytes).toBeLessThan(weights + 16_384); // + the safetensors header
    } finally {
      for (const t of pruned.weights.values()) t.dispose();
    }
  });

  it('Q8_0 and Q4_0 exports: llama.cpp perplexity matches the kit on the dequantized weights, fallbacks stated', async () => {
    const ppl = path.join(shared, 'reference/stories260K/wikitext2_test_tok512.json');
    const corpus: number[] = (() => {
      try {
        return (JSON.parse(readFileSync(ppl, 'utf8')).test_ids as number[]).slice(0, 1024);
      } catch {
        return model.tokenizer.encode('The little dog ran to the park. He saw a cat and a bird. They played all day in the sun.'.repeat(12));
      }
    })();
    const llama = await openLlama(false);
    try {
      for (const type of ['q8_0', 'q4_0'] as const) {
        const file = path.join(tmp, `stories260K-${type}.gguf`);
        const rep = await exportLlamaGguf(model, file, { type });
        // down_proj rows have 172 values: no whole blocks, stored F32 and said so.
        const down = rep.tensors.filter((t) => t.hf.endsWith('down_proj.weight'));
        expect(down.every((t) => t.how === 'fallback' && t.type === 'F32')).toBe(true);
        expect(rep.summary).toMatch(/not a multiple of 32/);
        const g = readGguf(file);
        // The kit model with exactly the weights the GGUF holds.
        const deq: Model = { ...model, weights: new Map(model.weights) };
        const c = model.config;
        for (const t of rep.tensors) {
          if (!/_proj\.weight$/.test(t.hf)) continue;
          let w = readGgufTensor(file, g.tensors.find((x) => x.name === t.name)!);
          const [out, inn] = [t.hf.includes('.q_proj') ? c.numHeads : c.numKvHeads, model.weights.get(t.hf)!.shape[1]!];
          if (/\.(q|k)_proj/.test(t.hf)) w = permuteRopeRows(w, out, c.headDim, inn);
          deq.weights.set(t.hf, tf.tensor(w, model.weights.get(t.hf)!.shape));
        }
        const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
        const a = await llamaCppPerplexity(lm, corpus, 256, 2);
        const b = await kitPerplexity(deq, corpus, 256, 2);
        const dense = await kitPerplexity(model, corpus, 256, 2);
        for (const [k, t] of deq.weights) if (t !== model.weights.get(k)) t.dispose();
        await lm.dispose();
        // llama.cpp quantizes activations to 8 bits for quantized dot products on CPU: small extra error.
        expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(0.01);
        expect(Math.abs(a.ppl / dense.ppl - 1)).toBeLessThan(type === 'q8_0' ? 0.01 : 0.25);
      }
    } finally {
      await llama.dispose();
    }
  }, 300_000);

  it('RTN W4 sym g32 exports its own codes as Q4_0: GGUF weights equal the kit\'s up to fp16 scales; llama.cpp perplexity matches', async () => {
    const q = reload(path.join(repoRoot, 'models/stories260K/stories260K.bin'));
    try {
      const res = await rtnCompress(q, null, { bits: 4, groupSize: 32, sym: true, groupRemainder: 'partial' });
      const file = path.join(tmp, 'stories260K-rtn-w4.gguf');
      const rep = await exportLlamaGguf(q, file, { type: 'auto', quantized: res.quantized });
      expect(rep.fileType).toBe('Q4_0');
      const codes = rep.tensors.filter((t) => t.how === 'codes');
      expect(codes.length).toBe(30); // q, k, v, o, gate, up of 5 blocks; down (172 columns) falls back
      const g = readGguf(file);
      const c = q.config;
      for (const t of codes) {
        const shape = q.weights.get(t.hf)!.shape as number[];
        let w = readGgufTensor(file, g.tensors.find((x) => x.name === t.name)!);
        if (/\.(q|k)_proj/.test(t.hf)) w = permuteRopeRows(w, t.hf.includes('.q_proj') ? c.numHeads : c.numKvHeads, c.headDim, shape[1]);
        const kit = q.weights.get(t.hf)!.dataSync();
        let worst = 0;
        for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(w[i] - kit[i]) / (Math.abs(kit[i]) + 1e-12));
        expect(worst).toBeLessThanOrEqual(t.maxScaleRelErr! * 1.0001 + 1e-6);
      }
      const corpus = q.tokenizer.encode('The little dog ran to the park. He saw a cat and a bird. They played all day in the sun.'.repeat(8));
      const llama = await openLlama(false);
      try {
        const lm = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
        const a = await llamaCppPerplexity(lm, corpus, 128, 2);
        const b = await kitPerplexity(q, corpus, 128, 2);
        await lm.dispose();
        expect(Math.abs(a.ppl / b.ppl - 1)).toBeLessThan(0.01);
      } finally {
        await llama.dispose();
      }
    } finally {
      for (const t of q.weights.values()) t.dispose();
    }
  }, 120_000);
});
