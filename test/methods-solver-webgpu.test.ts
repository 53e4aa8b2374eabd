// The device solvers of GPTQ and SparseGPT on webgpu (the WGSL block sweeps; lavapipe in CI)
// against the float64 host solvers: the cases of test/methods-solver.test.ts. Skips without an adapter.
import { describe, expect, it } from 'vitest';
import { webgpuAdapterReason } from './kernels-helpers';
import { registerSolverCases } from './solver-cases';

const reason = await webgpuAdapterReason();

describe.skipIf(reason !== null)('device solvers on webgpu vs the float64 host solvers', () => {
  registerSolverCases(it, expect);
});
