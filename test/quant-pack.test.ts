// Packed formats: bit packing round trips, packing/bit-width errors, and save → load of a packed
// stories260K giving exactly the fake-quantized model's logits; size accounting on disk.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { checkPacking, dirBytes, loadPacked, packCodes, packedRowBytes, savePacked, unpackCodes, type Packing } from '../lib/quant/pack';
import { QuantConfigError } from '../lib/quant/quantizer';
import { disposeModel, loadModel } from '../lib/models/load';
import { forward } from '../lib/models/transformer';
import { sampleCalibration } from '../lib/methods/calib';
import * as rtn from '../lib/methods/rtn';
import * as gptq from '../lib/methods/gptq';

const modelFile = path.resolve(__dirname, '..', 'models/stories260K/stories260K.bin');

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('bit packing', () => {
  it('literal layouts', () => {
    // u4: first code in the low nibble
    expect(Array.from(packCodes(Uint8Array.from([1, 2, 15, 0]), 1, 4, 4, 'u4'))).toEqual([0x21, 0x0f]);
    // u2: four per byte, LSB first
    expect(Array.from(packCodes(Uint8Array.from([3, 0, 1, 2]), 1, 4, 2, 'u2'))).toEqual([0b10010011]);
    // 3-bit bitstream: codes 7, 1, 2 → bits 111 100 010 → byte0 = 0b10001111, byte1 = 0b0
    expect(Array.from(packCodes(Uint8Array.from([7, 1, 2]), 1, 3, 3, 'bitstream'))).toEqual([0b10001111, 0b0]);
    expect(packedRowBytes(172, 3, 'bitstream')).toBe(65);
    expect(packedRowBytes(172, 4, 'u4')).toBe(86);
  });
  for (const [bits, packing] of [[8, 'u8'], [4, 'u4'], [3, 'bitstream'], [2, 'u2'], [3, 'u4'], [2, 'u8'], [5, 'bitstream']] as [number, Packing][]) {
    it(`round trip ${bits} bits in ${packing}`, () => {
      const rows = 5, cols = 37;
      const codes = Uint8Array.from({ length: rows * cols }, (_, i) => (i * 7919) % (1 << bits));
      const p = packCodes(codes, rows, cols, bits, packing);
      expect(p.length).toBe(rows * packedRowBytes(cols, bits, packing));
      expect(Array.from(unpackCodes(p, rows, cols, bits, packing))).toEqual(Array.from(codes));
    });
  }
  it('refuses a bit width the packing cannot hold', () => {
    expect(() => checkPacking(5, 'u4')).toThrow(QuantConfigError);
    expect(() => checkPacking(5, 'u4')).toThrow(/packing 'u4' holds codes of at most 4 bits, got bits 5/);
    expect(() => checkPacking(3, 'u2')).toThrow(/at most 2 bits/);
    expect(() => packCodes(Uint8Array.from([16]), 1, 1, 4, 'u4')).toThrow(/does not fit in 4 bits/);
  });
});

describe('packed model save/load', () => {
  it('RTN W4 g32 and GPTQ W3 act-order: loading the packed directory gives the fake-quantized logits exactly', async () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-pack-'));
    const ids = tf.tensor2d([[1, 403, 407, 261, 378, 275, 261, 280, 600 % 512, 37]], [1, 10], 'int32');
    try {
      for (const [name, run] of [
        ['rtn', async (m: Awaited<ReturnType<typeof loadModel>>) => rtn.compress(m, null, { bits: 4, groupSize: 32, groupRemainder: 'partial' })],
        ['gptq', async (m: Awaited<ReturnType<typeof loadModel>>) => {
          const calib = sampleCalibration(m.tokenizer.encode('Once upon a time, there was a little girl named Lily. '.repeat(20)), 'toy', { nsamples: 2, seqlen: 32 });
          return gptq.compress(m, calib, { bits: 3, groupSize: 32, groupRemainder: 'partial', actOrder: true });
        }],
      ] as const) {
        const model = await loadModel(modelFile);
        const res = await run(model);
        const fake = tf.tidy(() => forward(model, ids)).dataSync() as Float32Array;
        const dir = path.join(tmp, name);
        const files = await savePacked(model, res.quantized, dir, { method: res.method, methodConfig: res.config, calib: res.calib, actQuant: res.actQuant });
        expect(files['model.safetensors']).toBeGreaterThan(0);
        const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
        expect(cfg.quantization_config.quant_method).toBe('llmcb-packed');
        expect(cfg.quantization_config.modules['model.layers.0.mlp.down_proj'].in_features).toBe(172);
        const before = tf.memory().numTensors;
        disposeModel(loadPacked(dir).model); // load + dispose leaves nothing
        expect(tf.memory().numTensors).toBe(before);
        const { model: loaded, quant } = loadPacked(dir);
        expect(quant.method).toBe(name);
        const back = tf.tidy(() => forward(loaded, ids)).dataSync() as Float32Array;
        expect(Array.from(back)).toEqual(Array.from(fake));
        disposeModel(loaded);
        disposeModel(model);
      }
      // Real bytes: the quantized linears are ~8× smaller than fp32 at 4 bits; embeddings stay fp32.
      const fp32Linears = 5 * (64 * 64 * 2 + 32 * 64 * 2 + 172 * 64 * 3) * 4;
      const rtnBytes = dirBytes(path.join(tmp, 'rtn'));
      const embedAndNorms = (512 * 64 + 11 * 64) * 4;
      expect(rtnBytes).toBeLessThan(embedAndNorms + fp32Linears / 4 + 20000);
      expect(rtnBytes).toBeGreaterThan(embedAndNorms + fp32Linears / 8);
    } finally {
      ids.dispose();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
