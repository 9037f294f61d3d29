/**
 * The FUSE adapter: low-level requests in (node ids, names, handles), union operations out, one
 * reply per request. Each handler is thin: resolve the node ids, call the core, reply. Errors
 * cross the FUSE boundary here and only here (errnoOf). Mutations run one at a time under the
 * mutation lock; lookups, stat, readdir and xattr reads do not wait for it. Reads and writes
 * never come here: the binding serves them on the file handle, which is the layer file's fd.
 *
 * Node ids: the root is 1; any other node gets an id the first time a reply hands it to the
 * kernel, which then holds references (lookups) until it sends FORGET. A node id names one
 * dentry, so two hard links are two kernel inodes; the binding keeps such files out of the
 * kernel's attribute cache, and open() keeps their page cache from going stale.
 */
import { constants as fsc, fdatasync, fsync } from 'node:fs';
import type * as LL from 'fuse-native/lowlevel/index.js';
import { sys } from '../native/sys.js';
import { copyUpStats } from './copy-up.js';
import { check, E, errnoName, errnoOf, fsErr } from './errno.js';
import { xattrFromLayer, xattrToLayer } from './encoding.js';
import { MutationLock } from './lock.js';
import { Mutations, type Caller } from './mutations.js';
import type { Kind, Node } from './node.js';
import { newStat, S, S_IFCHR, S_IFDIR, S_IFLNK, S_IFREG, setStatIno, STAT_WORDS } from './stat.js';
import type { Union } from './union.js';

type Binding = typeof LL;
type Session = LL.Session;

/** FUSE_SET_ATTR_* (fuse_lowlevel.h). */
const SET = { MODE: 1, UID: 2, GID: 4, SIZE: 8, ATIME: 16, MTIME: 32, ATIME_NOW: 128, MTIME_NOW: 256 } as const;
/** replyOpen flags (lowlevel/index.d.ts). */
const KEEP_CACHE = 2;
const ROOT_ID = 1;

export interface AdapterOptions {
  union: Union;
  binding: Binding;
  /** When set, every request is logged as `op(args) -> result [us]`. */
  log?: ((line: string) => void) | undefined;
}

export interface DriverStats {
  cache: Union['cache']['stats'];
  copyUps: number;
  bytesCopiedUp: number;
  openFiles: number;
  /** Node ids the kernel holds. */
  nodeIds: number;
}

interface DirHandle {
  node: Node;
  /** The listing taken at offset 0; later offsets index into it. */
  names: string[] | null;
  nodes: Node[];
}

export interface Adapter {
  handlers: LL.Handlers;
  /** [uid, gid, pid, umask] of the request being dispatched, filled by the binding. */
  ctx: Uint32Array;
  /** Called with the session once mounted: replies need it. */
  attach(session: Session): void;
  stats(): DriverStats;
}

/** Run steps one after another, synchronously until one of them has to wait. */
function inOrder(steps: Array<() => void | Promise<void>>, from = 0): void | Promise<void> {
  for (let i = from; i < steps.length; i++) {
    const pending = steps[i]!();
    if (pending instanceof Promise) return pending.then(() => inOrder(steps, i + 1));
  }
}

export function makeAdapter(opts: AdapterOptions): Adapter {
  const { union: u, binding: ll } = opts;
  const m = new Mutations(u);
  const lock = new MutationLock(u.cache);
  const ctx = new Uint32Array(4);
  const st = newStat();
  const handles = new Map<number, Node>();
  const dirHandles = new Map<number, DirHandle>();
  const nodes = new Map<number, Node>([[ROOT_ID, u.root]]);
  let nextNodeid = ROOT_ID + 1;
  let nextDirHandle = 0;
  let session: Session | null = null;
  u.root.nodeid = ROOT_ID;
  u.root.nlookup = 1; // the kernel never forgets the root

  // ---- replies (wrapped by the tracer in --debug) ----
  const R = {
    err: (id: number, errno: number) => ll.replyErr(session!, id, errno),
    entry: (id: number, nodeid: number, stat: Uint32Array | null) => ll.replyEntry(session!, id, nodeid, stat),
    attr: (id: number, stat: Uint32Array) => ll.replyAttr(session!, id, stat),
    open: (id: number, fh: number, flags: number) => ll.replyOpen(session!, id, fh, flags),
    create: (id: number, nodeid: number, stat: Uint32Array, fh: number, flags: number) => ll.replyCreate(session!, id, nodeid, stat, fh, flags),
    readlink: (id: number, target: string) => ll.replyReadlink(session!, id, target),
    xattr: (id: number, size: number, value: Buffer) => ll.replyXattr(session!, id, size, value),
    statfs: (id: number, v: Float64Array) => ll.replyStatfs(session!, id, v),
    dirents: (id: number, size: number, plus: boolean, offset: number, names: string[], ids: Float64Array, stats: Uint32Array) =>
      ll.replyDirents(session!, id, size, plus, offset, names, ids, stats),
  };
  const fail = (id: number, err: unknown) => R.err(id, errnoOf(err));

  // ---- node ids ----
  const nodeOf = (ino: number): Node => {
    const node = nodes.get(ino);
    if (node === undefined) throw fsErr(E.ESTALE);
    return node;
  };
  /** The node id to hand out for `node` (registered now if new; counted once the reply is sent). */
  const idFor = (node: Node): number => {
    if (node.nodeid === 0) {
      node.nodeid = nextNodeid++;
      nodes.set(node.nodeid, node);
    }
    return node.nodeid;
  };
  /** After a reply that may have handed out `node`: count the reference, or undo the registration. */
  const handedOut = (node: Node, sent: boolean): void => {
    if (sent) node.nlookup++;
    else if (node.nlookup === 0 && node !== u.root) release(node);
  };
  const release = (node: Node): void => {
    nodes.delete(node.nodeid);
    node.nodeid = 0;
    node.nlookup = 0;
    m.dropHidden(node);
  };
  const replyNode = (id: number, node: Node): void => {
    u.stat(node, st);
    handedOut(node, R.entry(id, idFor(node), st));
  };

  /** The caller, read when the request is dispatched (ctx changes with the next request). */
  const caller = (): Caller => ({ uid: ctx[0]!, gid: ctx[1]! });

  /** Attributes of `node`, through its open file when the kernel names one. */
  const statNode = (node: Node, fh: number, out: Uint32Array): void => {
    if (fh >= 0 && node.kind === 'file' && handles.get(fh) === node) {
      check(sys.fstat(fh, out), 'fstat');
      if (node.ino !== 0) setStatIno(out, node.ino);
      u.adjustNlink(node, out);
      return;
    }
    if (node.unlinked && node.inUpper && node.hiddenName === null) throw fsErr(E.ENOENT);
    u.stat(node, out);
  };

  /** Run a mutation under the lock, then `done` (sync) or an errno reply. */
  const mutate = <T>(id: number, fn: () => T | Promise<T>, done: (result: T) => void): void => {
    lock.submit(
      fn,
      (result) => {
        try {
          done(result);
        } catch (err) {
          fail(id, err);
        }
      },
      (err: unknown) => fail(id, err),
    );
  };
  const ok = (id: number) => () => R.err(id, 0);

  const opened = (fd: number, node: Node): void => {
    handles.set(fd, node);
    node.open++;
  };
  const closeHandle = (fd: number): number => {
    const node = handles.get(fd);
    handles.delete(fd);
    const r = sys.close(fd);
    if (node !== undefined) {
      node.open--;
      m.dropHidden(node);
    }
    return r;
  };
  /** A file's page cache survives reopening unless another name can change it behind our back. */
  const openFlags = (node: Node): number => (node.links <= 1 ? KEEP_CACHE : 0);

  const handlers: LL.Handlers = {
    lookup(id, parent, name) {
      try {
        const child = u.child(nodeOf(parent), name);
        if (child === undefined) R.entry(id, 0, null);
        else replyNode(id, child);
      } catch (err) {
        fail(id, err);
      }
    },

    forget(ino, nlookup) {
      const node = nodes.get(ino);
      if (node === undefined || node === u.root) return;
      node.nlookup -= nlookup;
      if (node.nlookup <= 0) release(node);
    },

    getattr(id, ino, fh) {
      try {
        statNode(nodeOf(ino), fh, st);
        R.attr(id, st);
      } catch (err) {
        fail(id, err);
      }
    },

    setattr(id, ino, toSet, mode, uid, gid, size, aSec, aNsec, mSec, mNsec, fh) {
      let node: Node;
      try {
        node = nodeOf(ino);
      } catch (err) {
        return void fail(id, err);
      }
      const viaHandle = fh >= 0 && node.kind === 'file' && handles.get(fh) === node;
      mutate(
        id,
        () => {
          const steps: Array<() => void | Promise<void>> = [];
          if (toSet & SET.SIZE) {
            steps.push(viaHandle ? () => void check(sys.ftruncate(fh, size), 'ftruncate') : () => m.truncate(node, size));
          }
          if (toSet & SET.MODE) steps.push(() => m.chmod(node, mode));
          if (toSet & (SET.UID | SET.GID)) steps.push(() => m.chown(node, toSet & SET.UID ? uid : -1, toSet & SET.GID ? gid : -1));
          if (toSet & (SET.ATIME | SET.MTIME | SET.ATIME_NOW | SET.MTIME_NOW)) {
            const aNs = toSet & SET.ATIME_NOW ? sys.UTIME_NOW : toSet & SET.ATIME ? aNsec : sys.UTIME_OMIT;
            const mNs = toSet & SET.MTIME_NOW ? sys.UTIME_NOW : toSet & SET.MTIME ? mNsec : sys.UTIME_OMIT;
            steps.push(() => m.utimens(node, aSec, aNs, mSec, mNs));
          }
          return inOrder(steps);
        },
        () => {
          statNode(node, viaHandle ? fh : -1, st);
          R.attr(id, st);
        },
      );
    },

    readlink(id, ino) {
      try {
        const { layer, path } = u.location(nodeOf(ino));
        const target = sys.readlinkAt(layer.fd, path);
        if (typeof target === 'number') R.err(id, -target);
        else R.readlink(id, target);
      } catch (err) {
        fail(id, err);
      }
    },

    mknod(id, parent, name, mode, rdev) {
      const who = caller();
      mutate(id, () => m.mknod(nodeOf(parent), name, mode, rdev, who), (node) => replyNode(id, node));
    },

    mkdir(id, parent, name, mode) {
      const who = caller();
      mutate(id, () => m.mkdir(nodeOf(parent), name, mode, who), (node) => replyNode(id, node));
    },

    symlink(id, target, parent, name) {
      const who = caller();
      mutate(id, () => m.symlink(target, nodeOf(parent), name, who), (node) => replyNode(id, node));
    },

    link(id, ino, newParent, newName) {
      mutate(
        id,
        () => m.link(nodeOf(ino), nodeOf(newParent), newName),
        (node) => {
          replyNode(id, node);
          // The source is another kernel inode, cached with its old link count.
          ll.notifyInvalInode(session!, ino);
        },
      );
    },

    unlink(id, parent, name) {
      mutate(id, () => m.unlink(nodeOf(parent), name), ok(id));
    },

    rmdir(id, parent, name) {
      mutate(id, () => m.rmdir(nodeOf(parent), name), ok(id));
    },

    rename(id, parent, name, newParent, newName, flags) {
      mutate(id, () => m.rename(nodeOf(parent), name, nodeOf(newParent), newName, flags), ok(id));
    },

    open(id, ino, flags) {
      let node: Node;
      try {
        node = nodeOf(ino);
      } catch (err) {
        return void fail(id, err);
      }
      const writes = (flags & (fsc.O_WRONLY | fsc.O_RDWR | fsc.O_TRUNC)) !== 0;
      const run = () => m.open(node, flags);
      (writes ? lock.run(run) : run()).then(
        ({ fd }) => {
          opened(fd, node);
          if (!R.open(id, fd, openFlags(node))) closeHandle(fd);
        },
        (err: unknown) => fail(id, err),
      );
    },

    create(id, parent, name, mode, flags) {
      const who = caller();
      mutate(
        id,
        () => m.create(nodeOf(parent), name, mode, flags, who),
        ({ fd, node }) => {
          opened(fd, node);
          try {
            u.stat(node, st);
          } catch (err) {
            closeHandle(fd);
            throw err;
          }
          const sent = R.create(id, idFor(node), st, fd, openFlags(node));
          handedOut(node, sent);
          if (!sent) closeHandle(fd);
        },
      );
    },

    release(id, _ino, fh) {
      const r = closeHandle(fh);
      R.err(id, r < 0 ? -r : 0);
    },

    fsync(id, _ino, datasync, fh) {
      (datasync ? fdatasync : fsync)(fh, (err) => R.err(id, err ? errnoOf(err) : 0));
    },

    opendir(id, ino) {
      try {
        const node = nodeOf(ino);
        if (node.kind !== 'dir') throw fsErr(E.ENOTDIR);
        // Handles are small positive ints; 0 means "none" to some kernels' callers.
        nextDirHandle = nextDirHandle >= 0x7ffffff0 ? 1 : nextDirHandle + 1;
        dirHandles.set(nextDirHandle, { node, names: null, nodes: [] });
        if (!R.open(id, nextDirHandle, 0)) dirHandles.delete(nextDirHandle);
      } catch (err) {
        fail(id, err);
      }
    },

    readdir(id, _ino, size, offset, fh, plus) {
      try {
        const h = dirHandles.get(fh);
        if (h === undefined) throw fsErr(E.EBADF);
        if (offset === 0 || h.names === null) {
          // A directory removed while open lists as empty, whatever now stands at its old path.
          const listing = h.node.unlinked ? { names: ['.', '..'], nodes: [h.node, h.node] } : u.list(h.node);
          h.names = listing.names;
          h.nodes = listing.nodes;
        }
        readdirReply(id, h, size, offset, plus);
      } catch (err) {
        fail(id, err);
      }
    },

    releasedir(id, _ino, fh) {
      dirHandles.delete(fh);
      R.err(id, 0);
    },

    fsyncdir(id) {
      R.err(id, 0);
    },

    statfs(id) {
      try {
        const v = new Float64Array(11);
        u.statfs(v);
        R.statfs(id, v);
      } catch (err) {
        fail(id, err);
      }
    },

    setxattr(id, ino, name, value, flags) {
      mutate(id, () => m.setxattr(nodeOf(ino), name, value, flags), ok(id));
    },

    getxattr(id, ino, name, size) {
      try {
        const stored = xattrToLayer(name);
        if (stored === null) throw fsErr(E.ENODATA);
        const { layer, path } = u.location(nodeOf(ino));
        const v = sys.getxattrAt(layer.fd, path, stored);
        if (typeof v === 'number') R.err(id, -v);
        else R.xattr(id, size, v);
      } catch (err) {
        fail(id, err);
      }
    },

    listxattr(id, ino, size) {
      try {
        const { layer, path } = u.location(nodeOf(ino));
        const names = sys.listxattrAt(layer.fd, path);
        if (typeof names === 'number') return void R.err(id, -names);
        let list = '';
        for (const n of names) {
          const shown = xattrFromLayer(n);
          if (shown !== null) list += shown + '\0';
        }
        R.xattr(id, size, Buffer.from(list));
      } catch (err) {
        fail(id, err);
      }
    },

    removexattr(id, ino, name) {
      mutate(id, () => m.removexattr(nodeOf(ino), name), ok(id));
    },
  };

  /**
   * Answer a readdir from `offset` with as many entries as fit in `size` bytes. In plus mode each
   * entry carries its attributes and counts as a lookup, so only entries that fit are stat'ed.
   */
  const readdirReply = (id: number, h: DirHandle, size: number, offset: number, plus: boolean): void => {
    const names = h.names!;
    let end = offset;
    let used = 0;
    while (end < names.length) {
      const len = direntSize(Buffer.byteLength(names[end]!), plus);
      if (used + len > size) break;
      used += len;
      end++;
    }
    const count = end - offset;
    const ids = new Float64Array(count);
    const stats = new Uint32Array(count * STAT_WORDS);
    const shown = names.slice(offset, end);
    for (let i = 0; i < count; i++) {
      const node = h.nodes[offset + i]!;
      const one = stats.subarray(i * STAT_WORDS, (i + 1) * STAT_WORDS);
      const dots = offset + i < 2;
      if (plus && !dots) {
        try {
          u.stat(node, one);
          ids[i] = idFor(node);
          continue;
        } catch {
          // Gone since the listing was taken: a plain entry, no attributes.
        }
      }
      one[S.mode] = TYPE_BITS[node.kind];
      setStatIno(one, node.ino === 0 ? 0xffffffff : node.ino);
    }
    const sent = R.dirents(id, size, plus, offset, shown, ids, stats);
    if (!plus) return;
    for (let i = 0; i < count; i++) {
      if (ids[i] === 0) continue;
      const node = h.nodes[offset + i]!;
      handedOut(node, i < sent);
    }
  };

  if (opts.log !== undefined) trace(handlers, R, opts.log);

  return {
    handlers,
    ctx,
    attach(s) {
      session = s;
    },
    stats: () => ({
      cache: { ...u.cache.stats },
      copyUps: copyUpStats.copyUps,
      bytesCopiedUp: copyUpStats.bytesCopied,
      openFiles: handles.size,
      nodeIds: nodes.size,
    }),
  };
}

const TYPE_BITS: Record<Kind, number> = { dir: S_IFDIR, file: S_IFREG, symlink: S_IFLNK, special: S_IFCHR };

/** Bytes a directory entry takes in a FUSE readdir reply (struct fuse_dirent[plus], 8-aligned). */
function direntSize(nameBytes: number, plus: boolean): number {
  const header = plus ? 152 : 24;
  return (header + nameBytes + 7) & ~7;
}

/**
 * --debug: log each request as `op(args) -> result [us]`. Handlers and reply functions are
 * wrapped in place; the plain path stays lean.
 */
function trace(handlers: LL.Handlers, replies: Record<string, (...a: never[]) => unknown>, log: (line: string) => void): void {
  const open = new Map<number, { call: string; start: bigint }>();
  // Every handler has its own signature; the wrapper only needs "id first, then arguments".
  const hs = handlers as unknown as Record<string, (...args: unknown[]) => void>;
  for (const [name, fn] of Object.entries(hs)) {
    hs[name] = (...args: unknown[]) => {
      if (name === 'forget') {
        log(`forget(${args.map(showArg).join(', ')})`);
      } else {
        open.set(args[0] as number, { call: `${name}(${args.slice(1).map(showArg).join(', ')})`, start: process.hrtime.bigint() });
      }
      fn(...args);
    };
  }
  const rs = replies as Record<string, (...args: unknown[]) => unknown>;
  for (const [kind, fn] of Object.entries(rs)) {
    rs[kind] = (...args: unknown[]) => {
      const id = args[0] as number;
      const req = open.get(id);
      open.delete(id);
      const result = fn(...args);
      if (req !== undefined) {
        const us = (process.hrtime.bigint() - req.start) / 1000n;
        const shown = kind === 'err' ? (args[1] === 0 ? '0' : errnoName(args[1] as number)) : `${kind} ${args.slice(1, 3).map(showArg).join(' ')}`;
        log(`${req.call} -> ${shown} [${us}us]`);
      }
      return result;
    };
  }
}

function showArg(a: unknown): string {
  if (typeof a === 'string') return JSON.stringify(a);
  if (Buffer.isBuffer(a)) return `<${a.length} bytes>`;
  if (a instanceof Uint32Array) return `{mode:0${(a[0] ?? 0).toString(8)},size:${a[3]}}`;
  if (Array.isArray(a)) return `[${a.length} entries]`;
  return String(a);
}
