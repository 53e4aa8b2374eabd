// The disk cache of encodings (lib/eval/token-cache.ts): the same ids as the tokenizer, read back by
// a later process instead of encoding again, per tokenizer fingerprint; no fingerprint, no file.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { TokenCache } from '../lib/eval/token-cache';
import { Llama2cTokenizer } from '../lib/models/tokenizer-llama2c';
import type { Tokenizer } from '../lib/models/types';
import { STORIES_BIN } from './model-helpers';

const STORIES_TOK = path.join(path.dirname(STORIES_BIN), 'tok512.bin');

/** stories260K's tokenizer, and a wrapper of it (same fingerprint) that counts its encodings. */
function countingTokenizer(): { tok: Llama2cTokenizer; counting: Tokenizer; calls: () => number } {
  const tok = Llama2cTokenizer.fromFile(STORIES_TOK, 512);
  let n = 0;
  const counting: Tokenizer = { vocabSize: tok.vocabSize, bosId: tok.bosId, eosId: tok.eosId, fingerprint: tok.fingerprint, decode: (ids) => tok.decode(ids), encode: (t, o) => (n++, tok.encode(t, o)) };
  return { tok, counting, calls: () => n };
}

describe('TokenCache', () => {
  const texts = ['Once upon a time', ' there was a dog.', 'Once upon a time', 'naïve café — 42'];

  it('gives the tokenizer’s ids, and a second opening answers from the file without encoding', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-tokcache-'));
    const { tok, counting, calls } = countingTokenizer();
    const a = TokenCache.open(counting, 'hellaswag', dir);
    for (const t of texts) expect(a.encode(t)).toEqual(tok.encode(t));
    expect(a.encode('Once upon a time', { bos: true })).toEqual(tok.encode('Once upon a time', { bos: true }));
    expect(calls()).toBe(4); // the repeated text came from memory
    a.save();
    TokenCache.forget(); // as a later process: from the file
    const b = TokenCache.open(counting, 'hellaswag', dir);
    for (const t of texts) expect(b.encode(t)).toEqual(tok.encode(t));
    expect(b.encode('Once upon a time', { bos: true })).toEqual(tok.encode('Once upon a time', { bos: true })); // kept apart from the same text without BOS
    expect(calls()).toBe(4);
    expect(b.misses).toBe(0);
    const ids = b.encode(texts[1]);
    ids[0] = -1; // a caller's change does not reach the cache
    expect(b.encode(texts[1])).toEqual(tok.encode(texts[1]));
    // another tokenizer (other fingerprint) does not read these encodings
    const other = TokenCache.open({ ...counting, fingerprint: 'f'.repeat(64) }, 'hellaswag', dir);
    other.encode(texts[0]);
    expect(calls()).toBe(5);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a second opening in the same process reads no file: the encodings are kept', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-tokcache-'));
    const { tok, counting, calls } = countingTokenizer();
    const a = TokenCache.open(counting, 'arc_easy', dir);
    a.encode(texts[0]);
    a.save();
    fs.rmSync(dir, { recursive: true, force: true });
    expect(TokenCache.open(counting, 'arc_easy', dir).encode(texts[0])).toEqual(tok.encode(texts[0]));
    expect(calls()).toBe(1);
    TokenCache.forget();
    TokenCache.open(counting, 'arc_easy', dir).encode(texts[0]); // the file is gone: encoded again
    expect(calls()).toBe(2);
  });

  it('an unreadable file is encoded afresh and replaced', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-tokcache-'));
    const tok = Llama2cTokenizer.fromFile(STORIES_TOK, 512);
    const file = path.join(dir, tok.fingerprint.slice(0, 32), 'mmlu.v8');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, 'not a cache');
    const c = TokenCache.open(tok, 'mmlu', dir);
    expect(c.encode(texts[0])).toEqual(tok.encode(texts[0]));
    c.save();
    expect(TokenCache.open(tok, 'mmlu', dir).encode(texts[0])).toEqual(tok.encode(texts[0]));
    expect(fs.readFileSync(file).subarray(0, 11).toString()).not.toBe('not a cache');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('writes nothing for a tokenizer without a fingerprint', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'llmcb-tokcache-'));
    const tok = Llama2cTokenizer.fromFile(STORIES_TOK, 512);
    const c = TokenCache.open({ vocabSize: tok.vocabSize, bosId: tok.bosId, eosId: tok.eosId, decode: (ids) => tok.decode(ids), encode: (t, o) => tok.encode(t, o) }, 'piqa', dir);
    expect(c.encode(texts[1])).toEqual(tok.encode(texts[1]));
    c.save();
    expect(fs.readdirSync(dir)).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
