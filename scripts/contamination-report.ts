// Writes the contamination report of a built corpus: word n-gram overlap (13-grams by default, as
// GPT-3's and lm-eval's decontamination) of every corpus split with every evaluation split
// (WikiText-2 valid and test, and each task's data files: lib/train/contamination.ts evalSplits),
// as contamination.csv (per corpus split x eval split: documents sharing any n-gram, their share,
// the eval split's distinct n-grams found in the corpus split and their share; absent eval data is
// a row with status 'absent: ...') and contamination.md (a short card), beside corpus.json.
//
//   npx tsx scripts/contamination-report.ts                          # data/zoo/corpus-en against ../shared/datasets
//   npx tsx scripts/contamination-report.ts --corpus data/zoo/corpus --data DIR --n 8
//
// Flags: --corpus DIR (default data/zoo/corpus-en), --data DIR (datasets root; default
// $LLMCB_SHARED/datasets or ../shared/datasets), --n N (n-gram length, default 13),
// --check (write nothing; exit 1 when the committed report differs from what would be written).
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { numberFlag, sharedDir } from '../lib/cli';
import { writeFileAtomic } from '../lib/results';
import { EN_CORPUS_DIR } from '../lib/train/corpus';
import { NGRAM_DEFAULT, REPORT_CSV, REPORT_MD, contaminationReport } from '../lib/train/contamination';
import { helpFromHeader } from '../lib/help';
helpFromHeader(import.meta.url);

interface Options {
  corpus: string; // built corpus directory (has corpus.json)
  data: string | null; // datasets root (default: sharedDir()/datasets)
  n: number; // n-gram length in words
  check: boolean; // compare with the files on disk instead of writing
}
const DEFAULTS: Options = { corpus: EN_CORPUS_DIR, data: null, n: NGRAM_DEFAULT, check: false };

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: { corpus: { type: 'string' }, data: { type: 'string' }, n: { type: 'string' }, check: { type: 'boolean' } },
  });
  return {
    corpus: values.corpus ?? DEFAULTS.corpus,
    data: values.data ?? DEFAULTS.data,
    n: numberFlag('n', values.n, { integer: true, min: 1 }) ?? DEFAULTS.n,
    check: values.check ?? DEFAULTS.check,
  };
}

function main(): void {
  const o = parseOptions(process.argv.slice(2));
  const r = contaminationReport(o.corpus, o.data ?? path.join(sharedDir(), 'datasets'), o.n);
  const outputs: [string, string][] = [[path.join(o.corpus, REPORT_CSV), r.csv], [path.join(o.corpus, REPORT_MD), r.md]];
  if (o.check) {
    const stale = outputs.filter(([f, text]) => !fs.existsSync(f) || fs.readFileSync(f, 'utf8') !== text).map(([f]) => f);
    if (stale.length) throw new Error(`contamination report out of date: ${stale.join(', ')} (rerun without --check)`);
    console.log('contamination report up to date');
    return;
  }
  for (const [f, text] of outputs) writeFileAtomic(f, text);
  const sharing = r.rows.filter((x) => x.docs_sharing > 0);
  console.log(`${r.rows.length} rows; corpus documents sharing an n-gram: ${sharing.length ? sharing.map((x) => `${x.corpus_split}/${x.eval_split} ${x.docs_sharing}`).join(', ') : 'none'}`);
  console.log(`wrote ${outputs.map(([f]) => f).join(', ')}`);
}

try {
  main();
} catch (e) {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
}
