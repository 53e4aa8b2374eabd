// The fuzz harness (lib/fuzz): a CI-sized run of every target (its seeds accepted, no crash, no
// hang, no large allocation), and checks that the harness itself can fail: a reader with a bug
// is caught, an allocation over the limit is caught, an error not naming the input is a crash,
// and a seed replays the same inputs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isNamedError, runFuzz } from '../lib/fuzz/harness';
import { applyMutations, fuzzCaseArb } from '../lib/fuzz/mutate';
import { FILE_SEPARATOR, TARGETS, joinFiles, splitFiles, type FuzzTarget } from '../lib/fuzz/targets';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-fuzz-test-'));
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));
const opts = { workDir: work, crashDir: path.join(work, 'crashes') };

describe('fuzz smoke: every target', () => {
  for (const t of TARGETS) {
    it(`${t.name}: 1500 executions, seeds accepted, no crash, hang or large allocation`, async () => {
      const s = await runFuzz(t, { ...opts, runs: 1500, seed: 7 });
      expect(s.badSeeds).toEqual([]);
      expect(s.firstCrashes.map((c) => c.error.split('\n')[0])).toEqual([]);
      expect(s).toMatchObject({ executions: 1500, crashes: 0, hangs: 0 });
      expect(s.maxAllocBytes).toBeLessThan(2 ** 30);
    });
  }
});

/** A target over the safetensors seeds whose reader is the given function. */
function probe(read: (bytes: Buffer, file: string) => void): FuzzTarget {
  return { name: 'safetensors', parsers: 'test probe', files: ['model.safetensors'], readers: [([file]) => read(fs.readFileSync(file), file)] };
}

describe('the harness catches what it should', () => {
  it('a reader that throws a TypeError on some inputs is a crash, saved with its error', async () => {
    const s = await runFuzz(
      probe((b, file) => {
        if (b.length < 300) throw new Error(`${file}: too short`); // its own named error: fine
        if (b[8] !== 0x7b) (null as unknown as { x: number }).x; // a bug: a TypeError
      }),
      { ...opts, runs: 500 },
    );
    expect(s.crashes).toBeGreaterThan(0);
    expect(s.firstCrashes[0].error).toMatch(/^TypeError/);
    expect(fs.readFileSync(`${s.firstCrashes[0].input}.txt`, 'utf8')).toMatch(/^TypeError/);
  });

  it('an allocation over the limit is a crash, and the largest allocation is measured', async () => {
    const s = await runFuzz(probe((b) => void new Float64Array(b.length * 1000)), { ...opts, runs: 50, allocLimitBytes: 2_000_000 });
    expect(s.crashes).toBeGreaterThan(0);
    expect(s.firstCrashes[0].error).toMatch(/AllocationLimitError: allocation of \d+ bytes \(new Float64Array\)/);
    const ok = await runFuzz(probe((b) => void new Float64Array(b.length)), { ...opts, runs: 50 });
    expect(ok.crashes).toBe(0);
    expect(ok.maxAllocBytes).toBeGreaterThanOrEqual(8 * 300); // the seeds are > 300 bytes
    expect(new Float64Array(4)).toBeInstanceOf(Float64Array); // the globals are restored
  });

  it('an Error that does not name the input, or an engine error that does, is not the reader\'s own', () => {
    expect(isNamedError(new Error('/x/y/model.bin: bad header'), '/x/y')).toBe(true);
    expect(isNamedError(new Error('bad header'), '/x/y')).toBe(false);
    expect(isNamedError(new TypeError('/x/y: cannot read properties of null'), '/x/y')).toBe(false);
    expect(isNamedError(new RangeError('/x/y: invalid array length'), '/x/y')).toBe(false);
    expect(isNamedError("/x/y: a string", '/x/y')).toBe(false);
    expect(isNamedError(new Error("matrix 'm': no dense"), '/x/y', "matrix '")).toBe(true);
  });

  it('a seed replays the same inputs; another seed gives others', () => {
    const a = fc.sample(fuzzCaseArb(3), { seed: 5, numRuns: 20 });
    expect(fc.sample(fuzzCaseArb(3), { seed: 5, numRuns: 20 })).toEqual(a);
    expect(fc.sample(fuzzCaseArb(3), { seed: 6, numRuns: 20 })).not.toEqual(a);
  });

  it('mutations: a little-endian integer, a token replaced, a truncation, the input left unchanged', () => {
    const input = new TextEncoder().encode('{"n": 12, "x": 3}');
    const int = applyMutations(input, [{ op: 'int', at: 2, width: 4, value: 0x01020304n }]);
    expect([...int.subarray(2, 6)]).toEqual([4, 3, 2, 1]);
    const tok = applyMutations(input, [{ op: 'token', at: 4, token: '1e309' }]);
    expect(new TextDecoder().decode(tok)).toBe('{"n": 1e309, "x": 3}');
    expect(applyMutations(input, [{ op: 'truncate', len: 5 }]).length).toBe(5);
    expect(new TextDecoder().decode(input)).toBe('{"n": 12, "x": 3}');
  });

  it('multi-file inputs split into their files, an absent part is an absent file', () => {
    const packed = TARGETS.find((t) => t.name === 'packed')!;
    const enc = (s: string) => new TextEncoder().encode(s);
    expect(splitFiles(packed, joinFiles([enc('{}'), enc('bin')])).map((f) => f && new TextDecoder().decode(f))).toEqual(['{}', 'bin']);
    expect(splitFiles(packed, enc('{}'))[1]).toBeNull();
    expect(new TextDecoder().decode(joinFiles([enc('a'), enc('b')]))).toBe(`a${FILE_SEPARATOR}b`);
  });
});
