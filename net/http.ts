/**
 * HTTP(S) for what strata downloads and uploads: ADD's URL sources and registries.
 *
 * The `strata` command starts Node without NODE_EXTRA_CA_CERTS (see scripts/strata-cli.cjs): with
 * it, Node parses every root certificate at each start, ~85 ms on the benchmark machine, and
 * strata starts a Node for every command and every mount. The variable's value comes through as
 * STRATA_EXTRA_CA_CERTS, and its certificates are trusted here, on top of Node's own roots, only
 * when a connection needs them.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { pipeline, type Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';

export class HttpError extends Error {}

const MAX_REDIRECTS = 10;

let extraRoots: string[] | null | undefined;

/** Node's roots plus those of STRATA_EXTRA_CA_CERTS, or null when it names nothing. */
function trustedRoots(): string[] | null {
  if (extraRoots !== undefined) return extraRoots;
  const file = process.env['STRATA_EXTRA_CA_CERTS'] || process.env['NODE_EXTRA_CA_CERTS'] || '';
  if (file === '') return (extraRoots = null);
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    // Node itself only warns about an unreadable NODE_EXTRA_CA_CERTS, and so does strata.
    process.emitWarning(`ignoring extra CA certificates ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    return (extraRoots = null);
  }
  return (extraRoots = [...rootCertificates, pem]);
}

export interface RequestOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  /** Sent as it is: a Buffer with its length, a stream chunked. */
  body?: Buffer | Readable;
  /** Longest silence on the connection. */
  idleTimeoutMs?: number;
}

/** One request, no redirects followed; the response's body is the caller's to read or drop. */
export function request(url: URL, opts: RequestOptions = {}): Promise<IncomingMessage> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(new HttpError(`unsupported URL scheme ${url.protocol}`));
  }
  const timeout = opts.idleTimeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const roots = url.protocol === 'https:' ? trustedRoots() : null;
    const headers: OutgoingHttpHeaders = { ...opts.headers };
    if (Buffer.isBuffer(opts.body)) headers['content-length'] = opts.body.length;
    const options = { method: opts.method ?? 'GET', headers, timeout, ...(roots !== null ? { ca: roots } : {}) };
    const req = (url.protocol === 'https:' ? httpsRequest : httpRequest)(url, options, resolve);
    req.on('timeout', () => req.destroy(new HttpError(`${url.host}: no answer in ${Math.round(timeout / 1000)} s`)));
    req.on('error', reject);
    const body = opts.body;
    if (body === undefined) req.end();
    else if (Buffer.isBuffer(body)) req.end(body);
    // A server may answer (and close) before the body is all sent: the body is destroyed then,
    // so that whatever produces it stops instead of waiting for a reader that is gone.
    else pipeline(body, req, (err) => err && req.destroy(err));
  });
}

/**
 * The response to GET `url` after following redirects: a 2xx, or an HttpError naming the
 * status. The body is the caller's to read (or destroy).
 */
export async function getUrl(url: string, timeoutMs: number): Promise<IncomingMessage> {
  let current = new URL(url);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await request(current, { idleTimeoutMs: timeoutMs });
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && location !== undefined) {
      res.resume();
      current = new URL(location, current);
      continue;
    }
    if (status < 200 || status >= 300) {
      res.resume();
      throw new HttpError(`HTTP ${status} ${res.statusMessage ?? ''}`.trim());
    }
    return res;
  }
  throw new HttpError(`more than ${MAX_REDIRECTS} redirects`);
}

/** A response's whole body, refused beyond `limit` bytes (manifests, configs, tokens, errors). */
export async function readBody(res: IncomingMessage, limit = 16 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res) {
    size += (c as Buffer).length;
    if (size > limit) {
      res.destroy();
      throw new HttpError(`a response over ${limit} bytes`);
    }
    chunks.push(c as Buffer);
  }
  return Buffer.concat(chunks);
}
