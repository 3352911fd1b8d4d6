// Errors of the hub module: one class, a code to branch on, and a message that says what (model,
// file, revision) and where (endpoint, store), and what to do about it. Tokens never appear.

export type HubErrorCode =
  | 'unauthorized' // 401: no token, or a token the Hub refused
  | 'gated' // gated repo: needs a token of an account that accepted the license
  | 'forbidden' // 403 for another reason
  | 'not_found' // no such model, revision or file
  | 'integrity' // sha256 / git oid / size mismatch after download
  | 'quota' // not enough storage
  | 'offline' // offline mode and the model is not stored
  | 'not_stored' // reading a file that the store does not have
  | 'network' // retries exhausted on network errors, 429 or 5xx
  | 'http' // another HTTP error
  | 'invalid'; // bad argument or malformed server answer

export class HubError extends Error {
  override name = 'HubError';
  constructor(
    readonly code: HubErrorCode,
    message: string,
    readonly details: { id?: string; file?: string; revision?: string; status?: number; url?: string; cause?: unknown } = {},
  ) {
    super(message, details.cause !== undefined ? { cause: details.cause } : undefined);
  }
}

/** "model org/name" or "model org/name file x.safetensors", the prefix of every message. */
export function where(id: string, file?: string): string {
  return file ? `model ${id} file ${file}` : `model ${id}`;
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : v < 100 ? 1 : 0)} ${units[i]}`;
}

/** Strip credentials from a URL before it goes into a message. */
export function safeUrl(url: string): string {
  try {
    const u = new URL(url);
    u.username = '';
    u.password = '';
    for (const k of [...u.searchParams.keys()]) if (/token|signature|credential|key/i.test(k)) u.searchParams.set(k, '…');
    return u.toString();
  } catch {
    return url;
  }
}

export interface HttpErrorContext {
  id: string;
  endpoint: string;
  revision?: string;
  file?: string;
  hasToken: boolean;
}

/** Turn a non-OK Hub answer (already known not to be retryable) into a HubError. */
export function httpError(status: number, headers: Headers, url: string, ctx: HttpErrorContext, bodyMessage?: string): HubError {
  const code = headers.get('x-error-code') ?? '';
  const serverMsg = headers.get('x-error-message') ?? bodyMessage ?? '';
  const at = `${where(ctx.id, ctx.file)}`;
  const page = `${ctx.endpoint}/${ctx.id}`;
  const details = { id: ctx.id, file: ctx.file, revision: ctx.revision, status, url: safeUrl(url) };
  // The code says it; without one, the message (URLs removed: they carry "expand=gated").
  const gated = code ? code === 'GatedRepo' : /\bgated\b|restricted|accept the conditions/i.test(serverMsg.replace(/\S+:\/\/\S+|\/\S+/g, ''));
  if (status === 401) {
    if (gated)
      return new HubError(
        'gated',
        ctx.hasToken
          ? `${at}: the model is gated and the Hub refused the token (401): check HF_TOKEN, and accept the license at ${page}`
          : `${at}: the model is gated: needs a token (HF_TOKEN) of an account that accepted the license at ${page}`,
        details,
      );
    return new HubError(
      'unauthorized',
      ctx.hasToken
        ? `${at}: the Hub refused the token (401): it is invalid or expired (check HF_TOKEN), or no such model at ${ctx.endpoint}`
        : `${at}: no such model at ${ctx.endpoint}, or it is private or gated and needs a token (HF_TOKEN) / accept the license at ${page}`,
      details,
    );
  }
  if (status === 403) {
    if (gated)
      return new HubError('gated', `${at}: the model is gated and this token has no access: accept the license at ${page}`, details);
    return new HubError(
      'forbidden',
      ctx.hasToken
        ? `${at}: the token has no access (403): it needs read permission for this repo, or accept the license at ${page}`
        : `${at}: access denied (403): needs a token (HF_TOKEN) / accept the license at ${page}`,
      details,
    );
  }
  if (status === 404) {
    if (code === 'RevisionNotFound')
      return new HubError('not_found', `${at}: no such revision "${ctx.revision ?? 'main'}" at ${ctx.endpoint}`, details);
    if (code === 'EntryNotFound' || (ctx.file && code !== 'RepoNotFound'))
      return new HubError('not_found', `${at}: no such file at revision ${ctx.revision ?? 'main'}`, details);
    return new HubError('not_found', `${where(ctx.id)}: no such model/revision at ${ctx.endpoint} (404)`, details);
  }
  const msg = serverMsg ? `: ${serverMsg.slice(0, 300)}` : '';
  return new HubError('http', `${at}: the Hub answered ${status} for ${safeUrl(url)}${msg}`, details);
}

export function isAbort(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || e.name === 'TimeoutError') ? true : (e as { name?: string })?.name === 'AbortError';
}
