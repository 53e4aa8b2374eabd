// WinoGrande dev (winogrande_xl validation, 1,267 items): jsonl (sentence with one "_", option1,
// option2, answer "1"/"2") from the original release, or allenai/winogrande on the hub.
import { type DataOptions, type LoadResult, DatasetError, findLocal, localThenHub, readJsonl, str } from './common';

export interface WinograndeDoc {
  sentence: string;
  options: [string, string];
  /** Gold index 0 or 1. */
  answer: number;
}

function toDoc(r: Record<string, unknown>, file: string, line: number | null): WinograndeDoc {
  const sentence = str(r, 'sentence', file, line);
  if (sentence.split('_').length !== 2) throw new DatasetError(file, line, "sentence must contain exactly one '_' blank");
  const a = String(r.answer ?? '').trim();
  if (a !== '1' && a !== '2') throw new DatasetError(file, line, `answer ${JSON.stringify(r.answer)} is not "1" or "2"`);
  return { sentence, options: [str(r, 'option1', file, line), str(r, 'option2', file, line)], answer: Number(a) - 1 };
}

export function readWinogrande(file: string): { docs: WinograndeDoc[] } {
  return { docs: readJsonl(file).map(({ line, value }) => toDoc(value, file, line)) };
}

export function loadWinogrande(opts: DataOptions): Promise<LoadResult<WinograndeDoc>> {
  const candidates = ['winogrande/dev.jsonl', 'winogrande/winogrande_1.1/dev.jsonl'];
  return localThenHub<WinograndeDoc>(
    'winogrande',
    opts,
    { file: findLocal(opts, ...candidates), expected: candidates.join(' or '), read: readWinogrande },
    {
      spec: { repo: 'allenai/winogrande', config: 'winogrande_xl', split: 'validation' },
      convert: (rows, source) => ({ docs: rows.map((r, k) => toDoc(r, `${source} row ${k}`, null)) }),
    },
  );
}
