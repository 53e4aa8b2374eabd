// The import rules of .dependency-cruiser.cjs over lib/ and scripts/, through dependency-cruiser's API:
// no import cycle, lib/ never imports scripts/ or test/, and no kernel check or bench on the runtime
// forward path. Type-only imports (`import type`) count (the config's tsPreCompilationDeps): the
// type-only pair below is reported as a cycle.
import fs from 'node:fs';
import path from 'node:path';
import { cruise, type ICruiseOptions, type ICruiseResult, type IViolation } from 'dependency-cruiser';
import extractDepcruiseOptions from 'dependency-cruiser/config-utl/extract-depcruise-options';
import extractTSConfig from 'dependency-cruiser/config-utl/extract-ts-config';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..');
const FORWARD_PATH = ['lib/models/transformer.ts', 'lib/engine/executor.ts', 'lib/engine/generate.ts', 'lib/engine/scorer.ts', 'lib/eval/model-scorer.ts'];

let options: ICruiseOptions;

/** Cruises `paths` (relative to the repository root) under `opts`; the result with its violations. */
async function cruiseRepo(paths: string[], opts: ICruiseOptions = options): Promise<ICruiseResult> {
  const prev = process.cwd();
  process.chdir(ROOT); // dependency-cruiser names modules relative to the working directory
  try {
    const r = await cruise(paths, { ...opts, outputType: 'json' }, {}, { tsConfig: extractTSConfig(path.join(ROOT, 'tsconfig.json')) });
    return (typeof r.output === 'string' ? JSON.parse(r.output) : r.output) as ICruiseResult;
  } finally {
    process.chdir(prev);
  }
}

/** One line per violation: the rule, then the cycle or the path that breaks it. */
function describeViolation(v: IViolation): string {
  const chain = v.cycle ?? v.via;
  return `${v.rule.name}: ${v.from} → ${chain ? chain.map((d) => d.name).join(' → ') : v.to}`;
}

/** The config with one rule's `from` replaced (to show that the rule reports what it is for). */
function withRuleFrom(name: string, from: string): ICruiseOptions {
  const forbidden = options.ruleSet!.forbidden!.map((r) => (r.name === name ? { ...r, from: { path: from } } : r));
  return { ...options, ruleSet: { ...options.ruleSet, forbidden } };
}

beforeAll(async () => {
  options = await extractDepcruiseOptions(path.join(ROOT, '.dependency-cruiser.cjs'));
});

describe('imports of lib/ and scripts/ (dependency-cruiser)', () => {
  it('break no rule: no cycle, lib/ independent of scripts/ and test/, no check or bench on the forward path', async () => {
    const res = await cruiseRepo(['lib', 'scripts']);
    const cruised = new Set(res.modules.map((m) => m.source));
    expect(res.summary.totalCruised).toBeGreaterThan(100);
    // The forward-path rule names these modules: they must exist, or the rule would check nothing.
    expect(FORWARD_PATH.filter((f) => !cruised.has(f))).toEqual([]);
    expect(res.summary.violations.map(describeViolation)).toEqual([]);
  });

  it('the forward-path rule reports the check and bench modules when its source reaches them', async () => {
    const res = await cruiseRepo(['lib'], withRuleFrom('no-checks-in-forward', '^lib/kernels/suites\\.ts$'));
    const reached = res.summary.violations.filter((v) => v.rule.name === 'no-checks-in-forward').map((v) => v.to);
    expect(reached).toEqual(expect.arrayContaining(['lib/kernels/gemm-cases.ts', 'lib/kernels/attention-cases.ts', 'lib/kernels/fused-cases.ts', 'lib/kernels/quant-cases.ts', 'lib/kernels/cases.ts']));
  });

  describe('a cycle through type-only imports', () => {
    const dir = path.join(ROOT, 'tmp', `imports-test-${process.pid}`);
    const rel = path.relative(ROOT, dir);
    beforeAll(() => {
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'a.ts'), "import type { B } from './b';\nexport interface A {\n  b?: B;\n}\n");
      fs.writeFileSync(path.join(dir, 'b.ts'), "import type { A } from './a';\nexport interface B {\n  a?: A;\n}\n");
    });
    afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('is reported, naming both files', async () => {
      const res = await cruiseRepo([rel]);
      const lines = res.summary.violations.map(describeViolation);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.every((l) => l.startsWith('no-circular: '))).toBe(true);
      expect(lines).toContain(`no-circular: ${rel}/a.ts → ${rel}/b.ts → ${rel}/a.ts`);
    });
  });
});
