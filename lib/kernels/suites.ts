// The registries of every custom kernel's correctness checks (scripts/check-kernels.ts) and
// benchmarks against the plain tfjs op (scripts/bench-kernels.ts). Each kernel's cases live in its
// *-cases.ts file beside it, out of the modules the forward pass imports.
import { attentionBenches, attentionChecks } from './attention-cases';
import type { KernelBench, KernelCheck } from './cases';
import { fusedBenches, fusedChecks } from './fused-cases';
import { gemmBenches, gemmChecks } from './gemm-cases';
import { w8a8Benches, w8a8Checks, weightOnlyBenches, weightOnlyChecks } from './quant-cases';
import { solverChecks } from '../methods/solver-cases';
import { trainChecks } from './train-cases';

/** Correctness checks by kernel (scripts/check-kernels.ts); each kernel's *-cases.ts file contributes its cases, their inputs drawn from the run's seed. */
export const KERNEL_CHECKS = {
  gemm: gemmChecks,
  attention: attentionChecks,
  w8a8: w8a8Checks,
  weightOnly: weightOnlyChecks,
  fused: fusedChecks,
  solver: solverChecks, // the GPTQ / SparseGPT device solvers and SmoothQuant's device quantizer against their host twins
  train: trainChecks, // OmniQuant's LWC forward/backward and the AdamW update against their tfjs ops
} satisfies Record<string, (seed: number) => KernelCheck[]>;

/** Benchmarks against the plain tfjs op by kernel (scripts/bench-kernels.ts). */
export const KERNEL_BENCHES = {
  gemm: gemmBenches,
  attention: attentionBenches,
  w8a8: w8a8Benches,
  weightOnly: weightOnlyBenches,
  fused: fusedBenches,
} satisfies Record<string, () => KernelBench[]>;
