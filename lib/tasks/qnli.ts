// QNLI dev with LLMCBench's evaluate_qnli.py prompt: instruction, "Question:{q}\nSentence:{s}\nAnswer:";
// A = entailment ("A. yes"), B = not_entailment ("B. no").
import { loadQnli, type QnliDoc } from '../data/glue';
import { ACC, type LetterTask } from './types';

function example(doc: QnliDoc, includeAnswer: boolean): string {
  let s = `Question:${doc.question}\nSentence:${doc.sentence}\nAnswer:`;
  if (includeAnswer) s += ` ${doc.label === 0 ? 'A. yes' : 'B. no'}\n\n`;
  return s;
}

export const qnli = {
  name: 'qnli',
  track: 1,
  version: '1',
  description: 'QNLI dev, LLMCBench letter prompt (A. yes / B. no)',
  outputType: 'letter',
  metrics: [ACC],
  defaultBos: false, // LLMCBench: add_bos_token=False
  dataFiles: ['qnli/dev.tsv'],
  load: (data) => loadQnli(data),
  docToText: (doc, shots) =>
    "Please identify whether the sentence answers the question. The answer should be exactly 'A. yes' or 'B. no'.\n\n" +
    shots.map((s) => example(s, true)).join('') +
    example(doc, false),
  letters: () => ['A', 'B'],
  docToTarget: (doc) => doc.label, // 0 entailment → A
  // LLMCBench draws QNLI shots from an unlabeled test.tsv; here the first k dev items, excluded from scoring.
  fewshot: { kind: 'head', key: () => '' },
} satisfies LetterTask<QnliDoc>;
