export * from './backend';
export * from './probes';
export * from './bench';
export * from './rows';
export * from './residency';
