// The device solvers of GPTQ and SparseGPT (lib/methods/solver.ts: blocked Cholesky, Hinv, block
// sweeps, lazy updates on tfjs) against the float64 host solvers, on wasm (the sweeps' host twins).
// test/methods-solver-webgpu.test.ts runs the same cases on webgpu (the WGSL sweeps).
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { defaults as gptqDefaults, gptqQuantizeDevice } from '../lib/methods/gptq';
import { randomLayer } from '../lib/methods/solver-cases';
import { PreparedHessians, solverKind } from '../lib/methods/solver';
import { registerSolverCases } from './solver-cases';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('device solvers on wasm vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
});

describe('prepared Hessians shared by the linears of one input', () => {
  it('one factorisation per (owner, percdamp, permutation); the shared one gives the same GPTQ result; freed by dispose', async () => {
    const L = randomLayer(24, 160, 300, 4);
    const n0 = tf.memory().numTensors;
    const H = tf.tensor2d(Float32Array.from(L.H), [L.cols, L.cols]);
    const owner = {};
    const prepared = new PreparedHessians();
    const a = await prepared.get(owner, H, 0.01);
    expect(await prepared.get(owner, H, 0.01)).toBe(a); // q, k, v: computed once
    const b = await prepared.get({}, H, 0.01);
    expect(b).not.toBe(a); // another input
    const perm = Array.from({ length: L.cols }, (_, i) => L.cols - 1 - i);
    const c = await prepared.get(owner, H, 0.01, perm);
    expect(c).not.toBe(a); // another permutation: recomputed (a freed)
    expect(a.hinv.isDisposed).toBe(true);
    const o = { ...gptqDefaults, bits: 4, groupSize: 32 };
    const W = tf.tensor2d(L.W, [L.rows, L.cols]);
    const own = await gptqQuantizeDevice(W, H, o);
    const shared = await gptqQuantizeDevice(W, H, o, (p) => prepared.get(owner, H, o.percdamp, p));
    expect(shared.quantized.codes).toEqual(own.quantized.codes);
    expect(await shared.weight.data()).toEqual(await own.weight.data());
    tf.dispose([W, own.weight, shared.weight]);
    expect(c.hinv.isDisposed).toBe(true); // replaced by the unpermuted one
    prepared.dispose();
    H.dispose();
    expect(tf.memory().numTensors).toBe(n0);
  });
});

describe('solver selection', () => {
  it('LLMCB_SOLVER picks auto (default: host up to HOST_SOLVER_MAX_ELEMENTS, device above), device or host; another value is an error naming it', () => {
    const old = process.env.LLMCB_SOLVER;
    try {
      delete process.env.LLMCB_SOLVER;
      expect(solverKind(160, 640)).toBe('host'); // the zoo's largest linear
      expect(solverKind(512, 512)).toBe('host'); // HOST_SOLVER_MAX_ELEMENTS exactly
      expect(solverKind(512, 513)).toBe('device');
      expect(solverKind(4096, 4096)).toBe('device');
      process.env.LLMCB_SOLVER = 'device';
      expect(solverKind(64, 64)).toBe('device');
      process.env.LLMCB_SOLVER = 'host';
      expect(solverKind(4096, 4096)).toBe('host');
      process.env.LLMCB_SOLVER = 'gpu';
      expect(() => solverKind(1, 1)).toThrow(/LLMCB_SOLVER='gpu'.*auto, device, host/);
    } finally {
      if (old === undefined) delete process.env.LLMCB_SOLVER;
      else process.env.LLMCB_SOLVER = old;
    }
  });
});
