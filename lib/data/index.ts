// Dataset loaders (DESIGN §3 lib/data): local original formats first, then the hub, else "no data".
export * from './common';
export * from './verify';
export * from './wikitext';
export * from './mmlu';
export * from './arc';
export * from './hellaswag';
export * from './piqa';
export * from './winogrande';
export * from './glue';
export * from './advglue';
export * from './truthfulqa';
