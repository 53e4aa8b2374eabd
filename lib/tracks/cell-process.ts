// The child process of lib/tracks/isolate.ts: receives a ChildInit, starts the parent's backend
// with the parent's kernel policy, then runs each subject the parent sends through the runner's
// runSubject, sending every event to the parent and 'done' after each subject. It writes no file:
// the parent writes the rows. It exits when the parent closes the IPC channel.
import { pathToFileURL } from 'node:url';
import { setKernels } from '../kernels';
import { openEnv, type TrackEnv } from './common';
import type { ChildInit, ChildMessage, SubjectRequest } from './isolate';
import { runSubject } from './runner';

const send = (m: ChildMessage) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));

async function open(init: ChildInit): Promise<TrackEnv> {
  for (const p of init.preload) await import(pathToFileURL(p).href);
  setKernels(init.kernels);
  const log = (message: string) => void send({ kind: 'log', message });
  const env = await openEnv({ ...init.matrix, backend: init.runtime.backend }, { out: init.out, log });
  if (env.runtime.device !== init.runtime.device) {
    throw new Error(`the cell process started ${env.runtime.backend} on '${env.runtime.device}', the parent is on '${init.runtime.device}'`);
  }
  const progress = (message: string) => void send({ kind: 'progress', message });
  return { ...env, matrix: init.matrix, ctx: init.ctx, data: init.data, progress };
}

async function subject(env: Promise<TrackEnv>, req: SubjectRequest): Promise<void> {
  let ready: TrackEnv;
  try {
    ready = await env;
  } catch (e) {
    // runSubject reports its own errors: this one came before the first phase (preload, backend)
    await send({ kind: 'error', cell: null, error: `cell process: ${(e as Error).message}`, cause: 'threw' });
    await send({ kind: 'done' });
    process.exit(1);
  }
  await runSubject(ready, req.cells, (e) => void send(e));
  await send({ kind: 'done' });
}

process.once('message', (init: ChildInit) => {
  const env = open(init);
  env.catch(() => undefined); // reported with the first subject
  let queue = Promise.resolve();
  process.on('message', (req: SubjectRequest) => {
    queue = queue.then(() => subject(env, req));
  });
  process.on('disconnect', () => process.exit(0));
});
