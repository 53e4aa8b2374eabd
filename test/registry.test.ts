// The method registry is the one place that lists methods: no other file of lib/, scripts/ or the
// site names two or more methods in one literal (a list, a set, a union); and a method added to the
// registry alone (its file plus one registry line) runs through run.ts, compress.ts and the site.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { sharedDir } from '../lib/cli';
import { STORIES260K, smokeMatrix } from '../lib/matrix';
import { appendResults, readResults, trackFile, type Track } from '../lib/results';
import { getMethod, methodNames } from '../lib/methods/index';
import { normName } from '../lib/metrics/names';

const ROOT = path.resolve(__dirname, '..');

/** Lines of `text` that quote two or more different registered methods (by name or display name). */
export function methodListLines(text: string): string[] {
  const known = new Set(methodNames().flatMap((n) => [normName(n), normName(getMethod(n).display)]));
  return text.split('\n').filter((line) => {
    const quoted = [...line.matchAll(/(['"`])([^'"`\n]{2,40})\1/g)].map((m) => normName(m[2]));
    return new Set(quoted.filter((q) => known.has(q))).size >= 2;
  });
}

function sources(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && /\.(ts|mjs|astro)$/.test(e.name))
    .map((e) => path.relative(ROOT, path.join(e.parentPath, e.name)));
}

describe('method registry', () => {
  it('the detector finds a list of method names', () => {
    expect(methodListLines("const SPARSE = new Set(['wanda', 'sparsegpt', 'magnitude']);\nconst x = 'wanda';")).toHaveLength(1);
    expect(methodListLines("for (const m of ['LLM-Pruner', 'GPTQ']) f(m);")).toHaveLength(1);
    expect(methodListLines("  { id: 'wanda-2:4', method: 'wanda', config: { pattern: '2:4' } },")).toHaveLength(0);
  });

  it('no file outside lib/methods/ lists methods', () => {
    const files = ['lib', 'scripts', 'site/src'].flatMap(sources).filter((f) => !f.startsWith(`lib${path.sep}methods${path.sep}`));
    expect(files.length).toBeGreaterThan(50);
    const found = files.flatMap((f) => methodListLines(fs.readFileSync(path.join(ROOT, f), 'utf8')).map((l) => `${f}: ${l.trim()}`));
    expect(found).toEqual([]);
  });
});

/** The toy method's file: zeroes a share of each block linear (a method with one option). */
const TOY = `// Test-only method: zeroes the first \`share\` of each block linear's weights (flat order).
import * as tf from '@tensorflow/tfjs';
import { linearName } from '../models/arch';
import type { Model } from '../models/types';
import { blockLinears } from '../models/arch';
import { defaultsOf, defineOptions, parseOptions, type InputOf, type OptionsOf } from './options';
import type { CompressResult, MethodModule } from './types';

export const options = defineOptions({
  share: { type: 'number', min: 0, max: 1, maxOpen: true, default: 0.25, doc: 'fraction of each linear zeroed' },
});
type ToyOptions = OptionsOf<typeof options>;

async function compress(model: Model, _calib: unknown, input: InputOf<typeof options> = {}): Promise<CompressResult> {
  const o = parseOptions('toy', options, input);
  for (let b = 0; b < model.config.numLayers; b++) {
    for (const l of blockLinears(model.config.arch)) {
      const name = linearName(model.config.arch, b, l);
      const w = model.weights.get(name) as tf.Tensor2D;
      const data = Float32Array.from(await w.data());
      data.fill(0, 0, Math.floor(data.length * o.share));
      model.weights.set(name, tf.tensor2d(data, w.shape));
      w.dispose();
    }
  }
  return { method: 'toy', config: { share: o.share }, calib: 'none', quantized: new Map(), actQuant: null, artifacts: {}, stats: {} };
}

export const module = {
  display: 'ToyPrune', kind: 'structured', inPaper: false, describe: 'test only: zeroes a share of each linear',
  options, defaults: defaultsOf(options), needsCalib: false,
  validate: (o: ToyOptions) => void parseOptions('toy', options, o),
  compress,
} satisfies MethodModule<ToyOptions>;
`;

describe('a method added through the registry alone', () => {
  it('runs through run.ts and compress.ts and shows on the site', { timeout: 600_000 }, () => {
    // A copy of the tree (without the zoo) with lib/methods/toy.ts and its registry line.
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-toy-'));
    try {
      const files = execFileSync('git', ['ls-files', '-co', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' }).split('\n').filter((f) => f && !f.startsWith('models/zoo/') && fs.existsSync(path.join(ROOT, f)));
      for (const f of files) {
        fs.mkdirSync(path.dirname(path.join(copy, f)), { recursive: true });
        fs.copyFileSync(path.join(ROOT, f), path.join(copy, f));
      }
      fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));
      fs.writeFileSync(path.join(copy, 'lib/methods/toy.ts'), TOY);
      const registry = path.join(copy, 'lib/methods/index.ts');
      const src = fs.readFileSync(registry, 'utf8');
      fs.writeFileSync(registry, src.replace("  omniquant: omniquant.module,\n", "  omniquant: omniquant.module,\n  toy: (await import('./toy')).module,\n"));
      // The copy is no git checkout: its rows take this checkout's commit.
      const env = { ...process.env, NO_COLOR: '1', LLMCB_GIT_SHA: execFileSync('git', ['rev-parse', 'HEAD'], { cwd: ROOT, encoding: 'utf8' }).trim() };
      const node = (args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', ...args], { cwd: copy, encoding: 'utf8', env });

      // run.ts: Track 1 (perplexity, where the datasets are) and Track 4 (size) for the toy method and dense.
      const mx = { ...smokeMatrix(), name: 'toy', tracks: [1, 4], models: [STORIES260K], methods: [{ id: 'dense', method: 'dense', config: {} }, { id: 'toy-50', method: 'toy', config: { share: 0.5 } }], tasks: ['wikitext2'] };
      fs.writeFileSync(path.join(copy, 'toy.json'), JSON.stringify(mx));
      const out = path.join(copy, 'tmp/toy-run');
      const datasets = path.join(sharedDir(), 'datasets');
      const data = fs.existsSync(datasets) ? ['--data', datasets] : [];
      const r = node(['scripts/run.ts', '--matrix', 'toy.json', '--out', out, '--no-derived', '--no-hub', ...data]);
      expect(r.status, r.stderr).toBe(0);
      const rows = ([1, 4] as Track[]).flatMap((t) => readResults(trackFile(t, out)));
      const toy = rows.filter((x) => x.method === 'toy');
      const size = toy.filter((x) => x.track === 4);
      expect(size.length).toBeGreaterThan(0);
      expect(size.map((x) => x.status)).toEqual(size.map(() => 'ok'));
      const ppl = (m: string) => rows.find((x) => x.method === m && x.task === 'wikitext2' && x.metric === 'ppl')!;
      if (data.length) expect(ppl('toy').value!).toBeGreaterThan(ppl('dense').value! * 1.05); // half the weights zeroed
      else expect(ppl('toy').status).toBe('no_data');
      // A bad option value is refused by the schema, naming it.
      fs.writeFileSync(path.join(copy, 'bad.json'), JSON.stringify({ ...mx, methods: [mx.methods[0], { id: 'toy-x', method: 'toy', config: { share: 2 } }] }));
      const bad = node(['scripts/run.ts', '--matrix', 'bad.json', '--out', path.join(copy, 'tmp/bad'), '--no-derived', '--no-hub']);
      expect(bad.status).not.toBe(0);
      expect(bad.stderr).toMatch(/option 'share' must be number in \[0, 1\), got 2/);

      // compress.ts: the option is a flag of its own; --help lists it.
      const c = node(['scripts/compress.ts', '--model', 'models/stories260K/stories260K.bin', '--method', 'toy', '--share', '0.5', '--out', path.join(copy, 'tmp/toy-model'), '--rows-out', path.join(copy, 'tmp/toy-rows')]);
      expect(c.status, c.stderr).toBe(0);
      expect(c.stdout).toMatch(/toy \{"share":0.5\}/);
      expect(node(['scripts/compress.ts', '--help']).stdout).toMatch(/toy \(ToyPrune, structured\)[^]*share \(--share X\)/);

      // The site: the toy rows beside the committed ones; its display name is on the track pages.
      for (const t of [1, 4] as Track[]) appendResults(trackFile(t, path.join(copy, 'data')), readResults(trackFile(t, out)).filter((x) => x.method === 'toy'));
      const site = path.join(copy, 'tmp/site');
      const b = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/astro/astro.js'), 'build', '--root', 'site'], { cwd: copy, encoding: 'utf8', env: { ...env, ASTRO_TELEMETRY_DISABLED: '1', LLMCB_SITE_OUT: site } });
      expect(b.status, b.stderr).toBe(0);
      const pages = [1, 4].map((t) => fs.readFileSync(path.join(site, `track${t}`, 'index.html'), 'utf8')).join('\n');
      expect(pages).toMatch(/ToyPrune/);
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});
