/**
 * HTTP(S) GET with redirects, for ADD's URL sources (and anything else strata downloads).
 *
 * The `strata` command starts Node without NODE_EXTRA_CA_CERTS (see scripts/strata-cli.cjs): with
 * it, Node parses every root certificate at each start, ~85 ms on the benchmark machine, and
 * strata starts a Node for every command and every mount. The variable's value comes through as
 * STRATA_EXTRA_CA_CERTS, and its certificates are trusted here, on top of Node's own roots, only
 * when a download needs them.
 */
import { readFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage } from 'node:http';
import { get as httpsGet } from 'node:https';
import { rootCertificates } from 'node:tls';

export class HttpGetError extends Error {}

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

/**
 * The response to GET `url` after following redirects: a 2xx, or an HttpGetError naming the
 * status. The body is the caller's to read (or destroy).
 */
export async function getUrl(url: string, timeoutMs: number): Promise<IncomingMessage> {
  const deadline = Date.now() + timeoutMs;
  let current = new URL(url);
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const res = await request(current, Math.max(1, deadline - Date.now()));
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && location !== undefined) {
      res.resume();
      current = new URL(location, current);
      continue;
    }
    if (status < 200 || status >= 300) {
      res.resume();
      throw new HttpGetError(`HTTP ${status} ${res.statusMessage ?? ''}`.trim());
    }
    return res;
  }
  throw new HttpGetError(`more than ${MAX_REDIRECTS} redirects`);
}

function request(url: URL, timeoutMs: number): Promise<IncomingMessage> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return Promise.reject(new HttpGetError(`unsupported URL scheme ${url.protocol}`));
  }
  return new Promise((resolve, reject) => {
    const roots = url.protocol === 'https:' ? trustedRoots() : null;
    const options = { timeout: timeoutMs, ...(roots !== null ? { ca: roots } : {}) };
    const req = (url.protocol === 'https:' ? httpsGet : httpGet)(url, options, resolve);
    req.on('timeout', () => req.destroy(new HttpGetError(`no answer in ${Math.round(timeoutMs / 1000)} s`)));
    req.on('error', reject);
  });
}
