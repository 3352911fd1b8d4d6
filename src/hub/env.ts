// Where settings come from. Node: HF_ENDPOINT, HF_TOKEN (then HUGGING_FACE_HUB_TOKEN, then the
// token file that `huggingface-cli login` writes, read by the Node store), HF_HUB_OFFLINE.
// Browser: the app's session token (memory only: never persisted, never logged) and offline switch.

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

function envVar(name: string): string | undefined {
  const p = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process;
  const v = p?.env?.[name];
  return v === undefined || v === '' ? undefined : v;
}

export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === 'string' && typeof (globalThis as { window?: unknown }).window === 'undefined';
}

export function resolveEndpoint(endpoint?: string): string {
  return (endpoint ?? envVar('HF_ENDPOINT') ?? DEFAULT_ENDPOINT).replace(/\/+$/, '');
}

let offlineSwitch = false;

/** The app's offline switch (the browser's HF_HUB_OFFLINE). */
export function setOfflineMode(offline: boolean): void {
  offlineSwitch = offline;
}

export function resolveOffline(offline?: boolean): boolean {
  if (offline !== undefined) return offline;
  if (offlineSwitch) return true;
  const v = envVar('HF_HUB_OFFLINE');
  return v !== undefined && /^(1|true|yes|on)$/i.test(v.trim());
}

// The session token lives in this closure only: not in localStorage, sessionStorage or IndexedDB.
let sessionToken: string | undefined;

/** Keep a token for this page session (browser sign-in). `undefined` forgets it. */
export function setSessionToken(token: string | undefined): void {
  sessionToken = token?.trim() || undefined;
}

export function hasSessionToken(): boolean {
  return sessionToken !== undefined;
}

/**
 * The token to use: explicit option (`false` = anonymous), else HF_TOKEN / HUGGING_FACE_HUB_TOKEN,
 * else the session token, else what the store can find (the Node store reads $HF_HOME/token).
 */
export async function resolveToken(token: string | false | undefined, fromStore?: () => Promise<string | undefined>): Promise<string | undefined> {
  if (token === false) return undefined;
  if (token !== undefined) return token.trim() || undefined;
  const env = envVar('HF_TOKEN') ?? envVar('HUGGING_FACE_HUB_TOKEN');
  if (env) return env.trim();
  if (sessionToken) return sessionToken;
  return fromStore ? await fromStore() : undefined;
}
