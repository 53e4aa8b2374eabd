// --help for the scripts: a script's usage (its own text or its header comment) followed by the
// registries' names, so every script lists the methods and tasks it can be given. Imported by
// scripts only (it pulls in every method and task).
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describeMethods, methodNames } from './methods/index';
import { TASKS } from './tasks/index';

/**
 * The registry part of every --help: the registered methods (with `options`, for the scripts that
 * take a method: each with its kind, description and options) and the tasks.
 */
export function registryHelp(options = false): string {
  const methods = options ? `methods and their options:\n${describeMethods()}` : `methods: ${methodNames().join(', ')}`;
  return `\n${methods}\ntasks: ${Object.keys(TASKS).join(', ')}`;
}

/** Prints a script's usage text and the registry's names (registryHelp) to stdout. */
export function printUsage(usage: string, options = false): void {
  console.log(usage + registryHelp(options));
}

/**
 * For a script without a usage text of its own: with --help (or -h) among the arguments, prints the
 * script's header comment (its leading // lines: what it does and its flags), the registered methods
 * (with `names`, for the scripts that take a method: each with its options) and tasks, then exits 0.
 * Call before parsing the arguments.
 */
export function helpFromHeader(moduleUrl: string, o: { names?: boolean } = {}): void {
  if (!process.argv.slice(2).some((a) => a === '--help' || a === '-h')) return;
  const lines = fs.readFileSync(fileURLToPath(moduleUrl), 'utf8').split('\n');
  const header: string[] = [];
  for (const l of lines) {
    if (!l.startsWith('//')) break;
    header.push(l.replace(/^\/\/ ?/, ''));
  }
  console.log(header.join('\n'));
  console.log(registryHelp(o.names));
  process.exit(0);
}
