// MNLI validation (matched and mismatched) with LLMCBench's evaluate_mnli.py prompt:
// "premise:{p}\nhypothesis:{h}\nAnswer:"; A. yes = entailment, B. maybe = neutral, C. no = contradiction.
import { loadMnli, type MnliDoc, type MnliSplit } from '../data/glue';
import { ACC, type LetterTask } from './types';

const ANSWERS = ['A. yes', 'B. maybe', 'C. no'];

function example(doc: MnliDoc, includeAnswer: boolean): string {
  let s = `premise:${doc.premise}\nhypothesis:${doc.hypothesis}\nAnswer:`;
  if (includeAnswer) s += ` ${ANSWERS[doc.label]}\n\n`;
  return s;
}

function mnliTask(name: string, split: MnliSplit) {
  return {
    name,
    track: 1,
    version: '1',
    description: `MNLI validation ${split}, LLMCBench letter prompt (A. yes / B. maybe / C. no)`,
    outputType: 'letter',
    metrics: [ACC],
    defaultBos: false, // LLMCBench: add_bos_token=False
    // LLMCBench's evaluate_mnli.py scores dev_mismatched (its 'MNLI' column); both splits are tasks here.
    notes: [`MNLI validation ${split} (LLMCBench's script scores mismatched)`],
    dataFiles: [`mnli/dev_${split}.tsv`, `mnli/multinli_1.0_dev_${split}.jsonl`, `mnli/multinli_1.0_dev_${split}.txt`], // candidates (lib/data/glue.ts)
    load: (data) => loadMnli(data, split),
    docToText: (doc, shots) =>
      "Please identify whether the premise entails the hypothesis. The answer should be exactly 'A. yes', 'B. maybe' or 'C. no'\n\n" +
      shots.map((s) => example(s, true)).join('') +
      example(doc, false),
    letters: () => ['A', 'B', 'C'],
    docToTarget: (doc) => doc.label,
    fewshot: { kind: 'head', key: () => '' },
  } satisfies LetterTask<MnliDoc>;
}

export const mnli = mnliTask('mnli', 'matched');
export const mnliMismatched = mnliTask('mnli_mm', 'mismatched');
