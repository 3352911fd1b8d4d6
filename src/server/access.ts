// Who may talk to the server. A browser on the same machine must not turn any web page into a
// client: no CORS headers unless an origin is allowed, requests a page sends from an origin that
// is not allowed are refused (a form post needs no preflight), the Host header must be a name
// this server answers to (against DNS rebinding), and an optional bearer key.

import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { timingSafeEqual } from 'node:crypto';
import { ApiError } from './protocol';

export interface AccessOptions {
  /** Bearer key required on /v1 routes; null: none. */
  apiKey: string | null;
  /** Origins (scheme://host[:port]) whose pages may call the API; '*' allows any. Default: none. */
  corsOrigins: readonly string[];
  /** Host names accepted besides localhost, IP addresses and this machine's name; '*' allows any. */
  allowedHosts: readonly string[];
}

/** True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^(::ffff:)?127\.\d+\.\d+\.\d+$/.test(h);
}

const forbidden = (message: string, code: string) => new ApiError(403, message, 'invalid_request_error', null, code);

export class AccessPolicy {
  private readonly origins: Set<string>;
  private readonly anyOrigin: boolean;
  private readonly hosts: Set<string>;
  private readonly anyHost: boolean;

  constructor(private readonly opts: AccessOptions) {
    this.origins = new Set(opts.corsOrigins.map((o) => o.replace(/\/+$/, '').toLowerCase()));
    this.anyOrigin = this.origins.has('*');
    this.hosts = new Set(['localhost', hostname().toLowerCase(), ...opts.allowedHosts.map((h) => h.toLowerCase())]);
    this.anyHost = this.hosts.has('*');
  }

  /**
   * Refuses (403) a Host this server does not answer to and a browser Origin that is not
   * allowed; returns the CORS headers for an allowed one.
   */
  check(req: IncomingMessage): Record<string, string> {
    const host = req.headers.host;
    if (host !== undefined && !this.hostAllowed(host)) {
      throw forbidden(
        `Host '${host}' is not allowed: this server answers to localhost, its IP addresses and the machine's name; start it with --allowed-host to add a name.`,
        'host_not_allowed',
      );
    }
    const origin = req.headers.origin;
    if (origin === undefined) return {};
    if (!this.anyOrigin && !this.origins.has(origin.toLowerCase())) {
      throw forbidden(`Origin '${origin}' is not allowed to use this API; start the server with --cors-origin ${origin} to allow it.`, 'origin_not_allowed');
    }
    return { 'Access-Control-Allow-Origin': this.anyOrigin ? '*' : origin, Vary: 'Origin' };
  }

  /** Refuses (401) a request without the API key, when one is set. */
  checkKey(req: IncomingMessage): void {
    const apiKey = this.opts.apiKey;
    if (!apiKey) return;
    const m = /^Bearer\s+(.+)$/i.exec((req.headers.authorization ?? '').trim());
    const given = Buffer.from(m?.[1]?.trim() ?? '');
    const want = Buffer.from(apiKey);
    if (!m || given.length !== want.length || !timingSafeEqual(given, want)) {
      throw new ApiError(
        401,
        m ? 'Incorrect API key provided.' : "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.",
        'invalid_request_error',
        null,
        'invalid_api_key',
      );
    }
  }

  /**
   * A rebinding attack reaches this server under the attacker's domain name. An IP address in
   * Host is safe (the browser connected to that address, so the page is of its own origin), and
   * localhost names never leave the machine.
   */
  private hostAllowed(header: string): boolean {
    if (this.anyHost) return true;
    const name = header
      .toLowerCase()
      .replace(/:\d*$/, '')
      .replace(/^\[(.*)\]$/, '$1')
      .replace(/\.$/, '');
    return isIP(name) !== 0 || name.endsWith('.localhost') || this.hosts.has(name);
  }
}
