// Fuzz inputs: seed files changed by a few random mutations. The randomness comes from fast-check
// (its arbitraries describe the mutations, so a failing input is a printable, replayable record),
// and the mutations are the usual byte-level ones of coverage-guided fuzzers (bit flips, boundary
// integers written over length fields, inserted, deleted, duplicated and spliced ranges,
// truncation) plus a text-level one for JSON and CSV: a number or word replaced by a troublesome
// token. There is no coverage feedback: every input is a fresh mutation of a seed.
import fc from 'fast-check';

/** One edit of an input; positions are taken modulo the input's length (+1 where an end is allowed). */
export type Mutation =
  | { op: 'flip'; at: number; bit: number }
  | { op: 'byte'; at: number; value: number }
  | { op: 'int'; at: number; width: 1 | 2 | 4 | 8; value: bigint } // little-endian
  | { op: 'insert'; at: number; bytes: Uint8Array }
  | { op: 'delete'; at: number; len: number }
  | { op: 'dup'; at: number; len: number; to: number }
  | { op: 'splice'; seed: number; at: number; len: number; to: number } // a range of another seed
  | { op: 'token'; at: number; token: string } // the next [A-Za-z0-9_.+-] run at or after `at`, replaced
  | { op: 'truncate'; len: number };

/** What one fuzz input is: a seed and the mutations applied to it in order, or raw random bytes. */
export type FuzzCase = { seed: number; mutations: Mutation[] } | { raw: Uint8Array };

/** Integers that sit on the boundaries parsers get wrong (sizes, counts, signed/unsigned edges). */
export const INTERESTING_INTS: readonly bigint[] = [
  0n, 1n, 2n, 3n, 4n, 7n, 8n, 16n, 32n, 64n, 0x7fn, 0x80n, 0xffn, 0x100n, 0x7fffn, 0x8000n, 0xffffn, 0x10000n,
  0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n, 1n << 30n, 1n << 40n, 1n << 53n, (1n << 53n) + 1n,
  (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n, 1000000n, 1000000000n,
];

/** Text tokens that break JSON, CSV and TSV readers' assumptions. */
export const INTERESTING_TOKENS: readonly string[] = [
  '-1', '0', '-0', '1.5', '1e309', '-1e309', '1e-400', '4294967296', '9007199254740993', '1e21', 'NaN', 'Infinity',
  'null', 'true', 'false', '""', '"x"', '[]', '{}', '[1,2]', '[0,0]', '[-1]', '{"a":1}', '"__proto__"', '"constructor"',
  '"toString"', '"', ',', ':', '{', '}', '[', ']', '\\', '\\"', '"\n"', '\n', '\r\n', '\r', '\t', '\u0000', '\ufffd',
  '\ud800', '😀', '"' + 'x'.repeat(300) + '"', 'F32', 'F16', 'BF16', 'U8', 'I32', 'I64', 'nm', 'bitmask',
];

/** fast-check arbitrary of one mutation (positions are free naturals; applyMutations reduces them). */
export function mutationArb(nSeeds: number): fc.Arbitrary<Mutation> {
  const at = fc.nat();
  const len = fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4096 }));
  return fc.oneof(
    { weight: 3, arbitrary: fc.record({ op: fc.constant('flip' as const), at, bit: fc.integer({ min: 0, max: 7 }) }) },
    { weight: 2, arbitrary: fc.record({ op: fc.constant('byte' as const), at, value: fc.integer({ min: 0, max: 255 }) }) },
    {
      weight: 4,
      arbitrary: fc.record({
        op: fc.constant('int' as const),
        at,
        width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
        value: fc.oneof(fc.constantFrom(...INTERESTING_INTS), fc.integer({ min: 0, max: 0x7fffffff }).map(BigInt)),
      }),
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('insert' as const), at, bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), at, len }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('dup' as const), at, len, to: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('splice' as const), seed: fc.nat({ max: Math.max(0, nSeeds - 1) }), at, len, to: fc.nat() }) },
    { weight: 4, arbitrary: fc.record({ op: fc.constant('token' as const), at, token: fc.constantFrom(...INTERESTING_TOKENS) }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), len: fc.nat() }) },
  );
}

/** fast-check arbitrary of fuzz inputs over nSeeds seeds: mostly 1–8 mutations of a seed, sometimes raw bytes. */
export function fuzzCaseArb(nSeeds: number): fc.Arbitrary<FuzzCase> {
  if (nSeeds < 1) throw new Error('fuzzCaseArb: no seeds (a target needs at least one seed file)');
  return fc.oneof(
    { weight: 19, arbitrary: fc.record({ seed: fc.nat({ max: nSeeds - 1 }), mutations: fc.array(mutationArb(nSeeds), { minLength: 1, maxLength: 4 }) }) },
    { weight: 1, arbitrary: fc.record({ raw: fc.uint8Array({ maxLength: 512 }) }) },
  );
}

const TOKEN_CHAR = /[A-Za-z0-9_.+-]/;

/** The bytes of a fuzz case: its seed with the mutations applied (seeds are never modified). */
export function applyCase(c: FuzzCase, seeds: readonly Uint8Array[]): Uint8Array {
  if ('raw' in c) return c.raw;
  return applyMutations(seeds[c.seed % seeds.length], c.mutations, seeds);
}

/** A copy of `input` with the mutations applied in order. */
export function applyMutations(input: Uint8Array, mutations: readonly Mutation[], seeds: readonly Uint8Array[] = []): Uint8Array {
  let b = input;
  for (const m of mutations) b = applyOne(b, m, seeds);
  return b === input ? input.slice() : b;
}

/** The parts one after another, as a plain Uint8Array. */
function concat(...parts: Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

function applyOne(b: Uint8Array, m: Mutation, seeds: readonly Uint8Array[]): Uint8Array {
  const n = b.length;
  const pos = (x: number) => x % (n + 1); // an insertion point: 0..n
  switch (m.op) {
    case 'flip': {
      if (n === 0) return b;
      const out = b.slice();
      out[m.at % n] ^= 1 << m.bit;
      return out;
    }
    case 'byte': {
      if (n === 0) return b;
      const out = b.slice();
      out[m.at % n] = m.value;
      return out;
    }
    case 'int': {
      if (n < m.width) return b;
      const out = b.slice();
      const at = m.at % (n - m.width + 1);
      for (let k = 0; k < m.width; k++) out[at + k] = Number((m.value >> BigInt(8 * k)) & 0xffn);
      return out;
    }
    case 'insert': {
      const at = pos(m.at);
      return concat(b.subarray(0, at), m.bytes, b.subarray(at));
    }
    case 'delete': {
      const at = pos(m.at);
      return concat(b.subarray(0, at), b.subarray(Math.min(n, at + m.len)));
    }
    case 'dup': {
      const at = pos(m.at);
      const to = pos(m.to);
      return concat(b.subarray(0, to), b.subarray(at, Math.min(n, at + m.len)), b.subarray(to));
    }
    case 'splice': {
      const other = seeds[m.seed % Math.max(1, seeds.length)] ?? b;
      const at = m.at % (other.length + 1);
      const to = pos(m.to);
      return concat(b.subarray(0, to), other.subarray(at, Math.min(other.length, at + m.len)), b.subarray(to));
    }
    case 'token': {
      const tok = new TextEncoder().encode(m.token);
      let s = pos(m.at);
      while (s < n && !TOKEN_CHAR.test(String.fromCharCode(b[s]))) s++;
      let e = s;
      while (e < n && TOKEN_CHAR.test(String.fromCharCode(b[e]))) e++;
      return concat(b.subarray(0, s), tok, b.subarray(e));
    }
    case 'truncate':
      return b.slice(0, m.len % (n + 1));
  }
}
