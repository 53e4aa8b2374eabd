// Builds the zoo's training corpus (King James Bible, public domain) from Debian's packages and
// splits it deterministically into train/valid/test by chapter.
//
// Obtain (any Debian/Ubuntu machine; no root needed for the download route):
//   sudo apt-get install bible-kjv            # installs /usr/bin/bible + /usr/lib/bible.data
// or, without installing:
//   npx tsx scripts/build-corpus.ts --fetch   # apt-get download bible-kjv bible-kjv-text; dpkg-deb -x
// or with the two .deb files already at hand:
//   npx tsx scripts/build-corpus.ts --debs DIR
//
// Licence: the KJV text (1611) is public domain (Debian's copyright file: "The copyright for the King
// James Version text of the Bible is expired"); the `bible` program that decompresses it is GPL-2+
// and is only run, never shipped.
//
// Writes OUT/kjv.{train,valid,test}.txt.gz and OUT/corpus.json (sizes, sha256, licence, split rule).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import {
  CORPUS_FILE, DEFAULT_CORPUS_DIR, DOC_SEPARATOR, SPLIT_DEFAULTS, SPLITS, parseBibleOutput, sha256, splitCorpus,
  type CorpusManifest,
} from '../lib/train/corpus';
import { writeFileAtomic } from '../lib/results';
import { helpFromHeader } from '../lib/help';
await helpFromHeader(import.meta.url);

interface Options {
  out: string; // output directory
  bible: string | null; // path of the `bible` program (default: found on PATH or /usr/bin/bible)
  dataDir: string | null; // directory holding bible.data (default: next to the program's ../lib, then /usr/lib)
  debs: string | null; // directory with bible-kjv_*.deb and bible-kjv-text_*.deb to extract
  fetch: boolean; // apt-get download the two packages into a temporary directory first
}
const DEFAULTS: Options = { out: DEFAULT_CORPUS_DIR, bible: null, dataDir: null, debs: null, fetch: false };

function parseArgs(argv: string[]): Options {
  const o: Options = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`option ${a} needs a value`);
      return v;
    };
    if (a === '--out') o.out = val();
    else if (a === '--bible') o.bible = val();
    else if (a === '--data-dir') o.dataDir = val();
    else if (a === '--debs') o.debs = val();
    else if (a === '--fetch') o.fetch = true;
    else throw new Error(`unknown option ${a} (use --out, --bible, --data-dir, --debs, --fetch)`);
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

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  const { bible, dataDir } = locate(o);
  // -f turns pretty-printing off: one verse a line, preceded by its reference.
  const raw = execFileSync(bible, ['-f', '-p', dataDir, 'Gen1:1-Rev22:21'], { maxBuffer: 64 << 20 }).toString('utf8');
  const chapters = parseBibleOutput(raw, bible);
  if (chapters.length !== 1189) throw new Error(`expected the 1,189 chapters of the KJV, got ${chapters.length}`);
  const texts = splitCorpus(chapters);
  fs.mkdirSync(o.out, { recursive: true });
  const files = {} as CorpusManifest['files'];
  for (const split of SPLITS) {
    const text = texts[split];
    const gz = zlib.gzipSync(Buffer.from(text, 'utf8'), { level: 9 });
    const file = path.join(o.out, CORPUS_FILE(split));
    fs.writeFileSync(file + '.tmp', gz);
    fs.renameSync(file + '.tmp', file);
    files[split] = {
      file: CORPUS_FILE(split),
      chars: text.length,
      bytes: Buffer.byteLength(text, 'utf8'),
      docs: text.split(DOC_SEPARATOR).length,
      sha256: sha256(text),
    };
    console.log(`${split}: ${files[split].docs} chapters, ${files[split].bytes} bytes -> ${file} (${gz.length} bytes gz)`);
  }
  const manifest: CorpusManifest = {
    name: 'kjv',
    source: 'King James Bible (1611) from Debian packages bible-kjv-text + bible-kjv 4.38, printed by `bible -f Gen1:1-Rev22:21`',
    licence: 'Public domain text (Debian copyright file: the copyright of the 1611 KJV text has expired). The bible program (GPL-2+) is run, not shipped.',
    obtain: 'apt-get download bible-kjv bible-kjv-text (or apt-get install bible-kjv); then npx tsx scripts/build-corpus.ts [--debs DIR | --fetch]',
    split: { ...SPLIT_DEFAULTS, unit: 'chapter (one document = one chapter, one verse a line; documents joined by a blank line)' },
    files,
  };
  writeFileAtomic(path.join(o.out, 'corpus.json'), JSON.stringify(manifest, null, 2) + '\n');
}

main();
