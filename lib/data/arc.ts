// ARC-Challenge / ARC-Easy (AI2): jsonl with question.stem, question.choices[].{text,label} and
// answerKey (labels are A-E or 1-5); hub copy allenai/ai2_arc.
import { type DataOptions, type LoadResult, DatasetError, findLocal, localThenHub, readJsonl, str, strList } from './common';

export interface ArcDoc {
  id: string;
  question: string;
  choices: string[];
  /** Gold index into choices. */
  answer: number;
}

export type ArcSubset = 'ARC-Challenge' | 'ARC-Easy';
export type ArcSplit = 'Test' | 'Dev' | 'Train';

export function readArcJsonl(file: string): { docs: ArcDoc[] } {
  const docs = readJsonl(file).map(({ line, value }) => {
    const q = value.question;
    if (typeof q !== 'object' || q === null) throw new DatasetError(file, line, "field 'question' must be an object");
    const qr = q as Record<string, unknown>;
    const stem = str(qr, 'stem', file, line);
    if (!Array.isArray(qr.choices) || qr.choices.length < 2) throw new DatasetError(file, line, "field 'question.choices' must be a list of 2+ choices");
    const choices = qr.choices.map((c) => {
      if (typeof c !== 'object' || c === null) throw new DatasetError(file, line, 'a choice must be an object');
      const cr = c as Record<string, unknown>;
      return { text: str(cr, 'text', file, line), label: str(cr, 'label', file, line) };
    });
    const key = str(value, 'answerKey', file, line);
    const answer = choices.findIndex((c) => c.label === key);
    if (answer < 0) throw new DatasetError(file, line, `answerKey '${key}' is not a choice label (${choices.map((c) => c.label).join(',')})`);
    return { id: String(value.id ?? line), question: stem, choices: choices.map((c) => c.text), answer };
  });
  return { docs };
}

export function loadArc(opts: DataOptions, subset: ArcSubset, split: ArcSplit = 'Test'): Promise<LoadResult<ArcDoc>> {
  const rel = `arc/${subset}-${split}.jsonl`;
  const hubSplit = { Test: 'test', Dev: 'validation', Train: 'train' }[split];
  return localThenHub<ArcDoc>(
    subset,
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readArcJsonl },
    {
      spec: { repo: 'allenai/ai2_arc', config: subset, split: hubSplit },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => {
          const ch = r.choices as Record<string, unknown> | undefined;
          const text = strList(ch?.text, 'choices.text', source, k);
          const label = strList(ch?.label, 'choices.label', source, k);
          const answer = label.indexOf(String(r.answerKey));
          if (answer < 0 || typeof r.question !== 'string') throw new DatasetError(source, null, `row ${k}: bad question or answerKey`);
          return { id: String(r.id), question: r.question, choices: text, answer };
        }),
      }),
    },
  );
}
