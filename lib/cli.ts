// Helpers for the scripts' command lines (flags parsed with node:util parseArgs).
import fs from 'node:fs';
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

/**
 * The registry part of every --help: the registered methods (with `options`, for the scripts that
 * take a method: each with its kind, description and options) and the tasks.
 */
export async function registryHelp(options = false): Promise<string> {
  const { describeMethods, methodNames } = await import('./methods/index');
  const { TASKS } = await import('./tasks/index');
  const methods = options ? `methods and their options:\n${describeMethods()}` : `methods: ${methodNames().join(', ')}`;
  return `\n${methods}\ntasks: ${Object.keys(TASKS).join(', ')}`;
}

/** Prints a script's usage text and the registry's names (registryHelp) to stdout. */
export async function printUsage(usage: string, options = false): Promise<void> {
  console.log(usage + (await registryHelp(options)));
}

/**
 * For a script without a usage text of its own: with --help (or -h) among the arguments, prints the
 * script's header comment (its leading // lines: what it does and its flags), the registered methods
 * (with `names`, for the scripts that take a method: each with its options) and tasks, then exits 0.
 * Call before parsing the arguments.
 */
export async function helpFromHeader(moduleUrl: string, o: { names?: boolean } = {}): Promise<void> {
  if (!process.argv.slice(2).some((a) => a === '--help' || a === '-h')) return;
  const lines = fs.readFileSync(fileURLToPath(moduleUrl), 'utf8').split('\n');
  const header: string[] = [];
  for (const l of lines) {
    if (!l.startsWith('//')) break;
    header.push(l.replace(/^\/\/ ?/, ''));
  }
  console.log(header.join('\n'));
  console.log(await registryHelp(o.names));
  process.exit(0);
}
