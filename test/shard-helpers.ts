// Shared by the sharded-run tests (Slurm job array, --gpus workers): their merged rows against a
// single-process run of the same matrix.
import { expect } from 'vitest';
import { rowCell } from '../lib/matrix';
import { readResults, trackFile, type ResultRow, type Track } from '../lib/results';

export const TRACKS: Track[] = [1, 2, 3, 4, 5, 6];

/** Same cells and metrics, each once; the same values where they do not measure time or memory. */
export function expectSameRows(out: string, ref: string): void {
  const key = (r: ResultRow) => `${r.track} ${rowCell(r)} ${r.task} ${r.metric}`;
  const measured = (r: ResultRow) => r.track === 3 || r.track === 5 || /memory|time|_s$/.test(r.metric);
  const rows = (root: string) => TRACKS.flatMap((t) => readResults(trackFile(t, root)));
  const got = rows(out);
  const want = rows(ref);
  expect(new Set(got.map(key)).size).toBe(got.length);
  expect(got.map(key).sort()).toEqual(want.map(key).sort());
  const values = (rs: ResultRow[]) => new Map(rs.filter((r) => !measured(r)).map((r) => [key(r), `${r.status} ${r.value}`]));
  expect(values(got)).toEqual(values(want));
}
