/**
 * One repository of a registry, through the OCI distribution API, with the registry's own
 * authentication: none, Basic, or Bearer tokens got from the realm its `WWW-Authenticate`
 * challenge names (with the saved credentials, if any, and the scopes a call needs).
 *
 * Plain HTTP only with --insecure or for a loopback registry, as Docker allows.
 */
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { readBody, request } from '../net/http.js';
import type { Credentials } from './credentials.js';

export class RegistryError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
  }
}

interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** `Bearer realm="...",service="...",scope="..."` into its scheme and parameters. */
export function parseChallenge(header: string): Challenge | null {
  const m = /^\s*(\w+)\s*(.*)$/.exec(header);
  if (m === null) return null;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'basic' && scheme !== 'bearer') return null;
  const params: Record<string, string> = {};
  for (const p of m[2]!.matchAll(/(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g)) params[p[1]!.toLowerCase()] = (p[2] ?? p[3] ?? '').replace(/\\(.)/g, '$1');
  return { scheme, params };
}

const MAX_REDIRECTS = 5;

export interface CallOptions {
  headers?: OutgoingHttpHeaders;
  body?: Buffer | Readable;
  /** The token scopes the call needs (default: pull on this repository). */
  scopes?: string[];
  /** Follow redirects (blob downloads are often sent to storage elsewhere). */
  follow?: boolean;
}

export class RegistryClient {
  private challenge: Challenge | null | undefined;
  /** Authorization headers by scope, each until it expires (Bearer tokens do; Basic does not). */
  private readonly authorizations = new Map<string, { header: string; until: number }>();

  constructor(
    readonly registry: string,
    readonly repository: string,
    private readonly opts: { insecure: boolean; credentials: Credentials | undefined },
  ) {}

  get scheme(): 'http' | 'https' {
    const host = this.registry.replace(/:\d+$/, '');
    return this.opts.insecure || host === 'localhost' || (isIP(host) === 4 && host.startsWith('127.')) || host === '[::1]' ? 'http' : 'https';
  }

  url(path: string): URL {
    return new URL(`${this.scheme}://${this.registry}${path}`);
  }

  pullScope(repository = this.repository): string {
    return `repository:${repository}:pull`;
  }

  pushScope(): string {
    return `repository:${this.repository}:pull,push`;
  }

  /** GET /v2/: whether the registry answers, and how it wants to be authenticated. */
  private async ping(): Promise<Challenge | null> {
    if (this.challenge !== undefined) return this.challenge;
    let res: IncomingMessage;
    try {
      res = await request(this.url('/v2/'), { idleTimeoutMs: 30_000 });
    } catch (err) {
      throw new RegistryError(`cannot reach the registry ${this.registry}: ${(err as Error).message}`);
    }
    res.resume();
    if (res.statusCode === 401) {
      const c = parseChallenge(String(res.headers['www-authenticate'] ?? ''));
      if (c === null) throw new RegistryError(`${this.registry} asks for authentication strata does not know (${res.headers['www-authenticate'] ?? 'no challenge'})`, 401);
      return (this.challenge = c);
    }
    if (res.statusCode !== 200) throw new RegistryError(`${this.registry} is not a registry (GET /v2/ answered ${res.statusCode})`, res.statusCode);
    return (this.challenge = null);
  }

  /** The Authorization header for `scopes` ('' when the registry wants none). */
  private async authorization(scopes: string[], fresh = false): Promise<string> {
    const key = scopes.join(' ');
    const known = this.authorizations.get(key);
    if (known !== undefined && !fresh && Date.now() < known.until) return known.header;
    const c = await this.ping();
    const creds = this.opts.credentials;
    const basic = creds === undefined ? undefined : 'Basic ' + Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
    let header = '';
    let until = Infinity;
    if (c?.scheme === 'basic') {
      if (basic === undefined) throw new RegistryError(`${this.registry} requires a login: strata login ${this.registry}`, 401);
      header = basic;
    } else if (c?.scheme === 'bearer') {
      const t = await this.token(c, scopes, basic);
      header = 'Bearer ' + t.token;
      // Renewed 10 s early: a request must not start with a token that lapses while it streams.
      until = Date.now() + Math.max(0, t.expiresIn - 10) * 1000;
    }
    this.authorizations.set(key, { header, until });
    return header;
  }

  /** A token from the challenge's realm, and its lifetime in seconds (60 when not given, as the spec says). */
  private async token(c: Challenge, scopes: string[], basic: string | undefined): Promise<{ token: string; expiresIn: number }> {
    const realm = c.params['realm'];
    if (realm === undefined) throw new RegistryError(`${this.registry}'s Bearer challenge names no realm`);
    const url = new URL(realm);
    if (c.params['service'] !== undefined) url.searchParams.set('service', c.params['service']);
    for (const s of scopes) url.searchParams.append('scope', s);
    let res: IncomingMessage;
    try {
      res = await request(url, { headers: basic === undefined ? {} : { authorization: basic }, idleTimeoutMs: 30_000 });
    } catch (err) {
      throw new RegistryError(`cannot reach the token service ${url.host}: ${(err as Error).message}`);
    }
    const body = await readBody(res, 1 << 20);
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new RegistryError(basic === undefined ? `${this.registry} requires a login: strata login ${this.registry}` : `${this.registry} refused the saved credentials`, 401);
    }
    if (res.statusCode !== 200) throw new RegistryError(`the token service ${url.host} answered ${res.statusCode}`, res.statusCode);
    let token: unknown;
    let expiresIn: unknown;
    try {
      const json = JSON.parse(body.toString('utf8')) as { token?: unknown; access_token?: unknown; expires_in?: unknown };
      token = json.token ?? json.access_token;
      expiresIn = json.expires_in;
    } catch {
      token = undefined;
    }
    if (typeof token !== 'string' || token === '') throw new RegistryError(`the token service ${url.host} gave no token`);
    return { token, expiresIn: typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn : 60 };
  }

  /** Check that the credentials (or none) give access to /v2/ (what `strata login` verifies). */
  async verifyLogin(): Promise<void> {
    const c = await this.ping();
    const header = c === null ? '' : await this.authorization([], true);
    const res = await request(this.url('/v2/'), { headers: header === '' ? {} : { authorization: header }, idleTimeoutMs: 30_000 });
    res.resume();
    if (res.statusCode === 401) throw new RegistryError(`${this.registry} refused the credentials`, 401);
    if (res.statusCode !== 200) throw new RegistryError(`${this.registry} answered ${res.statusCode}`, res.statusCode);
  }

  /**
   * One API call (`path` under the registry, or an absolute URL the registry gave, such as an
   * upload location). A 401 with a body that can be sent again gets one fresh token and a retry.
   */
  async call(method: string, path: string | URL, opts: CallOptions = {}): Promise<IncomingMessage> {
    const scopes = opts.scopes ?? [this.pullScope()];
    const start = typeof path === 'string' ? this.url(path) : path;
    const registry = this.url('/').origin;
    for (let attempt = 0; ; attempt++) {
      const auth = await this.authorization(scopes, attempt > 0);
      let url = start;
      let res: IncomingMessage;
      for (let hops = 0; ; hops++) {
        // Credentials go to the registry only: never to the storage it redirects to, nor to
        // itself over another scheme.
        const headers: OutgoingHttpHeaders = { ...opts.headers, ...(auth !== '' && url.origin === registry ? { authorization: auth } : {}) };
        try {
          res = await request(url, { method, headers, ...(opts.body !== undefined ? { body: opts.body } : {}) });
        } catch (err) {
          throw new RegistryError(`${this.registry}: ${method} ${url.pathname}: ${(err as Error).message}`);
        }
        const location = res.headers.location;
        const status = res.statusCode ?? 0;
        if (!opts.follow || status < 300 || status >= 400 || location === undefined || hops >= MAX_REDIRECTS) break;
        res.resume();
        url = new URL(location, url);
      }
      if (res.statusCode !== 401) return res;
      res.resume();
      if (url.origin !== registry) throw new RegistryError(`${url.host}, where ${this.registry} sent ${method} ${start.pathname}, refused it (401)`, 401);
      // A token that lapsed: one fresh one, if the body can be sent again.
      if (attempt === 0 && !(opts.body !== undefined && !Buffer.isBuffer(opts.body))) continue;
      throw new RegistryError(`${this.registry} requires a login for ${this.repository}: strata login ${this.registry}`, 401);
    }
  }

  /** A failed call as an error: the registry's own error codes and messages when it sent them. */
  async failure(res: IncomingMessage, what: string): Promise<RegistryError> {
    let detail = '';
    try {
      const body = await readBody(res, 1 << 20);
      const json = JSON.parse(body.toString('utf8')) as { errors?: Array<{ code?: string; message?: string }> };
      detail = (json.errors ?? []).map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ');
    } catch {
      // Not the registry's JSON: the status says it all.
    }
    return new RegistryError(`${what}: ${this.registry} answered ${res.statusCode}${detail !== '' ? ` (${detail})` : ''}`, res.statusCode);
  }
}
