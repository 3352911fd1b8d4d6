// Dataset repos on the Hub for the data layer (LLaMA-Factory's `hf_hub_url` entries): list a
// repo's files and fetch one, with the same endpoint and token rules as models (HF_ENDPOINT,
// HF_TOKEN). Files are fetched whole: dataset files are small next to weights.

import { listFiles } from '@huggingface/hub';
import { resolveEndpoint, resolveOffline, resolveToken } from './env';
import { HubError, isAbort } from './errors';

export interface HubDatasetOptions {
  endpoint?: string;
  token?: string | false;
  revision?: string;
  /** Default HF_HUB_OFFLINE or the app's switch: Hub datasets are not stored, so offline they are an error. */
  offline?: boolean;
}

export function hubDatasetAccess(opts: HubDatasetOptions = {}) {
  const endpoint = resolveEndpoint(opts.endpoint);
  const revision = opts.revision ?? 'main';
  const online = (repo: string) => {
    if (resolveOffline(opts.offline)) {
      throw new HubError('offline', `dataset ${repo}: offline mode (HF_HUB_OFFLINE or the app's switch) and Hub datasets are fetched, not stored; download its files and name them with file_name, or go online`, { id: repo });
    }
  };
  return {
    async fetchFile(repo: string, path: string): Promise<Uint8Array> {
      online(repo);
      const token = await resolveToken(opts.token);
      const url = `${endpoint}/datasets/${repo}/resolve/${revision}/${path.split('/').map(encodeURIComponent).join('/')}`;
      const res = await reaching(repo, endpoint, `file ${path}`, () => fetch(url, token ? { headers: { authorization: `Bearer ${token}` } } : {}));
      if (res.status === 401 || res.status === 403) throw new Error(`dataset ${repo} file ${path}: needs a token (HF_TOKEN) with access (HTTP ${res.status})`);
      if (!res.ok) throw new Error(`dataset ${repo} file ${path}: HTTP ${res.status} from ${endpoint}`);
      return new Uint8Array(await res.arrayBuffer());
    },
    async listRepoFiles(repo: string): Promise<string[]> {
      online(repo);
      const token = await resolveToken(opts.token);
      return reaching(repo, endpoint, 'file list', async () => {
        const out: string[] = [];
        for await (const f of listFiles({ repo: { type: 'dataset', name: repo }, recursive: true, revision, hubUrl: endpoint, ...(token ? { accessToken: token } : {}) })) {
          if (f.type === 'file') out.push(f.path);
        }
        return out;
      });
    },
  };
}

/**
 * A request to the Hub for dataset `repo`; a failure to get an answer at all (fetch's bare
 * "TypeError: fetch failed") becomes a message naming the dataset, the endpoint and what to do.
 */
async function reaching<T>(repo: string, endpoint: string, what: string, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (e) {
    if (e instanceof HubError || isAbort(e)) throw e;
    if (!(e instanceof TypeError)) {
      // the hub library's answer to an HTTP error (no such dataset, no access ...)
      throw new HubError('http', `dataset ${repo} ${what}: ${(e as Error).message} (from ${endpoint})`, { id: repo, cause: e });
    }
    const cause = (e as Error & { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? e.message;
    throw new HubError(
      'network',
      `dataset ${repo} ${what}: cannot reach the Hub at ${endpoint} (${why}); check the network or HF_ENDPOINT, ` +
        'or work offline: set HF_HUB_OFFLINE=1, download the dataset files and name them with file_name in dataset_info.json',
      { id: repo, url: endpoint, cause: e },
    );
  }
}
