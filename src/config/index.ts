// LLaMA-Factory compatible configuration: schema, loading, export.
export * from './schema';
export * from './load';
export * from './llamafactory';
export { editDistance, nearest } from './suggest';
