// Helpers for the scripts' command lines (flags parsed with node:util parseArgs).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository's root folder (the one holding lib/). */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Whether the module of importMetaUrl is the script node was started with (not one imported by another). */
export function isMainModule(importMetaUrl: string): boolean {
  return process.argv[1] !== undefined && importMetaUrl === pathToFileURL(process.argv[1]).href;
}

/** The shared data folder: $LLMCB_SHARED, else ../shared beside the repository. */
export function sharedDir(): string {
  return process.env.LLMCB_SHARED ?? path.resolve(REPO_ROOT, '../shared');
}

export interface NumberFlagOptions {
  /** Whole numbers only (default false). */
  integer?: boolean;
  /** Smallest value accepted (default: no bound). */
  min?: number;
}

/**
 * The number a flag's value spells; undefined when the flag was not given. Throws an error naming
 * the flag when the value is not a finite number (or not an integer, or below min).
 */
export function numberFlag(flag: string, value: string, o?: NumberFlagOptions): number;
export function numberFlag(flag: string, value: string | undefined, o?: NumberFlagOptions): number | undefined;
export function numberFlag(flag: string, value: string | undefined, o: NumberFlagOptions = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = value.trim() === '' ? NaN : Number(value);
  if (!Number.isFinite(n) || (o.integer && !Number.isInteger(n)) || (o.min !== undefined && n < o.min)) {
    const what = `${o.integer ? 'an integer' : 'a number'}${o.min !== undefined ? ` ≥ ${o.min}` : ''}`;
    throw new Error(`--${flag} needs ${what}, got '${value}'`);
  }
  return n;
}

/** Runs a script's main(); an error prints its message (the stack with DEBUG set) and exits 1. */
export function runMain(main: () => Promise<unknown>): void {
  main().catch((e) => {
    console.error(e instanceof Error ? (process.env.DEBUG ? e.stack : e.message) : e);
    process.exit(1);
  });
}
