// The child process of lib/fuzz/process.ts: receives a target's name and the fuzz options, runs
// the fuzz loop (./harness) and sends its progress and its statistics to the parent.
import type { FuzzChildInit, FuzzChildMessage } from './process';
import { runFuzz } from './harness';
import { fuzzTarget } from './targets';

const send = (m: FuzzChildMessage) => new Promise<void>((resolve) => process.send!(m, undefined, {}, () => resolve()));

process.once('message', (init: FuzzChildInit) => {
  runFuzz(fuzzTarget(init.target), { ...init.options, progress: (executions) => void send({ kind: 'progress', executions }) }).then(
    async (stats) => {
      await send({ kind: 'done', stats });
      process.exit(0);
    },
    async (e) => {
      await send({ kind: 'error', error: (e as Error).stack ?? String(e) });
      process.exit(1);
    },
  );
});
