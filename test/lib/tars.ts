/**
 * Layer tarballs made to order for tests, including ones no honest tool writes (absolute names,
 * `..`, links out of the layer), and binary-safe PAX xattrs.
 */
import { writeFileSync } from 'node:fs';
import { pack } from 'tar-stream';
import { installBinarySafePax } from '../../driver/store/pax.js';

export interface TarEntry {
  name: string;
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo';
  body?: string | Buffer;
  mode?: number;
  uid?: number;
  gid?: number;
  linkname?: string;
  mtime?: number;
  devmajor?: number;
  devminor?: number;
  xattrs?: Record<string, Buffer>;
}

export async function tarBytes(entries: TarEntry[]): Promise<Buffer> {
  installBinarySafePax();
  const p = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of p) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    const body = typeof e.body === 'string' ? Buffer.from(e.body) : e.body ?? Buffer.alloc(0);
    const type = e.type ?? 'file';
    await new Promise<void>((res, rej) => {
      const done = (err?: Error | null) => (err ? rej(err) : res());
      const header = {
          name: e.name,
          type,
          // Type bits keep a mode of 0 from becoming tar-stream's default.
          mode: (e.mode ?? (type === 'directory' ? 0o755 : 0o644)) | (type === 'directory' ? 0o040000 : 0o100000),
          uid: e.uid ?? 0,
          gid: e.gid ?? 0,
          mtime: new Date((e.mtime ?? 1_700_000_000) * 1000),
          ...(e.linkname !== undefined ? { linkname: e.linkname } : {}),
          ...(e.devmajor !== undefined ? { devmajor: e.devmajor, devminor: e.devminor ?? 0 } : {}),
          size: type === 'file' ? body.length : 0,
          ...(e.xattrs !== undefined ? { pax: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v])) } : {}),
        };
      // Only files take a body, even an empty one.
      if (type === 'file') p.entry(header, body, done);
      else p.entry(header, done);
    });
  }
  p.finalize();
  await done;
  return Buffer.concat(chunks);
}

export async function writeTar(path: string, entries: TarEntry[]): Promise<void> {
  writeFileSync(path, await tarBytes(entries));
}
