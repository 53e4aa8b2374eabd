// AdvGLUE dev (Track 6 robustness) with LLMCBench's evaluate_advglue.py prompts, scored on the
// adversarial text (acc) and on the original text (acc_orig), overall and per subtask.
// Defects of the original script, fixed here and flagged in every row:
// - RTE: its prediction map sends "A. yes" to label 1, but label 0 is entailment (inverted labels);
// - sst2/qqp demonstrations: label 0 is written as "A. positive" / "A. yes", the wrong way round
//   (only matters with shots > 0; the paper's run_advglue.sh uses --ntrain 0);
// - original-text mode: the script restores only one field per subtask (e.g. only the premise for
//   mnli); here every original_<field> the item carries is restored.
import { ADVGLUE_FIELDS, loadAdvGlue, type AdvGlueDoc, type AdvGlueSubtask } from '../data/advglue';
import type { LetterTask } from './types';

interface Spec {
  instruction: string;
  /** Field → label in the prompt. */
  labels: Record<string, string>;
  /** Letter answers in order; letterOfLabel maps a dataset label to its letter index. */
  answers: string[];
  letterOfLabel: (label: number) => number;
}

const YES_NO = ['A. yes', 'B. no'];

export const ADVGLUE_SPECS: Record<AdvGlueSubtask, Spec> = {
  sst2: {
    instruction: "For each snippet of text, label the sentiment of the text as positive or negative. The answer should be exactly 'A. positive' or 'B. negative'\n",
    labels: { sentence: 'Sentence' },
    answers: ['A. positive', 'B. negative'],
    letterOfLabel: (l) => (l === 1 ? 0 : 1), // 1 = positive → A
  },
  qqp: {
    instruction: "Please identify whether Question 1 has the same meaning as Question 2. The answer should be exactly 'A. yes' or 'B. no'\n",
    labels: { question1: 'Question 1', question2: 'Question 2' },
    answers: YES_NO,
    letterOfLabel: (l) => (l === 1 ? 0 : 1), // 1 = duplicate → A
  },
  mnli: {
    instruction: "Please identify whether the premise entails the hypothesis. The answer should be exactly 'A. yes', 'B. maybe' or 'C. no'\n",
    labels: { premise: 'Premise', hypothesis: 'Hypothesis' },
    answers: ['A. yes', 'B. maybe', 'C. no'],
    letterOfLabel: (l) => l, // 0 entailment, 1 neutral, 2 contradiction
  },
  'mnli-mm': {
    instruction: "Please identify whether the premise entails the hypothesis. The answer should be exactly 'A. yes', 'B. maybe' or 'C. no'\n",
    labels: { premise: 'Premise', hypothesis: 'Hypothesis' },
    answers: ['A. yes', 'B. maybe', 'C. no'],
    letterOfLabel: (l) => l,
  },
  qnli: {
    instruction: "Please identify whether the sentence answers the question. The answer should be exactly 'A. yes' or 'B. no'\n",
    labels: { question: 'Question', sentence: 'Sentence' },
    answers: YES_NO,
    letterOfLabel: (l) => l, // 0 = entailment → A
  },
  rte: {
    instruction: "Please identify whether the sentence1 entails the sentence2. The answer should be exactly 'A. yes' or 'B. no'\n",
    labels: { sentence1: 'Sentence 1', sentence2: 'Sentence 2' },
    answers: YES_NO,
    letterOfLabel: (l) => l, // 0 = entailment → A (LLMCBench inverted this)
  },
};

/** One prompt as LLMCBench's gen_prompt: instruction, "Label: text" lines, "\nAnswer: ". */
export function advglueQuestion(doc: AdvGlueDoc, variant: 'adv' | 'orig'): string {
  const spec = ADVGLUE_SPECS[doc.subtask];
  const text = variant === 'orig' ? doc.orig : doc.adv;
  return spec.instruction + ADVGLUE_FIELDS[doc.subtask].map((f) => `${spec.labels[f]}: ${text[f]}`).join('\n') + '\nAnswer: ';
}

export const advglue = {
  name: 'advglue',
  track: 6,
  version: '1',
  description: 'AdvGLUE dev (sst2, qqp, mnli, mnli-mm, qnli, rte), LLMCBench letter prompts, adversarial and original text',
  outputType: 'letter',
  metrics: [
    { name: 'acc', higherIsBetter: true },
    { name: 'acc_orig', higherIsBetter: true },
  ],
  defaultBos: false, // LLMCBench: add_bos_token=False
  notes: ['RTE labels mapped correctly (LLMCBench inverts them)', 'original text restores every perturbed field'],
  dataFiles: ['advglue/dev_ann.json', 'adv_glue/dev_ann.json'], // either name (lib/data/advglue.ts)
  load: (data) => loadAdvGlue(data),
  groups: (doc) => [`advglue/${doc.subtask}`],
  variants: ['adv', 'orig'],
  variantMetric: (v) => (v === 'orig' ? 'acc_orig' : 'acc'),
  // Demonstrations as the script (its own question + " " + answer + "\n\n", so "Answer:  A. yes"), labels corrected.
  docToText: (doc, shots, variant) =>
    shots
      .map((s) => `${advglueQuestion(s, variant as 'adv' | 'orig')} ${ADVGLUE_SPECS[s.subtask].answers[ADVGLUE_SPECS[s.subtask].letterOfLabel(s.label)]}\n\n`)
      .join('') + advglueQuestion(doc, variant as 'adv' | 'orig'),
  letters: (doc) => ADVGLUE_SPECS[doc.subtask].answers.map((a) => a[0]),
  docToTarget: (doc) => ADVGLUE_SPECS[doc.subtask].letterOfLabel(doc.label),
  fewshot: { kind: 'head', key: (doc) => (doc as AdvGlueDoc).subtask },
} satisfies LetterTask<AdvGlueDoc>;
