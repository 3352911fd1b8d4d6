// HTTP with retries: exponential backoff with jitter on 408/429/5xx (Retry-After honoured, capped)
// and on network errors; an abort signal that stops everything at once.

import { HubError, httpError, isAbort, safeUrl, type HttpErrorContext } from './errors';

export interface RetryOptions {
  /** Failed attempts in a row allowed (default 5); an attempt that received 1 MiB resets the count. */
  retries?: number;
  /** First backoff delay (default 1000 ms), doubled each time, with jitter. */
  baseDelayMs?: number;
  /** Longest delay, Retry-After included (default 30 s). */
  maxDelayMs?: number;
  /** A download that receives nothing for this long, or an API call not answered in it, is retried (default 60 s). */
  stallTimeoutMs?: number;
}

export interface ResolvedRetry {
  retries: number;
  baseDelayMs: number;
  maxDelayMs: number;
  stallTimeoutMs: number;
}

export function retryPolicy(r: RetryOptions = {}): ResolvedRetry {
  return {
    retries: r.retries ?? 5,
    baseDelayMs: r.baseDelayMs ?? 1000,
    maxDelayMs: r.maxDelayMs ?? 30_000,
    stallTimeoutMs: r.stallTimeoutMs ?? 60_000,
  };
}

export function isRetryableStatus(status: number): boolean {
  return status === 408 || status === 429 || (status >= 500 && status <= 599);
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('the download was aborted', 'AbortError');
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortReason(signal);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(abortReason(signal!));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Delay before attempt `attempt` (1-based count of failures so far). */
export function backoffDelay(policy: ResolvedRetry, attempt: number, retryAfter?: string | null): number {
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  let d = exp * (0.5 + Math.random() * 0.5);
  if (retryAfter) {
    const secs = Number(retryAfter);
    const ra = Number.isFinite(secs) ? secs * 1000 : Date.parse(retryAfter) - Date.now();
    if (Number.isFinite(ra) && ra > d) d = ra;
  }
  return Math.max(0, Math.min(policy.maxDelayMs, d));
}

/** A child controller that aborts with the parent; `dispose` detaches it. */
export function childController(parent?: AbortSignal): { controller: AbortController; dispose(): void } {
  const controller = new AbortController();
  if (!parent) return { controller, dispose() {} };
  if (parent.aborted) controller.abort(parent.reason);
  const onAbort = () => controller.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  return { controller, dispose: () => parent.removeEventListener('abort', onAbort) };
}

function describeCause(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const c = (e as { cause?: unknown }).cause;
  const cm = c instanceof Error ? c.message : c ? String(c) : '';
  return cm && cm !== e.message ? `${e.message} (${cm})` : e.message;
}

export { describeCause };

/**
 * A `fetch` for @huggingface/hub's API calls: authorization is the library's; this adds the
 * abort signal, retries, and turns 4xx answers into HubErrors with context (the library would
 * lose X-Error-Code). The body is read inside the retry loop, so a cut during a JSON answer
 * is retried too.
 */
export function apiFetch(ctx: HttpErrorContext, policy: ResolvedRetry, signal?: AbortSignal, baseFetch: typeof fetch = fetch): typeof fetch {
  return (async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    let failures = 0;
    for (;;) {
      throwIfAborted(signal);
      let res: Response;
      let body: ArrayBuffer;
      const { controller, dispose } = childController(signal);
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        controller.abort(new DOMException('timed out', 'TimeoutError'));
      }, policy.stallTimeoutMs);
      try {
        res = await baseFetch(input, { ...init, signal: controller.signal });
        if (res.ok) body = await res.arrayBuffer();
        else body = new ArrayBuffer(0);
      } catch (e) {
        if (signal?.aborted) throw abortReason(signal);
        if (isAbort(e) && !timedOut) throw e;
        const why = timedOut ? `no answer in ${Math.round(policy.stallTimeoutMs / 1000)} s` : describeCause(e);
        if (++failures > policy.retries)
          throw new HubError('network', `model ${ctx.id}: could not reach ${ctx.endpoint} after ${failures} attempts: ${why}`, {
            id: ctx.id,
            url: safeUrl(url),
            cause: e,
          });
        await sleep(backoffDelay(policy, failures), signal);
        continue;
      } finally {
        clearTimeout(timer);
        dispose();
      }
      if (res.ok) {
        const out = new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
        Object.defineProperty(out, 'url', { value: res.url || url });
        return out;
      }
      if (isRetryableStatus(res.status)) {
        await res.body?.cancel().catch(() => {});
        if (++failures > policy.retries)
          throw new HubError('network', `model ${ctx.id}: ${ctx.endpoint} answered ${res.status} ${res.statusText} ${failures} times in a row; try again later`, {
            id: ctx.id,
            status: res.status,
            url: safeUrl(url),
          });
        await sleep(backoffDelay(policy, failures, res.headers.get('retry-after')), signal);
        continue;
      }
      throw httpError(res.status, res.headers, url, ctx, await errorBodyMessage(res));
    }
  }) as typeof fetch;
}

export async function errorBodyMessage(res: Response): Promise<string | undefined> {
  try {
    const text = await res.text();
    if (!text) return undefined;
    try {
      const j = JSON.parse(text) as { error?: string; message?: string };
      return j.error ?? j.message ?? text;
    } catch {
      return text;
    }
  } catch {
    return undefined;
  }
}
