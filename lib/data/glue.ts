// QNLI (GLUE dev tsv: index, question, sentence, label) and MNLI validation matched/mismatched
// (GLUE dev_matched.tsv / MultiNLI's multinli_1.0_dev_*.jsonl / nyu-mll/glue on the hub).
import { type DataOptions, type LoadResult, DatasetError, findLocal, int, localThenHub, readJsonl, readTsv, requireColumns, str } from './common';

export interface QnliDoc {
  question: string;
  sentence: string;
  /** 0 = entailment, 1 = not_entailment (GLUE's order). */
  label: number;
}

export interface MnliDoc {
  premise: string;
  hypothesis: string;
  /** 0 = entailment, 1 = neutral, 2 = contradiction (GLUE's order). */
  label: number;
}

const QNLI_LABELS = ['entailment', 'not_entailment'];
export const MNLI_LABELS = ['entailment', 'neutral', 'contradiction'];

export function readQnliTsv(file: string): { docs: QnliDoc[] } {
  const rows = readTsv(file);
  if (rows.length) requireColumns(file, Object.keys(rows[0].rec), ['question', 'sentence', 'label']);
  return {
    docs: rows.map(({ line, rec }) => {
      const label = QNLI_LABELS.indexOf(rec.label);
      if (label < 0) throw new DatasetError(file, line, `label ${JSON.stringify(rec.label)} is not entailment / not_entailment`);
      return { question: rec.question, sentence: rec.sentence, label };
    }),
  };
}

export function loadQnli(opts: DataOptions): Promise<LoadResult<QnliDoc>> {
  const rel = 'qnli/dev.tsv';
  return localThenHub<QnliDoc>(
    'qnli',
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readQnliTsv },
    {
      spec: { repo: 'nyu-mll/glue', config: 'qnli', split: 'validation' },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => ({
          question: str(r, 'question', `${source} row ${k}`, null),
          sentence: str(r, 'sentence', `${source} row ${k}`, null),
          label: int(r, 'label', 0, 1, `${source} row ${k}`, null),
        })),
      }),
    },
  );
}

/**
 * MNLI dev: GLUE tsv (sentence1, sentence2, gold_label) or MultiNLI jsonl (sentence1, sentence2,
 * gold_label). Items whose gold_label is "-" (no annotator majority) are dropped and counted.
 */
export function readMnli(file: string): { docs: MnliDoc[]; notes: string[] } {
  let dropped = 0;
  const toDoc = (s1: string, s2: string, gold: string, line: number): MnliDoc | null => {
    if (gold === '-') {
      dropped++;
      return null;
    }
    const label = MNLI_LABELS.indexOf(gold);
    if (label < 0) throw new DatasetError(file, line, `gold_label ${JSON.stringify(gold)} is not entailment / neutral / contradiction`);
    return { premise: s1, hypothesis: s2, label };
  };
  let docs: (MnliDoc | null)[];
  if (file.endsWith('.jsonl')) {
    docs = readJsonl(file).map(({ line, value }) =>
      toDoc(str(value, 'sentence1', file, line), str(value, 'sentence2', file, line), str(value, 'gold_label', file, line), line),
    );
  } else {
    const rows = readTsv(file);
    if (rows.length) requireColumns(file, Object.keys(rows[0].rec), ['sentence1', 'sentence2', 'gold_label']);
    docs = rows.map(({ line, rec }) => toDoc(rec.sentence1, rec.sentence2, rec.gold_label, line));
  }
  return { docs: docs.filter((d): d is MnliDoc => d !== null), notes: dropped ? [`${dropped} items without a gold label ('-') dropped`] : [] };
}

export type MnliSplit = 'matched' | 'mismatched';

export function loadMnli(opts: DataOptions, split: MnliSplit): Promise<LoadResult<MnliDoc>> {
  const candidates = [`mnli/dev_${split}.tsv`, `mnli/multinli_1.0_dev_${split}.jsonl`, `mnli/multinli_1.0_dev_${split}.txt`];
  return localThenHub<MnliDoc>(
    `mnli (${split})`,
    opts,
    { file: findLocal(opts, ...candidates), expected: candidates.join(' or '), read: readMnli },
    {
      spec: { repo: 'nyu-mll/glue', config: 'mnli', split: `validation_${split}` },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => ({
          premise: str(r, 'premise', `${source} row ${k}`, null),
          hypothesis: str(r, 'hypothesis', `${source} row ${k}`, null),
          label: int(r, 'label', 0, 2, `${source} row ${k}`, null),
        })),
      }),
    },
  );
}
