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
