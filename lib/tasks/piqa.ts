// PIQA validation as lm-eval's piqa: "Question: {goal}\nAnswer:", the two solutions as
// continuations; acc and acc_norm.
import { loadPiqa, type PiqaDoc } from '../data/piqa';
import { ACC, ACC_NORM, mcAccuracy, type MultipleChoiceTask } from './types';

export const piqa = {
  name: 'piqa',
  track: 1,
  version: '1',
  description: 'PIQA validation, lm-eval multiple choice',
  outputType: 'multiple_choice',
  metrics: [ACC, ACC_NORM],
  defaultBos: true, // lm-eval prepends BOS for LLaMA
  dataFiles: ['piqa/valid.jsonl', 'piqa/valid-labels.lst'],
  load: (data) => loadPiqa(data),
  docToText: (doc) => `Question: ${doc.goal}\nAnswer:`,
  docToChoice: (doc) => doc.choices,
  targetDelimiter: ' ',
  docToTarget: (doc) => doc.answer,
  processResults: (doc, lls, choices) => mcAccuracy(lls, choices, doc.answer),
} satisfies MultipleChoiceTask<PiqaDoc>;
