import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { parseCsv } from '../lib/csv';
import { appendResults, makeRow, readResults, type ResultRow, type RunContext, validateRow, writeFileAtomic, writeFileAtomicAsync } from '../lib/results';

const ctx: RunContext = {
  run_id: 'r1',
  git_sha: '0123456789abcdef0123456789abcdef01234567',
  started_at: '2026-11-24T07:00:00.000Z',
  backend: 'wasm',
  device: 'test cpu (wasm)',
};

function row(over: Partial<ResultRow> = {}): ResultRow {
  return {
    ...makeRow(ctx, {
      track: 1, model: 'stories260K', model_family: 'llama', method: 'gptq',
      method_config: { bits: 4, group_size: 32, note: 'a "quoted", comma' },
      task: 'wikitext2', metric: 'ppl', value: 127.8, higher_is_better: false, seqlen: 512, bos: false,
    }),
    ...over,
  };
}

describe('result rows', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-results-'));
  });
  afterEach(() => {
    vi.restoreAllMocks();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('accepts a complete row and round-trips it through CSV', () => {
    const file = path.join(dir, 'results', 'track1.csv');
    appendResults(file, [row(), row({ metric: 'ppl_stderr_free', stderr: 0.5, n: 1589 })]);
    appendResults(file, [row({ run_id: 'r2', status: 'no_data', value: null, note: 'no MNLI data' })]);
    const back = readResults(file);
    expect(back).toHaveLength(3);
    expect(back[0]).toEqual(row());
    expect(back[2]).toMatchObject({ run_id: 'r2', status: 'no_data', value: null, note: 'no MNLI data' });
  });

  it.each([
    ['git_sha', { git_sha: '' }, /field 'git_sha'/],
    ['device', { device: '' }, /field 'device' must be a non-empty string/],
    ['value NaN', { value: NaN }, /field 'value' is NaN, not a finite number/],
    ['value Inf', { value: Infinity }, /field 'value' is Infinity/],
    ['track', { track: 7 as never }, /field 'track' is 7, not one of 1-6/],
    ['no_data with a value', { status: 'no_data' as const, note: 'x' }, /field 'value' must be null/],
    ['no_data without reason', { status: 'no_data' as const, value: null }, /field 'note' must give the reason/],
    ['stderr NaN', { stderr: NaN }, /field 'stderr' is NaN/],
  ])('rejects a row with bad %s, naming the row and field', (_name, over, msg) => {
    expect(() => validateRow(row(over as Partial<ResultRow>), 'row 3')).toThrow(msg);
    expect(() => validateRow(row(over as Partial<ResultRow>), 'row 3')).toThrow(/^row 3: /);
  });

  it('rejects a row with a missing field', () => {
    const r = row() as Partial<ResultRow>;
    delete r.git_sha;
    expect(() => validateRow(r as ResultRow)).toThrow(/field 'git_sha' is missing/);
  });

  it('writes nothing when any new row is invalid', () => {
    const file = path.join(dir, 'track1.csv');
    appendResults(file, [row()]);
    const before = fs.readFileSync(file, 'utf8');
    expect(() => appendResults(file, [row({ run_id: 'ok' }), row({ value: NaN })])).toThrow(/new row 2/);
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
  });

  it('a crash mid-write leaves the previous file intact and no temp file behind', () => {
    const file = path.join(dir, 'track1.csv');
    appendResults(file, [row()]);
    const before = fs.readFileSync(file, 'utf8');
    const real = fs.writeFileSync;
    vi.spyOn(fs, 'writeFileSync').mockImplementation((p, data, ...rest) => {
      real(p, String(data).slice(0, 40), ...(rest as []));
      throw new Error('disk full (simulated)');
    });
    expect(() => appendResults(file, [row({ run_id: 'r9' })])).toThrow(/disk full/);
    vi.restoreAllMocks();
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    expect(fs.readdirSync(dir)).toEqual(['track1.csv']);
  });

  it('reading a corrupted results file names the file and line', () => {
    const file = path.join(dir, 'track1.csv');
    appendResults(file, [row(), row({ run_id: 'r2' })]);
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    lines[2] = lines[2].replace(',127.8,', ',NaN,');
    fs.writeFileSync(file, lines.join('\n'));
    expect(() => readResults(file)).toThrow(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3: field 'value'`));
  });
});

describe('writeFileAtomic', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-atomic-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes text, bytes and descriptor content, creating the folder', async () => {
    const file = path.join(dir, 'sub', 'f.bin');
    writeFileAtomic(file, 'text');
    expect(fs.readFileSync(file, 'utf8')).toBe('text');
    writeFileAtomic(file, new Uint8Array([1, 2]));
    expect([...fs.readFileSync(file)]).toEqual([1, 2]);
    writeFileAtomic(file, (fd) => fs.writeSync(fd, 'sync'));
    expect(fs.readFileSync(file, 'utf8')).toBe('sync');
    await writeFileAtomicAsync(file, async (fd) => void fs.writeSync(fd, 'async'));
    expect(fs.readFileSync(file, 'utf8')).toBe('async');
    expect(fs.readdirSync(path.dirname(file))).toEqual(['f.bin']);
  });

  it('a throw mid-write keeps the old file and leaves no temp file', async () => {
    const file = path.join(dir, 'f.txt');
    fs.writeFileSync(file, 'old');
    const half = (fd: number) => {
      fs.writeSync(fd, 'half');
      throw new Error('boom');
    };
    expect(() => writeFileAtomic(file, half)).toThrow('boom');
    await expect(writeFileAtomicAsync(file, async (fd) => half(fd))).rejects.toThrow('boom');
    expect(fs.readFileSync(file, 'utf8')).toBe('old');
    expect(fs.readdirSync(dir)).toEqual(['f.txt']);
  });
});

describe('csv', () => {
  it('parses quotes, escaped quotes, embedded newlines and CRLF', () => {
    expect(parseCsv('a,"b,""c""",d\r\n"x\ny",,z\n')).toEqual([
      ['a', 'b,"c"', 'd'],
      ['x\ny', '', 'z'],
    ]);
  });
  it('names the line of a broken quote', () => {
    expect(() => parseCsv('a,b\n"open,c\n', 'f.csv')).toThrow(/f\.csv:2: unterminated quoted field/);
    expect(() => parseCsv('a,b\nx"y,c\n', 'f.csv')).toThrow(/f\.csv:2: quote inside an unquoted field/);
  });
});
