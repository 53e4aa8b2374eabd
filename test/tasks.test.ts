// Scoring rules and prompts of the declarative tasks, on hand-made items and hand-made
// log-likelihoods (no model).
import { describe, expect, it } from 'vitest';
import type { AdvGlueDoc } from '../lib/data/advglue';
import type { MmluDoc } from '../lib/data/mmlu';
import { mmluCategory } from '../lib/data/mmlu';
import type { TruthfulQADoc } from '../lib/data/truthfulqa';
import { ADVGLUE_SPECS, advglue as advglueTask, advglueQuestion } from '../lib/tasks/advglue';
import { arcChallenge } from '../lib/tasks/arc';
import { getTasks, TASKS } from '../lib/tasks';
import { formatSubject, mmlu as mmluTask } from '../lib/tasks/mmlu';
import { mnli as mnliTask } from '../lib/tasks/mnli';
import { qnli as qnliTask } from '../lib/tasks/qnli';
import { truthfulqa, truthfulqaChoices, truthfulqaScores } from '../lib/tasks/truthfulqa';
import { type LetterTask, mcAccuracy, type MultipleChoiceTask } from '../lib/tasks/types';
import type { MnliDoc, QnliDoc } from '../lib/data/glue';
import type { WinograndeDoc } from '../lib/data/winogrande';

// The general task types (the registry's objects keep their narrower literal types).
const mmlu: LetterTask<MmluDoc> & { groups(doc: MmluDoc): string[] } = mmluTask;
const mnli: LetterTask<MnliDoc> = mnliTask;
const qnli: LetterTask<QnliDoc> = qnliTask;
const winogrande: MultipleChoiceTask<WinograndeDoc> = winograndeTask;
const advglue: LetterTask<AdvGlueDoc> & { notes: readonly string[]; variantMetric(v: string): string } = advglueTask;
import { winogrande as winograndeTask, winograndeContexts, winograndeContinuation } from '../lib/tasks/winogrande';

describe('lm-eval multiple choice: acc vs acc_norm', () => {
  it('acc takes the largest sum, acc_norm the largest per character', () => {
    // choice 0: -6 over 3 chars = -2/char; choice 1: -8 over 16 chars = -0.5/char
    const choices = ['abc', 'abcdefghijklmnop'];
    expect(mcAccuracy([-6, -8], choices, 0)).toEqual({ acc: 1, acc_norm: 0 });
    expect(mcAccuracy([-6, -8], choices, 1)).toEqual({ acc: 0, acc_norm: 1 });
  });
  it('ties go to the first choice (numpy argmax)', () => {
    expect(mcAccuracy([-1, -1], ['a', 'b'], 0)).toEqual({ acc: 1, acc_norm: 1 });
    expect(mcAccuracy([-1, -1], ['a', 'b'], 1)).toEqual({ acc: 0, acc_norm: 0 });
  });
  it('rejects a length mismatch', () => {
    expect(() => mcAccuracy([-1], ['a', 'b'], 0)).toThrow(/1 log-likelihoods for 2 choices/);
  });
  it('ARC prompt and continuations', () => {
    const doc = { id: 'x', question: 'Why?', choices: ['Because.', 'No.'], answer: 1 };
    expect(arcChallenge.docToText(doc)).toBe('Question: Why?\nAnswer:');
    expect(arcChallenge.docToChoice(doc)).toEqual(['Because.', 'No.']);
    expect(arcChallenge.targetDelimiter).toBe(' ');
  });
});

describe('WinoGrande partial scoring', () => {
  const doc = { sentence: 'The trophy does not fit in the suitcase because _ is too big.', options: ['trophy', 'suitcase'] as [string, string], answer: 0 };
  it('one context per option, one shared continuation', () => {
    expect(winograndeContexts(doc)).toEqual(['The trophy does not fit in the suitcase because trophy', 'The trophy does not fit in the suitcase because suitcase']);
    expect(winograndeContinuation(doc)).toBe('is too big.');
  });
  it('picks the context under which the continuation is likelier', () => {
    expect(winogrande.processResults(doc, [-3, -5], ['is too big.'])).toEqual({ acc: 1 });
    expect(winogrande.processResults(doc, [-5, -3], ['is too big.'])).toEqual({ acc: 0 });
    expect(winogrande.processResults({ ...doc, answer: 1 }, [-5, -3], ['is too big.'])).toEqual({ acc: 1 });
  });
});

describe('MMLU letter scoring', () => {
  const doc: MmluDoc = { subject: 'abstract_algebra', question: 'What is 1+1?', choices: ['1', '2', '3', '4'], answer: 1 };
  it('builds the Hendrycks/LLMCBench prompt exactly (double space after "about")', () => {
    expect(formatSubject('high_school_us_history')).toBe(' high school us history');
    expect(mmlu.docToText(doc, [], 'default')).toBe(
      'The following are multiple choice questions (with answers) about  abstract algebra.\n\nWhat is 1+1?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer:',
    );
    const shot: MmluDoc = { ...doc, question: 'Q0', answer: 3 };
    expect(mmlu.docToText(doc, [shot], 'default')).toContain('Q0\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: D\n\nWhat is 1+1?');
  });
  it('letters, target and groups (category and subject)', () => {
    expect(mmlu.letters(doc)).toEqual(['A', 'B', 'C', 'D']);
    expect(mmlu.docToTarget(doc)).toBe(1);
    expect(mmlu.groups(doc)).toEqual(['mmlu/stem', 'mmlu/abstract_algebra']);
    expect(mmluCategory('world_religions')).toBe('humanities');
    expect(mmluCategory('nutrition')).toBe('other');
    expect(mmluCategory('sociology')).toBe('social_sciences');
    expect(() => mmluCategory('astrology')).toThrow(/unknown subject 'astrology'/);
  });
});

describe('QNLI / MNLI prompts (LLMCBench)', () => {
  it('QNLI: A = entailment, B = not_entailment', () => {
    const d = { question: 'Q?', sentence: 'S.', label: 1 };
    expect(qnli.docToText(d, [], 'default')).toBe(
      "Please identify whether the sentence answers the question. The answer should be exactly 'A. yes' or 'B. no'.\n\nQuestion:Q?\nSentence:S.\nAnswer:",
    );
    expect(qnli.docToTarget(d)).toBe(1);
    expect(qnli.docToTarget({ ...d, label: 0 })).toBe(0);
  });
  it('MNLI: A yes / B maybe / C no with demonstrations', () => {
    const d = { premise: 'P', hypothesis: 'H', label: 2 };
    expect(mnli.docToText(d, [{ premise: 'p0', hypothesis: 'h0', label: 1 }], 'default')).toBe(
      "Please identify whether the premise entails the hypothesis. The answer should be exactly 'A. yes', 'B. maybe' or 'C. no'\n\n" +
        'premise:p0\nhypothesis:h0\nAnswer: B. maybe\n\npremise:P\nhypothesis:H\nAnswer:',
    );
    expect(mnli.letters(d)).toEqual(['A', 'B', 'C']);
    expect(mnli.docToTarget(d)).toBe(2);
  });
});

describe('AdvGLUE label mapping (RTE fixed)', () => {
  const mk = (subtask: AdvGlueDoc['subtask'], label: number, adv: Record<string, string>, orig = adv): AdvGlueDoc => ({
    subtask, idx: 0, adv, orig, hasOriginal: orig !== adv, label,
  });
  it('RTE: label 0 (entailment) is A. yes, label 1 is B. no (LLMCBench had them inverted)', () => {
    const d0 = mk('rte', 0, { sentence1: 's1', sentence2: 's2' });
    expect(advglue.docToTarget(d0)).toBe(0);
    expect(advglue.docToTarget({ ...d0, label: 1 })).toBe(1);
    expect(advglue.notes).toContain('RTE labels mapped correctly (LLMCBench inverts them)');
  });
  it('sst2 1 = positive → A; qqp 1 = duplicate → A; qnli 0 = entailment → A; mnli identity', () => {
    expect(advglue.docToTarget(mk('sst2', 1, { sentence: 'x' }))).toBe(0);
    expect(advglue.docToTarget(mk('sst2', 0, { sentence: 'x' }))).toBe(1);
    expect(advglue.docToTarget(mk('qqp', 1, { question1: 'a', question2: 'b' }))).toBe(0);
    expect(advglue.docToTarget(mk('qnli', 0, { question: 'a', sentence: 'b' }))).toBe(0);
    expect(advglue.docToTarget(mk('mnli-mm', 2, { premise: 'a', hypothesis: 'b' }))).toBe(2);
    expect(advglue.letters(mk('mnli', 0, { premise: 'a', hypothesis: 'b' }))).toEqual(['A', 'B', 'C']);
  });
  it('prompts: adversarial vs original text, demonstrations with corrected labels', () => {
    const d = mk('qqp', 1, { question1: 'adv q1', question2: 'q2' }, { question1: 'orig q1', question2: 'q2' });
    expect(advglueQuestion(d, 'adv')).toBe(
      "Please identify whether Question 1 has the same meaning as Question 2. The answer should be exactly 'A. yes' or 'B. no'\nQuestion 1: adv q1\nQuestion 2: q2\nAnswer: ",
    );
    expect(advglueQuestion(d, 'orig')).toContain('Question 1: orig q1');
    const shot = mk('qqp', 0, { question1: 's1', question2: 's2' });
    expect(advglue.docToText(d, [shot], 'adv')).toContain('Question 2: s2\nAnswer:  B. no\n\nPlease identify');
    expect(advglue.variantMetric('orig')).toBe('acc_orig');
    expect(Object.keys(ADVGLUE_SPECS)).toEqual(['sst2', 'qqp', 'mnli', 'mnli-mm', 'qnli', 'rte']);
  });
});

describe('TruthfulQA MC1 / MC2 arithmetic', () => {
  const doc: TruthfulQADoc = { question: 'Q?', mc1: ['T1.', 'F1.', 'F2.'], mc2True: ['T1.', 'T2.'], mc2False: ['F1.', 'F2.'] };
  const choices = truthfulqaChoices(doc);
  it('scores each distinct answer once', () => expect(choices).toEqual(['T1.', 'F1.', 'F2.', 'T2.']));
  it('MC1: best true answer strictly above every false one', () => {
    expect(truthfulqaScores(doc, [-1, -2, -3, -9], choices).mc1).toBe(1);
    expect(truthfulqaScores(doc, [-2, -2, -3, -9], choices).mc1).toBe(0); // a tie is not a win
    expect(truthfulqaScores(doc, [-5, -2, -3, -1], choices).mc1).toBe(0); // T2 does not count for MC1
  });
  it('MC2: normalized probability mass of the true answers', () => {
    // p(T1)=0.4, p(T2)=0.1, p(F1)=0.3, p(F2)=0.2 → (0.5)/(1.0)
    const lls = [Math.log(0.4), Math.log(0.3), Math.log(0.2), Math.log(0.1)];
    expect(truthfulqaScores(doc, lls, choices).mc2).toBeCloseTo(0.5, 12);
    // unnormalized: p = e^-1, e^-2 true; e^-3 false → (e^-1+e^-2)/(e^-1+e^-2+e^-3+e^-30)
    const m = truthfulqaScores(doc, [-1, -3, -30, -2], choices).mc2;
    const e = Math.exp;
    expect(m).toBeCloseTo((e(-1) + e(-2)) / (e(-1) + e(-2) + e(-3) + e(-30)), 12);
  });
  it('MC2 survives very negative log-likelihoods (no underflow to 0/0)', () => {
    expect(truthfulqaScores(doc, [-2000, -2001, -2002, -2000], choices).mc2).toBeCloseTo(
      (1 + 1) / (1 + 1 + Math.exp(-1) + Math.exp(-2)),
      12,
    );
  });
  it('qa preset prompt', () => {
    const t = truthfulqa.docToText(doc);
    expect(t.startsWith('Q: What is human life expectancy in the United States?\nA: Human life expectancy')).toBe(true);
    expect(t.endsWith('Barcelona, Spain.\n\nQ: Q?\nA:')).toBe(true);
  });
});

describe('registry', () => {
  it('has every LLMCBench task with the right tracks and directions', () => {
    expect(Object.keys(TASKS).sort()).toEqual(
      ['advglue', 'arc_challenge', 'arc_easy', 'hellaswag', 'mmlu', 'mnli', 'mnli_mm', 'piqa', 'qnli', 'truthfulqa', 'wikitext2', 'winogrande'].sort(),
    );
    expect(TASKS.wikitext2.metrics).toEqual([{ name: 'ppl', higherIsBetter: false }]);
    expect(TASKS.advglue.track).toBe(6);
    expect(TASKS.truthfulqa.track).toBe(6);
    expect(TASKS.mmlu.track).toBe(1);
    for (const t of Object.values(TASKS)) expect(t.name).toBe(Object.entries(TASKS).find(([, v]) => v === t)![0]);
  });
  it('getTasks: comma list, all, and a clear error for unknown names', () => {
    expect(getTasks('mmlu, piqa').map((t) => t.name)).toEqual(['mmlu', 'piqa']);
    expect(getTasks('all')).toHaveLength(12);
    expect(() => getTasks('mmlu,arc')).toThrow(/unknown task 'arc' \(known: wikitext2, mmlu/);
  });
});
