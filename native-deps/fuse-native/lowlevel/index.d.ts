// Types of fuse-native's low-level mode, added by strata (lowlevel/fuse_ll.c has the contract).

/** An opaque mounted session. */
export type Session = { readonly __session: unique symbol };

/**
 * Request handlers. Each gets the request's id first and must answer it exactly once with one
 * of the reply functions, now or later. Inode numbers are the FUSE node ids (1 is the root).
 * `fh` is -1 when the kernel sent no file handle.
 */
export interface Handlers {
  lookup(id: number, parent: number, name: string): void;
  /** Not a request: the kernel dropped `nlookup` references to `ino`. Nothing to answer. */
  forget(ino: number, nlookup: number): void;
  getattr(id: number, ino: number, fh: number): void;
  /** `toSet`: FUSE_SET_ATTR_* bits (SET_ATTR below); times are seconds and nanoseconds. */
  setattr(id: number, ino: number, toSet: number, mode: number, uid: number, gid: number, size: number,
    atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, fh: number): void;
  readlink(id: number, ino: number): void;
  mknod(id: number, parent: number, name: string, mode: number, rdev: number): void;
  mkdir(id: number, parent: number, name: string, mode: number): void;
  unlink(id: number, parent: number, name: string): void;
  rmdir(id: number, parent: number, name: string): void;
  symlink(id: number, target: string, parent: number, name: string): void;
  rename(id: number, parent: number, name: string, newParent: number, newName: string, flags: number): void;
  link(id: number, ino: number, newParent: number, newName: string): void;
  /** Answer with replyOpen; the handle must be a file descriptor: reads and writes use it directly. */
  open(id: number, ino: number, flags: number): void;
  release(id: number, ino: number, fh: number): void;
  fsync(id: number, ino: number, datasync: number, fh: number): void;
  opendir(id: number, ino: number, flags: number): void;
  /** `plus`: answer with attributes (replyDirents in plus mode). */
  readdir(id: number, ino: number, size: number, offset: number, fh: number, plus: boolean): void;
  releasedir(id: number, ino: number, fh: number): void;
  fsyncdir(id: number, ino: number, datasync: number, fh: number): void;
  statfs(id: number, ino: number): void;
  setxattr(id: number, ino: number, name: string, value: Buffer, flags: number): void;
  getxattr(id: number, ino: number, name: string, size: number): void;
  listxattr(id: number, ino: number, size: number): void;
  removexattr(id: number, ino: number, name: string): void;
  create(id: number, parent: number, name: string, mode: number, flags: number): void;
}

export interface SessionConfig {
  /** Seconds the kernel may cache attributes (never for multiply-linked non-directories). */
  attrTimeout: number;
  entryTimeout: number;
  negativeTimeout: number;
  /** Largest write request, bytes (libfuse caps it at 1 MiB). */
  maxWrite: number;
}

/**
 * Mount and start serving on this thread's event loop. `options` are -o values for libfuse
 * (allow_other, fsname=..., ro, ...). `ctx` receives [uid, gid, pid, umask] of each request
 * right before its handler runs. `onExit` runs once the kernel ends the connection.
 * Throws if libfuse refuses the options or the mount fails.
 */
export function mount(mountpoint: string, options: string[], handlers: Handlers, ctx: Uint32Array,
  onExit: () => void, config: SessionConfig): Session;
/** Detach the mount (libfuse's fuse_session_unmount). */
export function unmount(session: Session): void;

// Replies: each returns false when the id is stale (already answered, or the session ended).
/** errno 0 answers success for requests without a payload. */
export function replyErr(session: Session, id: number, errno: number): boolean;
/** nodeid 0 answers a negative entry the kernel may cache. */
export function replyEntry(session: Session, id: number, nodeid: number, stat: Uint32Array | null): boolean;
export function replyAttr(session: Session, id: number, stat: Uint32Array): boolean;
/** false also when the opener is gone (interrupted): the handle will never be released. */
/** flags: 1 direct_io, 2 keep_cache, 4 nonseekable, 8 cache_readdir (opendir). */
export function replyOpen(session: Session, id: number, fh: number, flags: number): boolean;
export function replyCreate(session: Session, id: number, nodeid: number, stat: Uint32Array, fh: number, flags: number): boolean;
export function replyReadlink(session: Session, id: number, target: string): boolean;
/** Answers getxattr/listxattr given the caller's buffer size: the length, the bytes, or ERANGE. */
export function replyXattr(session: Session, id: number, size: number, value: Buffer): boolean;
export function replyStatfs(session: Session, id: number, statvfs: Float64Array): boolean;
/**
 * Entries from `offset` on; entry i gets offset `offset + i + 1`. Returns how many fit (each of
 * them, in plus mode with a non-zero nodeid, counts as a lookup), or -1 for a stale id.
 */
export function replyDirents(session: Session, id: number, size: number, plus: boolean, offset: number,
  names: string[], nodeids: Float64Array, stats: Uint32Array): number;
/**
 * Drop the kernel's cached attributes of `nodeid` (a change it cannot see, such as a new link
 * made through another node). Returns 0 or -errno (-ENOENT when the kernel has no such inode).
 */
export function notifyInvalInode(session: Session, nodeid: number): number;
/** Requests handed to JS and not answered yet. */
export function pendingRequests(session: Session): number;
export const strata_lowlevel: 1;
