/**
 * applyDiff: a layer tar (plain or compressed) unpacked into a new layer directory, in the
 * on-disk form kernel overlayfs reads. Whiteouts arrive as `.wh.<name>` and `.wh..wh..opq`
 * (Docker, OCI) and are written as the kernel's: a 0:0 character device, and the
 * trusted.overlay.opaque xattr. Owners, modes (setuid included), nanosecond times where the tar
 * has them, xattrs, hard links, symlinks, devices and fifos are restored.
 *
 * Nothing in the tar is trusted. Names are checked before anything is written: no absolute
 * names, no `..`, no path through a symlink (of this layer or of a layer below), no hard link to
 * anything but an earlier entry of this layer. Every write is relative to the new layer's
 * directory fd, to a path whose every parent this code made as a real directory.
 */
import { constants as fsc } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { extract as tarExtract, type Header } from 'tar-stream';
import { sys } from '../native/sys.js';
import type { FileWriter, WriterFailure } from '../../native-deps/sys/index.js';
import { errnoName, errnoText } from '../fs/errno.js';
import { StoreError } from './errors.js';
import { OPAQUE_MARKER, WH_PREFIX, XATTR_OPAQUE, isPrivateXattr, makeWhiteout } from '../fs/encoding.js';
import { closeLayerStack, openLayerStack, type LayerStack } from '../fs/layers.js';
import { newStat, S, S_IFBLK, S_IFCHR, S_IFIFO } from '../fs/stat.js';
import { Union } from '../fs/union.js';
import type { Node } from '../fs/node.js';
import { decompressed } from './compression.js';
import type { Digest } from './digest.js';
import { installBinarySafePax, XATTR_PAX_PREFIX } from './pax.js';
import { SplitWriter, TarLayoutError, TarSplitter, type Segment } from './tar-split.js';

export class LayerFormatError extends Error {}

/** A system call on the layer being unpacked failed (a full disk, say): the user's to fix. */
function unpackFailure(what: string, errno: number): StoreError {
  return new StoreError(`cannot unpack the layer: ${what}: ${errnoText(errno)}`);
}

export interface ApplyResult {
  diffId: Digest;
  /** Bytes of the uncompressed tar. */
  tarBytes: number;
  /** Bytes of file content unpacked. */
  size: number;
}

type Kind = 'dir' | 'file' | 'symlink' | 'other' | 'whiteout';

/** A tar entry name as a clean relative path ('' is the layer root), or why it is refused. */
export function cleanName(name: string): string {
  if (name.startsWith('/')) throw new LayerFormatError(`absolute name ${JSON.stringify(name)}`);
  if (name.includes('\0')) throw new LayerFormatError(`name with a NUL byte ${JSON.stringify(name)}`);
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw new LayerFormatError(`name with '..' ${JSON.stringify(name)}`);
    parts.push(p);
  }
  return parts.join('/');
}

function parentOf(rel: string): string {
  const i = rel.lastIndexOf('/');
  return i < 0 ? '' : rel.slice(0, i);
}

function baseOf(rel: string): string {
  return rel.slice(rel.lastIndexOf('/') + 1);
}

function join(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

/** glibc's dev_t from major and minor, as the syscall helper takes it. */
function makedev(major: number, minor: number): number {
  return (major & 0xfffff000) * 2 ** 32 + (major & 0xfff) * 2 ** 8 + (minor & 0xffffff00) * 2 ** 12 + (minor & 0xff);
}

/** Seconds and nanoseconds of a PAX time ("1700000000.123456789"), or of the header's Date. */
/** PAX records of an entry: strings, as installBinarySafePax decodes them. */
function paxOf(h: Header): Record<string, string> | undefined {
  return (h.pax ?? undefined) as Record<string, string> | undefined;
}

/** Where an entry's data goes, chunk by chunk; `end` finishes the entry, `abort` gives up. */
interface EntrySink {
  write(chunk: Buffer): void;
  end(): void;
  abort(): void;
}

function timeOf(pax: Record<string, string> | undefined, key: 'mtime' | 'atime', fallback: Date | undefined): [number, number] {
  const v = pax?.[key];
  if (v !== undefined && /^-?\d+(\.\d+)?$/.test(v)) {
    const [sec, frac = ''] = v.split('.');
    return [parseInt(sec!, 10), parseInt((frac + '000000000').slice(0, 9), 10)];
  }
  const ms = fallback?.getTime() ?? 0;
  return [Math.floor(ms / 1000), (ms % 1000) * 1e6];
}

interface DirTimes {
  rel: string;
  atime: [number, number];
  mtime: [number, number];
}

/**
 * 16 MiB: in interleaved runs of bench/store.sh's import (8 rounds each, twice) it beat 64 MiB in
 * 13 of 16 rounds (~9% less time by the median), and beat 8 and 32 MiB too: the final flush finds
 * less left, while each write-back still covers many files.
 */
const WRITE_BACK_EVERY = 16 << 20;

class Unpacker {
  readonly kinds = new Map<string, Kind>([['', 'dir']]);
  /** Entry index -> path, for payload-carrying entries (the tar-split names them). */
  readonly payloadPaths = new Map<number, string>();
  /** The same paths: their data is read back from the layer to rebuild the tar, so must stay. */
  private readonly payloadSet = new Set<string>();
  /** Entry index and size of every entry with data, to check the splitter saw the same. */
  readonly payloads: Array<{ entry: number; size: number }> = [];
  private readonly dirTimes = new Map<string, DirTimes>();
  /** Directories of this layer with the setgid bit: what is made in them takes their group. */
  private readonly setgidDirs = new Set<string>();
  private readonly lowerView: Union | null;
  private readonly st = newStat();
  /**
   * Regular files are created, filled and labelled by the file writer's thread, in order, while
   * this thread parses on; anything else that touches a path it may still be writing waits first.
   */
  private readonly writer: FileWriter;
  private writerOpen = true;
  size = 0;

  constructor(
    private readonly fd: number,
    lowers: LayerStack | null,
  ) {
    this.lowerView = lowers === null ? null : new Union(lowers, { maxCacheEntries: 100_000 });
    this.writer = sys.writerOpen(fd);
  }

  /** Wait for the file writer; its first failure is thrown here. */
  private settle(): void {
    this.throwFailure(sys.writerWait(this.writer));
  }

  private throwFailure(failure: WriterFailure | null): void {
    if (failure !== null) throw unpackFailure(`${failure[1]} ${failure[2]}`, failure[0]);
  }

  /** A submit's answer: 1 means an earlier file failed (thrown by settle), < 0 this one. */
  private submitted(r: number, what: string): void {
    if (r === 1) this.settle();
    else if (r < 0) throw unpackFailure(what, -r);
  }

  /** Stop the file writer after what it was given; its failure is thrown unless `quiet`. */
  close(quiet: boolean): void {
    if (!this.writerOpen) return;
    this.writerOpen = false;
    const failure = sys.writerClose(this.writer);
    if (!quiet) this.throwFailure(failure);
  }

  /** The lower layers' entry at rel, if they show one. */
  private lower(rel: string): Node | undefined {
    if (this.lowerView === null) return undefined;
    let node: Node | undefined = this.lowerView.root;
    for (const part of rel === '' ? [] : rel.split('/')) {
      if (node.kind !== 'dir') return undefined;
      node = this.lowerView.child(node, part);
      if (node === undefined) return undefined;
    }
    return node;
  }

  /**
   * Make sure rel's parent is a real directory of this layer, creating missing ones (with the
   * metadata the layers below give them, so the merged view of those directories is unchanged).
   */
  private parentDir(rel: string, name: string): void {
    const parent = parentOf(rel);
    if (parent === '') return;
    const parts = parent.split('/');
    let cur = '';
    for (const part of parts) {
      cur = join(cur, part);
      const kind = this.kinds.get(cur);
      if (kind === 'dir') continue;
      if (kind === 'symlink') throw new LayerFormatError(`${name}: the path goes through the symlink ${cur} of this layer`);
      if (kind !== undefined) throw new LayerFormatError(`${name}: ${cur} is not a directory in this layer`);
      const below = this.lower(cur);
      if (below?.kind === 'symlink') throw new LayerFormatError(`${name}: the path goes through the symlink ${cur} of a lower layer`);
      this.mkdir(cur, below);
    }
  }

  private mkdir(rel: string, like: Node | undefined): void {
    let mode = 0o755;
    let uid = 0;
    let gid = 0;
    if (like !== undefined && like.kind === 'dir') {
      this.lowerView!.stat(like, this.st);
      mode = this.st[S.mode]! & 0o7777;
      uid = this.st[S.uid]!;
      gid = this.st[S.gid]!;
      this.dirTimes.set(rel, {
        rel,
        atime: [this.st[S.atimeLo]! + this.st[S.atimeHi]! * 2 ** 32, this.st[S.atimeNs]!],
        mtime: [this.st[S.mtimeLo]! + this.st[S.mtimeHi]! * 2 ** 32, this.st[S.mtimeNs]!],
      });
    }
    this.submitted(sys.writerDir(this.writer, rel, true, uid, gid, mode), `mkdir ${rel}`);
    if (mode & 0o2000) this.setgidDirs.add(rel);
    this.kinds.set(rel, 'dir');
  }

  private check(r: number, what: string): number {
    if (r < 0) throw unpackFailure(what, -r);
    return r;
  }

  /**
   * Remove what this layer already has at rel (a later entry replaces an earlier one). A file
   * whose data the tar-split points at cannot go: the layer's tar could not be rebuilt.
   */
  private clear(rel: string, keepDir: boolean, shown: string): void {
    const kind = this.kinds.get(rel);
    if (kind === undefined) return;
    if (kind === 'dir' && keepDir) return;
    const under = (k: string) => k === rel || k.startsWith(rel + '/');
    for (const p of this.payloadSet) {
      if (under(p)) throw new LayerFormatError(`${shown}: replaces ${p}, written earlier in the same tar; such a tar cannot be stored reproducibly`);
    }
    for (const k of [...this.dirTimes.keys()]) if (under(k)) this.dirTimes.delete(k);
    this.settle();
    if (kind === 'dir') {
      removeTree(this.fd, rel);
      for (const k of [...this.kinds.keys()]) if (under(k)) this.kinds.delete(k);
      return;
    }
    this.check(sys.unlinkAt(this.fd, rel, 0), `replace ${rel}`);
    this.kinds.delete(rel);
  }

  /**
   * Apply one entry. Everything is synchronous: an entry with data returns the sink its data goes
   * to (then `end()` finishes it); every other entry is done when this returns.
   */
  entry(index: number, header: Header): EntrySink | null {
    const rel = cleanName(header.name);
    const shown = header.name;
    const base = baseOf(rel);
    if (rel !== '' && base.startsWith(WH_PREFIX)) {
      if ((header.size ?? 0) > 0) throw new LayerFormatError(`${shown}: a whiteout carrying data`);
      this.whiteout(rel, shown);
      return null;
    }
    if (header.type === null || header.type === undefined) {
      throw new LayerFormatError(`${shown}: unsupported entry type (typeflag ${JSON.stringify((header as { typeflag?: unknown }).typeflag ?? '?')})`);
    }
    if (Object.keys(paxOf(header) ?? {}).some((k) => k.startsWith('GNU.sparse.'))) {
      throw new LayerFormatError(`${shown}: sparse files in layer tars are not supported`);
    }
    const type = header.type;
    const hasPayload = (header.size ?? 0) > 0 && type !== 'directory';
    if (hasPayload && type !== 'file' && type !== 'contiguous-file') {
      throw new LayerFormatError(`${shown}: a ${type} entry carrying data is not supported`);
    }
    if (rel === '') {
      // The layer root ("./"): its metadata is the directory's.
      if (type !== 'directory') throw new LayerFormatError(`${shown}: the root entry must be a directory`);
      this.settle();
      this.meta('', header, true);
      return null;
    }
    this.parentDir(rel, shown);
    switch (type) {
      case 'directory': {
        this.clear(rel, true, shown);
        const create = this.kinds.get(rel) !== 'dir';
        this.kinds.set(rel, 'dir');
        this.submitted(sys.writerDir(this.writer, rel, create, header.uid ?? 0, header.gid ?? 0, (header.mode ?? 0o755) & 0o7777), `mkdir ${shown}`);
        this.dirMeta(rel, header);
        return null;
      }
      case 'file':
      case 'contiguous-file': {
        this.clear(rel, false, shown);
        if (hasPayload) {
          this.payloadPaths.set(index, rel);
          this.payloadSet.add(rel);
          this.payloads.push({ entry: index, size: header.size });
        }
        this.kinds.set(rel, 'file');
        return this.file(rel, header);
      }
      case 'link': {
        const target = cleanName(header.linkname ?? '');
        const tkind = this.kinds.get(target);
        if (tkind === undefined || tkind === 'dir' || tkind === 'whiteout') {
          throw new LayerFormatError(`${shown}: hard link to ${JSON.stringify(header.linkname)}, which is not a file of this layer`);
        }
        this.clear(rel, false, shown);
        this.settle();
        this.check(sys.linkAt(this.fd, target, this.fd, rel), `link ${shown}`);
        this.kinds.set(rel, tkind);
        return null;
      }
      case 'symlink': {
        this.clear(rel, false, shown);
        this.kinds.set(rel, 'symlink');
        const mtime = timeOf(paxOf(header), 'mtime', header.mtime);
        const atime = paxOf(header)?.['atime'] !== undefined ? timeOf(paxOf(header), 'atime', header.mtime) : mtime;
        const target = header.linkname ?? '';
        const r = sys.writerSymlink(this.writer, rel, target, header.uid ?? 0, header.gid ?? 0, atime[0], atime[1], mtime[0], mtime[1]);
        this.submitted(r, `symlink ${shown}`);
        if (Object.keys(paxOf(header) ?? {}).some((k) => k.startsWith(XATTR_PAX_PREFIX))) {
          this.settle();
          this.xattrs(header, (name, value) => sys.setxattrAt(this.fd, rel, name, value, 0), rel);
        }
        return null;
      }
      case 'character-device':
      case 'block-device':
      case 'fifo': {
        this.clear(rel, false, shown);
        this.settle();
        const fmt = type === 'fifo' ? S_IFIFO : type === 'block-device' ? S_IFBLK : S_IFCHR;
        const dev = type === 'fifo' ? 0 : makedev(header.devmajor ?? 0, header.devminor ?? 0);
        this.check(sys.mknodAt(this.fd, rel, fmt | 0o600, dev), `mknod ${shown}`);
        this.kinds.set(rel, 'other');
        this.meta(rel, header, false);
        return null;
      }
      default:
        throw new LayerFormatError(`${shown}: unsupported entry type ${type}`);
    }
  }

  private whiteout(rel: string, shown: string): void {
    const dir = parentOf(rel);
    const base = baseOf(rel);
    this.parentDir(rel, shown);
    // The directory may still be on its way (the writer makes it).
    this.settle();
    if (base === OPAQUE_MARKER) {
      this.check(sys.setxattrAt(this.fd, dir === '' ? '.' : dir, XATTR_OPAQUE, Buffer.from('y'), 0), `mark ${dir || '/'} opaque`);
      return;
    }
    const name = base.slice(WH_PREFIX.length);
    if (name === '' || name === '.' || name === '..' || name.startsWith(WH_PREFIX)) {
      throw new LayerFormatError(`${shown}: not a valid whiteout`);
    }
    const target = join(dir, name);
    this.clear(target, false, shown);
    this.check(makeWhiteout(this.fd, target), `whiteout ${shown}`);
    this.kinds.set(target, 'whiteout');
  }

  private file(rel: string, header: Header): EntrySink {
    // Created with its final permission bits (applyLayer clears the umask), so only owners other
    // than root's and setuid/setgid/sticky bits need more syscalls.
    this.submitted(sys.writerCreate(this.writer, rel, (header.mode ?? 0o644) & 0o777), `create ${rel}`);
    return {
      write: (chunk) => {
        this.submitted(sys.writerData(this.writer, chunk), `write ${rel}`);
        this.size += chunk.length;
        this.writeBack();
      },
      end: () => this.finishFile(rel, header),
      // The writer closes the file when it stops; the caller removes the layer.
      abort: () => {},
    };
  }

  private flushedAt = 0;
  private flushing = false;

  /**
   * Start writing the layer back every WRITE_BACK_EVERY bytes, on the threadpool: the store
   * flushes the layer before recording it, and this way most of that wait overlaps the unpacking.
   */
  private writeBack(): void {
    if (this.flushing || this.size - this.flushedAt < WRITE_BACK_EVERY) return;
    this.flushing = true;
    this.flushedAt = this.size;
    this.writingBack = new Promise((resolve) =>
      sys.syncfsAsync(this.fd, () => {
        this.flushing = false;
        resolve();
      }),
    );
  }

  private writingBack: Promise<void> = Promise.resolve();

  /** Resolves once no write-back uses the directory's descriptor (before it is closed). */
  writeBackDone(): Promise<void> {
    return this.writingBack;
  }

  /** Owner, mode, xattrs and (files and links now, directories at the end) times. */
  private meta(rel: string, header: Header, isDir: boolean): void {
    const path = rel === '' ? '.' : rel;
    this.check(sys.chownAt(this.fd, path, header.uid ?? 0, header.gid ?? 0), `chown ${rel}`);
    if (header.type !== 'symlink') this.check(sys.chmodAt(this.fd, path, (header.mode ?? 0o755) & 0o7777), `chmod ${rel}`);
    if (isDir) return this.dirMeta(rel, header);
    this.xattrs(header, (name, value) => sys.setxattrAt(this.fd, path, name, value, 0), rel);
    const mtime = timeOf(paxOf(header), 'mtime', header.mtime);
    const atime = paxOf(header)?.['atime'] !== undefined ? timeOf(paxOf(header), 'atime', header.mtime) : mtime;
    this.check(sys.utimensAt(this.fd, path, atime[0], atime[1], mtime[0], mtime[1]), `set times of ${rel}`);
  }

  /** A directory's xattrs, and its times for the end; its owner and mode are already set. */
  private dirMeta(rel: string, header: Header): void {
    const path = rel === '' ? '.' : rel;
    if (paxOf(header) !== undefined) {
      // Rare: the directory must exist (the writer made it) before its xattrs go on.
      this.settle();
      this.xattrs(header, (name, value) => sys.setxattrAt(this.fd, path, name, value, 0), rel);
    }
    const mtime = timeOf(paxOf(header), 'mtime', header.mtime);
    const atime = paxOf(header)?.['atime'] !== undefined ? timeOf(paxOf(header), 'atime', header.mtime) : mtime;
    this.dirTimes.set(rel, { rel: path, atime, mtime });
    if ((header.mode ?? 0) & 0o2000) this.setgidDirs.add(rel);
    else this.setgidDirs.delete(rel);
  }

  private finishFile(rel: string, header: Header): void {
    const uid = header.uid ?? 0;
    const gid = header.gid ?? 0;
    // A setgid parent gave the file its group: then the owner has to be set even for root's.
    const chown = uid !== 0 || gid !== 0 || this.setgidDirs.has(parentOf(rel));
    const mode = (header.mode ?? 0o644) & 0o7777;
    this.xattrs(header, (name, value) => sys.writerXattr(this.writer, name, value), rel);
    const mtime = timeOf(paxOf(header), 'mtime', header.mtime);
    const atime = paxOf(header)?.['atime'] !== undefined ? timeOf(paxOf(header), 'atime', header.mtime) : mtime;
    this.submitted(
      sys.writerFinish(this.writer, uid, gid, chown, mode & 0o7000 ? mode : -1, atime[0], atime[1], mtime[0], mtime[1]),
      `finish ${rel}`,
    );
  }

  /** Set the tar's xattrs through `set`, which answers like a syscall or a writer submit. */
  private xattrs(header: Header, set: (name: string, value: Buffer) => number, rel: string): void {
    const pax = paxOf(header);
    if (pax === undefined) return;
    for (const [key, value] of Object.entries(pax)) {
      if (!key.startsWith(XATTR_PAX_PREFIX)) continue;
      const name = key.slice(XATTR_PAX_PREFIX.length);
      // Of the overlay's own marks, a tar may carry only the opaque one, on a directory (the
      // xattr encoding of `.wh..wh..opq`); no other reaches the layer.
      if (isPrivateXattr(name)) {
        if (name === XATTR_OPAQUE && value === 'y' && header.type === 'directory') this.applied(set(name, Buffer.from('y')), `mark ${rel || '/'} opaque`);
        continue;
      }
      this.applied(set(name, Buffer.from(value, 'latin1')), `set xattr ${name} on ${rel}`);
    }
  }

  private applied(r: number, what: string): void {
    if (r === 1) this.settle();
    else this.check(r, what);
  }

  /** Directory times last, deepest first: adding entries changed them. */
  finish(): void {
    this.settle();
    const dirs = [...this.dirTimes.values()].sort((a, b) => b.rel.length - a.rel.length);
    for (const d of dirs) {
      this.check(sys.utimensAt(this.fd, d.rel === '' ? '.' : d.rel, d.atime[0], d.atime[1], d.mtime[0], d.mtime[1]), `set times of ${d.rel}`);
    }
  }
}


function removeTree(dirfd: number, rel: string): void {
  const list = sys.readdirAt(dirfd, rel);
  if (typeof list !== 'number') {
    for (const name of list.names) {
      const child = `${rel}/${name}`;
      if (sys.unlinkAt(dirfd, child, 0) < 0) removeTree(dirfd, child);
    }
  }
  sys.unlinkAt(dirfd, rel, sys.AT_REMOVEDIR);
}

/**
 * Unpack `input` into `target` (an empty directory the caller made and will remove on failure),
 * over the layers `lowers` (top first). Throws LayerFormatError for a tar that is refused.
 */
export async function applyLayer(input: Readable, target: string, lowers: string[], splitPath: string): Promise<ApplyResult> {
  installBinarySafePax();
  // Files are created with the tar's permission bits as they are (see Unpacker.file).
  const umask = process.umask(0);
  try {
    return await unpack(input, target, lowers, splitPath);
  } finally {
    process.umask(umask);
  }
}

async function unpack(input: Readable, target: string, lowers: string[], splitPath: string): Promise<ApplyResult> {
  // Made first, and what follows undone if it cannot be made: a full disk or a lack of
  // descriptors must not leak the writer thread, the directory or the layer stack.
  const splitWriter = new SplitWriter(splitPath);
  let fd = -1;
  let stack: LayerStack | null = null;
  let unpacker: Unpacker;
  try {
    fd = sys.openAt(sys.AT_FDCWD, target, fsc.O_RDONLY | sys.O_DIRECTORY | sys.O_NOFOLLOW, 0);
    if (fd < 0) throw new Error(`cannot open ${target}: ${errnoName(-fd)}`);
    stack = lowers.length > 0 ? openLayerStack({ lowers }) : null;
    unpacker = new Unpacker(fd, stack);
  } catch (err) {
    if (stack !== null) closeLayerStack(stack);
    if (fd >= 0) sys.close(fd);
    await splitWriter.close().catch(() => undefined);
    throw err;
  }
  const splitter = new TarSplitter();
  const extract = tarExtract();
  // Payloads stored so far, checked against what tar-stream said each entry carries.
  let payloadsStored = 0;
  const store = (segments: Segment[]) => {
    splitWriter.add(segments, (entry) => {
      const path = unpacker.payloadPaths.get(entry);
      const want = unpacker.payloads[payloadsStored++];
      const seg = segments.find((x) => 'entry' in x && x.entry === entry) as { entry: number; size: number };
      // The splitter finds block boundaries on its own; it must have seen the entries tar-stream did.
      if (path === undefined || want === undefined || want.entry !== entry || want.size !== seg.size) {
        throw new LayerFormatError('the tar layout is not understood (its entries are ambiguous); not stored');
      }
      unpacker.payloadPaths.delete(entry);
      return path;
    });
  };
  let splitClosed = false;
  try {
    const { stream, compression } = await decompressed(input);
    let entries = 0;
    let firstError: unknown = null;
    // Entries are handled from tar-stream's callbacks, synchronously: no promise per entry.
    const unpacked = new Promise<void>((resolve, reject) => {
      let index = 0;
      const fail = (err: unknown) => {
        if (firstError !== null) return;
        firstError = err;
        extract.destroy(err as Error);
        reject(err);
      };
      extract.on('entry', (header: Header, body: NodeJS.EventEmitter, next: () => void) => {
        let sink: EntrySink | null = null;
        // First: a failure destroys the extractor, which destroys this entry's stream too.
        body.on('error', (err: unknown) => {
          sink?.abort();
          fail(err);
        });
        try {
          sink = unpacker.entry(index++, header);
          // Every payload up to this entry's is placed now: its part of the split can go to disk.
          store(splitter.ready(index));
        } catch (err) {
          return fail(err);
        }
        body.on('data', (c: Buffer) => {
          if (sink === null || firstError !== null) return;
          try {
            sink.write(c);
          } catch (err) {
            fail(err);
          }
        });
        body.on('end', () => {
          if (firstError !== null) return sink?.abort();
          try {
            sink?.end();
            entries++;
            next();
          } catch (err) {
            fail(err);
          }
        });
      });
      extract.on('finish', () => resolve());
      extract.on('error', fail);
    });
    try {
      await Promise.all([pipeline(stream, splitter, extract), unpacked]);
    } catch (err) {
      throw describe(firstError ?? err, compression);
    }
    if (splitter.bytes === 0) throw new LayerFormatError('empty input: not a tar archive');
    if (entries === 0 && splitter.bytes < 1024) throw new LayerFormatError('truncated tar archive');
    unpacker.finish();
    unpacker.close(false);
    const { diffId, bytes, segments } = splitter.finish();
    store(segments);
    if (payloadsStored !== unpacker.payloads.length) throw new LayerFormatError('the tar layout is not understood (its entries are ambiguous); not stored');
    splitClosed = true;
    await splitWriter.close();
    return { diffId, tarBytes: bytes, size: unpacker.size };
  } finally {
    unpacker.close(true);
    // Its writes may still be running: the descriptor closes after them.
    if (!splitClosed) await splitWriter.close().catch(() => undefined);
    if (stack !== null) closeLayerStack(stack);
    // A write-back job on the threadpool holds the descriptor's number, not a copy of it.
    await unpacker.writeBackDone();
    sys.close(fd);
  }
}

function describe(err: unknown, compression: string): Error {
  if (err instanceof LayerFormatError) return err;
  if (err instanceof TarLayoutError) return new LayerFormatError(`not a valid tar archive (${err.message})`);
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) return new LayerFormatError(`corrupt ${compression} data (${e.message})`);
  const msg = e?.message ?? String(err);
  if (/Invalid tar header|Unexpected end of data|Header exceeds|Invalid header/i.test(msg)) {
    return new LayerFormatError(`not a valid tar archive (${msg})`);
  }
  if (/corrupt .* data/.test(msg)) return new LayerFormatError(msg);
  return e instanceof Error ? e : new Error(msg);
}
