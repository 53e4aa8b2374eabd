// The device solvers of GPTQ and SparseGPT (lib/methods/solver.ts: blocked Cholesky, Hinv, block
// sweeps, lazy updates on tfjs) against the float64 host solvers, on wasm (the sweeps' host twins).
// test/methods-solver-webgpu.test.ts runs the same cases on webgpu (the WGSL sweeps).
import { beforeAll, describe, expect, it } from 'vitest';
import { initRuntime } from '../lib/runtime';
import { solverKind } from '../lib/methods/solver';
import { registerSolverCases } from './solver-cases';

beforeAll(async () => {
  const rt = await initRuntime({ backend: 'wasm' });
  expect(rt.backend).toBe('wasm');
});

describe('device solvers on wasm vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
});

describe('solver selection', () => {
  it('LLMCB_SOLVER picks device (default) or host; another value is an error naming it', () => {
    const old = process.env.LLMCB_SOLVER;
    try {
      delete process.env.LLMCB_SOLVER;
      expect(solverKind()).toBe('device');
      process.env.LLMCB_SOLVER = 'host';
      expect(solverKind()).toBe('host');
      process.env.LLMCB_SOLVER = 'gpu';
      expect(() => solverKind()).toThrow(/LLMCB_SOLVER='gpu'.*device, host/);
    } finally {
      if (old === undefined) delete process.env.LLMCB_SOLVER;
      else process.env.LLMCB_SOLVER = old;
    }
  });
});
