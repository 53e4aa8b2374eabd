// MMLU as LLMCBench's evaluate_mmlu.py (Hendrycks' prompt): "The following are multiple choice
// questions (with answers) about {subject}.\n\n", k dev demonstrations, the question with
// "\nA. ..." lines and "\nAnswer:"; prediction = argmax over the next-token logits of A/B/C/D.
// Accuracy overall (micro-averaged over questions), per category and per subject.
import { loadMmlu, MMLU_LETTERS, mmluCategory, type MmluDoc } from '../data/mmlu';
import { ACC, type LetterTask } from './types';

/** Hendrycks' format_subject: every word gets a leading space (hence "about  abstract algebra."). */
export function formatSubject(subject: string): string {
  return subject
    .split('_')
    .map((w) => ` ${w}`)
    .join('');
}

export function formatMmluExample(doc: MmluDoc, includeAnswer: boolean): string {
  let s = doc.question;
  doc.choices.forEach((c, j) => (s += `\n${MMLU_LETTERS[j]}. ${c}`));
  s += '\nAnswer:';
  if (includeAnswer) s += ` ${MMLU_LETTERS[doc.answer]}\n\n`;
  return s;
}

export const mmlu = {
  name: 'mmlu',
  track: 1,
  version: '1',
  description: 'MMLU test (57 subjects), 0-shot letter scoring (LLMCBench/Hendrycks prompt)',
  outputType: 'letter',
  metrics: [ACC],
  defaultBos: false, // LLMCBench: add_bos_token=False
  dataFiles: ['mmlu/test'], // 0-shot: the dev pool is read only with shots > 0, which the matrix never sets
  load: (data) => loadMmlu(data, 'test'),
  groups: (doc) => [`mmlu/${mmluCategory(doc.subject)}`, `mmlu/${doc.subject}`],
  docToText: (doc, shots) =>
    `The following are multiple choice questions (with answers) about ${formatSubject(doc.subject)}.\n\n` +
    shots.map((s) => formatMmluExample(s, true)).join('') +
    formatMmluExample(doc, false),
  letters: () => MMLU_LETTERS,
  docToTarget: (doc) => doc.answer,
  fewshot: {
    kind: 'pool',
    load: (data) => loadMmlu(data, 'dev'),
    key: (doc) => (doc as MmluDoc).subject,
  },
} satisfies LetterTask<MmluDoc>;
