// HellaSwag validation. Local: the 6-lines-per-item text dump (context line "activity: context",
// gold index, 4 endings) with lm-eval's preprocessing already applied by its maker. Hub:
// Rowan/hellaswag, formatted here exactly as lm-eval does (activity + ": " + ctx_a + " " +
// capitalized ctx_b, then its preprocess()).
import { type DataOptions, type LoadResult, DatasetError, findLocal, localThenHub, readLines, strList } from './common';

export interface HellaSwagDoc {
  /** The context, already formatted. */
  query: string;
  endings: string[];
  answer: number;
}

export function readHellaSwagText(file: string): { docs: HellaSwagDoc[]; notes: string[] } {
  const lines = readLines(file);
  if (lines.length % 6 !== 0) throw new DatasetError(file, lines.length, `${lines.length} lines is not a multiple of 6 (context, label, 4 endings per item)`);
  const docs: HellaSwagDoc[] = [];
  for (let i = 0; i < lines.length; i += 6) {
    const label = lines[i + 1].trim();
    if (!/^[0-3]$/.test(label)) throw new DatasetError(file, i + 2, `gold label ${JSON.stringify(lines[i + 1])} is not 0-3`);
    if (lines[i].trim() === '') throw new DatasetError(file, i + 1, 'empty context line');
    docs.push({ query: lines[i], endings: lines.slice(i + 2, i + 6), answer: Number(label) });
  }
  return {
    docs,
    // Facts about this dump a reader comparing with lm-eval needs.
    notes: ['local text dump: ctx_b not capitalized as lm-eval does'],
  };
}

/** lm-eval's hellaswag preprocess(): strip, " [title]" → ". ", drop [bracketed] tags, collapse double spaces. */
export function hellaswagPreprocess(text: string): string {
  // Python's str.replace replaces every occurrence, non-overlapping, in one pass (so 3 spaces → 2).
  return text.trim().split(' [title]').join('. ').replace(/\[.*?\]/g, '').split('  ').join(' ');
}

export function loadHellaSwag(opts: DataOptions): Promise<LoadResult<HellaSwagDoc>> {
  const rel = 'hellaswag/hellaswag_val_full.txt';
  return localThenHub<HellaSwagDoc>(
    'hellaswag',
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readHellaSwagText },
    {
      spec: { repo: 'Rowan/hellaswag', config: 'default', split: 'validation' },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => {
          const { activity_label: act, ctx_a: a, ctx_b: b } = r as Record<string, string>;
          if (typeof act !== 'string' || typeof a !== 'string' || typeof b !== 'string') throw new DatasetError(source, null, `row ${k}: missing ctx fields`);
          const ctx = `${a} ${b.charAt(0).toUpperCase()}${b.slice(1).toLowerCase()}`;
          const answer = Number(r.label);
          if (!(answer >= 0 && answer <= 3)) throw new DatasetError(source, null, `row ${k}: label ${String(r.label)} is not 0-3`);
          return {
            query: hellaswagPreprocess(`${act}: ${ctx}`),
            endings: strList(r.endings, 'endings', source, k).map(hellaswagPreprocess),
            answer,
          };
        }),
      }),
    },
  );
}
