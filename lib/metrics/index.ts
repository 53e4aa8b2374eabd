// Overall metrics (DESIGN §1) and the names that map kit rows onto the paper's columns.
export * from './names';
export * from './paper';
export * from './overall';
