// Resolving a model id and revision to a commit and a file list, online through
// @huggingface/hub (model info, tree listing, paths-info) or offline from a store.

import { listFiles, modelInfo, pathsInfo } from '@huggingface/hub';
import { HubError, where } from './errors';
import { isNode, resolveEndpoint, resolveOffline, resolveToken } from './env';
import { nodeStore } from './node-store';
import { browserStore } from './browser-store';
import { apiFetch, retryPolicy, type ResolvedRetry, type RetryOptions } from './http';
import { isCommitSha, shortRev, type HubFile, type ModelStore, type ResolvedModel } from './store';

export interface HubOptions {
  /** Branch, tag or commit sha (default "main"). */
  revision?: string;
  /** Access token; default HF_TOKEN (Node), the session token (browser), $HF_HOME/token. `false`: anonymous. */
  token?: string | false;
  /** Hub URL; default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Use only the store; default HF_HUB_OFFLINE or the app's switch (setOfflineMode). */
  offline?: boolean;
  /** Where models are stored (needed offline; default: nodeStore() in Node, browserStore() in a browser). */
  store?: ModelStore;
  signal?: AbortSignal;
  retry?: RetryOptions;
  /** Replace fetch (proxies, tests). */
  fetch?: typeof fetch;
}

/** Which files: exact paths (paths-info), glob patterns (`*`, `?`, `**`), or a predicate. */
export type FileFilter = readonly string[] | ((file: HubFile) => boolean);

export interface Context {
  id: string;
  endpoint: string;
  token: string | undefined;
  offline: boolean;
  policy: ResolvedRetry;
  signal?: AbortSignal;
  fetch: typeof fetch;
}

const ID = /^(?:[A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

export function checkId(id: string): void {
  if (typeof id !== 'string' || !ID.test(id) || id.includes('..') || id.includes('--'))
    throw new HubError('invalid', `"${id}" is not a model id: expected org/name (letters, digits, - _ .)`, { id });
}

export async function makeContext(id: string, opts: HubOptions, store?: ModelStore): Promise<Context> {
  checkId(id);
  return {
    id,
    endpoint: resolveEndpoint(opts.endpoint),
    token: await resolveToken(opts.token, store?.defaultToken?.bind(store)),
    offline: resolveOffline(opts.offline),
    policy: retryPolicy(opts.retry),
    signal: opts.signal,
    fetch: opts.fetch ?? ((...a: Parameters<typeof fetch>) => fetch(...a)),
  };
}

/** fetch with the bearer token added (never passed to the library, which insists on "hf_"). */
function authed(ctx: Context): typeof fetch {
  return ((input: RequestInfo | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    if (ctx.token && !headers.has('authorization')) headers.set('authorization', `Bearer ${ctx.token}`);
    return ctx.fetch(input, { ...init, headers });
  }) as typeof fetch;
}

function api(ctx: Context, revision?: string, file?: string): typeof fetch {
  return apiFetch({ id: ctx.id, endpoint: ctx.endpoint, revision, file, hasToken: !!ctx.token }, ctx.policy, ctx.signal, authed(ctx));
}

/** Glob to RegExp: `*` within a path segment, `**` across, `?` one character. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function fileMatcher(filter: FileFilter | undefined): ((f: HubFile) => boolean) | undefined {
  if (!filter) return undefined;
  if (typeof filter === 'function') return filter;
  const res = filter.map(globToRegExp);
  return (f) => res.some((r) => r.test(f.path));
}

const isExactList = (filter: FileFilter | undefined): filter is readonly string[] =>
  Array.isArray(filter) && filter.length > 0 && filter.every((p) => !/[*?]/.test(p));

function toHubFile(e: { path: string; size: number; oid?: string; lfs?: { oid: string; size: number } }): HubFile {
  if (e.lfs) return { path: e.path, size: e.lfs.size, sha256: e.lfs.oid, etag: e.lfs.oid };
  return { path: e.path, size: e.size, ...(e.oid ? { etag: e.oid } : {}) };
}

/** Online: the commit sha of `revision`, and the files (all, or those `filter` names). */
export async function resolveOnline(ctx: Context, revision: string, filter?: FileFilter): Promise<ResolvedModel> {
  const info = await modelInfo({
    name: ctx.id,
    revision,
    hubUrl: ctx.endpoint,
    additionalFields: ['sha'],
    fetch: api(ctx, revision),
  });
  const sha = (info as { sha?: string }).sha;
  if (!sha || !isCommitSha(sha))
    throw new HubError('invalid', `${where(ctx.id)}: ${ctx.endpoint} gave no commit sha for revision ${revision}`, { id: ctx.id, revision });

  let files: HubFile[];
  if (isExactList(filter)) {
    const infos = await pathsInfo({ repo: ctx.id, paths: [...filter], revision: sha, hubUrl: ctx.endpoint, fetch: api(ctx, revision) });
    files = infos.filter((e) => e.type === 'file').map(toHubFile);
    const missing = filter.filter((p) => !files.some((f) => f.path === p));
    if (missing.length)
      throw new HubError('not_found', `${where(ctx.id, missing[0])}: no such file at revision ${revision} (${shortRev(sha)})${missing.length > 1 ? `; also missing: ${missing.slice(1).join(', ')}` : ''}`, {
        id: ctx.id,
        file: missing[0],
        revision,
      });
  } else {
    files = [];
    for await (const e of listFiles({ repo: ctx.id, revision: sha, recursive: true, hubUrl: ctx.endpoint, fetch: api(ctx, revision) }))
      if (e.type === 'file') files.push(toHubFile(e));
    const match = fileMatcher(filter);
    if (match) files = files.filter(match);
  }
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { id: ctx.id, revision: sha, files };
}

/** Offline: what the store holds for `revision` (a ref it recorded, or a commit sha). */
export const OFFLINE_WHY = 'offline mode is on (HF_HUB_OFFLINE=1 or the offline switch)';

/** `why`: the reason only the store is used (null: plainly reading the store, a 'not_stored' error). */
export async function resolveStored(store: ModelStore, id: string, revision: string, why: string | null): Promise<ResolvedModel> {
  const commit = isCommitSha(revision) ? revision : await store.readRef(id, revision);
  const missing = () =>
    new HubError(
      why ? 'offline' : 'not_stored',
      `${where(id)}: revision ${revision} is not stored in ${store.location}${why ? ` and ${why}: download it first while online` : ': download it first'}`,
      { id, revision },
    );
  if (!commit) throw missing();
  const manifest = await store.readManifest(id, commit);
  const files = manifest?.files ?? (await store.storedFiles(id, commit));
  if (!files.length) throw missing();
  return { id, revision: commit, files };
}

/**
 * A model id and revision resolved to a commit sha and its files (sizes, LFS sha256, etag).
 * Offline: from the store.
 */
export async function resolveModel(id: string, opts: HubOptions = {}): Promise<ResolvedModel> {
  const ctx = await makeContext(id, opts, opts.store);
  const revision = opts.revision ?? 'main';
  if (ctx.offline) return resolveStored(opts.store ?? (await defaultStore()), id, revision, OFFLINE_WHY);
  return resolveOnline(ctx, revision);
}

/** nodeStore() in Node, browserStore() in a browser. */
export async function defaultStore(): Promise<ModelStore> {
  return isNode() ? nodeStore() : browserStore();
}
