// WinoGrande dev as lm-eval's winogrande (partial scoring): one context per option (the sentence up
// to the blank with the option filled in), one shared continuation (the rest of the sentence);
// the option whose context makes the continuation likelier wins. acc only: acc_norm would divide
// both scores by the same length.
import { loadWinogrande, type WinograndeDoc } from '../data/winogrande';
import { ACC, type MultipleChoiceTask } from './types';

export function winograndeContexts(doc: WinograndeDoc): string[] {
  const i = doc.sentence.indexOf('_');
  return doc.options.map((o) => doc.sentence.slice(0, i) + o);
}

export function winograndeContinuation(doc: WinograndeDoc): string {
  return doc.sentence.slice(doc.sentence.indexOf('_') + 1).trim();
}

export const winogrande = {
  name: 'winogrande',
  track: 1,
  version: '1',
  description: 'WinoGrande dev (winogrande_xl validation), lm-eval partial scoring',
  outputType: 'multiple_choice',
  metrics: [ACC],
  defaultBos: true, // lm-eval prepends BOS for LLaMA
  dataFiles: ['winogrande/dev.jsonl', 'winogrande/winogrande_1.1/dev.jsonl'], // candidates (lib/data/winogrande.ts)
  load: (data) => loadWinogrande(data),
  docToText: winograndeContexts,
  docToChoice: (doc) => [winograndeContinuation(doc)],
  targetDelimiter: ' ',
  docToTarget: (doc) => doc.answer,
  processResults: (doc, lls) => ({ acc: (lls[1] > lls[0] ? 1 : 0) === doc.answer ? 1 : 0 }),
} satisfies MultipleChoiceTask<WinograndeDoc>;
