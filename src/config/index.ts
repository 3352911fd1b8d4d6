// LLaMA-Factory compatible configuration: schema, loading, export.
export * from './schema';
export * from './load';
export * from './llamafactory';
export * from './llamafactory-export';
export { checkOutputDir, MODEL_SIDE_FILES } from './output-dir';
export { editDistance, nearest } from './suggest';
