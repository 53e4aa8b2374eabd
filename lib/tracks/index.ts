// The six tracks as their users see them: one entry per track that runs (or resumes) its slice of
// a matrix and returns the rows; the notebooks and scripts/run.ts call exactly these.
import { MATRICES, type MatrixConfig, type Slice } from '../matrix';
import type { ResultRow, Track } from '../results';
import { TRACKS } from '../results';
import { runMatrix, type RunOptions, type RunSummary } from './runner';
import { trackRows } from './tables';

export interface TrackRunOptions extends Partial<Omit<RunOptions, 'slice'>> {
  matrix?: keyof typeof MATRICES | MatrixConfig; // default: 'smoke'
  slice?: Omit<Slice, 'tracks'>;
}

/** Runs the pending cells of one track (resumable) and returns the track's rows under `out`. */
export async function runTrack(track: Track, opts: TrackRunOptions = {}): Promise<{ summary: RunSummary; rows: ResultRow[] }> {
  const m = opts.matrix ?? 'smoke';
  const mx = typeof m === 'string' ? MATRICES[m]() : m;
  if (!mx.tracks.includes(track)) mx.tracks = [...mx.tracks, track];
  const summary = await runMatrix(mx, { ...opts, slice: { ...(opts.slice ?? {}), tracks: [track] } });
  if (summary.failed.length) throw new Error(`Track ${track}: ${summary.failed.length} cell(s) failed: ${summary.failed.map((f) => `${f.cell}: ${f.error}`).join(' | ')}`);
  return { summary, rows: trackRows(opts.out ?? 'data', track) };
}

export const tracks = {
  1: { title: TRACKS[1], run: (o: TrackRunOptions = {}) => runTrack(1, o) },
  2: { title: TRACKS[2], run: (o: TrackRunOptions = {}) => runTrack(2, o) },
  3: { title: TRACKS[3], run: (o: TrackRunOptions = {}) => runTrack(3, o) },
  4: { title: TRACKS[4], run: (o: TrackRunOptions = {}) => runTrack(4, o) },
  5: { title: TRACKS[5], run: (o: TrackRunOptions = {}) => runTrack(5, o) },
  6: { title: TRACKS[6], run: (o: TrackRunOptions = {}) => runTrack(6, o) },
} as const;

export * from './common';
export * from './evaluation';
export * from './hardware';
export * from './inference';
export * from './runner';
export * from './tables';
export * from './training';
