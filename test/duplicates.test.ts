// No copied code: jscpd (.jscpd.json) finds no clone of 6 or more lines in lib/, scripts/ and the
// site's sources. Import statements are left out of the comparison (two files importing the same
// names are not repeated code); test fixtures are not scanned.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';

const ROOT = path.resolve(__dirname, '..');
const JSCPD = path.join(ROOT, 'node_modules/.bin/jscpd');

/** jscpd's clones under the repository's config (.jscpd.json in `root`: the tree or a copy). */
function clones(root: string): { format: string; firstFile: { name: string; start: number }; secondFile: { name: string; start: number } }[] {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-jscpd-'));
  try {
    const r = spawnSync(JSCPD, ['-c', path.join(root, '.jscpd.json'), '--reporters', 'json', '--output', out, '--exit-code', '0'], { cwd: root, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(fs.readFileSync(path.join(out, 'jscpd-report.json'), 'utf8')).duplicates;
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}

it('jscpd finds no clone of 6+ lines in lib/, scripts/ and site/src', () => {
  const found = clones(ROOT).map((d) => `${d.firstFile.name}:${d.firstFile.start} = ${d.secondFile.name}:${d.secondFile.start}`);
  expect(found).toEqual([]);
});

it('the check sees a copied function', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-jscpd-copy-'));
  try {
    const fn = fs.readFileSync(path.join(ROOT, 'lib/runtime/bench.ts'), 'utf8');
    for (const d of ['lib', 'scripts', 'site/src']) fs.mkdirSync(path.join(copy, d), { recursive: true });
    fs.writeFileSync(path.join(copy, 'site/astro.config.mjs'), '');
    fs.writeFileSync(path.join(copy, 'lib/a.ts'), fn);
    fs.writeFileSync(path.join(copy, 'lib/b.ts'), `// a copy\n${fn}`);
    fs.copyFileSync(path.join(ROOT, '.jscpd.json'), path.join(copy, '.jscpd.json'));
    expect(clones(copy).length).toBeGreaterThan(0);
  } finally {
    fs.rmSync(copy, { recursive: true, force: true });
  }
});
