// The six notebooks stay thin (prose + calls into lib/tracks, no library code), each runs its own
// track, shows a table and a figure; with LLMCB_NB_EXEC=1 one of them is executed headless.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const NOTEBOOKS = ['01-performance', '02-generalization', '03-training', '04-inference', '05-hardware', '06-trustworthiness'];

interface Nb {
  cells: { cell_type: string; source: string | string[] }[];
  metadata: { kernelspec?: { name?: string } };
}
const read = (name: string): Nb => JSON.parse(fs.readFileSync(path.join('notebooks', `${name}.ipynb`), 'utf8'));
const src = (c: { source: string | string[] }) => (Array.isArray(c.source) ? c.source.join('') : c.source);

describe('notebooks', () => {
  it.each(NOTEBOOKS.map((n, i) => [n, i + 1] as const))('%s is thin and runs Track %i', (name, track) => {
    const nb = read(name);
    expect(nb.metadata.kernelspec?.name).toBe('tslab');
    expect(nb.cells[0].cell_type).toBe('markdown');
    expect(src(nb.cells[0])).toMatch(new RegExp(`^# Track ${track}:`));
    const code = nb.cells.filter((c) => c.cell_type === 'code').map(src).join('\n');
    expect(code).not.toMatch(/\bfunction\b|\bclass\b|=>\s*\{/); // no library code in cells
    expect(code).not.toMatch(/@tensorflow|from '\.\.\/lib/); // the kit is reached only through kit.cjs
    expect(code).toContain(`kit.runTrack(${track},`);
    expect(code).toContain('tslab.display.html(');
    expect(code).toContain('tslab.display.svg(');
    for (const c of nb.cells) if (c.cell_type === 'code') expect((c as { outputs?: unknown[] }).outputs ?? []).toEqual([]); // committed clean
  });

  it.skipIf(process.env.LLMCB_NB_EXEC !== '1')('04-inference executes headless (set LLMCB_NB_EXEC=1)', () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-nbt-'));
    execFileSync(process.execPath, ['--import', 'tsx', 'scripts/nb-exec.ts', '--out', out, 'notebooks/04-inference.ipynb'], {
      env: { ...process.env, LLMCB_DATA_OUT: out },
      stdio: 'pipe',
    });
    const nb = JSON.parse(fs.readFileSync(path.join(out, '04-inference.ipynb'), 'utf8')) as { cells: { outputs?: { output_type: string; data?: Record<string, unknown> }[] }[] };
    const outputs = nb.cells.flatMap((c) => c.outputs ?? []);
    expect(outputs.some((o) => o.output_type === 'error')).toBe(false);
    expect(outputs.some((o) => o.data && 'image/svg+xml' in o.data)).toBe(true);
    expect(fs.existsSync(path.join(out, 'results', 'track4.csv'))).toBe(true);
  }, 300_000);
});
