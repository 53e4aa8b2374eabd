// Dataset files are checked against SHA256SUMS before use (cached per size and mtime), each cell's
// key holds the identity of the data it reads, and no_data cells run by themselves once the data
// appears. A temp copy of ../shared/datasets/piqa (small) stands in for the datasets.
import * as tf from '@tensorflow/tfjs';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dataOptions, loadPiqa, resolveDataDir } from '../lib/data';
import { DatasetChecksumError, dataIdentity, fileSha256, parseSums, verifyDataFile } from '../lib/data/verify';
import { REPO_ROOT } from '../lib/cli';
import { smokeMatrix, STORIES260K, type MatrixConfig } from '../lib/matrix';
import { readResults, trackFile } from '../lib/results';
import { initRuntime } from '../lib/runtime';
import { TASKS } from '../lib/tasks';
import { runMatrix } from '../lib/tracks/runner';

const shared = resolveDataDir(null, REPO_ROOT);
const PIQA = ['piqa/valid.jsonl', 'piqa/valid-labels.lst'];
const hasPiqa = shared !== null && PIQA.every((f) => fs.existsSync(path.join(shared, f))) && fs.existsSync(path.join(shared, 'SHA256SUMS'));

/** A data root holding a copy of PIQA, with the shared SHA256SUMS lines for it when `sums`. */
function piqaRoot(sums: boolean): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-data-'));
  fs.mkdirSync(path.join(root, 'piqa'));
  for (const f of PIQA) fs.copyFileSync(path.join(shared!, f), path.join(root, f));
  if (sums) {
    const lines = fs.readFileSync(path.join(shared!, 'SHA256SUMS'), 'utf8').split('\n').filter((l) => / \.\/piqa\//.test(l));
    expect(lines.length).toBe(2);
    fs.writeFileSync(path.join(root, 'SHA256SUMS'), lines.join('\n') + '\n');
  }
  return root;
}

/** Flips bytes of a file in place (same size), keeping or moving its mtime. */
function flipBytes(file: string, at: number[], keepMtime: boolean): void {
  const st = fs.statSync(file);
  const b = fs.readFileSync(file);
  for (const i of at) b[i] ^= 0x01;
  fs.writeFileSync(file, b);
  const mtime = keepMtime ? st.mtime : new Date(st.mtimeMs + 2000);
  fs.utimesSync(file, st.atime, mtime);
}

beforeAll(async () => {
  await initRuntime({ backend: 'wasm' });
});

describe('SHA256SUMS', () => {
  it('parses sha256sum lines and names a malformed one', () => {
    const sums = parseSums(`${'a'.repeat(64)}  ./piqa/valid.jsonl\n${'B'.repeat(64)} *x.txt\n`, 'S');
    expect([...sums]).toEqual([['piqa/valid.jsonl', 'a'.repeat(64)], ['x.txt', 'b'.repeat(64)]]);
    expect(() => parseSums('abc  ./x\n', 'S')).toThrow(/^S:1: not a sha256sum line/);
  });

  it.skipIf(!hasPiqa)('passes an intact copy; a flipped byte is an error naming the file and both checksums', async () => {
    const root = piqaRoot(true);
    const file = path.join(root, 'piqa/valid.jsonl');
    const good = verifyDataFile(file);
    expect(good).toBe(fileSha256(path.join(shared!, 'piqa/valid.jsonl')));
    expect((await loadPiqa(dataOptions({ dataDir: root, hub: false }))).status).toBe('ok');
    flipBytes(file, [100, 2000], false);
    const bad = fileSha256(file);
    expect(bad).not.toBe(good);
    let err: unknown = null;
    try {
      verifyDataFile(file);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DatasetChecksumError);
    expect((err as Error).message).toBe(`${file}: sha256 ${bad} does not match ${good} listed in ${path.join(root, 'SHA256SUMS')} (a corrupt or changed copy: restore the file or fix the list)`);
    // the loaders read through the check: the task fails instead of scoring the corrupt copy
    await expect(loadPiqa(dataOptions({ dataDir: root, hub: false }))).rejects.toThrow(DatasetChecksumError);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it.skipIf(!hasPiqa)('hashes a file once per size and mtime', () => {
    const root = piqaRoot(true);
    const file = path.join(root, 'piqa/valid-labels.lst');
    const whole = new Date(Math.floor(Date.now() / 1000) * 1000); // an mtime that utimes restores exactly
    fs.utimesSync(file, whole, whole);
    const good = verifyDataFile(file);
    flipBytes(file, [0], true); // same size, same mtime: the cached verification stands
    expect(verifyDataFile(file)).toBe(good);
    fs.utimesSync(file, new Date(), new Date(Date.now() + 4000)); // touched: hashed again, and caught
    expect(() => verifyDataFile(file)).toThrow(DatasetChecksumError);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it.skipIf(!hasPiqa)('every task declares the files it reads: it loads from a root holding only its dataFiles', async () => {
    for (const task of Object.values(TASKS)) {
      const present = task.dataFiles.filter((f) => fs.existsSync(path.join(shared!, f)));
      if (present.length === 0) continue; // not in the shared datasets (winogrande, mnli)
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-only-'));
      for (const f of present) {
        fs.mkdirSync(path.dirname(path.join(root, f)), { recursive: true });
        fs.symlinkSync(path.join(shared!, f), path.join(root, f));
      }
      const r = await task.load(dataOptions({ dataDir: root, hub: false }));
      expect(r.status, task.name).toBe('ok');
      expect(dataIdentity(root, task.dataFiles)).toBe(dataIdentity(shared, task.dataFiles));
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!hasPiqa)('runner: data identity and no_data cells', () => {
  function matrix(): MatrixConfig {
    const mx = smokeMatrix();
    mx.models = [STORIES260K];
    mx.methods = [{ id: 'dense', method: 'dense', config: {} }];
    mx.tracks = [1];
    mx.tasks = ['piqa'];
    mx.eval = { ...mx.eval, limit: 3 };
    return mx;
  }
  const log = () => undefined;
  const rows = (out: string) => readResults(trackFile(1, out));

  it('no_data cells run by themselves once --data holds the data; a corrupt copy fails naming the file', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-rerun-'));
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-nodata-'));
    const first = await runMatrix(matrix(), { out, log, dataDir: empty, hub: false });
    expect(first.pending).toBe(1);
    expect(rows(out).map((r) => r.status)).toEqual(['no_data', 'no_data']); // acc, acc_norm

    const root = piqaRoot(true);
    const second = await runMatrix(matrix(), { out, log, dataDir: root, hub: false }); // no retry
    expect(second.pending).toBe(1);
    const ok = rows(out).filter((r) => r.status === 'ok');
    expect(ok.length).toBe(2);
    const id = dataIdentity(root, TASKS.piqa.dataFiles)!;
    for (const r of ok) expect(r.note).toMatch(new RegExp(`^cell=[0-9a-f]{16}; data=${id}; source=local:`));
    expect((await runMatrix(matrix(), { out, log, dataDir: root, hub: false })).pending).toBe(0); // done

    // A corrupt copy is other data: the cell runs and fails with the checksum error, no ok row.
    const file = path.join(root, 'piqa/valid.jsonl');
    const before = tf.memory().numTensors;
    flipBytes(file, [500], false);
    const corrupt = await runMatrix(matrix(), { out, log, dataDir: root, hub: false });
    expect(tf.memory().numTensors).toBe(before);
    expect(corrupt.pending).toBe(1);
    expect(corrupt.failed.length).toBe(1);
    expect(corrupt.failed[0].error).toMatch(new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: sha256 [0-9a-f]{64} does not match [0-9a-f]{64}`));
    expect(corrupt.rows.every((r) => r.status === 'not_run')).toBe(true);
    // Fixed: the data identity is the intact one again, whose cell is done.
    flipBytes(file, [500], false);
    expect((await runMatrix(matrix(), { out, log, dataDir: root, hub: false })).pending).toBe(0);
    for (const d of [out, empty, root]) fs.rmSync(d, { recursive: true, force: true });
  }, 120_000);

  it('a cell computed on a changed copy that no SHA256SUMS lists is computed again once the copy is fixed', async () => {
    const out = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-rerun-'));
    const root = piqaRoot(false);
    const labels = path.join(root, 'piqa/valid-labels.lst');
    flipBytes(labels, [0, 2, 4], false); // three gold labels flipped ('0' <-> '1'): still well-formed
    const onBad = await runMatrix(matrix(), { out, log, dataDir: root, hub: false });
    expect(onBad.failed).toEqual([]);
    flipBytes(labels, [0, 2, 4], false);
    const fixed = await runMatrix(matrix(), { out, log, dataDir: root, hub: false });
    expect(fixed.pending).toBe(1);
    const ids = [...new Set(rows(out).filter((r) => r.status === 'ok').map((r) => /data=([0-9a-f]{16})/.exec(r.note)![1]))];
    expect(ids.length).toBe(2);
    expect(ids[0]).not.toBe(ids[1]);
    expect(ids[1]).toBe(dataIdentity(shared, TASKS.piqa.dataFiles));
    for (const d of [out, root]) fs.rmSync(d, { recursive: true, force: true });
  }, 120_000);
});
