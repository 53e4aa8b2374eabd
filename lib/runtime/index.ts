export * from './backend';
export * from './probes';
