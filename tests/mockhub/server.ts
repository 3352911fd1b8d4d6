// A local mock of the Hugging Face Hub for tests (hub, CLI, browser end to end). It speaks what
// @huggingface/hub and src/hub use:
//
//   GET  /api/models/{id}/revision/{rev}          model info ({ id, sha, siblings, private, gated })
//   GET  /api/models/{id}/tree/{rev}[/{path}]     listing (?recursive=true), paginated with Link
//   POST /api/models/{id}/paths-info/{rev}        { paths } -> entries
//   GET|HEAD /{id}/resolve/{rev}/{path}           content; Range; LFS files redirect (302) to
//   GET|HEAD /lfs-cdn/{sha256}                    the "CDN", as the Hub does
//
// with the Hub's headers (ETag, X-Repo-Commit, X-Linked-Etag, X-Linked-Size, Content-Range,
// X-Error-Code: RepoNotFound / RevisionNotFound / EntryNotFound / GatedRepo), tokens (private
// and gated repos), CORS (a page on another origin can use it), history (commit() moves main, old
// commits stay reachable), a request log, and fault injection (setFaults): a connection cut
// mid-file, a stalled connection, 429/503 answers, a truncated body, corrupted bytes, ignored Range.
//
//   const hub = await startMockHub({ repos: { 'org/tiny': { files: { 'config.json': '{}', 'model.safetensors': bytes } } } });
//   process.env.HF_ENDPOINT = hub.url; ... ; await hub.close();

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createHash } from 'node:crypto';
import type { AddressInfo } from 'node:net';

export type FileContent = Uint8Array | string | GeneratedContent;

/** A file made on demand, for sizes a test should not hold in memory (a model over 2 GiB). */
export interface GeneratedContent {
  size: number;
  /** Bytes [start, end) of the file. */
  read(start: number, end: number): Uint8Array;
}

export interface MockRepo {
  files: Record<string, FileContent>;
  /** The commit sha of this content (default: derived from the content). */
  revision?: string;
  /** Needs a valid token. */
  private?: boolean;
  /** Needs a valid token that accepted the license (see `grantedTokens`). */
  gated?: boolean;
  /** Tokens that accepted a gated repo's license (default: every valid token). */
  grantedTokens?: string[];
  /** Which paths are LFS (default: weights by extension, and files over 10 KB). */
  lfs?: (path: string, size: number) => boolean;
}

interface Times {
  /** How many requests the fault hits (default 1; Infinity for always). */
  times?: number;
}

export interface MockFaults {
  /** Answer matching requests with this status (429, 503, ...). `match`: substring of the URL path. */
  status?: OneOrMany<{ code: number; match?: string; retryAfter?: number } & Times>;
  /**
   * Close the connection after sending `afterBytes` of a file's body (Content-Length is full).
   * mode 'close' (default): the connection ends (FIN) mid-body; 'reset': the socket is destroyed.
   * Either way a client may lose bytes it had received but not yet read (fetch drops a body
   * stream's queue when it errors): assert resume points loosely.
   */
  cut?: OneOrMany<{ file: string; afterBytes: number; mode?: 'close' | 'reset' } & Times>;
  /** End a file's body cleanly after `bytes` bytes (chunked, no Content-Length). */
  truncate?: OneOrMany<{ file: string; bytes: number } & Times>;
  /** Flip one byte of a file's content (a wrong hash). */
  corrupt?: OneOrMany<{ file: string; at?: number } & Times>;
  /** Go silent after `afterBytes` of a file's body, for `ms` (default: until the client hangs up). */
  stall?: OneOrMany<{ file: string; afterBytes: number; ms?: number } & Times>;
  /** Answer 200 with the whole file to Range requests. */
  ignoreRange?: OneOrMany<{ file?: string } & Times>;
  /** Wait this long before every file body (ms). */
  delayMs?: number;
  /** Send file bodies at this rate at most (bytes/s), in 16 KiB pieces. */
  bytesPerSecond?: number;
}

type OneOrMany<T> = T | T[];

export interface MockHubOptions {
  repos: Record<string, MockRepo>;
  faults?: MockFaults;
  /** Valid tokens (default ["hf_mock_token"]). */
  tokens?: string[];
  /** Tree listing page size (default 1000; the Hub paginates with a Link header). */
  treePageSize?: number;
  /** LFS files answer resolve with a 302 to /lfs-cdn (default true, as the Hub). */
  lfsRedirect?: boolean;
  /** Port (default: any free). */
  port?: number;
}

export interface MockRequest {
  method: string;
  path: string;
  kind: 'info' | 'tree' | 'paths-info' | 'resolve' | 'cdn' | 'other';
  /** The file, for resolve/cdn. */
  file?: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes sent (files). */
  bytes: number;
  /** A fault that hit this request. */
  fault?: string;
}

export interface MockHub {
  url: string;
  close(): Promise<void>;
  /** Replace the faults (counters start over). */
  setFaults(faults: MockFaults): void;
  /** A new commit on main with these files (a changed revision); returns its sha. */
  commit(id: string, files: Record<string, FileContent>, opts?: { revision?: string; branch?: string }): string;
  /** Add or replace a repo. */
  setRepo(id: string, repo: MockRepo): void;
  /** The commit sha a branch points to. */
  head(id: string, branch?: string): string;
  readonly requests: MockRequest[];
  clearRequests(): void;
  /** Body bytes sent for a file (all requests so far). */
  bytesSent(file: string): number;
}

interface StoredFile {
  path: string;
  size: number;
  read(start: number, end: number): Uint8Array;
  lfs: boolean;
  sha256: string;
  gitOid: string;
  pointerOid?: string;
  pointerSize?: number;
}

interface Commit {
  sha: string;
  files: Map<string, StoredFile>;
}

interface RepoState {
  id: string;
  private: boolean;
  gated: boolean;
  granted?: string[];
  lfs: (path: string, size: number) => boolean;
  commits: Map<string, Commit>;
  branches: Map<string, string>;
}

const enc = new TextEncoder();
const gitOid = (b: Uint8Array) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

function generated(c: FileContent): GeneratedContent {
  if (typeof c === 'string' || c instanceof Uint8Array) {
    const data = typeof c === 'string' ? enc.encode(c) : c;
    return { size: data.length, read: (start, end) => data.subarray(start, end) };
  }
  return c;
}

/** sha256 and git oid of a file, read 64 MiB at a time. */
function hashes(c: GeneratedContent): { sha256: string; gitOid: string } {
  const sha = createHash('sha256');
  const git = createHash('sha1').update(`blob ${c.size}\0`);
  for (let pos = 0; pos < c.size; pos += 1 << 26) {
    const piece = c.read(pos, Math.min(c.size, pos + (1 << 26)));
    sha.update(piece);
    git.update(piece);
  }
  return { sha256: sha.digest('hex'), gitOid: git.digest('hex') };
}
const defaultLfs = (path: string, size: number) => /\.(safetensors|bin|gguf|pt|pth|onnx|h5|msgpack|npz|model)$/.test(path) || size > 10_000;

function list<T>(x: OneOrMany<T> | undefined): T[] {
  return x === undefined ? [] : Array.isArray(x) ? x : [x];
}

function makeCommit(files: Record<string, FileContent>, lfs: RepoState['lfs'], sha?: string, salt = ''): Commit {
  const map = new Map<string, StoredFile>();
  const h = createHash('sha1').update(salt);
  for (const [path, content] of Object.entries(files).sort(([a], [b]) => (a < b ? -1 : 1))) {
    const c = generated(content);
    const f: StoredFile = { path, size: c.size, read: c.read, lfs: lfs(path, c.size), ...hashes(c) };
    if (f.lfs) {
      const pointer = enc.encode(`version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${c.size}\n`);
      f.pointerOid = gitOid(pointer);
      f.pointerSize = pointer.length;
    }
    map.set(path, f);
    h.update(path).update('\0').update(f.sha256);
  }
  return { sha: sha ?? h.digest('hex'), files: map };
}

const CORS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': 'authorization, range, content-type, accept, if-none-match, if-range',
  'access-control-allow-methods': 'GET, HEAD, POST, OPTIONS',
  'access-control-expose-headers':
    'content-range, content-length, accept-ranges, etag, link, x-repo-commit, x-linked-etag, x-linked-size, x-error-code, x-error-message, retry-after',
};

export async function startMockHub(opts: MockHubOptions): Promise<MockHub> {
  const tokens = new Set(opts.tokens ?? ['hf_mock_token']);
  const repos = new Map<string, RepoState>();
  const requests: MockRequest[] = [];
  let faults: MockFaults = {};
  let counters = new Map<object, number>();
  let commitCounter = 0;

  const setRepo = (id: string, r: MockRepo) => {
    const lfs = r.lfs ?? defaultLfs;
    const c = makeCommit(r.files, lfs, r.revision, `${id}`);
    repos.set(id, {
      id,
      private: !!r.private,
      gated: !!r.gated,
      granted: r.grantedTokens,
      lfs,
      commits: new Map([[c.sha, c]]),
      branches: new Map([['main', c.sha]]),
    });
  };
  for (const [id, r] of Object.entries(opts.repos)) setRepo(id, r);
  const setFaults = (f: MockFaults) => {
    faults = f;
    counters = new Map();
  };
  setFaults(opts.faults ?? {});

  /** Whether a fault fires now (and count it). */
  const fire = (f: Times & object): boolean => {
    const n = counters.get(f) ?? 0;
    if (n >= (f.times ?? 1)) return false;
    counters.set(f, n + 1);
    return true;
  };

  function sendError(res: ServerResponse, log: MockRequest, status: number, code: string | undefined, message: string, extra: Record<string, string> = {}) {
    log.status = status;
    const headers: Record<string, string> = { ...CORS, 'content-type': 'application/json', ...extra };
    if (code) headers['x-error-code'] = code;
    headers['x-error-message'] = message;
    res.writeHead(status, headers);
    res.end(JSON.stringify({ error: message }));
  }

  function sendJson(res: ServerResponse, log: MockRequest, body: unknown, headers: Record<string, string> = {}) {
    log.status = 200;
    res.writeHead(200, { ...CORS, 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify(body));
  }

  /** Access control as the Hub does it; returns false after answering. */
  function access(req: IncomingMessage, res: ServerResponse, log: MockRequest, repo: RepoState | undefined, id: string): repo is RepoState {
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
    if (token !== undefined && !tokens.has(token)) {
      sendError(res, log, 401, undefined, 'Invalid credentials in Authorization header');
      return false;
    }
    if (!repo || (repo.private && !token)) {
      // Without a token the Hub does not say whether a private repo exists.
      if (!token) sendError(res, log, 401, 'RepoNotFound', `Repository Not Found for url: ${req.url}. Please make sure you specified the correct repo id and that you are authenticated.`);
      else sendError(res, log, 404, 'RepoNotFound', `Repository ${id} not found`);
      return false;
    }
    if (repo.gated) {
      if (!token) {
        sendError(res, log, 401, 'GatedRepo', `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
        return false;
      }
      if (repo.granted && !repo.granted.includes(token)) {
        sendError(res, log, 403, 'GatedRepo', `Access to model ${id} is restricted and you are not in the authorized list. Visit https://huggingface.co/${id} to ask for access.`);
        return false;
      }
    }
    return true;
  }

  function commitOf(repo: RepoState, rev: string): Commit | undefined {
    const r = rev === 'HEAD' ? 'main' : rev;
    const sha = repo.branches.get(r) ?? r;
    return repo.commits.get(sha);
  }

  function treeEntry(f: StoredFile) {
    return f.lfs
      ? { type: 'file', oid: f.pointerOid, size: f.size, path: f.path, lfs: { oid: f.sha256, size: f.size, pointerSize: f.pointerSize } }
      : { type: 'file', oid: f.gitOid, size: f.size, path: f.path };
  }

  function dirEntries(c: Commit, prefix: string, recursive: boolean) {
    const out: Array<Record<string, unknown>> = [];
    const dirs = new Set<string>();
    for (const f of c.files.values()) {
      if (prefix && !f.path.startsWith(prefix + '/')) continue;
      const rest = prefix ? f.path.slice(prefix.length + 1) : f.path;
      const parts = rest.split('/');
      for (let i = 1; i < parts.length; i++) {
        if (!recursive && i > 1) break;
        dirs.add((prefix ? prefix + '/' : '') + parts.slice(0, i).join('/'));
      }
      if (recursive || parts.length === 1) out.push(treeEntry(f));
    }
    for (const d of dirs) out.push({ type: 'directory', oid: createHash('sha1').update(d).digest('hex'), size: 0, path: d });
    return out.sort((a, b) => ((a.path as string) < (b.path as string) ? -1 : 1));
  }

  async function sendFile(req: IncomingMessage, res: ServerResponse, log: MockRequest, f: StoredFile, extra: Record<string, string>) {
    for (const s of list(faults.status))
      if ((s.match === undefined || log.path.includes(s.match) || log.file === s.match) && fire(s)) {
        log.fault = `status ${s.code}`;
        log.status = s.code;
        res.writeHead(s.code, { ...CORS, 'content-type': 'text/plain', ...(s.retryAfter !== undefined ? { 'retry-after': String(s.retryAfter) } : {}) });
        res.end(`injected ${s.code}`);
        return;
      }
    const size = f.size;
    const corrupt = list(faults.corrupt).find((c) => c.file === f.path && fire(c));
    // the byte flipped on the way out
    const flipAt = corrupt ? Math.min(size - 1, corrupt.at ?? size >> 1) : -1;
    if (corrupt) log.fault = 'corrupt';
    const headers: Record<string, string> = {
      ...CORS,
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      etag: `"${f.lfs ? f.sha256 : f.gitOid}"`,
      ...extra,
    };
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = req.headers.range;
    const ignore = range ? list(faults.ignoreRange).find((g) => (g.file === undefined || g.file === f.path) && fire(g)) : undefined;
    if (ignore) log.fault = 'ignoreRange';
    if (range && !ignore) {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      if (!m || (m[1] === '' && m[2] === '')) {
        log.status = 416;
        res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
        return void res.end();
      }
      if (m[1] === '') {
        start = Math.max(0, size - Number(m[2]));
      } else {
        start = Number(m[1]);
        if (m[2] !== '') end = Math.min(end, Number(m[2]));
      }
      if (start >= size || start > end) {
        log.status = 416;
        res.writeHead(416, { ...headers, 'content-range': `bytes */${size}` });
        return void res.end();
      }
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${size}`;
    }
    let bodyLength = end + 1 - start;
    const truncate = list(faults.truncate).find((t) => t.file === f.path && fire(t));
    const cut = truncate ? undefined : list(faults.cut).find((c) => c.file === f.path && fire(c));
    if (truncate) {
      log.fault = 'truncate';
      bodyLength = Math.min(bodyLength, Math.max(0, truncate.bytes));
    } else headers['content-length'] = String(bodyLength);
    const bodyPiece = (from: number, to: number): Uint8Array => {
      const bytes = f.read(start + from, start + to);
      if (flipAt < start + from || flipAt >= start + to) return bytes;
      const copy = bytes.slice();
      copy[flipAt - start - from]! ^= 0xff;
      return copy;
    };
    log.status = status;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return void res.end();
    if (faults.delayMs) await new Promise((r) => setTimeout(r, faults.delayMs));
    const limit = cut ? Math.min(cut.afterBytes, bodyLength) : bodyLength;
    if (cut) log.fault = 'cut';
    const stall = list(faults.stall).find((t) => t.file === f.path && t.afterBytes < bodyLength && fire(t));
    const piece = 16 * 1024;
    for (let pos = 0; pos < limit; pos += piece) {
      let next = Math.min(limit, pos + piece);
      if (stall && pos < stall.afterBytes && next > stall.afterBytes) next = stall.afterBytes;
      if (stall && pos === stall.afterBytes) {
        log.fault = 'stall';
        await new Promise<void>((r) => {
          const t = stall.ms === undefined ? undefined : setTimeout(r, stall.ms);
          res.once('close', () => (clearTimeout(t), r()));
        });
        if (res.destroyed) return;
      }
      const part = bodyPiece(pos, next);
      // Wait for each piece to be handed to the socket: exact byte counts, and a cut lands after them.
      await new Promise<void>((r) => res.write(part, () => r()));
      log.bytes += part.length;
      if (faults.bytesPerSecond) await new Promise((r) => setTimeout(r, (part.length / faults.bytesPerSecond!) * 1000));
      if (res.destroyed) return;
      pos = next - piece;
    }
    if (cut) {
      // A moment for the client to take the bytes (a client may still drop what it had queued).
      await new Promise((r) => setTimeout(r, 20));
      if (cut.mode === 'reset') req.socket.destroy();
      else req.socket.end();
      return;
    }
    res.end();
  }

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    const log: MockRequest = {
      method: req.method ?? 'GET',
      path: url.pathname + url.search,
      kind: 'other',
      range: req.headers.range,
      authorization: req.headers.authorization,
      status: 0,
      bytes: 0,
    };
    requests.push(log);
    if (req.method === 'OPTIONS') {
      log.status = 204;
      res.writeHead(204, CORS);
      return void res.end();
    }

    let m: RegExpExecArray | null;
    // API routes: answer injected statuses first (files handle theirs in sendFile).
    const apiFault = () => {
      for (const s of list(faults.status))
        if ((s.match === undefined || log.path.includes(s.match)) && fire(s)) {
          log.fault = `status ${s.code}`;
          sendError(res, log, s.code, undefined, `injected ${s.code}`, s.retryAfter !== undefined ? { 'retry-after': String(s.retryAfter) } : {});
          return true;
        }
      return false;
    };

    if ((m = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(path))) {
      log.kind = 'info';
      if (apiFault()) return;
      const [, id, rev] = m as unknown as [string, string, string];
      const repo = repos.get(id);
      if (!access(req, res, log, repo, id)) return;
      const c = commitOf(repo, rev);
      if (!c) return sendError(res, log, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return sendJson(res, log, {
        _id: `mock-${id}`,
        id,
        modelId: id,
        sha: c.sha,
        private: repo.private,
        gated: repo.gated ? 'auto' : false,
        downloads: 0,
        likes: 0,
        lastModified: new Date(0).toISOString(),
        tags: [],
        siblings: [...c.files.keys()].map((rfilename) => ({ rfilename })),
      });
    }

    if ((m = /^\/api\/models\/(.+?)\/tree\/([^/]+)(?:\/(.*))?$/.exec(path))) {
      log.kind = 'tree';
      if (apiFault()) return;
      const [, id, rev, sub] = m as unknown as [string, string, string, string | undefined];
      const repo = repos.get(id);
      if (!access(req, res, log, repo, id)) return;
      const c = commitOf(repo, rev);
      if (!c) return sendError(res, log, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      const all = dirEntries(c, sub ?? '', url.searchParams.get('recursive') === 'true');
      const pageSize = opts.treePageSize ?? 1000;
      const from = Number(url.searchParams.get('cursor') ?? 0);
      const page = all.slice(from, from + pageSize);
      const headers: Record<string, string> = {};
      if (from + pageSize < all.length) {
        const next = new URL(`http://${req.headers.host}${url.pathname}${url.search}`);
        next.searchParams.set('cursor', String(from + pageSize));
        headers.link = `<${next.href}>; rel="next"`;
      }
      return sendJson(res, log, page, headers);
    }

    if ((m = /^\/api\/models\/(.+?)\/paths-info\/([^/]+)$/.exec(path)) && req.method === 'POST') {
      log.kind = 'paths-info';
      const chunks: Buffer[] = [];
      for await (const ch of req) chunks.push(ch as Buffer);
      if (apiFault()) return;
      const [, id, rev] = m as unknown as [string, string, string];
      const repo = repos.get(id);
      if (!access(req, res, log, repo, id)) return;
      const c = commitOf(repo, rev);
      if (!c) return sendError(res, log, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      let paths: string[] = [];
      try {
        paths = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { paths?: string[] }).paths ?? [];
      } catch {
        return sendError(res, log, 400, undefined, 'bad JSON');
      }
      const out = paths.flatMap((p) => {
        const f = c.files.get(p);
        if (f) return [treeEntry(f)];
        if ([...c.files.keys()].some((k) => k.startsWith(p + '/'))) return [{ type: 'directory', oid: '0'.repeat(40), size: 0, path: p }];
        return [];
      });
      return sendJson(res, log, out);
    }

    if ((m = /^\/lfs-cdn\/([0-9a-f]{64})$/.exec(path))) {
      log.kind = 'cdn';
      const sha = m[1]!;
      for (const repo of repos.values())
        for (const c of repo.commits.values())
          for (const f of c.files.values())
            if (f.sha256 === sha) {
              log.file = f.path;
              return sendFile(req, res, log, f, {});
            }
      return sendError(res, log, 404, undefined, 'no such object');
    }

    if ((m = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(path))) {
      log.kind = 'resolve';
      const [, id, rev, file] = m as unknown as [string, string, string, string];
      log.file = file;
      const repo = repos.get(id);
      if (!access(req, res, log, repo, id)) return;
      const c = commitOf(repo, rev);
      if (!c) return sendError(res, log, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      const f = c.files.get(file);
      if (!f) return sendError(res, log, 404, 'EntryNotFound', `${file} does not exist on "${rev}"`);
      const extra: Record<string, string> = { 'x-repo-commit': c.sha };
      if (f.lfs) {
        extra['x-linked-etag'] = `"${f.sha256}"`;
        extra['x-linked-size'] = String(f.size);
        if (opts.lfsRedirect ?? true) {
          log.status = 302;
          res.writeHead(302, { ...CORS, ...extra, etag: `"${f.pointerOid}"`, location: `/lfs-cdn/${f.sha256}` });
          return void res.end();
        }
      }
      return sendFile(req, res, log, f, extra);
    }

    sendError(res, log, 404, undefined, `mock hub: no route for ${req.method} ${path}`);
  }

  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((req, res) => {
    handle(req, res).catch((e) => {
      if (!res.headersSent) res.writeHead(500, CORS);
      res.end(String(e));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
    setFaults,
    setRepo,
    commit(id, files, o = {}) {
      const repo = repos.get(id);
      if (!repo) throw new Error(`mock hub: no repo ${id}`);
      const c = makeCommit(files, repo.lfs, o.revision, `${id}#${++commitCounter}`);
      repo.commits.set(c.sha, c);
      repo.branches.set(o.branch ?? 'main', c.sha);
      return c.sha;
    },
    head(id, branch = 'main') {
      const sha = repos.get(id)?.branches.get(branch);
      if (!sha) throw new Error(`mock hub: no ${id}@${branch}`);
      return sha;
    },
    requests,
    clearRequests() {
      requests.length = 0;
    },
    bytesSent(file) {
      return requests.filter((r) => r.file === file).reduce((a, r) => a + r.bytes, 0);
    },
  };
}
