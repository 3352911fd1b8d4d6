// Node additions to the library API (./index.ts): Dawn's WebGPU, local model folders and the
// Hugging Face cache, checkpoint folders, and the CLI's run functions.

export * from './index';
export { nodeGpu } from './gpu/node';
export { dirFiles, fileSource } from './model/files-node';
export { resolveModelFiles } from './engine/node-model';
export { folderStore } from './train/store-node';
export { nodeStore } from './hub';
export { nodeFileAccess, loadTokenizerFromDir } from './data/node';
export { runTraining } from './engine/train-node';
export { createChatBackend } from './engine/chat-node';
export { exportModel } from './engine/export-node';
