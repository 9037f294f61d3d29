/**
 * diff: a layer as a tar, by Docker's changeset rules. Two sources:
 * - a stored layer replays its tar-split, giving back the exact bytes its DiffID names;
 * - a writable layer (an upper directory) is walked: depth-first, names sorted bytewise, parent
 *   directories included (copy-up put them there), whiteouts as empty `.wh.<name>` files (mode
 *   0600), opaque directories followed by `.wh..wh..opq` (mtime 0), hard links within the layer as
 *   links, xattrs as binary-safe `SCHILY.xattr.*`, times in whole seconds (clamped to
 *   SOURCE_DATE_EPOCH when set). A layer without changes is exactly 1024 zero bytes.
 * A directory strata renamed (a redirect to its lower content) is written as an opaque directory
 * with its whole merged content, since a tar cannot say "renamed".
 */
import { constants as fsc, readSync } from 'node:fs';
import { Readable } from 'node:stream';
import { pack as tarPack, type Header, type Pack } from 'tar-stream';

type Headers = Partial<Header> & Pick<Header, 'name'>;
import { sys } from '../native/sys.js';
import { E, errnoName } from '../fs/errno.js';
import { StoreError } from './errors.js';
import { OPAQUE_MARKER, WH_PREFIX, XATTR_OPAQUE, XATTR_REDIRECT, isWhiteoutStat, xattrFromLayer } from '../fs/encoding.js';
import { closeLayerStack, openLayerStack } from '../fs/layers.js';
import { newStat, S, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, statSize } from '../fs/stat.js';
import { Union } from '../fs/union.js';
import type { Node } from '../fs/node.js';
import { installBinarySafePax, XATTR_PAX_PREFIX } from './pax.js';
import type { StoredSegment } from './tar-split.js';

export interface DiffOptions {
  /** Clamp every mtime to this (seconds), as SOURCE_DATE_EPOCH asks. */
  sourceDateEpoch?: number | undefined;
}

/** The stored tar of a layer, byte for byte, from its split and its directory. */
export function replay(segments: AsyncIterable<StoredSegment>, layerDir: string): Readable {
  return Readable.from(replayChunks(segments, layerDir), { objectMode: false });
}

async function* replayChunks(segments: AsyncIterable<StoredSegment>, layerDir: string): AsyncGenerator<Buffer> {
  const root = sys.openAt(sys.AT_FDCWD, layerDir, fsc.O_RDONLY | sys.O_DIRECTORY, 0);
  if (root < 0) throw new StoreError(`cannot open layer ${layerDir} (${errnoName(root)})`);
  const st = newStat();
  // Segments are pulled a little ahead so that small payloads are read on the threadpool,
  // several at once, while earlier ones are written out.
  type Pending = { raw: Buffer } | { path: string; size: number; body?: Promise<Buffer> };
  const queue: Pending[] = [];
  const source = segments[Symbol.asyncIterator]();
  let done = false;
  let payloadsAhead = 0;
  const fill = async () => {
    while (!done && payloadsAhead < READ_AHEAD) {
      const next = await source.next();
      if (next.done === true) {
        done = true;
        break;
      }
      const seg = next.value;
      if ('raw' in seg) {
        queue.push(seg);
        continue;
      }
      const p: Pending = { path: seg.path, size: seg.size };
      // Paths in a split were written by applyLayer, which never lets one pass through a symlink.
      if (seg.size > 0 && seg.size <= READ_STEP) {
        p.body = readWhole(root, seg.path, seg.size);
        p.body.catch(() => undefined); // awaited in order below
      }
      queue.push(p);
      payloadsAhead++;
    }
  };
  try {
    for (;;) {
      await fill();
      const seg = queue.shift();
      if (seg === undefined) break;
      if ('raw' in seg) {
        yield seg.raw;
        continue;
      }
      payloadsAhead--;
      if (seg.body !== undefined) {
        let body: Buffer;
        try {
          body = await seg.body;
        } catch {
          throw new StoreError(`layer ${layerDir} changed on disk: ${seg.path} is missing or has another size; run strata check`);
        }
        yield body;
        continue;
      }
      const fd = sys.openAt(root, seg.path, fsc.O_RDONLY | sys.O_NOFOLLOW, 0);
      if (fd < 0 || sys.fstat(fd, st) < 0 || statSize(st) !== seg.size) {
        if (fd >= 0) sys.close(fd);
        throw new StoreError(`layer ${layerDir} changed on disk: ${seg.path} is missing or has another size; run strata check`);
      }
      if (seg.size === 0) {
        sys.close(fd);
        continue;
      }
      yield* fileChunks(fd, seg.size);
    }
  } finally {
    sys.close(root);
  }
}

/**
 * The `size` bytes of an open file, which is closed after. Read synchronously in 1 MiB steps:
 * this runs in CLI processes (never in a FUSE server), and most layer files are small, where a
 * threadpool round trip per file costs more than the read.
 */
async function* fileChunks(fd: number, size: number): AsyncGenerator<Buffer> {
  try {
    for (let pos = 0; pos < size; ) {
      const n = Math.min(READ_STEP, size - pos);
      const buf = Buffer.allocUnsafe(n);
      let got = 0;
      while (got < n) {
        const r = readSync(fd, buf, got, n - got, pos + got);
        if (r === 0) throw new StoreError('a layer file shrank while being read; run strata check');
        got += r;
      }
      pos += n;
      yield buf;
    }
  } finally {
    sys.close(fd);
  }
}

const READ_STEP = 1 << 20;

const BIG_ID = 0o777777;

interface Entry {
  rel: string;
  st: Uint32Array;
  /** Read the layer entry from: (fd, path) of its layer. */
  fd: number;
  path: string;
}

class DiffWriter {
  private readonly links = new Map<string, string>();

  constructor(
    private readonly pack: Pack,
    private readonly opts: DiffOptions,
  ) {
    installBinarySafePax();
  }

  private mtime(st: Uint32Array): Date {
    let sec = st[S.mtimeLo]! + (st[S.mtimeHi]! | 0) * 2 ** 32;
    if (this.opts.sourceDateEpoch !== undefined && sec > this.opts.sourceDateEpoch) sec = this.opts.sourceDateEpoch;
    return new Date(sec * 1000);
  }

  /**
   * Write one header and its data. PAX records (xattrs, ids too big for ustar) ride in the
   * header's `pax` field; tar-stream adds path and linkpath records itself when ustar cannot
   * hold them, and the binary-safe codec (pax.ts) writes Buffer values as bytes.
   */
  async write(h: Headers, xattrs: Array<[string, Buffer]>, data: { fd: number; path: string; prefetched?: Promise<Buffer> } | null): Promise<void> {
    const pax: Record<string, string | Buffer> = {};
    if ((h.uid ?? 0) > BIG_ID) pax['uid'] = String(h.uid);
    if ((h.gid ?? 0) > BIG_ID) pax['gid'] = String(h.gid);
    for (const [name, value] of xattrs) pax[XATTR_PAX_PREFIX + name] = value;
    if (Object.keys(pax).length > 0) h = { ...h, pax };
    if (data === null) {
      await this.entry(h, Buffer.alloc(0));
      return;
    }
    if ((h.size ?? 0) === 0) {
      await this.entry(h, Buffer.alloc(0));
      return;
    }
    if (data.prefetched !== undefined) {
      const body = await data.prefetched;
      if (body.length !== h.size) throw new Error(`${h.name} changed while being read`);
      await this.entry(h, body);
      return;
    }
    const fd = sys.openAt(data.fd, data.path, fsc.O_RDONLY | sys.O_NOFOLLOW, 0);
    if (fd < 0) throw new Error(`cannot read ${h.name} (${errnoName(fd)})`);
    const size = h.size ?? 0;
    if (size <= READ_STEP) {
      // Small files whole, as one buffer: the common case, without a stream per file.
      let body: Buffer = Buffer.alloc(0);
      for await (const c of fileChunks(fd, size)) body = c;
      await this.entry(h, body);
      return;
    }
    const src = Readable.from(fileChunks(fd, size));
    try {
      await new Promise<void>((resolve, reject) => {
        const sink = this.pack.entry(h, (err) => (err ? reject(err) : resolve()));
        // The entry fails with the archive: someone must listen, or its error would crash.
        sink.on('error', reject);
        src.on('error', (err) => {
          reject(err);
          sink.destroy(err);
        });
        src.pipe(sink as unknown as NodeJS.WritableStream);
      });
    } finally {
      // Whoever failed first, the file is not read any further (and its fd is closed).
      src.destroy();
    }
  }

  /** Entries other than files take no body (tar-stream refuses even an empty one). */
  private entry(h: Headers, body: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(err) : resolve());
      if (h.type === 'file' || h.type === 'contiguous-file') this.pack.entry(h, body, done);
      else this.pack.entry(h, done);
    });
  }

  /** The tar header of a layer entry (its data, if any, is read by write()). */
  header(e: Entry): Headers {
    const { st } = e;
    const fmt = st[S.mode]! & S_IFMT;
    const uid = st[S.uid]!;
    const gid = st[S.gid]!;
    const h: Headers = {
      name: e.rel,
      // With its type bits: tar-stream replaces a mode of 0 by 0644, and masks the type off.
      mode: st[S.mode]!,
      uid,
      gid,
      uname: uid === 0 ? 'root' : '',
      gname: gid === 0 ? 'root' : '',
      mtime: this.mtime(st),
      size: 0,
    };
    if (fmt !== S_IFDIR && st[S.nlink]! > 1) {
      const key = `${st[S.dev]}:${st[S.inoLo]}:${st[S.inoHi]}`;
      const first = this.links.get(key);
      if (first !== undefined) return { ...h, type: 'link', linkname: first };
      this.links.set(key, e.rel);
    }
    switch (fmt) {
      case S_IFDIR:
        return { ...h, type: 'directory', name: e.rel + '/' };
      case S_IFREG:
        return { ...h, type: 'file', size: statSize(st) };
      case S_IFLNK: {
        const target = sys.readlinkAt(e.fd, e.path);
        if (typeof target === 'number') throw new Error(`cannot read the symlink ${e.rel} (${errnoName(target)})`);
        return { ...h, type: 'symlink', linkname: target };
      }
      case S_IFCHR:
      case S_IFBLK: {
        const rdev = st[S.rdev]!;
        const major = ((rdev >>> 8) & 0xfff) >>> 0;
        const minor = ((rdev & 0xff) | ((rdev >>> 12) & 0xfff00)) >>> 0;
        return { ...h, type: fmt === S_IFCHR ? 'character-device' : 'block-device', devmajor: major, devminor: minor };
      }
      case S_IFIFO:
        return { ...h, type: 'fifo' };
      default:
        throw new Error(`${e.rel}: sockets cannot go into a layer`);
    }
  }

  xattrs(fd: number, path: string): Array<[string, Buffer]> {
    const names = sys.listxattrAt(fd, path);
    if (typeof names === 'number') return [];
    const out: Array<[string, Buffer]> = [];
    for (const stored of names) {
      const shown = xattrFromLayer(stored);
      if (shown === null) continue;
      const v = sys.getxattrAt(fd, path, stored);
      if (typeof v !== 'number') out.push([shown, v]);
    }
    return out.sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  }

  async whiteout(rel: string, st: Uint32Array): Promise<void> {
    const i = rel.lastIndexOf('/');
    const name = i < 0 ? WH_PREFIX + rel : `${rel.slice(0, i + 1)}${WH_PREFIX}${rel.slice(i + 1)}`;
    await this.write(
      { name, type: 'file', mode: S_IFREG | 0o600, uid: st[S.uid]!, gid: st[S.gid]!, uname: st[S.uid] === 0 ? 'root' : '', gname: st[S.gid] === 0 ? 'root' : '', mtime: this.mtime(st), size: 0 },
      [],
      null,
    );
  }

  async opaqueMarker(dirRel: string, st: Uint32Array): Promise<void> {
    await this.write(
      { name: `${dirRel}/${OPAQUE_MARKER}`, type: 'file', mode: S_IFREG | (st[S.mode]! & 0o777), uid: st[S.uid]!, gid: st[S.gid]!, uname: st[S.uid] === 0 ? 'root' : '', gname: st[S.gid] === 0 ? 'root' : '', mtime: new Date(0), size: 0 },
      [],
      null,
    );
  }
}

function sortedNames(names: string[]): string[] {
  return names.map((n) => Buffer.from(n)).sort(Buffer.compare).map((b) => b.toString());
}

/**
 * The changes an upper directory records against the layers below it (`parents`, top first), as
 * a tar. The stream fails if the directory cannot be read.
 */
export function diffUpper(upperDir: string, parents: string[], opts: DiffOptions = {}): Readable {
  const pack = tarPack();
  const writer = new DiffWriter(pack, opts);
  const run = async () => {
    const root = sys.openAt(sys.AT_FDCWD, upperDir, fsc.O_RDONLY | sys.O_DIRECTORY, 0);
    if (root < 0) throw new Error(`cannot open ${upperDir} (${errnoName(root)})`);
    try {
      await walkUpper(writer, root, '', upperDir, parents);
    } finally {
      sys.close(root);
    }
    pack.finalize();
  };
  run().catch((err: unknown) => pack.destroy(err as Error));
  return Readable.from(pack);
}

async function walkUpper(w: DiffWriter, root: number, dir: string, upperDir: string, parents: string[]): Promise<void> {
  const list = sys.readdirAt(root, dir === '' ? '.' : dir);
  if (typeof list === 'number') throw new Error(`cannot list ${dir || '/'} of ${upperDir} (${errnoName(list)})`);
  const st = newStat();
  for (const name of sortedNames(list.names)) {
    const rel = dir === '' ? name : `${dir}/${name}`;
    if (sys.lstatAt(root, rel, st) < 0) continue;
    const fmt = st[S.mode]! & S_IFMT;
    if (name.startsWith(WH_PREFIX)) {
      // Tar-form marks in an upper (fuse-overlayfs writes them beside the xattr): as they are.
      if (name === OPAQUE_MARKER) continue; // written with its directory
      await w.write({ ...w.header({ rel, st, fd: root, path: rel }) }, [], null);
      continue;
    }
    if (isWhiteoutStat(st) || (fmt === S_IFREG && statSize(st) === 0 && xattrIs(root, rel, 'trusted.overlay.whiteout'))) {
      await w.whiteout(rel, st);
      continue;
    }
    const e: Entry = { rel, st: Uint32Array.from(st), fd: root, path: rel };
    if (fmt !== S_IFDIR) {
      const h = w.header(e);
      await w.write(h, w.xattrs(root, rel), h.type === 'file' ? { fd: root, path: rel } : null);
      continue;
    }
    const redirected = xattrIs(root, rel, XATTR_REDIRECT);
    const opaque = redirected || xattrValue(root, rel, XATTR_OPAQUE) === 'y' || sys.lstatAt(root, `${rel}/${OPAQUE_MARKER}`, newStat()) === 0;
    await w.write(w.header(e), w.xattrs(root, rel), null);
    if (opaque) await w.opaqueMarker(rel, e.st);
    if (redirected) await writeMerged(w, upperDir, parents, rel);
    else await walkUpper(w, root, rel, upperDir, parents);
  }
}

function xattrValue(fd: number, rel: string, name: string): string | null {
  const v = sys.getxattrAt(fd, rel, name);
  return typeof v === 'number' ? null : v.toString();
}

function xattrIs(fd: number, rel: string, name: string): boolean {
  return typeof sys.getxattrAt(fd, rel, name) !== 'number';
}

/** The whole merged content below `rel` (upper over parents), for a renamed directory. */
async function writeMerged(w: DiffWriter, upperDir: string, parents: string[], rel: string): Promise<void> {
  const stack = openLayerStack({ lowers: [upperDir, ...parents] });
  try {
    const u = new Union(stack, { maxCacheEntries: 100_000 });
    let node: Node | undefined = u.root;
    for (const part of rel.split('/')) {
      node = node === undefined ? undefined : u.child(node, part);
    }
    if (node === undefined || node.kind !== 'dir') return;
    await writeMergedChildren(w, u, node, rel);
  } finally {
    closeLayerStack(stack);
  }
}

/** How many small files of one directory are read ahead, on the threadpool, while earlier ones are written. */
const READ_AHEAD = 16;

/**
 * A small file's whole content, read on the threadpool (open to close in one job: a cold inode
 * never stalls this thread, and a cold disk serves several files at once).
 */
function readWhole(dirfd: number, path: string, size: number): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(size);
  return new Promise((resolve, reject) => {
    sys.readFileAt(dirfd, path, buf, (r) => {
      if (r === size) return resolve(buf);
      reject(new StoreError(r === -E.ERANGE ? `${path} does not have the size expected (${size})` : `cannot read ${path} (${errnoName(r)})`));
    });
  });
}

async function writeMergedChildren(w: DiffWriter, u: Union, dir: Node, rel: string): Promise<void> {
  const { names, nodes } = u.list(dir);
  const order = names.map((n, i) => ({ n, node: nodes[i]! })).filter((x) => x.n !== '.' && x.n !== '..');
  order.sort((a, b) => Buffer.compare(Buffer.from(a.n), Buffer.from(b.n)));
  const st = newStat();
  const items = order.map(({ n, node }) => {
    u.stat(node, st);
    const { layer, path } = u.location(node);
    const e: Entry = { rel: rel === '' ? n : `${rel}/${n}`, st: Uint32Array.from(st), fd: layer.fd, path };
    return { node, e, body: undefined as Promise<Buffer> | undefined };
  });
  const smallFile = (st: Uint32Array) => (st[S.mode]! & S_IFMT) === S_IFREG && statSize(st) > 0 && statSize(st) <= READ_STEP;
  let ahead = 0;
  for (let i = 0; i < items.length; i++) {
    for (; ahead < items.length && ahead < i + READ_AHEAD; ahead++) {
      const it = items[ahead]!;
      if (smallFile(it.e.st)) {
        it.body = readWhole(it.e.fd, it.e.path, statSize(it.e.st));
        // Awaited in order below; a failure is reported there, not as an unhandled rejection.
        it.body.catch(() => undefined);
      }
    }
    const { node, e, body } = items[i]!;
    // Headers in write order: the first name of a hard-linked file must be the one written first.
    const h = w.header(e);
    await w.write(h, w.xattrs(e.fd, e.path), h.type === 'file' ? { fd: e.fd, path: e.path, ...(body !== undefined ? { prefetched: body } : {}) } : null);
    if (node.kind === 'dir') await writeMergedChildren(w, u, node, e.rel);
  }
}

/** The merged tree of `layers` (top first) as one tar, by the same rules as a diff. */
export function exportMerged(layers: string[], opts: DiffOptions = {}): Readable {
  const pack = tarPack();
  const writer = new DiffWriter(pack, opts);
  const run = async () => {
    const stack = openLayerStack({ lowers: layers });
    try {
      const u = new Union(stack, { maxCacheEntries: 100_000 });
      await writeMergedChildren(writer, u, u.root, '');
    } finally {
      closeLayerStack(stack);
    }
    pack.finalize();
  };
  run().catch((err: unknown) => pack.destroy(err as Error));
  return Readable.from(pack);
}

export interface Change {
  /** Absolute path in the container's tree. */
  path: string;
  /** A added, C changed, D deleted: docker diff's letters. */
  kind: 'A' | 'C' | 'D';
}

/**
 * What an upper directory changes over the layers below it (`parents`, top first), by docker
 * diff's rules: an entry of the upper is A if nothing below has its path, else C; a whiteout is D
 * (once for a whole deleted directory); a directory present below with the same size, mode and
 * mtime is no change by itself, but the parent of anything added or deleted is C. A renamed
 * directory (a redirect) is new at its path, with everything in it. Sorted by path.
 */
export function changesUpper(upperDir: string, parents: string[]): Change[] {
  const out: Change[] = [];
  const changedDirs = new Set<string>();
  const stack = parents.length > 0 ? openLayerStack({ lowers: parents }) : null;
  const root = sys.openAt(sys.AT_FDCWD, upperDir, fsc.O_RDONLY | sys.O_DIRECTORY, 0);
  if (root < 0) {
    if (stack !== null) closeLayerStack(stack);
    throw new Error(`cannot open ${upperDir} (${errnoName(root)})`);
  }
  try {
    const below = stack === null ? null : new Union(stack, { maxCacheEntries: 100_000 });
    const lowerNode = (rel: string): Node | undefined => {
      if (below === null) return undefined;
      let node: Node | undefined = below.root;
      for (const part of rel.split('/')) {
        if (node === undefined || node.kind !== 'dir') return undefined;
        node = below.child(node, part);
      }
      return node;
    };
    const record = (rel: string, kind: Change['kind']) => {
      out.push({ path: '/' + rel, kind });
      if (kind === 'A' || kind === 'D') {
        const parent = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
        if (parent !== '' && !changedDirs.has(parent)) {
          out.push({ path: '/' + parent, kind: 'C' });
          changedDirs.add(parent);
        }
      }
    };
    const st = newStat();
    const lst = newStat();
    const walk = (dir: string, allNew: boolean) => {
      const list = sys.readdirAt(root, dir === '' ? '.' : dir);
      if (typeof list === 'number') throw new Error(`cannot list ${dir || '/'} of ${upperDir} (${errnoName(list)})`);
      for (const name of sortedNames(list.names)) {
        const rel = dir === '' ? name : `${dir}/${name}`;
        if (sys.lstatAt(root, rel, st) < 0) continue;
        const fmt = st[S.mode]! & S_IFMT;
        if (name.startsWith(WH_PREFIX)) {
          if (name !== OPAQUE_MARKER) record(dir === '' ? name.slice(WH_PREFIX.length) : `${dir}/${name.slice(WH_PREFIX.length)}`, 'D');
          continue;
        }
        if (isWhiteoutStat(st) || (fmt === S_IFREG && statSize(st) === 0 && xattrIs(root, rel, 'trusted.overlay.whiteout'))) {
          record(rel, 'D');
          continue;
        }
        const prior = allNew ? undefined : lowerNode(rel);
        let kind: Change['kind'] | null = prior === undefined ? 'A' : 'C';
        if (prior !== undefined && fmt === S_IFDIR && prior.kind === 'dir' && below !== null) {
          below.stat(prior, lst);
          const same =
            statSize(st) === statSize(lst) &&
            st[S.mode] === lst[S.mode] &&
            st[S.mtimeLo] === lst[S.mtimeLo] &&
            st[S.mtimeHi] === lst[S.mtimeHi] &&
            (st[S.mtimeNs] === lst[S.mtimeNs] || st[S.mtimeNs] === 0 || lst[S.mtimeNs] === 0);
          if (same) kind = null;
        }
        if (fmt === S_IFDIR) changedDirs.add(rel);
        if (fmt === S_IFDIR && xattrIs(root, rel, XATTR_REDIRECT)) {
          // Renamed here: new at this path, with all it holds (most of it still in the lowers).
          record(rel, 'A');
          mergedBelow(rel, (child) => out.push({ path: '/' + child, kind: 'A' }));
          continue;
        }
        if (kind !== null) record(rel, kind);
        if (fmt === S_IFDIR) walk(rel, allNew || kind === 'A');
      }
    };
    const mergedBelow = (rel: string, each: (path: string) => void) => {
      const merged = openLayerStack({ lowers: [upperDir, ...parents] });
      try {
        const u = new Union(merged, { maxCacheEntries: 100_000 });
        const visit = (node: Node, path: string) => {
          const { names, nodes } = u.list(node);
          for (let i = 2; i < names.length; i++) {
            const name = names[i]!;
            const child = nodes[i]!;
            each(`${path}/${name}`);
            if (child.kind === 'dir') visit(child, `${path}/${name}`);
          }
        };
        let node: Node | undefined = u.root;
        for (const part of rel.split('/')) node = node === undefined ? undefined : u.child(node, part);
        if (node !== undefined && node.kind === 'dir') visit(node, rel);
      } finally {
        closeLayerStack(merged);
      }
    };
    walk('', false);
  } finally {
    sys.close(root);
    if (stack !== null) closeLayerStack(stack);
  }
  return out.sort((a, b) => Buffer.compare(Buffer.from(a.path), Buffer.from(b.path)));
}
