// WikiText-2 token perplexity (DESIGN §1): the raw test split's rows joined with "\n\n",
// tokenized once, non-overlapping windows of seqlen tokens (remainder dropped), no BOS.
import { loadWikiText2, type WikiTextDoc } from '../data/wikitext';
import type { RollingTask } from './types';

export const wikitext2 = {
  name: 'wikitext2',
  track: 1,
  version: '1',
  description: 'WikiText-2 raw test, token perplexity over non-overlapping seqlen windows',
  outputType: 'loglikelihood_rolling',
  metrics: [{ name: 'ppl', higherIsBetter: false }],
  defaultBos: false, // GPTQ/LLMCBench windows are raw token slices
  dataFiles: ['wikitext-2-raw/wiki.test.raw'],
  load: (data) => loadWikiText2(data, 'test'),
  docToText: (doc) => doc.text,
} satisfies RollingTask<WikiTextDoc>;
