// ARC-Challenge / ARC-Easy as lm-eval's arc tasks: "Question: {q}\nAnswer:" and each choice's text
// as continuation after a space; acc and acc_norm.
import { loadArc, type ArcDoc, type ArcSubset } from '../data/arc';
import { ACC, ACC_NORM, mcAccuracy, type MultipleChoiceTask } from './types';

function arcTask(name: string, subset: ArcSubset) {
  return {
    name,
    track: 1,
    version: '1',
    description: `${subset} test, lm-eval multiple choice`,
    outputType: 'multiple_choice',
    metrics: [ACC, ACC_NORM],
    defaultBos: true, // lm-eval prepends BOS for LLaMA
    dataFiles: [`arc/${subset}-Test.jsonl`],
    load: (data) => loadArc(data, subset, 'Test'),
    docToText: (doc) => `Question: ${doc.question}\nAnswer:`,
    docToChoice: (doc) => doc.choices,
    targetDelimiter: ' ',
    docToTarget: (doc) => doc.answer,
    processResults: (doc, lls, choices) => mcAccuracy(lls, choices, doc.answer),
  } satisfies MultipleChoiceTask<ArcDoc>;
}

export const arcChallenge = arcTask('arc_challenge', 'ARC-Challenge');
export const arcEasy = arcTask('arc_easy', 'ARC-Easy');
