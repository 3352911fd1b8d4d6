// Crucible's library API, shared by the CLI, the app's Worker and users' own scripts. Browser-safe;
// Node additions (Dawn GPU, local folders, the Hugging Face cache) are in ./node.ts.
//
//   const gpu = await browserGpu();                      // or nodeGpu() from 'crucible/node'
//   const session = await Session.open(gpu, files);      // ModelFiles: folder, Hub store, synthetic
//   const { train } = await buildDataset(config, { tokenizer: session.tokenizer, ...files });
//   await session.train(trainOptionsFromConfig(config), train, [], store, { onLog });
//   await session.chat([{ role: 'user', content: 'Who are you?' }], { maxNewTokens: 64 }, print);
//   const peft = await session.exportAdapter('org/base-model');

export { browserGpu } from './gpu/browser';
export { Gpu, GpuError } from './gpu/runtime';
export type { Capabilities } from './gpu/capabilities';
export { Session, loadModelTokenizer, type OpenOptions, type ChatOptions, type ChatTurnResult } from './engine/session';
export { ContextOverflowError } from './engine/prompt-fit';
export { trainOptionsFromConfig } from './engine/options';
export { configFromObject, parseConfig, type CrucibleConfig } from './config';
export { buildDataset, previewExamples, loadTokenizer, getTemplate, memoryFileAccess, TEMPLATE_NAMES } from './data';
export { Model, type LoadOptions } from './model/model';
export { Adapter, type LoraSettings } from './model/adapter';
export type { ModelFiles } from './model/weights';
export type { TrainOptions, LogRecord, TrainHooks } from './train/trainer';
export type { RunStore } from './train/store';
export { resolveModel, downloadModel, browserStore, listStoredModels, deleteStoredModel, openStoredModel } from './hub';
