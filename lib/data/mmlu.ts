// MMLU (Hendrycks et al.): per-subject CSVs without header (question, A, B, C, D, answer letter),
// dev (5 per subject, the few-shot pool) and test; the hub copy is cais/mmlu 'all'.
import fs from 'node:fs';
import path from 'node:path';
import { parseCsv } from '../csv';
import { type DataOptions, type LoadResult, DatasetError, loadHubRows, readText, strList } from './common';

export interface MmluDoc {
  subject: string;
  question: string;
  choices: [string, string, string, string];
  /** Gold index 0-3 (A-D). */
  answer: number;
}

export const MMLU_LETTERS = ['A', 'B', 'C', 'D'] as const;

/** One subject file: every row must have 6 fields and an answer A-D. */
export function readMmluCsv(file: string, subject: string): MmluDoc[] {
  const rows = parseCsv(readText(file), file);
  return rows.map((r, k) => {
    if (r.length !== 6) throw new DatasetError(file, k + 1, `${r.length} fields, expected 6 (question, A, B, C, D, answer)`);
    const answer = MMLU_LETTERS.indexOf(r[5].trim() as (typeof MMLU_LETTERS)[number]);
    if (answer < 0) throw new DatasetError(file, k + 1, `answer ${JSON.stringify(r[5])} is not one of A, B, C, D`);
    return { subject, question: r[0], choices: [r[1], r[2], r[3], r[4]], answer };
  });
}

export type MmluSplit = 'test' | 'dev' | 'val';

/** All subjects of a split, subjects in sorted order (as Hendrycks' and LLMCBench's scripts). */
export async function loadMmlu(opts: DataOptions, split: MmluSplit = 'test'): Promise<LoadResult<MmluDoc>> {
  const dir = opts.dataDir ? path.join(opts.dataDir, 'mmlu', split) : null;
  if (dir && fs.existsSync(dir)) {
    const suffix = `_${split}.csv`;
    const files = fs.readdirSync(dir).filter((f) => f.endsWith(suffix)).sort();
    if (files.length === 0) throw new DatasetError(dir, null, `no *${suffix} files`);
    const docs = files.flatMap((f) => readMmluCsv(path.join(dir, f), f.slice(0, -suffix.length)));
    return { status: 'ok', docs, source: `local:${dir}`, notes: [] };
  }
  const tried = [dir ? `local: no ${dir}` : 'local: no data directory given'];
  const h = await loadHubRows({ repo: 'cais/mmlu', config: 'all', split: split === 'val' ? 'validation' : split }, opts);
  if ('rows' in h) {
    const docs = h.rows.map((r, k): MmluDoc => {
      const choices = strList(r.choices, 'choices', h.source, k);
      const answer = Number(r.answer);
      if (choices.length !== 4 || !(answer >= 0 && answer <= 3) || typeof r.question !== 'string' || typeof r.subject !== 'string') {
        throw new DatasetError(h.source, null, `row ${k}: expected question, subject, 4 choices and answer 0-3`);
      }
      return { subject: r.subject, question: r.question, choices: choices as MmluDoc['choices'], answer };
    });
    docs.sort((a, b) => (a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : 0)); // stable: keeps item order
    return { status: 'ok', docs, source: h.source, notes: [] };
  }
  tried.push(h.error);
  return { status: 'no_data', reason: `mmlu: not found (${tried.join('; ')})` };
}

/** Hendrycks' subject → subcategory table, and subcategory → category (MMLU categories.py). */
export const MMLU_SUBCATEGORY: Record<string, string> = {
  abstract_algebra: 'math', anatomy: 'health', astronomy: 'physics', business_ethics: 'business',
  clinical_knowledge: 'health', college_biology: 'biology', college_chemistry: 'chemistry',
  college_computer_science: 'computer science', college_mathematics: 'math', college_medicine: 'health',
  college_physics: 'physics', computer_security: 'computer science', conceptual_physics: 'physics',
  econometrics: 'economics', electrical_engineering: 'engineering', elementary_mathematics: 'math',
  formal_logic: 'philosophy', global_facts: 'other', high_school_biology: 'biology',
  high_school_chemistry: 'chemistry', high_school_computer_science: 'computer science',
  high_school_european_history: 'history', high_school_geography: 'geography',
  high_school_government_and_politics: 'politics', high_school_macroeconomics: 'economics',
  high_school_mathematics: 'math', high_school_microeconomics: 'economics', high_school_physics: 'physics',
  high_school_psychology: 'psychology', high_school_statistics: 'math', high_school_us_history: 'history',
  high_school_world_history: 'history', human_aging: 'health', human_sexuality: 'culture',
  international_law: 'law', jurisprudence: 'law', logical_fallacies: 'philosophy',
  machine_learning: 'computer science', management: 'business', marketing: 'business',
  medical_genetics: 'health', miscellaneous: 'other', moral_disputes: 'philosophy',
  moral_scenarios: 'philosophy', nutrition: 'health', philosophy: 'philosophy', prehistory: 'history',
  professional_accounting: 'other', professional_law: 'law', professional_medicine: 'health',
  professional_psychology: 'psychology', public_relations: 'politics', security_studies: 'politics',
  sociology: 'culture', us_foreign_policy: 'politics', virology: 'health', world_religions: 'philosophy',
};

export const MMLU_CATEGORIES = {
  stem: ['physics', 'chemistry', 'biology', 'computer science', 'math', 'engineering'],
  humanities: ['history', 'philosophy', 'law'],
  social_sciences: ['politics', 'culture', 'economics', 'geography', 'psychology'],
  other: ['other', 'business', 'health'],
} as const satisfies Record<string, readonly string[]>;

/** The category of a subject; unknown subjects are an error (a typo must not vanish from the averages). */
export function mmluCategory(subject: string): keyof typeof MMLU_CATEGORIES {
  const sub = MMLU_SUBCATEGORY[subject];
  if (!sub) throw new Error(`mmlu: unknown subject '${subject}'`);
  for (const [cat, subs] of Object.entries(MMLU_CATEGORIES)) {
    if ((subs as readonly string[]).includes(sub)) return cat as keyof typeof MMLU_CATEGORIES;
  }
  throw new Error(`mmlu: subcategory '${sub}' has no category`);
}
