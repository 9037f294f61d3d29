/**
 * PAX extended headers, binary-safe. tar-stream decodes every PAX value as UTF-8, which mangles
 * xattr values (security.capability and POSIX ACLs are binary), and encodes them the same way.
 * Its two codecs are swapped for binary-safe ones. Reading keeps `SCHILY.xattr.*` values as latin1
 * strings (one char per byte; `Buffer.from(v, 'latin1')` gives the bytes back) and decodes the
 * rest as UTF-8. Writing takes Buffer values as raw bytes (a header's `pax` field may hold them).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const XATTR_PAX_PREFIX = 'SCHILY.xattr.';

function decodePax(buf: Buffer): Record<string, string> {
  const result: Record<string, string> = {};
  let off = 0;
  while (off < buf.length) {
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) break;
    const len = parseInt(buf.toString('latin1', off, sp), 10);
    if (!(len > 0) || off + len > buf.length) break;
    const rec = buf.subarray(sp + 1, off + len - 1); // without the trailing newline
    const eq = rec.indexOf(0x3d);
    if (eq < 0) break;
    const key = rec.toString('utf8', 0, eq);
    result[key] = rec.toString(key.startsWith(XATTR_PAX_PREFIX) ? 'latin1' : 'utf8', eq + 1);
    off += len;
  }
  return result;
}

let installed = false;

/**
 * Make tar-stream's extractor decode PAX records with decodePax. Its package exports hide
 * headers.js, but the module is the one extract.js calls through, so the swap reaches it.
 */
export function installBinarySafePax(): void {
  if (installed) return;
  const require = createRequire(import.meta.url);
  const headersPath = join(dirname(require.resolve('tar-stream')), 'headers.js');
  const headers = require(headersPath) as {
    decodePax: (b: Buffer) => Record<string, string>;
    encodePax: (opts: { name?: string; linkname?: string; pax?: Record<string, string | Buffer> }) => Buffer;
  };
  headers.decodePax = decodePax;
  headers.encodePax = (opts) => {
    const records: Array<[string, string | Buffer]> = [];
    if (opts.name) records.push(['path', opts.name]);
    if (opts.linkname) records.push(['linkpath', opts.linkname]);
    for (const [k, v] of Object.entries(opts.pax ?? {})) records.push([k, v]);
    return encodePax(records);
  };
  installed = true;
}

/** One PAX record: "<len> <key>=<value>\n", where len counts itself. */
function record(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = body.length + String(body.length).length;
  if (String(len).length !== String(body.length).length) len = body.length + String(len).length;
  return Buffer.concat([Buffer.from(String(len), 'latin1'), body]);
}

/** The PAX block for records given as text (path, linkpath) and bytes (xattr values). */
export function encodePax(records: Array<[string, string | Buffer]>): Buffer {
  return Buffer.concat(records.map(([k, v]) => record(k, typeof v === 'string' ? Buffer.from(v, 'utf8') : v)));
}
