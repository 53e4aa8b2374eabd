// PIQA validation: valid.jsonl (goal, sol1, sol2) + valid-labels.lst (one 0/1 per line, same order).
import fs from 'node:fs';
import path from 'node:path';
import { type DataOptions, type LoadResult, DatasetError, findLocal, int, localThenHub, readJsonl, readLines, str } from './common';

export interface PiqaDoc {
  goal: string;
  choices: [string, string];
  answer: number;
}

export function readPiqa(file: string): { docs: PiqaDoc[] } {
  const labelsFile = path.join(path.dirname(file), 'valid-labels.lst');
  if (!fs.existsSync(labelsFile)) throw new DatasetError(labelsFile, null, `missing label file for ${file}`);
  const items = readJsonl(file);
  const labels = readLines(labelsFile);
  if (labels.length !== items.length) {
    throw new DatasetError(labelsFile, Math.min(labels.length, items.length) + 1, `${labels.length} labels for ${items.length} items in ${path.basename(file)}`);
  }
  const docs = items.map(({ line, value }, k) => {
    if (!/^[01]$/.test(labels[k].trim())) throw new DatasetError(labelsFile, k + 1, `label ${JSON.stringify(labels[k])} is not 0 or 1`);
    return {
      goal: str(value, 'goal', file, line),
      choices: [str(value, 'sol1', file, line), str(value, 'sol2', file, line)] as [string, string],
      answer: Number(labels[k].trim()),
    };
  });
  return { docs };
}

export function loadPiqa(opts: DataOptions): Promise<LoadResult<PiqaDoc>> {
  const rel = 'piqa/valid.jsonl';
  return localThenHub<PiqaDoc>(
    'piqa',
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readPiqa },
    {
      spec: { repo: 'baber/piqa', config: 'default', split: 'validation' },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => ({
          goal: str(r, 'goal', source, null),
          choices: [str(r, 'sol1', source, null), str(r, 'sol2', source, null)] as [string, string],
          answer: int(r, 'label', 0, 1, `${source} row ${k}`, null),
        })),
      }),
    },
  );
}
