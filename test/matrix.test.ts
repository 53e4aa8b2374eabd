import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  cellNote, cellPending, checkMatrix, checkSlice, defaultMatrix, expandCells, finishedCells, hashConfig, matrixFromJson, parseSlice, rowCell,
  smokeMatrix, STORIES260K, type MatrixConfig,
} from '../lib/matrix';
import { REPO_ROOT, sharedDir } from '../lib/cli';
import { macWeight } from '../lib/efficiency/meters';
import { canonicalJson } from '../lib/metrics/names';
import { checkMethodConfig } from '../lib/methods/index';
import { storedCompression } from '../lib/methods/save';
import { disposeModel, loadModel } from '../lib/models/load';
import { appendResults, makeRow, readResults, trackFile, type Track } from '../lib/results';

const taskTrack = (t: string) => ({ track: (t === 'truthfulqa' || t === 'advglue' ? 6 : 1) as Track, version: '1', dataFiles: [`${t}/data.txt`] });

function tiny(): MatrixConfig {
  const mx = smokeMatrix();
  mx.models = [STORIES260K];
  mx.methods = [
    { id: 'dense', method: 'dense', config: {} },
    { id: 'wanda-50%', method: 'wanda', config: { pattern: '50%' } },
  ];
  mx.tasks = ['wikitext2', 'piqa', 'truthfulqa'];
  mx.engines = ['kit', 'llama.cpp-cpu'];
  return mx;
}

describe('canonical hashing', () => {
  it('sorts keys at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 0 }], c: null } })).toBe('{"a":{"c":null,"d":[2,{"y":0,"z":1}]},"b":1}');
  });
  it('hashes equal configs equally and different ones differently', () => {
    expect(hashConfig({ a: 1, b: 2 })).toBe(hashConfig({ b: 2, a: 1 }));
    expect(hashConfig({ a: 1 })).not.toBe(hashConfig({ a: 2 }));
    expect(hashConfig({ a: 1 })).toMatch(/^[0-9a-f]{16}$/);
  });
});

describe('expandCells', () => {
  it('expands models × methods × tasks × engines per track', () => {
    const cells = expandCells(tiny(), {}, taskTrack);
    const count = (t: number) => cells.filter((c) => c.track === t).length;
    expect(count(1)).toBe(4); // (wikitext2, piqa) × 2 methods
    expect(count(2)).toBe(2); // wikitext2 × 2 methods
    expect(count(3)).toBe(1); // wanda only: the dense model is not compressed
    expect(count(4)).toBe(2);
    expect(count(5)).toBe(4); // 2 engines × 2 methods
    expect(count(6)).toBe(2);
    expect(new Set(cells.map((c) => c.hash)).size).toBe(cells.length);
  });
  it('filters by slice (method id or registry name) and changes hashes with settings', () => {
    const mx = tiny();
    expect(expandCells(mx, { tracks: [1], methods: ['wanda'] }, taskTrack).map((c) => c.item)).toEqual(['wikitext2', 'piqa']);
    const a = expandCells(mx, { tracks: [1], tasks: ['piqa'], methods: ['dense'] }, taskTrack)[0].hash;
    mx.eval.limit = 5;
    expect(expandCells(mx, { tracks: [1], tasks: ['piqa'], methods: ['dense'] }, taskTrack)[0].hash).not.toBe(a);
    mx.cellTimeoutS = 1; // not part of the result
    mx.eval.limit = 4;
    expect(expandCells(mx, { tracks: [1], tasks: ['piqa'], methods: ['dense'] }, taskTrack)[0].hash).toBe(a);
  });
});

describe('data identity in the cell key', () => {
  it('changes the hash of the cells that read a dataset when it appears, changes or is fixed, and of no other cell', () => {
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-ident-'));
    const mx = tiny();
    const byKey = (cells: ReturnType<typeof expandCells>) => new Map(cells.map((c) => [`${c.track} ${c.method.id} ${c.item}`, c]));
    const none = byKey(expandCells(mx, {}, taskTrack, null));
    const empty = byKey(expandCells(mx, {}, taskTrack, root));
    expect([...empty].every(([k, c]) => c.hash === none.get(k)!.hash)).toBe(true); // absent either way
    fs.mkdirSync(path.join(root, 'piqa'));
    fs.writeFileSync(path.join(root, 'piqa/data.txt'), 'abc');
    const got = byKey(expandCells(mx, {}, taskTrack, root));
    const changed = [...got].filter(([k, c]) => c.hash !== none.get(k)!.hash).map(([k]) => k).sort();
    // piqa's cells; wanda calibrates on wikitext2-valid (absent: no change); dense T4/T5 read nothing
    expect(changed).toEqual(['1 dense piqa', '1 wanda-50% piqa']);
    expect(got.get('1 dense piqa')!.data).toMatch(/^[0-9a-f]{16}$/);
    expect(got.get('4 dense inference')!.data).toBeNull();
    fs.writeFileSync(path.join(root, 'piqa/data.txt'), 'abd');
    fs.utimesSync(path.join(root, 'piqa/data.txt'), new Date(), new Date(Date.now() + 5000));
    const changedAgain = byKey(expandCells(mx, {}, taskTrack, root));
    expect(changedAgain.get('1 dense piqa')!.hash).not.toBe(got.get('1 dense piqa')!.hash);
    fs.mkdirSync(path.join(root, 'wikitext-2-raw'));
    fs.writeFileSync(path.join(root, 'wikitext-2-raw/wiki.valid.raw'), 'calibration text');
    const calib = byKey(expandCells(mx, {}, taskTrack, root));
    expect(calib.get('4 wanda-50% inference')!.hash).not.toBe(none.get('4 wanda-50% inference')!.hash); // calibration data now read
    expect(calib.get('4 dense inference')!.hash).toBe(none.get('4 dense inference')!.hash);
    fs.rmSync(root, { recursive: true, force: true });
  });
  it('writes the data identity into the row note after the cell hash', () => {
    expect(cellNote('0123456789abcdef', 'source=x', 'fedcba9876543210')).toBe('cell=0123456789abcdef; data=fedcba9876543210; source=x');
    expect(rowCell({ note: cellNote('0123456789abcdef', 'source=x', 'fedcba9876543210') })).toBe('0123456789abcdef');
  });
});

describe('slices and validation', () => {
  it('parses slice specs', () => {
    expect(parseSlice('tracks=1,4; models=stories260K;methods=gptq-w4,wanda')).toEqual({ tracks: [1, 4], models: ['stories260K'], methods: ['gptq-w4', 'wanda'] });
    expect(parseSlice('')).toEqual({});
  });
  it('rejects bad slices with the offending part', () => {
    expect(() => parseSlice('tracks=7')).toThrow(/track '7' is not 1-6/);
    expect(() => parseSlice('colour=red')).toThrow(/unknown key 'colour'/);
    expect(() => parseSlice('tracks')).toThrow(/not key=value/);
    expect(() => checkSlice(tiny(), { methods: ['gptq-w9'] })).toThrow(/'gptq-w9' is not in matrix 'smoke'/);
  });
  it('rejects a matrix without a dense baseline or with duplicate ids', () => {
    const mx = tiny();
    mx.methods = mx.methods.slice(1);
    expect(() => checkMatrix(mx)).toThrow(/no 'dense' method/);
    const my = tiny();
    my.methods.push({ ...my.methods[1] });
    expect(() => checkMatrix(my)).toThrow(/duplicate method id 'wanda-50%'/);
  });
});

describe('unknown methods, option keys and tasks', () => {
  it('accepts the shipped matrices', () => {
    expect(() => checkMatrix(defaultMatrix())).not.toThrow();
    expect(() => checkMatrix(smokeMatrix())).not.toThrow();
  });
  it("the default matrix runs stories260K and the zoo's three families at three sizes each", () => {
    const ids = defaultMatrix().models.map((m) => m.id);
    expect(ids).toEqual(['stories260K', ...['glm', 'llama', 'opt'].flatMap((f) => [`${f}-1m`, `${f}-2m`, `${f}-700k`])]);
  });
  it('names an unknown method and lists the known ones', () => {
    const mx = tiny();
    mx.methods.push({ id: 'x', method: 'nosuchmethod', config: {} });
    expect(() => checkMatrix(mx)).toThrow(/method 'x': unknown method 'nosuchmethod' \(known: dense, magnitude, llm-pruner, wanda/);
  });
  it('names an unknown option key and lists the valid ones', () => {
    const mx = tiny();
    mx.methods[1] = { id: 'wanda-2:4', method: 'wanda', config: { patern: '2:4' } };
    expect(() => checkMatrix(mx)).toThrow(/method 'wanda-2:4': unknown option 'patern' for method 'wanda' \(valid: pattern, batchSize\)/);
    expect(() => checkMethodConfig('gptq', { bits: 4, groupsize: 128 })).toThrow(/unknown option 'groupsize' for method 'gptq' \(valid: .*groupSize/);
    expect(() => checkMethodConfig('dense', { bits: 4 })).toThrow(/'dense' takes no options, got 'bits'/);
    expect(() => checkMethodConfig('gptq', { bits: 4, groupSize: 128 })).not.toThrow();
  });
  it('names an unknown task and lists the known ones', () => {
    const mx = tiny();
    mx.tasks.push('hellaswagg');
    expect(() => checkMatrix(mx)).toThrow(/unknown task 'hellaswagg' \(known: wikitext2, mmlu/);
  });
  it('rejects unknown keys of a matrix file, at the top and nested', () => {
    expect(() => matrixFromJson({ task: ['piqa'] }, 'm.json')).toThrow(/unknown key 'task' \(valid: name, tracks, models, methods, tasks/);
    expect(() => matrixFromJson({ eval: { limt: 4 } }, 'm.json')).toThrow(/unknown key 'eval.limt' \(valid: limit, seqlen/);
    expect(matrixFromJson({ eval: { limit: 4 } }, 'm.json').eval).toMatchObject({ limit: 4, seed: 0 });
  });
  it('scripts/run.ts exits non-zero on a matrix file with an unknown option key, before any work', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-badmx-'));
    const file = path.join(dir, 'bad.json');
    fs.writeFileSync(file, JSON.stringify({ tracks: [3], models: [STORIES260K], methods: [{ id: 'dense', method: 'dense', config: {} }, { id: 'w', method: 'wanda', config: { patern: '2:4' } }] }));
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/run.ts', '--matrix', file, '--out', dir], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/unknown option 'patern' for method 'wanda' \(valid: pattern, batchSize\)/);
    expect(fs.existsSync(path.join(dir, 'results'))).toBe(false);
    fs.rmSync(dir, { recursive: true, force: true });
  }, 60_000);
});

describe('unknown names on the scripts\' command lines', () => {
  const run = (script: string, args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { cwd: REPO_ROOT, encoding: 'utf8' });
  it('scripts/eval.ts: an unknown task, method or option key exits non-zero naming it', () => {
    const model = 'models/stories260K/stories260K.bin';
    const t = run('scripts/eval.ts', ['--model', model, '--tasks', 'piqa,piqaa']);
    expect(t.status).toBe(1);
    expect(t.stderr).toMatch(/unknown task 'piqaa' \(known: wikitext2/);
    const m = run('scripts/eval.ts', ['--model', model, '--tasks', 'piqa', '--method', 'wanda', '--method-config', '{"patern":"2:4"}']);
    expect(m.status).toBe(1);
    expect(m.stderr).toMatch(/unknown option 'patern' for method 'wanda' \(valid: pattern, batchSize\)/);
  }, 60_000);
  it('scripts/compress.ts: a flag that sets no option of the method exits non-zero naming it', () => {
    const r = run('scripts/compress.ts', ['--model', 'models/stories260K/stories260K.bin', '--method', 'rtn', '--alpha', '0.5', '--out', path.join(os.tmpdir(), 'llmcb-never')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--alpha: not an option of method 'rtn' \(its options: --bits, --group-size, --sym, --group-remainder\)/);
    const u = run('scripts/compress.ts', ['--model', 'models/stories260K/stories260K.bin', '--method', 'gptqq', '--out', path.join(os.tmpdir(), 'llmcb-never')]);
    expect(u.status).toBe(1);
    expect(u.stderr).toMatch(/unknown method 'gptqq' \(known: magnitude, llm-pruner/);
  }, 60_000);
  it('scripts/compress.ts: a sparsity method saves sparse storage that loads, rows under --rows-out only', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-compress-'));
    const r = run('scripts/compress.ts', ['--model', 'models/stories260K/stories260K.bin', '--method', 'magnitude', '--method-config', '{"pattern":"2:4"}', '--out', path.join(out, 'model'), '--rows-out', path.join(out, 'rows')]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/saved .*\(sparse 2:4, \d+ bytes\)/);
    expect(fs.readdirSync(path.join(out, 'rows', 'results')).sort()).toEqual(['track3.csv', 'track4.csv']);
    const m = await loadModel(path.join(out, 'model'));
    try {
      expect(storedCompression(m)).toEqual({ method: 'magnitude', method_config: { pattern: '2:4' }, calib: 'none' }); // eval.ts labels its rows so
      const w = await m.weights.get('model.layers.0.mlp.up_proj.weight')!.data();
      for (let i = 0; i < w.length; i += 4) expect([w[i], w[i + 1], w[i + 2], w[i + 3]].filter((v) => v === 0).length).toBeGreaterThanOrEqual(2);
    } finally {
      disposeModel(m);
    }
    fs.rmSync(out, { recursive: true, force: true });
  }, 60_000);
});

const DATASETS = path.join(sharedDir(), 'datasets');
describe.skipIf(!fs.existsSync(DATASETS))(`scripts/eval.ts --method (needs ${DATASETS})`, () => {
  it('compresses the model before evaluating it; rows carry the method, its config and calibration', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-eval-method-'));
    const ppl = (extra: string[]) => {
      const file = path.join(out, `${extra.length}.csv`);
      const r = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/eval.ts', '--model', 'models/stories260K/stories260K.bin', '--tasks', 'wikitext2', '--limit', '8', '--backend', 'wasm', '--data', DATASETS, '--out', file, ...extra], { cwd: REPO_ROOT, encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return readResults(file).find((x) => x.metric === 'ppl')!;
    };
    const dense = ppl([]);
    const wanda = ppl(['--method', 'wanda', '--pattern', '2:4', '--calib-nsamples', '4', '--calib-seqlen', '64']);
    expect([dense.method, wanda.method]).toEqual(['dense', 'wanda']);
    expect(wanda.method_config).toEqual({ pattern: '2:4' });
    expect(wanda.calib).toBe('wikitext2-valid:4x64:seed0');
    expect(wanda.value!).toBeGreaterThan(dense.value! * 1.05); // half of every block linear pruned
    fs.rmSync(out, { recursive: true, force: true });
  }, 120_000);
});

describe('resumability bookkeeping', () => {
  it('round-trips the cell hash through the note', () => {
    expect(rowCell({ note: cellNote('0123456789abcdef', 'source=x; v1') })).toBe('0123456789abcdef');
    expect(rowCell({ note: cellNote('0123456789abcdef', '') })).toBe('0123456789abcdef');
    expect(rowCell({ note: 'no cell here' })).toBeNull();
  });
  it('finds finished cells in the result files, best status first', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-matrix-'));
    const ctx = { run_id: 'r', git_sha: 'abcdef0', started_at: new Date().toISOString(), backend: 'wasm', device: 'cpu' };
    const base = { track: 1 as Track, model: 'm', model_family: 'llama', method: 'dense', method_config: {}, task: 't', metric: 'acc', higher_is_better: true };
    appendResults(trackFile(1, out), [
      makeRow(ctx, { ...base, value: null, status: 'not_run', note: cellNote('aaaaaaaaaaaaaaaa', 'engine absent') }),
      makeRow(ctx, { ...base, value: 0.5, note: cellNote('aaaaaaaaaaaaaaaa', '') }),
      makeRow(ctx, { ...base, value: null, status: 'no_data', note: cellNote('bbbbbbbbbbbbbbbb', 'no file') }),
      makeRow(ctx, { ...base, value: null, status: 'not_run', note: cellNote('cccccccccccccccc', 'engine absent') }),
    ]);
    const done = finishedCells(out);
    expect(done.get('aaaaaaaaaaaaaaaa')).toBe('ok');
    expect(done.get('bbbbbbbbbbbbbbbb')).toBe('no_data');
    expect(cellPending(done.get('aaaaaaaaaaaaaaaa'), true)).toBe(false);
    expect(cellPending(done.get('bbbbbbbbbbbbbbbb'), false)).toBe(false);
    expect(cellPending(done.get('bbbbbbbbbbbbbbbb'), true)).toBe(true);
    expect(cellPending(done.get('cccccccccccccccc'), false)).toBe(true);
    expect(cellPending(done.get('dddddddddddddddd'), false)).toBe(true);
    fs.rmSync(out, { recursive: true, force: true });
  });
});

describe('quantized-MAC conventions', () => {
  it('counts MACs per convention, full precision as 1', () => {
    expect(macWeight('count', 4, 4)).toBe(1);
    expect(macWeight('paper', 8, null)).toBe(0.25);
    expect(macWeight('paper', 4, null)).toBe(1 / 16);
    expect(macWeight('bitops', 8, null)).toBe(0.5);
    expect(macWeight('bitops', 8, 8)).toBe(0.25);
    expect(macWeight('paper', null, null)).toBe(1);
    expect(() => macWeight('fast' as never, 8, 8)).toThrow(/unknown quantized-MAC convention 'fast'/);
  });
  it("reproduces the paper's INT8 MACs of LLaMA2-7B from its dense count under 'paper'", () => {
    // LLaMA2-7B per token: 32 blocks × (4·4096² + 3·4096·11008) linear MACs, head 32000·4096 (fp16).
    const linear = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008);
    const headMacs = 32000 * 4096;
    const ratio = (linear * macWeight('paper', 8, null) + headMacs) / (linear + headMacs);
    expect(0.85 * ratio).toBeCloseTo(0.23, 2); // Table 6: dense 0.85, GPTQ/AWQ/OmniQuant INT8 0.23
  });
});
