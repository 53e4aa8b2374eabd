// dependency-cruiser's rules for lib/ and scripts/ (test/imports.test.ts runs them; so does
// `npx depcruise lib scripts`, which prints each violation). Type-only imports (`import type`)
// count as dependencies (tsPreCompilationDeps): a cycle through types alone is still a cycle.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      severity: 'error',
      comment: 'No import cycle: move the shared piece to where it belongs (no lazy imports to hide one).',
      from: {},
      to: { circular: true },
    },
    {
      name: 'lib-not-from-scripts-or-tests',
      severity: 'error',
      comment: 'lib/ is the library: scripts and tests import it, never the other way round.',
      from: { path: '^lib/' },
      to: { path: '^(scripts|test)/' },
    },
    {
      name: 'no-checks-in-forward',
      severity: 'error',
      comment:
        'The runtime forward path (the transformer, the executor, the scorers, generation) loads no kernel check, ' +
        'bench or their registries: those live in lib/kernels/*-cases.ts, lib/kernels/suites.ts, lib/runtime/bench.ts, lib/engine/check.ts.',
      from: { path: '^lib/(models/transformer|engine/(executor|generate|scorer)|eval/model-scorer)\\.ts$' },
      to: { path: '^lib/.*(cases|bench|check|suites)[^/]*\\.ts$', reachable: true },
    },
  ],
  options: {
    tsConfig: { fileName: 'tsconfig.json' },
    tsPreCompilationDeps: true,
    doNotFollow: { path: 'node_modules' },
  },
};
