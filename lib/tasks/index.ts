// The task registry (DESIGN §5.5): name → declarative task.
import { advglue } from './advglue';
import { arcChallenge, arcEasy } from './arc';
import { hellaswag } from './hellaswag';
import { mmlu } from './mmlu';
import { mnli, mnliMismatched } from './mnli';
import { piqa } from './piqa';
import { qnli } from './qnli';
import { truthfulqa } from './truthfulqa';
import type { Task } from './types';
import { wikitext2 } from './wikitext2';
import { winogrande } from './winogrande';

export const TASKS = {
  wikitext2,
  mmlu,
  arc_challenge: arcChallenge,
  arc_easy: arcEasy,
  hellaswag,
  piqa,
  winogrande,
  qnli,
  mnli,
  mnli_mm: mnliMismatched,
  advglue,
  truthfulqa,
} satisfies Record<string, Task>;

export type TaskName = keyof typeof TASKS;

/** Tasks by name (comma list or array); 'all' is every task. Unknown names are an error listing the known ones. */
export function getTasks(names: string | readonly string[]): Task[] {
  const list = typeof names === 'string' ? names.split(',').map((s) => s.trim()).filter(Boolean) : [...names];
  const expanded = list.flatMap((n) => (n === 'all' ? Object.keys(TASKS) : [n]));
  return expanded.map((n) => {
    const t = (TASKS as Record<string, Task>)[n];
    if (!t) throw new Error(`unknown task '${n}' (known: ${Object.keys(TASKS).join(', ')}, all)`);
    return t;
  });
}

export * from './types';
