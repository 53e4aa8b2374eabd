// WikiText-2 (raw): the test (or valid) split as one text, rows joined with "\n\n" (the GPTQ /
// LLMCBench perplexity protocol; shared/reference/README.md defines the rows of the raw file).
import { type DataOptions, type LoadResult, DatasetError, findLocal, localThenHub, readLines } from './common';

export interface WikiTextDoc {
  /** The split's rows joined with "\n\n", tokenized once by the task. */
  text: string;
  rows: number;
}

export type WikiTextSplit = 'test' | 'valid';

/** The raw file's lines (no empty string after the final newline) joined with "\n\n". */
export function readWikiTextRaw(file: string): { docs: WikiTextDoc[] } {
  const rows = readLines(file);
  if (rows.length === 0) throw new DatasetError(file, null, 'empty WikiText file');
  return { docs: [{ text: rows.join('\n\n'), rows: rows.length }] };
}

export function loadWikiText2(opts: DataOptions, split: WikiTextSplit = 'test'): Promise<LoadResult<WikiTextDoc>> {
  const rel = `wikitext-2-raw/wiki.${split}.raw`;
  return localThenHub<WikiTextDoc>(
    'wikitext2',
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readWikiTextRaw },
    {
      spec: { repo: 'Salesforce/wikitext', config: 'wikitext-2-raw-v1', split: split === 'valid' ? 'validation' : 'test' },
      convert: (rows, source) => {
        const texts = rows.map((r, k) => {
          if (typeof r.text !== 'string') throw new DatasetError(source, null, `row ${k}: 'text' must be a string`);
          return r.text;
        });
        return {
          docs: [{ text: texts.join('\n\n'), rows: texts.length }],
          // The hub's rows keep their "\n" and its blank rows differ from the raw file's: token counts differ.
          notes: ['hub rows joined with "\\n\\n" (GPTQ convention), not the raw file lines'],
        };
      },
    },
  );
}
