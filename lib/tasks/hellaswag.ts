// HellaSwag validation as lm-eval's hellaswag: the formatted context, each ending as continuation
// after a space; acc and acc_norm.
import { loadHellaSwag, type HellaSwagDoc } from '../data/hellaswag';
import { ACC, ACC_NORM, mcAccuracy, type MultipleChoiceTask } from './types';

export const hellaswag = {
  name: 'hellaswag',
  track: 1,
  version: '1',
  description: 'HellaSwag validation, lm-eval multiple choice',
  outputType: 'multiple_choice',
  metrics: [ACC, ACC_NORM],
  defaultBos: true, // lm-eval prepends BOS for LLaMA
  dataFiles: ['hellaswag/hellaswag_val_full.txt'],
  load: (data) => loadHellaSwag(data),
  docToText: (doc) => doc.query,
  docToChoice: (doc) => doc.endings,
  targetDelimiter: ' ',
  docToTarget: (doc) => doc.answer,
  processResults: (doc, lls, choices) => mcAccuracy(lls, choices, doc.answer),
} satisfies MultipleChoiceTask<HellaSwagDoc>;
