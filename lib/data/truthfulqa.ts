// TruthfulQA. Local: the original TruthfulQA.csv (Type, Category, Question, Best Answer, Correct
// Answers, Incorrect Answers, Source), answers split and closed as TruthfulQA's own utilities do.
// Hub: truthfulqa/truthful_qa 'multiple_choice' (mc1_targets / mc2_targets).
import { parseCsvRecords } from '../csv';
import { type DataOptions, type LoadResult, DatasetError, findLocal, localThenHub, readText, requireColumns, strList } from './common';

export interface TruthfulQADoc {
  question: string;
  /** MC1: choices[0] is the one true answer, the rest are false. */
  mc1: string[];
  /** MC2: true and false reference answers. */
  mc2True: string[];
  mc2False: string[];
}

/** TruthfulQA's format_best(): strip and close with a period. */
export function closeAnswer(a: string): string {
  const s = a.trim();
  return s.endsWith('.') ? s : `${s}.`;
}

/** TruthfulQA's split_multi_answer(): split on ';', strip, drop empties, close each with a period. */
export function splitAnswers(s: string): string[] {
  return s
    .trim()
    .split(';')
    .map((a) => a.trim())
    .filter((a) => a.length > 0)
    .map(closeAnswer);
}

export function readTruthfulQACsv(file: string): { docs: TruthfulQADoc[]; notes: string[] } {
  const text = readText(file);
  const recs = parseCsvRecords(text, file);
  if (recs.length) requireColumns(file, Object.keys(recs[0]), ['Question', 'Best Answer', 'Correct Answers', 'Incorrect Answers']);
  let skipped = 0;
  const docs: TruthfulQADoc[] = [];
  recs.forEach((r, k) => {
    const line = k + 2;
    if (r['Incorrect Answers'].trim() === '') {
      skipped++; // TruthfulQA's run_probs skips items without references
      return;
    }
    if (r['Best Answer'].trim() === '') throw new DatasetError(file, line, 'empty Best Answer');
    const best = closeAnswer(r['Best Answer']);
    const mc2True = splitAnswers(r['Correct Answers']);
    const mc2False = splitAnswers(r['Incorrect Answers']);
    // MC1 compares the best answer with the false ones; it must also be among the true ones.
    if (!mc2True.includes(best)) throw new DatasetError(file, line, `Best Answer ${JSON.stringify(best)} is not among the Correct Answers`);
    docs.push({ question: r.Question, mc1: [best, ...mc2False], mc2True, mc2False });
  });
  return { docs, notes: skipped ? [`${skipped} items without incorrect answers skipped`] : [] };
}

export function loadTruthfulQA(opts: DataOptions): Promise<LoadResult<TruthfulQADoc>> {
  const rel = 'truthfulqa/TruthfulQA.csv';
  return localThenHub<TruthfulQADoc>(
    'truthfulqa',
    opts,
    { file: findLocal(opts, rel), expected: rel, read: readTruthfulQACsv },
    {
      spec: { repo: 'truthfulqa/truthful_qa', config: 'multiple_choice', split: 'validation' },
      convert: (rows, source) => ({
        docs: rows.map((r, k) => {
          const mc1 = r.mc1_targets as Record<string, unknown>;
          const mc2 = r.mc2_targets as Record<string, unknown>;
          const c1 = strList(mc1?.choices, 'mc1_targets.choices', source, k);
          const l1 = (mc1?.labels as unknown[]) ?? [];
          const c2 = strList(mc2?.choices, 'mc2_targets.choices', source, k);
          const l2 = ((mc2?.labels as unknown[]) ?? []).map(Number);
          if (Number(l1[0]) !== 1 || l1.slice(1).some((x) => Number(x) !== 0) || l2.length !== c2.length) {
            throw new DatasetError(source, null, `row ${k}: unexpected mc1/mc2 label layout`);
          }
          return { question: String(r.question), mc1: c1, mc2True: c2.filter((_, j) => l2[j] === 1), mc2False: c2.filter((_, j) => l2[j] === 0) };
        }),
      }),
    },
  );
}
