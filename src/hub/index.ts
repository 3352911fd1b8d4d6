/**
 * Crucible hub: models from the Hugging Face Hub into a local store, and random-access reads back.
 * Works in Node (the HF cache on disk, shared with Python tools) and in the browser (IndexedDB).
 *
 * ## Resolve
 *
 *   resolveModel(id, { revision?, token?, endpoint?, offline?, store?, signal?, retry? })
 *     => { id, revision (the commit sha), files: Array<{ path, size, sha256? (the LFS oid), etag? }> }
 *
 * Uses @huggingface/hub: model info (`GET /api/models/{id}/revision/{rev}`, for the commit sha),
 * the recursive tree listing (`GET /api/models/{id}/tree/{sha}`) or, for an exact list of paths,
 * paths-info (`POST /api/models/{id}/paths-info/{sha}`). Files then come from
 * `GET {endpoint}/{id}/resolve/{sha}/{path}` (Range for resume), pinned to the commit, so a branch
 * that moves during a download cannot mix revisions.
 *
 * Settings: `endpoint` ?? HF_ENDPOINT ?? https://huggingface.co. `token` ?? HF_TOKEN ??
 * HUGGING_FACE_HUB_TOKEN ?? the session token (browser: setSessionToken(), kept in memory only,
 * never persisted or logged) ?? $HF_TOKEN_PATH or $HF_HOME/token (Node store); `token: false`
 * forces anonymous. Sent as `Authorization: Bearer`. `offline` ?? HF_HUB_OFFLINE=1 ?? the app's
 * switch (setOfflineMode(true)): then only the store is used, and a model that is not stored is
 * a clear 'offline' error.
 *
 * ## Download
 *
 *   downloadModel(id, { revision?, token?, endpoint?, offline?, store, files?, onProgress?, signal?,
 *                       retry?: { retries = 5, baseDelayMs = 1000, maxDelayMs = 30000, stallTimeoutMs = 60000 },
 *                       concurrency = 2, onWarning?, onRetry? }) => StoredModel
 *
 * - `store`: nodeStore({ hfHome?, cacheDir? }) or browserStore({ dbName?, chunkSize?, hash? }). Layouts
 *   and key schemes are documented in node-store.ts and browser-store.ts.
 * - `files`: exact paths (['config.json', 'model.safetensors'], resolved with paths-info), globs
 *   (['*.json', '*.safetensors'], `**` crosses folders) or a predicate on { path, size, ... }.
 * - Each file is streamed into the store, hashed on the way (sha256 vs the LFS oid; git blob oid
 *   = ETag for small non-LFS files), and becomes visible only once it matched. Partial data is
 *   resumed with `Range: bytes=N-` (Node: from the .incomplete file's length; browser: from the
 *   last complete 16 MiB chunk, also after a reload). 408/429/5xx (Retry-After honoured), network
 *   errors, cut or stalled connections and short bodies are retried with exponential backoff;
 *   `retries` counts failures in a row (an attempt that received 1 MiB resets it).
 * - Before writing anything the missing bytes are compared with free space (browser:
 *   navigator.storage.estimate(), after asking persist(); Node: statfs) and a 'quota' error says
 *   how much is needed and available.
 * - onProgress({ file, loaded, total, fileLoaded, fileTotal, bytesPerSecond, etaSeconds, done? }):
 *   loaded/total are for the whole download (bytes already stored count as loaded), at most every
 *   100 ms, and once per finished file (done: true).
 * - onRetry({ file, problem, attempt, retries, delayMs, resumeFrom, fileTotal }): before each
 *   automatic retry of a file; resumeFrom is the byte the next Range asks for (what is stored).
 * - `signal` aborts at once with the signal's reason (an AbortError); partial data is kept.
 * - If the Hub cannot be reached (retries exhausted) and the store holds the revision (and the
 *   selected files), that copy is returned and onWarning(message) says so, as huggingface_hub does.
 * - Hashing: node:crypto in Node; @noble/hashes in the browser, which runs at tens of MB/s there
 *   and can bound the download rate: browserStore({ hash }) takes a faster incremental one.
 *
 * ## Read
 *
 *   StoredModel { id, revision, files, name, store }
 *     .open(path) => { size, name, read(offset, length): Promise<Uint8Array<ArrayBuffer>> }
 *       (never the whole file; the bytes go straight to GPUQueue.writeBuffer)
 *     .readText(path), .readJson(path), .readBytes(path), .exists(path), .file(path)
 *   StoredModel is structurally a `ModelFiles` (src/model/weights.ts).
 *   openStoredFile(store, id, path, { revision? }) => the same reader, without a StoredModel.
 *   openStoredModel(store, id, { revision? }) => StoredModel | undefined (offline view).
 *   In IndexedDB a read fetches only the chunks it covers (and keeps the last two).
 *
 * ## Manage
 *
 *   listStoredModels(store) => Array<{ id, size, partialBytes, revisions: Array<{ revision, refs,
 *                                      files, size, complete }> }>
 *   deleteStoredModel(store, id) => boolean   (every revision and partial download of the model)
 *
 * ## Errors
 *
 * HubError { code, message, details: { id, file?, revision?, status?, url? } }, code one of
 * 'unauthorized' | 'gated' | 'forbidden' (401/403: "needs a token (HF_TOKEN) / accept the license
 * at <url>"), 'not_found' ("no such model/revision", "no such file"), 'integrity' ("model org/name
 * file model.safetensors: sha256 mismatch (expected …, got …): the download was corrupted; removed,
 * retry"), 'quota', 'offline', 'not_stored', 'network' (retries exhausted; partial data kept),
 * 'http', 'invalid'. Messages never contain the token.
 */

export { HubError, type HubErrorCode } from './errors';
export { setOfflineMode, setSessionToken, hasSessionToken, DEFAULT_ENDPOINT } from './env';
export type { RetryOptions } from './http';
export { resolveModel, defaultStore, globToRegExp, type HubOptions, type FileFilter } from './resolve';
export { downloadModel, openStoredFile, openStoredModel, blobKey, type DownloadOptions, type DownloadProgress, type DownloadRetry } from './download';
export {
  StoredModel,
  type HubFile,
  type ResolvedModel,
  type Manifest,
  type ModelStore,
  type StoredFile,
  type StoredModelInfo,
  type StoredRevision,
  type BlobWriter,
} from './store';
export { nodeStore, defaultHfHome, repoFolderName, type NodeStoreOptions } from './node-store';
export { browserStore, DEFAULT_CHUNK_SIZE, type BrowserStoreOptions } from './browser-store';
export { gitBlobOid, sha256Hex, nobleHash, type HashFactory, type IncrementalHash } from './hash';

import type { ModelStore, StoredModelInfo } from './store';
import { checkId } from './resolve';

/** Models in a store, with their sizes and revisions. */
export function listStoredModels(store: ModelStore): Promise<StoredModelInfo[]> {
  return store.list();
}

/** Delete a model from a store (all revisions, partial downloads too). False if absent. */
export function deleteStoredModel(store: ModelStore, id: string): Promise<boolean> {
  checkId(id);
  return store.delete(id);
}
