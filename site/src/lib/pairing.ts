// Which of the kit's method settings stands beside the paper's: the one place where the site pairs
// "ours" with a row of the paper (track tables, overall bar charts, the Track 2 figure, the radars).
// Settings match by what they mean (bits, activation bits, group size, sparsity ratio or N:M
// pattern), not by how they are spelt: the kit's 'INT8 g128' for AWQ is the paper's 'INT8'.
import { isBaseline, methodInfo } from '../../../lib/metrics/names';
import type { PaperValue } from '../../../lib/metrics/paper';

/** What a setting label means. A null field is not part of the setting. */
export interface SettingMeaning {
  /** Percent of the weights removed (LLM-Pruner: of the channels and heads): '50%' -> 50. */
  sparsity: number | null;
  /** N:M sparsity pattern: '2:4'. */
  nm: string | null;
  /** Weight bits: 'INT8' and 'W8A8' -> 8. */
  bits: number | null;
  /** Activation bits ('W8A8' -> 8); null: activations stay 16-bit. */
  actBits: number | null;
  /** Weights per quantization group ('g128' -> 128); null: one scale per output channel. */
  group: number | null;
}

const FIELDS = ['sparsity', 'nm', 'bits', 'actBits', 'group'] as const satisfies readonly (keyof SettingMeaning)[];

/** The tokens of a setting label, and what each sets. */
const TOKENS: [RegExp, (x: RegExpMatchArray) => Partial<SettingMeaning>][] = [
  [/^(0|FP16|BF16|FP32)$/i, () => ({})], // the uncompressed baseline
  [/^(\d+(?:\.\d+)?)%$/, (x) => ({ sparsity: Number(x[1]) })],
  [/^(\d+:\d+)$/, (x) => ({ nm: x[1] })],
  [/^INT(\d+)$/i, (x) => ({ bits: Number(x[1]) })],
  [/^W(\d+)A(\d+)$/i, (x) => ({ bits: Number(x[1]), actBits: Number(x[2]) < 16 ? Number(x[2]) : null })],
  [/^g(\d+)$/, (x) => ({ group: Number(x[1]) })],
];

/**
 * Parses a setting label, the paper's ('50%', '2:4', 'INT8', '0', 'FP16') or the kit's
 * (settingLabel in lib/metrics/names.ts: 'INT4 g128', 'W8A8', '50% INT4'), taking each token
 * literally. Null when a token is unknown ('default'): such a label only matches itself.
 */
export function parseSetting(label: string): SettingMeaning | null {
  const m: SettingMeaning = { sparsity: null, nm: null, bits: null, actBits: null, group: null };
  for (const token of label.trim().split(/\s+/).filter(Boolean)) {
    const hit = TOKENS.map(([re, set]) => ({ x: token.match(re), set })).find((t) => t.x);
    if (!hit) return null;
    Object.assign(m, hit.set(hit.x!));
  }
  return m;
}

/**
 * What the paper's setting labels leave unsaid, per method (DESIGN §1): its AWQ quantizes in
 * groups of 128 (the AWQ reference's g128), and its SmoothQuant quantizes activations with the
 * weights ('INT8' is W8A8). Any other method's 'INTk' is per-channel weights, 16-bit activations.
 */
const PAPER_IMPLIES: Record<string, (m: SettingMeaning) => Partial<SettingMeaning>> = {
  AWQ: () => ({ group: 128 }),
  SmoothQuant: (m) => ({ actBits: m.bits }),
};

/** What the paper means by `label` for `method`: the label's tokens, completed by PAPER_IMPLIES where it names weight bits only. */
export function paperMeaning(method: string, label: string): SettingMeaning | null {
  const m = parseSetting(label);
  const implies = PAPER_IMPLIES[methodInfo(method).display];
  if (!m || m.bits === null || !implies) return m;
  const more = implies(m);
  return { ...m, group: m.group ?? more.group ?? null, actBits: m.actBits ?? more.actBits ?? null };
}

/** Whether the kit's setting `kitLabel` of `method` is the paper's setting `paperLabel` (same meaning; unparsed labels: same text). */
export function sameSetting(method: string, paperLabel: string, kitLabel: string): boolean {
  const p = paperMeaning(method, paperLabel);
  const k = parseSetting(kitLabel);
  return p && k ? FIELDS.every((f) => p[f] === k[f]) : paperLabel === kitLabel;
}

/** Whether two method names are the same method (paper or kit spelling; every baseline is the same). */
export function sameMethod(a: string, b: string): boolean {
  return isBaseline(a) ? isBaseline(b) : methodInfo(a).display === methodInfo(b).display;
}

/**
 * The setting the paper reports `method` at: its first one in the paper's tables (their row order:
 * Wanda 50% before Wanda 2:4). Null for a baseline or a method the paper does not have. Where a
 * paper table names no setting (Track 2) or is not transcribed (Tracks 3, 5, 6), this is the
 * setting "ours" is taken at.
 */
export function paperSettingOf(paper: readonly PaperValue[], method: string): string | null {
  if (isBaseline(method)) return null;
  return paper.find((v) => v.setting !== '' && sameMethod(v.method, method))?.setting ?? null;
}

/** The kit's side of one paper (method, setting). */
export interface Pairing<T> {
  /** The paper's setting paired with (null: the paper gives the method none). */
  paperSetting: string | null;
  /**
   * exact: the kit's items of the method at the paper's setting (every baseline item for a
   * baseline). Otherwise every item of the method, at other settings: a fallback, each shown with
   * its own setting (oursLabel), never as if it were the paper's.
   */
  items: T[];
  exact: boolean;
}

/**
 * Pairs the paper's `method` at `paperSetting` with the kit's items (kit table groups or overall
 * rows: anything with a method and a setting label): the items at the same setting where the kit
 * has any (rows without a value included: "no data" at the paper's setting beats another setting's
 * value), else all of the method's items, flagged as a fallback.
 */
export function pairWithPaper<T extends { method: string; setting: string }>(method: string, paperSetting: string | null, kit: readonly T[]): Pairing<T> {
  const own = kit.filter((k) => sameMethod(k.method, method));
  if (isBaseline(method)) return { paperSetting, items: own, exact: true };
  const same = paperSetting === null ? [] : own.filter((k) => sameSetting(method, paperSetting, k.setting));
  return same.length ? { paperSetting, items: same, exact: true } : { paperSetting, items: own, exact: false };
}

/** How "ours" is labelled: the kit's setting, plus the paper's where the pairing fell back to another one. */
export function oursLabel(p: Pairing<unknown>, kitSetting: string): string {
  return p.exact || p.paperSetting === null ? kitSetting : `${kitSetting}, not the paper's ${p.paperSetting}`;
}
