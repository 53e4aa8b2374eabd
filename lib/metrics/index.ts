// Overall metrics (DESIGN §1), the metric catalogue of Tracks 3-5, and the names that map kit rows onto the paper's columns.
export * from './names';
export * from './paper';
export * from './overall';
export * from './catalogue';
