// The evaluator (DESIGN §3 lib/eval): Scorer interface and its batched tensor implementation,
// evaluate(), statistics, result rows.
export * from './finite';
export * from './scorer';
export * from './stats';
export * from './evaluate';
export * from './model-scorer';
export * from './perplexity';
