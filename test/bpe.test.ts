import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { ByteLevelBpe, bytesToUnicode, trainBpe } from '../lib/models/tokenizer-bpe';
import { readCorpusSplit } from '../lib/train/corpus';

const corpusDir = path.resolve(__dirname, '../data/zoo/corpus');

describe('byte-level BPE', () => {
  it('maps all 256 bytes to distinct printable characters (GPT-2 table)', () => {
    const t = bytesToUnicode();
    expect(new Set(t).size).toBe(256);
    expect(t[32]).toBe('Ġ'); // space
    expect(t[10]).toBe('Ċ'); // newline
    expect(t[65]).toBe('A');
  });

  it('learns the exact merges of a tiny corpus', () => {
    // words: "aaa", " aaa", " ab"; (a,a) occurs 4 times, then (aa,a) twice, then every pair once.
    const m = trainBpe('aaa aaa ab', { vocabSize: 300, minFrequency: 2 });
    expect(m.merges).toEqual([['a', 'a'], ['aa', 'a']]);
    expect(m.vocab.length).toBe(3 + 256 + 2);
    expect(m.vocab.slice(259)).toEqual(['aa', 'aaa']);
    const tok = new ByteLevelBpe(m);
    const ids = tok.encode('aaa aaaa');
    expect(ids.map((i) => m.vocab[i])).toEqual(['aaa', 'Ġ', 'aa', 'aa']); // rank 0 (a,a) applies everywhere first
    expect(tok.encode('x', { bos: true })[0]).toBe(1);
  });

  it('stops at vocabSize', () => {
    const m = trainBpe('the cat the hat the mat the bat', { vocabSize: 262 });
    expect(m.vocab.length).toBe(262);
    expect(m.merges.length).toBe(3);
  });

  it('rejects a vocabulary smaller than the byte alphabet', () => {
    expect(() => trainBpe('abc', { vocabSize: 100 })).toThrow(/vocabSize 100/);
  });

  it('round-trips any text, including non-ASCII bytes', () => {
    const tok = new ByteLevelBpe(trainBpe('In the beginning God created the heaven and the earth.', { vocabSize: 280 }));
    for (const s of ['In the beginning', 'naïve café — 日本語 🙂\n\n  tabs\tand   spaces', '']) {
      expect(tok.decode(tok.encode(s))).toBe(s);
    }
    expect(() => tok.decode([99999])).toThrow(/outside the vocabulary/);
  });

  it('saves a tokenizer.json that @huggingface/tokenizers encodes identically (corpus test split)', () => {
    const valid = readCorpusSplit(corpusDir, 'valid');
    const test = readCorpusSplit(corpusDir, 'test');
    const tok = new ByteLevelBpe(trainBpe(valid, { vocabSize: 1024 }));
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bpe-'));
    tok.save(dir, 512);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    expect(config.bos_token).toBe('<s>');
    const hf = new HfTokenizer(json, config);
    const sample = test.slice(0, 60_000) + '\n\nnaïve café 🙂 1611 ... "quoted" it\'s';
    const ours = tok.encode(sample);
    const theirs = hf.encode(sample, { add_special_tokens: false }).ids;
    expect(theirs).toEqual(ours);
    expect(hf.decode(theirs)).toBe(sample);
    expect(tok.decode(ours)).toBe(sample);
    // reloading the file gives the same tokenizer
    const back = ByteLevelBpe.load(dir);
    expect(back.encode(sample)).toEqual(ours);
    expect(back.vocabSize).toBe(1024);
    expect([back.padId, back.bosId, back.eosId]).toEqual([0, 1, 2]);
  });

  it('names the file when tokenizer.json is not byte-level BPE', () => {
    expect(() => ByteLevelBpe.fromTokenizerJson({ model: { type: 'WordPiece' } }, 'x/tokenizer.json')).toThrow(/x\/tokenizer.json: not a BPE/);
  });
});
