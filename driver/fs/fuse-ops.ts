/**
 * The FUSE adapter: fuse-native's callbacks in, union operations out. Each handler is thin: take
 * the arguments, call the core, answer. Errors cross the FUSE boundary here and only here, as
 * negative errnos (toFuseError). Mutations run one at a time under the mutation lock; lookups,
 * stat, readdir and data I/O do not wait for it.
 */
import { constants as fsc, fdatasync, fsync, read, write } from 'node:fs';
import { sys } from '../native/sys.js';
import { copyUpStats } from './copy-up.js';
import { E, errnoName, fsErr, toFuseError } from './errno.js';
import { xattrFromLayer, xattrToLayer } from './encoding.js';
import { MutationLock } from './lock.js';
import { Mutations, type Caller } from './mutations.js';
import type { Kind, Node } from './node.js';
import { newStat, S, S_IFDIR, S_IFLNK, S_IFREG, S_IFCHR, setStatIno } from './stat.js';
import type { Union } from './union.js';

import type Fuse from 'fuse-native';

type Cb = (err: number) => void;
export type FuseOps = Fuse.Operations;

export interface AdapterOptions {
  union: Union;
  /** The uid/gid of the process behind the request being handled. */
  caller: () => Caller;
  /** When set, every op is logged as `op(args) -> result`. */
  log?: ((line: string) => void) | undefined;
}

export interface DriverStats {
  cache: Union['cache']['stats'];
  copyUps: number;
  bytesCopiedUp: number;
  openFiles: number;
}

export function makeOps(opts: AdapterOptions): { ops: FuseOps; stats: () => DriverStats } {
  const { union: u, caller } = opts;
  const m = new Mutations(u);
  const lock = new MutationLock(u.cache);
  const handles = new Map<number, Node>();
  const dirHandles = new Map<number, Node>();
  let nextDirHandle = 0;

  const opened = (fd: number, node: Node): number => {
    handles.set(fd, node);
    node.open++;
    return fd;
  };

  /** Run a mutation under the lock and answer its errno. */
  const mutate = (cb: Cb, fn: () => unknown): void => {
    lock.run(fn).then(
      () => cb(0),
      (err: unknown) => cb(toFuseError(err)),
    );
  };

  const ops: FuseOps = {
    init(cb: Cb) {
      cb(0);
    },

    statfs(_path: string, cb: (err: number, st?: object) => void) {
      try {
        const v = new Float64Array(11);
        u.statfs(v);
        cb(0, {
          bsize: v[0],
          frsize: v[1],
          blocks: v[2],
          bfree: v[3],
          bavail: v[4],
          files: v[5],
          ffree: v[6],
          favail: v[7],
          fsid: v[8],
          flag: v[9],
          namemax: v[10],
        });
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    getattr(path: string, cb: Fuse.StatCallback) {
      try {
        const node = u.lookup(path);
        const st = newStat();
        u.stat(node, st);
        cb(0, st);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    fgetattr(path: string | null, fd: number, cb: Fuse.StatCallback) {
      const node = handles.get(fd);
      const st = newStat();
      const r = sys.fstat(fd, st);
      if (r < 0) return cb(r);
      if (node !== undefined) {
        if (node.ino !== 0) setStatIno(st, node.ino);
        u.adjustNlink(node, st);
      } else if (path !== null) {
        return ops.getattr!(path, cb);
      }
      cb(0, st);
    },

    opendir(path: string, _flags: number, cb: (err: number, fh?: number) => void) {
      try {
        const dir = u.lookup(path);
        if (dir.kind !== 'dir') throw fsErr(E.ENOTDIR);
        // Handles are small positive ints; libfuse reserves 0 for "none".
        nextDirHandle = nextDirHandle >= 0x7ffffff0 ? 1 : nextDirHandle + 1;
        dirHandles.set(nextDirHandle, dir);
        cb(0, nextDirHandle);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    releasedir(_path: string | null, fh: number, cb: Cb) {
      dirHandles.delete(fh);
      cb(0);
    },

    fsyncdir(_path: string | null, _datasync: number, _fh: number, cb: Cb) {
      cb(0);
    },

    readdir(path: string | null, fh: number, cb: (err: number, names?: string[], stats?: Uint32Array[]) => void) {
      try {
        const dir = dirHandles.get(fh) ?? (path !== null ? u.lookup(path) : undefined);
        if (dir === undefined) throw fsErr(E.EBADF);
        if (dir.kind !== 'dir') throw fsErr(E.ENOTDIR);
        // A directory removed while open lists as empty, whatever now stands at its old path.
        if (dir.unlinked) return cb(0, ['.', '..'], [direntStat(dir), direntStat(dir)]);
        const { names, nodes } = u.list(dir);
        const stats = nodes.map(direntStat);
        cb(0, names, stats);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    readlink(path: string, cb: (err: number, target?: string) => void) {
      try {
        const node = u.lookup(path);
        const { layer, path: rel } = u.location(node);
        const target = sys.readlinkAt(layer.fd, rel);
        if (typeof target === 'number') return cb(target);
        cb(0, target);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    open(path: string, flags: number, cb: (err: number, fd?: number) => void) {
      const writes = (flags & (fsc.O_WRONLY | fsc.O_RDWR | fsc.O_TRUNC)) !== 0;
      const run = () => m.open(path, flags);
      (writes ? lock.run(run) : run()).then(
        ({ fd, node }) => cb(0, opened(fd, node)),
        (err: unknown) => cb(toFuseError(err)),
      );
    },

    create(path: string, mode: number, flags: number, cb: (err: number, fd?: number) => void) {
      const who = caller();
      lock.run(() => m.create(path, mode, flags, who)).then(
        ({ fd, node }) => cb(0, opened(fd, node)),
        (err: unknown) => cb(toFuseError(err)),
      );
    },

    read(_path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
      read(fd, buf, 0, len, pos, (err, n) => cb(err ? toFuseError(err) : n));
    },

    write(_path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) {
      write(fd, buf, 0, len, pos, (err, n) => cb(err ? toFuseError(err) : n));
    },

    release(_path: string | null, fd: number, cb: Cb) {
      const node = handles.get(fd);
      if (node !== undefined) {
        node.open--;
        handles.delete(fd);
      }
      cb(sys.close(fd));
    },

    // No flush op: nothing is buffered here, and without it the kernel stops sending FLUSH after
    // the first ENOSYS, saving a round trip on every close.

    fsync(_path: string | null, datasync: number, fd: number, cb: Cb) {
      (datasync ? fdatasync : fsync)(fd, (err) => cb(err ? toFuseError(err) : 0));
    },

    ftruncate(_path: string | null, fd: number, size: number, cb: Cb) {
      cb(Math.min(0, sys.ftruncate(fd, size)));
    },

    truncate(path: string, size: number, cb: Cb) {
      mutate(cb, () => m.truncate(path, size));
    },

    utimens(path: string, aSec: number, aNsec: number, mSec: number, mNsec: number, cb: Cb) {
      mutate(cb, () => m.utimens(path, aSec, aNsec, mSec, mNsec));
    },

    chmod(path: string, mode: number, cb: Cb) {
      mutate(cb, () => m.chmod(path, mode));
    },

    chown(path: string, uid: number, gid: number, cb: Cb) {
      mutate(cb, () => m.chown(path, uid, gid));
    },

    mknod(path: string, mode: number, dev: number, cb: Cb) {
      const who = caller();
      mutate(cb, () => m.mknod(path, mode, dev, who));
    },

    mkdir(path: string, mode: number, cb: Cb) {
      const who = caller();
      mutate(cb, () => m.mkdir(path, mode, who));
    },

    symlink(target: string, path: string, cb: Cb) {
      const who = caller();
      mutate(cb, () => m.symlink(target, path, who));
    },

    link(src: string, dst: string, cb: Cb) {
      mutate(cb, () => m.link(src, dst));
    },

    unlink(path: string, cb: Cb) {
      mutate(cb, () => m.unlink(path));
    },

    rmdir(path: string, cb: Cb) {
      mutate(cb, () => m.rmdir(path));
    },

    rename(src: string, dst: string, cb: Cb) {
      mutate(cb, () => m.rename(src, dst));
    },

    setxattr(path: string, name: string, value: Buffer, _position: number, flags: number, cb: Cb) {
      // The value buffer belongs to libfuse and is detached after the callback: copy it now.
      const copy = Buffer.from(value);
      mutate(cb, () => m.setxattr(path, name, copy, flags));
    },

    getxattr(path: string, name: string, _position: number, cb: (err: number, value?: Buffer) => void) {
      try {
        const stored = xattrToLayer(name);
        if (stored === null) return cb(-E.ENODATA);
        const { layer, path: rel } = u.location(u.lookup(path));
        const v = sys.getxattrAt(layer.fd, rel, stored);
        if (typeof v === 'number') return cb(v);
        cb(0, v);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    listxattr(path: string, cb: (err: number, names?: string[]) => void) {
      try {
        const { layer, path: rel } = u.location(u.lookup(path));
        const names = sys.listxattrAt(layer.fd, rel);
        if (typeof names === 'number') return cb(names);
        const shown: string[] = [];
        for (const n of names) {
          const s = xattrFromLayer(n);
          if (s !== null) shown.push(s);
        }
        cb(0, shown);
      } catch (err) {
        cb(toFuseError(err));
      }
    },

    removexattr(path: string, name: string, cb: Cb) {
      mutate(cb, () => m.removexattr(path, name));
    },
  };

  const stats = (): DriverStats => ({
    cache: { ...u.cache.stats },
    copyUps: copyUpStats.copyUps,
    bytesCopiedUp: copyUpStats.bytesCopied,
    openFiles: handles.size,
  });

  return { ops: opts.log ? traced(ops, opts.log) : ops, stats };
}

const TYPE_BITS: Record<Kind, number> = { dir: S_IFDIR, file: S_IFREG, symlink: S_IFLNK, special: S_IFCHR };

/** readdir answers with the file type (and inode number once known) so the kernel skips lookups. */
function direntStat(node: Node): Uint32Array {
  const st = new Uint32Array(22);
  st[S.mode] = TYPE_BITS[node.kind];
  setStatIno(st, node.ino === 0 ? 0xffffffff : node.ino);
  return st;
}

/** Wrap every op to log `op(args) -> result`. Only built with --debug: the plain path stays lean. */
function traced(ops: FuseOps, log: (line: string) => void): FuseOps {
  // Every op has its own signature; the wrapper only needs "arguments, then a callback".
  const out: Record<string, (...args: unknown[]) => void> = {};
  for (const [name, fn] of Object.entries(ops) as [string, (...args: unknown[]) => void][]) {
    out[name] = (...args: unknown[]) => {
      const cb = args[args.length - 1] as (...r: unknown[]) => void;
      const shown = args.slice(0, -1).map(showArg).join(', ');
      const start = process.hrtime.bigint();
      fn(...args.slice(0, -1), (res: number, ...rest: unknown[]) => {
        const us = (process.hrtime.bigint() - start) / 1000n;
        const result = res < 0 ? errnoName(res) : rest.length > 0 && name !== 'read' ? `${res} ${showArg(rest[0])}` : String(res);
        log(`${name}(${shown}) -> ${result} [${us}us]`);
        cb(res, ...rest);
      });
    };
  }
  return out as FuseOps;
}

function showArg(a: unknown): string {
  if (typeof a === 'string') return JSON.stringify(a);
  if (Buffer.isBuffer(a)) return `<${a.length} bytes>`;
  if (a instanceof Uint32Array) return `{mode:0${(a[0] ?? 0).toString(8)},size:${a[3]}}`;
  if (Array.isArray(a)) return `[${a.length} entries]`;
  return String(a);
}
