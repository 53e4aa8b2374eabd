// The child process of lib/tracks/isolate.ts: receives a ChildInit, starts the parent's backend
// with the parent's kernel policy, runs the subject's cells through the runner's runSubject, and
// sends every event to the parent. It writes no file: the parent writes the rows.
import { pathToFileURL } from 'node:url';
import { setKernels } from '../kernels';
import { openEnv } from './common';
import type { ChildInit, ChildMessage } from './isolate';
import { runSubject } from './runner';

const send = (m: ChildMessage) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));

async function main(init: ChildInit): Promise<void> {
  for (const p of init.preload) await import(pathToFileURL(p).href);
  setKernels(init.kernels);
  const log = (message: string) => void send({ kind: 'log', message });
  const env = await openEnv({ ...init.matrix, backend: init.runtime.backend }, { out: init.out, log });
  if (env.runtime.device !== init.runtime.device) {
    throw new Error(`the cell process started ${env.runtime.backend} on '${env.runtime.device}', the parent is on '${init.runtime.device}'`);
  }
  const progress = (message: string) => void send({ kind: 'progress', message });
  await runSubject({ ...env, matrix: init.matrix, ctx: init.ctx, data: init.data, progress }, init.cells, (e) => void send(e));
  await send({ kind: 'done' });
}

process.once('message', (init: ChildInit) => {
  main(init).then(
    () => process.exit(0),
    async (e) => {
      // runSubject reports its own errors: this one came before the first phase (preload, backend)
      await send({ kind: 'error', cell: null, error: `cell process: ${(e as Error).message}`, cause: 'threw' });
      await send({ kind: 'done' });
      process.exit(1);
    },
  );
});
