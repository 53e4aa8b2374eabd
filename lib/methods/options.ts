// Typed option schemas of the compression methods: each option's type, default, range and doc line,
// declared once in its method's file. Defaults, validation of a configuration (unknown keys, types,
// ranges, each error naming the method and option), command-line flags and --help text all derive
// from the schema. Checks that involve several options or the model stay in each method's validate.
import { patternLabel, toPattern, type SparsityPattern } from '../quant/sparse-pattern';

interface Base<T> {
  default: T;
  /** One line for --help: what the option does and where its default comes from. */
  doc: string;
}
interface Range {
  min?: number;
  max?: number;
  /** The range excludes min / max ([0, 1) is min 0, max 1, maxOpen). */
  minOpen?: boolean;
  maxOpen?: boolean;
}
export type OptionSpec =
  | (Base<number> & Range & { type: 'int' | 'number' })
  | (Base<number | null> & Range & { type: 'int' | 'number'; nullable: true })
  | (Base<boolean> & { type: 'boolean' })
  | (Base<boolean | null> & { type: 'boolean'; nullable: true })
  | (Base<string> & { type: 'enum'; values: readonly string[] })
  /** A sparsity pattern: '50%', 0.5, '2:4' or a SparsityPattern object (lib/quant/sparse-pattern). */
  | (Base<SparsityPattern> & { type: 'pattern' });

export type OptionSchema = Record<string, OptionSpec>;

type ValueOf<S extends OptionSpec> = S extends { type: 'pattern' }
  ? SparsityPattern
  : S extends { type: 'enum'; values: readonly (infer V)[] }
    ? V
    : (S extends { type: 'boolean' } ? boolean : number) | (S extends { nullable: true } ? null : never);

/** The options object a schema describes: { bits: number, sym: boolean, … }. */
export type OptionsOf<S extends OptionSchema> = { -readonly [K in keyof S]: ValueOf<S[K]> };

/** What callers may pass: any subset of the options; patterns also as '50%', 0.5 or 'N:M'. */
export type InputOf<S extends OptionSchema> = {
  -readonly [K in keyof S]?: S[K] extends { type: 'pattern' } ? SparsityPattern | string | number : ValueOf<S[K]>;
};

/** Declares a schema with its literal types kept (enum values, nullability). */
export function defineOptions<const S extends OptionSchema>(schema: S): S {
  return schema;
}

export function defaultsOf<S extends OptionSchema>(schema: S): OptionsOf<S> {
  return Object.fromEntries(Object.entries(schema).map(([k, s]) => [k, s.default])) as OptionsOf<S>;
}

/** An option configuration that does not fit its method's schema; the message names method and option. */
export class MethodOptionError extends Error {
  override name = 'MethodOptionError';
}

function rangeText(s: Range): string {
  const lo = s.min === undefined ? '(-∞' : `${s.minOpen ? '(' : '['}${s.min}`;
  const hi = s.max === undefined ? '∞)' : `${s.max}${s.maxOpen ? ')' : ']'}`;
  return `${lo}, ${hi}`;
}

function inRange(x: number, s: Range): boolean {
  if (s.min !== undefined && (s.minOpen ? !(x > s.min) : !(x >= s.min))) return false;
  if (s.max !== undefined && (s.maxOpen ? !(x < s.max) : !(x <= s.max))) return false;
  return true;
}

/** The type and range of an option in words, for errors and --help: 'integer in [1, ∞)'. */
export function describeType(s: OptionSpec): string {
  const orNull = 'nullable' in s && s.nullable ? ' or null' : '';
  switch (s.type) {
    case 'int':
    case 'number': {
      const word = s.type === 'int' ? 'integer' : 'number';
      return `${word}${s.min !== undefined || s.max !== undefined ? ` in ${rangeText(s)}` : ''}${orNull}`;
    }
    case 'boolean':
      return `true or false${orNull}`;
    case 'enum':
      return `one of ${s.values.map((v) => `'${v}'`).join(', ')}`;
    case 'pattern':
      return "sparsity pattern ('50%', 0.5 or 'N:M')";
  }
}

/** One value checked against its spec; returns it as the method takes it (patterns parsed). */
function checkValue(method: string, key: string, s: OptionSpec, x: unknown): unknown {
  const bad = (why = '') => new MethodOptionError(`${method}: option '${key}' must be ${describeType(s)}, got ${JSON.stringify(x)}${why}`);
  if (x === null && 'nullable' in s && s.nullable) return null;
  switch (s.type) {
    case 'int':
    case 'number':
      if (typeof x !== 'number' || !Number.isFinite(x) || (s.type === 'int' && !Number.isInteger(x)) || !inRange(x, s)) throw bad();
      return x;
    case 'boolean':
      if (typeof x !== 'boolean') throw bad();
      return x;
    case 'enum':
      if (typeof x !== 'string' || !s.values.includes(x)) throw bad();
      return x;
    case 'pattern':
      if (typeof x !== 'string' && typeof x !== 'number' && (typeof x !== 'object' || x === null)) throw bad();
      try {
        return toPattern(x as SparsityPattern);
      } catch (e) {
        throw bad(` (${(e as Error).message})`);
      }
  }
}

/**
 * A method's full options from a configuration (a matrix entry, --method-config, flags): every key
 * must be one of the schema's, every value of its type and range; missing keys take their default.
 * `where` says where the configuration came from and leads the error message.
 */
export function parseOptions<S extends OptionSchema>(method: string, schema: S, config: Record<string, unknown>, where = method): OptionsOf<S> {
  const bad = Object.keys(config).filter((k) => !(k in schema));
  if (bad.length) {
    throw new MethodOptionError(`${where}: unknown option ${bad.map((k) => `'${k}'`).join(', ')} for method '${method}' (valid: ${Object.keys(schema).join(', ')})`);
  }
  const out: Record<string, unknown> = {};
  for (const [k, s] of Object.entries(schema)) out[k] = k in config ? checkValue(where, k, s, config[k]) : s.default;
  return out as OptionsOf<S>;
}

/** The command-line flag of an option: groupSize → group-size. */
export function flagOf(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

/**
 * Reads an option's value from its flag's text ('4', 'per_token', '2:4', 'null'); booleans are
 * switches (--sym, --no-sym) and are read by the caller.
 */
export function valueFromFlag(method: string, key: string, s: OptionSpec, text: string): unknown {
  if (text === 'null' && 'nullable' in s && s.nullable) return null;
  if (s.type === 'int' || s.type === 'number') {
    const x = Number(text);
    if (text.trim() === '' || !Number.isFinite(x)) throw new MethodOptionError(`${method}: --${flagOf(key)} must be ${describeType(s)}, got '${text}'`);
    return x;
  }
  return text;
}

/** The --help lines of a schema: flag, type, default, doc. */
export function describeOptions(schema: OptionSchema): string[] {
  return Object.entries(schema).map(([k, s]) => {
    const flag = s.type === 'boolean' ? `--${flagOf(k)} | --no-${flagOf(k)}` : `--${flagOf(k)} X`;
    const def = s.type === 'pattern' ? `'${patternLabel(s.default)}'` : String(s.default);
    return `  ${k} (${flag}): ${describeType(s)}, default ${def}. ${s.doc}`;
  });
}
