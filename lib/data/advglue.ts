// AdvGLUE dev (dev_ann.json from LLMCBench's data): a JSON object keyed by subtask, each a list of
// items with the adversarial text, the original text of the perturbed field (original_<field>)
// and the label. The hub copy (AI-Secure/adv_glue) has no original text.
import { type DataOptions, type LoadResult, DatasetError, findLocal, int, readText, str } from './common';

export const ADVGLUE_SUBTASKS = ['sst2', 'qqp', 'mnli', 'mnli-mm', 'qnli', 'rte'] as const;
export type AdvGlueSubtask = (typeof ADVGLUE_SUBTASKS)[number];

/** The text fields of each subtask, in prompt order. */
export const ADVGLUE_FIELDS: Record<AdvGlueSubtask, readonly string[]> = {
  sst2: ['sentence'],
  qqp: ['question1', 'question2'],
  mnli: ['premise', 'hypothesis'],
  'mnli-mm': ['premise', 'hypothesis'],
  qnli: ['question', 'sentence'],
  rte: ['sentence1', 'sentence2'],
};

/** Number of classes per subtask (labels per the dataset README: sst2 1 = positive, qqp 1 = duplicate, mnli 0/1/2, qnli/rte 0 = entailment). */
export const ADVGLUE_CLASSES: Record<AdvGlueSubtask, number> = { sst2: 2, qqp: 2, mnli: 3, 'mnli-mm': 3, qnli: 2, rte: 2 };

export interface AdvGlueDoc {
  subtask: AdvGlueSubtask;
  idx: number;
  /** Adversarial text of every field. */
  adv: Record<string, string>;
  /** Original text of every field (= adversarial for fields the attack left alone). */
  orig: Record<string, string>;
  /** Whether this item carries an original text at all. */
  hasOriginal: boolean;
  label: number;
}

export function readAdvGlueJson(file: string): { docs: AdvGlueDoc[] } {
  let data: unknown;
  try {
    data = JSON.parse(readText(file));
  } catch (e) {
    throw new DatasetError(file, null, `invalid JSON (${(e as Error).message})`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new DatasetError(file, null, 'expected a JSON object keyed by subtask');
  const obj = data as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !(ADVGLUE_SUBTASKS as readonly string[]).includes(k));
  if (unknown.length) throw new DatasetError(file, null, `unknown subtask key(s) ${unknown.join(', ')}`);
  const docs: AdvGlueDoc[] = [];
  for (const sub of ADVGLUE_SUBTASKS) {
    const list = obj[sub];
    if (list === undefined) continue;
    if (!Array.isArray(list)) throw new DatasetError(file, null, `'${sub}' must be a list of items`);
    list.forEach((it, k) => {
      const where = `${file} ${sub}[${k}]`;
      if (typeof it !== 'object' || it === null) throw new DatasetError(where, null, 'item must be an object');
      const r = it as Record<string, unknown>;
      const adv: Record<string, string> = {};
      const orig: Record<string, string> = {};
      let hasOriginal = false;
      for (const f of ADVGLUE_FIELDS[sub]) {
        adv[f] = str(r, f, where, null);
        const o = r[`original_${f}`];
        if (o !== undefined) hasOriginal = true;
        orig[f] = o === undefined ? adv[f] : str(r, `original_${f}`, where, null);
      }
      docs.push({ subtask: sub, idx: k, adv, orig, hasOriginal, label: int(r, 'label', 0, ADVGLUE_CLASSES[sub] - 1, where, null) });
    });
  }
  return { docs };
}

export async function loadAdvGlue(opts: DataOptions): Promise<LoadResult<AdvGlueDoc>> {
  const file = findLocal(opts, 'advglue/dev_ann.json', 'adv_glue/dev_ann.json');
  if (file) {
    const { docs } = readAdvGlueJson(file);
    if (docs.length === 0) throw new DatasetError(file, null, 'no AdvGLUE items');
    return { status: 'ok', docs, source: `local:${file}`, notes: [] };
  }
  // The hub copy lacks the original texts the robustness comparison needs: report no data rather
  // than a half dataset.
  return {
    status: 'no_data',
    reason: `advglue: not found (${opts.dataDir ? `local: no advglue/dev_ann.json under ${opts.dataDir}` : 'local: no data directory given'}; hub: AI-Secure/adv_glue has no original texts)`,
  };
}
