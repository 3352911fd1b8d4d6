// LLaMA-Factory compatible configuration: schema, loading, export.
export * from './schema';
export * from './load';
export * from './llamafactory';
export { checkOutputDir, MODEL_SIDE_FILES } from './output-dir';
export { editDistance, nearest } from './suggest';
