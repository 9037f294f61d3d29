/**
 * strata_sys: the Linux system calls that Node's `fs` lacks, for strata's
 * FUSE driver. Load the compiled addon with
 *
 * ```ts
 * import { createRequire } from 'node:module';
 * import type * as Sys from '<path>/native-deps/sys/index.js';
 * const sys: typeof Sys = createRequire(import.meta.url)(
 *   '<path>/native-deps/sys/build/Release/strata_sys.node');
 * ```
 *
 * Conventions, shared by every function:
 * - Synchronous, except {@link copyData}, {@link syncfsAsync} and the file
 *   writer (its own thread; see {@link writerOpen}).
 * - OS errors are never thrown: a negative errno is returned instead
 *   (`-2` for ENOENT, see `os.constants.errno`). Only arguments of the wrong
 *   type throw, always a `TypeError` (code `ERR_INVALID_ARG_TYPE`).
 * - Strings the kernel could not take anyway are errors, not exceptions:
 *   a path of PATH_MAX (4096) bytes or more returns -ENAMETOOLONG, an xattr
 *   name over 255 bytes -ERANGE, and a string containing "\0" -EINVAL.
 * - Paths are JS strings (sent as UTF-8) resolved relative to `dirfd`, as in
 *   the *at() syscalls: an absolute path ignores `dirfd`, and
 *   {@link AT_FDCWD} means the current directory. Names and link targets
 *   read back are decoded as UTF-8 (invalid bytes become U+FFFD).
 * - Every fd opened by this module has O_CLOEXEC.
 * - Numbers that may exceed 32 bits (sizes, seconds, device numbers) are
 *   plain JS numbers (doubles): exact up to 2^53.
 */

/** 0 on success, or a negative errno. */
export type Status = number;

// ---------------------------------------------------------------------------
// stat family

/**
 * fstatat(dirfd, path, AT_SYMLINK_NOFOLLOW): a final symlink is described,
 * not followed. An empty `path` describes `dirfd` itself (AT_EMPTY_PATH; works
 * for O_PATH fds too).
 *
 * `out` gets this fixed layout (handed unchanged to strata's patched
 * fuse-native); 64-bit values are split into low and high 32 bits:
 *
 * | index | field | index | field |
 * | --- | --- | --- | --- |
 * | 0 | st_mode | 11, 12 | st_blocks low, high |
 * | 1 | st_uid | 13, 14 | atime seconds low, high (two's complement) |
 * | 2 | st_gid | 15 | atime nanoseconds |
 * | 3, 4 | st_size low, high | 16, 17 | mtime seconds low, high |
 * | 5 | st_dev, low 32 bits | 18 | mtime nanoseconds |
 * | 6 | st_nlink | 19, 20 | ctime seconds low, high |
 * | 7, 8 | st_ino low, high | 21 | ctime nanoseconds |
 * | 9 | st_rdev, low 32 bits of glibc's dev_t | | |
 * | 10 | st_blksize | | |
 *
 * @param out at least 22 elements; untouched on error.
 * @returns 0 or -errno.
 * @throws TypeError if `out` is not a Uint32Array of length >= 22.
 */
export declare function lstatAt(dirfd: number, path: string, out: Uint32Array): Status;

/** fstat(fd), filling `out` exactly like {@link lstatAt}. @returns 0 or -errno. */
export declare function fstat(fd: number, out: Uint32Array): Status;

/**
 * fstatvfs(fd). Fills `out` (length >= 11) with
 * `[bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax]`
 * (`fsid` is exact only up to 2^53).
 * @returns 0 or -errno.
 * @throws TypeError if `out` is not a Float64Array of length >= 11.
 */
export declare function statvfsFd(fd: number, out: Float64Array): Status;

// ---------------------------------------------------------------------------
// Namespace

/**
 * openat(dirfd, path, flags | O_CLOEXEC, mode).
 * @param flags Linux O_* bits, as in `fs.constants` (plus {@link O_PATH}).
 * @returns the new fd (>= 0) or -errno.
 */
export declare function openAt(dirfd: number, path: string, flags: number, mode: number): number;

/** close(fd). The fd is released even when an error (EINTR, EIO) is returned. @returns 0 or -errno. */
export declare function close(fd: number): Status;

/** mkdirat(dirfd, path, mode). @returns 0 or -errno. */
export declare function mkdirAt(dirfd: number, path: string, mode: number): Status;

/**
 * mknodat(dirfd, path, mode, dev).
 * @param mode file type bits (S_IFCHR, S_IFIFO, ...) | permissions.
 * @param dev device number in glibc's makedev() encoding, the same as
 *   `fs.Stats.rdev`; ignored for FIFOs, sockets and regular files.
 * @returns 0 or -errno.
 */
export declare function mknodAt(dirfd: number, path: string, mode: number, dev: number): Status;

/** symlinkat(target, dirfd, path): create `path` pointing at `target`. @returns 0 or -errno. */
export declare function symlinkAt(target: string, dirfd: number, path: string): Status;

/** linkat(..., 0): a final symlink in `oldpath` is linked itself, not followed. @returns 0 or -errno. */
export declare function linkAt(olddirfd: number, oldpath: string, newdirfd: number, newpath: string): Status;

/** unlinkat(dirfd, path, flags); `flags` is 0 or {@link AT_REMOVEDIR}. @returns 0 or -errno. */
export declare function unlinkAt(dirfd: number, path: string, flags: number): Status;

/**
 * renameat2(). `flags` 0 is a plain renameat(); otherwise any of
 * {@link RENAME_NOREPLACE}, {@link RENAME_EXCHANGE}, {@link RENAME_WHITEOUT}
 * as the kernel allows them (-EINVAL for bad combinations, -EINVAL or
 * -EOPNOTSUPP where the file system lacks them).
 * @returns 0 or -errno.
 */
export declare function renameAt2(
  olddirfd: number,
  oldpath: string,
  newdirfd: number,
  newpath: string,
  flags: number,
): Status;

/**
 * readlinkat(dirfd, path).
 * @returns the link target (any length below PATH_MAX), or -errno
 *   (-EINVAL when `path` is not a symlink).
 */
export declare function readlinkAt(dirfd: number, path: string): string | number;

// ---------------------------------------------------------------------------
// Attributes

/**
 * chmod that never follows a final symlink: `path` is opened with
 * O_PATH | O_NOFOLLOW and the mode set through /proc/self/fd (so /proc must
 * be mounted).
 * @returns 0, -EOPNOTSUPP if `path` is a symlink (symlinks have no mode), or
 *   another -errno.
 */
export declare function chmodAt(dirfd: number, path: string, mode: number): Status;

/**
 * fchownat(dirfd, path, uid, gid, AT_SYMLINK_NOFOLLOW): a final symlink is
 * changed itself. A `uid` or `gid` of -1 (or 0xffffffff) is left unchanged.
 * @returns 0 or -errno.
 */
export declare function chownAt(dirfd: number, path: string, uid: number, gid: number): Status;

/**
 * utimensat(dirfd, path, [atime, mtime], AT_SYMLINK_NOFOLLOW). Seconds may be
 * negative or beyond 2^32; a nanosecond field may be {@link UTIME_NOW} or
 * {@link UTIME_OMIT} (its seconds are then ignored).
 * @returns 0 or -errno.
 */
export declare function utimensAt(
  dirfd: number,
  path: string,
  atimeSec: number,
  atimeNsec: number,
  mtimeSec: number,
  mtimeNsec: number,
): Status;

/** futimens(fd, [atime, mtime]); same time conventions as {@link utimensAt}. @returns 0 or -errno. */
export declare function futimens(
  fd: number,
  atimeSec: number,
  atimeNsec: number,
  mtimeSec: number,
  mtimeNsec: number,
): Status;

/** fchmod(fd, mode). @returns 0 or -errno. */
export declare function fchmod(fd: number, mode: number): Status;

/** fchown(fd, uid, gid); -1 leaves an id unchanged. @returns 0 or -errno. */
export declare function fchown(fd: number, uid: number, gid: number): Status;

/** ftruncate(fd, size); `size` is 64-bit (files beyond 4 GiB work). @returns 0 or -errno. */
export declare function ftruncate(fd: number, size: number): Status;

/** fsync(fd). @returns 0 or -errno. */
export declare function fsync(fd: number): Status;

/** fdatasync(fd). @returns 0 or -errno. */
export declare function fdatasync(fd: number): Status;

/** syncfs(fd): flush the whole filesystem that holds `fd`. @returns 0 or -errno. */
export declare function syncfs(fd: number): Status;

/**
 * syncfs(fd) on the libuv threadpool; `callback` gets 0 or -errno. Used to start writeback early
 * while the caller keeps producing data.
 */
export declare function syncfsAsync(fd: number, callback: (res: number) => void): void;

// ---------------------------------------------------------------------------
// Extended attributes
//
// The *At forms never follow a final symlink (l*xattr semantics). On Linux
// 6.13+ they are the *xattrat() syscalls; on older kernels they go through
// "/proc/self/fd/<dirfd>/<path>", where a bad `dirfd` gives -ENOENT or
// -ENOTDIR rather than -EBADF. An empty `path` means `dirfd` itself. The f*
// forms also accept O_PATH fds (via /proc/self/fd/<fd>).

/**
 * lgetxattr(). @returns the value (possibly empty), -ENODATA if the attribute
 * is absent, or another -errno. Before Linux 6.13, for the rare path that only
 * fits PATH_MAX without the /proc prefix, a symlink gives -ENAMETOOLONG.
 */
export declare function getxattrAt(dirfd: number, path: string, name: string): Buffer | number;

/**
 * lsetxattr(). `flags`: 0, {@link XATTR_CREATE} (-EEXIST if present) or
 * {@link XATTR_REPLACE} (-ENODATA if absent).
 * @returns 0 or -errno.
 * @throws TypeError if `value` is not a Buffer.
 */
export declare function setxattrAt(
  dirfd: number,
  path: string,
  name: string,
  value: Buffer,
  flags: number,
): Status;

/** llistxattr(). @returns the names, in the order the kernel lists them, or -errno. */
export declare function listxattrAt(dirfd: number, path: string): string[] | number;

/** lremovexattr(). @returns 0, -ENODATA if absent, or another -errno. */
export declare function removexattrAt(dirfd: number, path: string, name: string): Status;

/** fgetxattr(); returns like {@link getxattrAt}. */
export declare function fgetxattr(fd: number, name: string): Buffer | number;

/** fsetxattr(); returns like {@link setxattrAt}. @throws TypeError if `value` is not a Buffer. */
export declare function fsetxattr(fd: number, name: string, value: Buffer, flags: number): Status;

/** flistxattr(); returns like {@link listxattrAt}. */
export declare function flistxattr(fd: number): string[] | number;

/** fremovexattr(); returns like {@link removexattrAt}. */
export declare function fremovexattr(fd: number, name: string): Status;

// ---------------------------------------------------------------------------
// Directories

/** Directory listing: `types[i]` is the d_type of `names[i]`. */
export interface DirEntries {
  /** Entry names in the order the file system returns them, without "." and "..". */
  names: string[];
  /** DT_* values ({@link DT_REG}, {@link DT_DIR}, ...); {@link DT_UNKNOWN} when the file system does not say. */
  types: Uint8Array;
  /** d_ino of `names[i]` (exact below 2^53). */
  inos: Float64Array;
}

/**
 * Read a whole directory in one call (openat O_DIRECTORY + readdir). `path`
 * "" or "." lists `dirfd`'s own directory, through a fresh fd, so `dirfd`'s
 * offset is untouched. A final symlink to a directory is followed.
 * @returns the entries, or -errno (-ENOTDIR for a non-directory).
 */
export declare function readdirAt(dirfd: number, path: string): DirEntries | number;

/**
 * SHA-256 (hex) of what lstat says of `path` and, for a directory, of everything below it (names,
 * modes, owners, devices, inodes, sizes, mtimes and ctimes in ns), symlinks not followed, each
 * directory's names sorted (tree_summary.c). Synchronous: a 5k-file tree takes ~13 ms.
 * @returns the digest, or -errno (-ELOOP beyond 256 levels).
 */
export declare function treeSummary(path: string): string | number;

// ---------------------------------------------------------------------------
// Copy-up

/**
 * Asynchronously (libuv threadpool) copy all of `srcFd` into `dstFd`, a new
 * empty file, preserving holes: data extents are found with
 * SEEK_DATA/SEEK_HOLE and copied with copy_file_range (reflinks where the
 * file system can), falling back to pread/pwrite across file systems. The
 * destination is finally truncated to the source size, so trailing holes
 * stay holes. 64-bit offsets throughout.
 *
 * Both fds must stay open until the callback runs. The copy uses explicit
 * offsets, but SEEK_DATA/SEEK_HOLE move `srcFd`'s file position.
 * @param callback receives the number of data bytes copied (>= 0; holes are
 *   not counted) or -errno. Never called synchronously.
 * @throws TypeError if `callback` is not a function.
 */
export declare function copyData(srcFd: number, dstFd: number, callback: (res: number) => void): void;

/**
 * Read the regular file `path` (relative to `dirfd`, never through a final symlink) whole into
 * `buffer`, on the threadpool: open, fstat, read and close in one job. The file must be exactly
 * `buffer.length` bytes. `buffer` must not be touched until the callback. The job holds its own
 * duplicate of `dirfd`, so the caller may close theirs at once.
 * @param callback receives the bytes read (`buffer.length`), -ERANGE if the file is not a regular
 *   file of that size (it changed; a FIFO in its place does not block), -EBADF for a bad `dirfd`,
 *   -ECANCELED if the job was cancelled, or -errno. Never called synchronously.
 * @throws TypeError for bad arguments or a NUL in `path`; RangeError for a path of PATH_MAX or more.
 */
export declare function readFileAt(dirfd: number, path: string, buffer: Buffer, callback: (res: number) => void): void;

// ---------------------------------------------------------------------------
// File writer: a layer's regular files created, filled and labelled on a thread of their own
// (file_writer.c), in submission order, while JS parses the next tar entries.

/** A file writer; closed by {@link writerClose} (or, as a last resort, when collected). */
export interface FileWriter {
  readonly __fileWriter: unique symbol;
}

/** What failed first: [errno, the call ("create", "write", ...), the path]. */
export type WriterFailure = [errno: number, call: string, path: string];

/** Start a writer that creates files relative to `dirfd`, which must stay open until it is closed. */
export declare function writerOpen(dirfd: number): FileWriter;

/**
 * Queue openat(dirfd, path, O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW, mode): the file that the next
 * data, xattr and finish calls go to. Every submit blocks while more than 16 MiB wait.
 * @returns 0 if queued; 1 if the writer already failed (see {@link writerWait}); -ENAMETOOLONG or
 *   -EINVAL for a path the kernel could not take.
 */
export declare function writerCreate(w: FileWriter, path: string, mode: number): Status;

/**
 * Queue a directory of the layer's own (never a symlink): mkdirat(path, 0700) when `create`, then
 * fchownat and fchmodat. @returns like {@link writerCreate}.
 */
export declare function writerDir(w: FileWriter, path: string, create: boolean, uid: number, gid: number, mode: number): Status;

/**
 * Queue symlinkat(target, dirfd, path), then its owner and times (never following it).
 * @returns like {@link writerCreate}.
 */
export declare function writerSymlink(
  w: FileWriter, path: string, target: string, uid: number, gid: number,
  atimeS: number, atimeNs: number, mtimeS: number, mtimeNs: number,
): Status;

/** Queue a write of a copy of `chunk` to the current file. @returns 0, or 1 after a failure. */
export declare function writerData(w: FileWriter, chunk: Buffer): Status;

/** Queue fsetxattr on the current file. @returns 0, 1 after a failure, or -ERANGE for a long name. */
export declare function writerXattr(w: FileWriter, name: string, value: Buffer): Status;

/**
 * Queue the end of the current file: fchown (when `chown`), fchmod (when `mode` >= 0; after
 * chown, which clears setuid and setgid), futimens, close. @returns 0, or 1 after a failure.
 */
export declare function writerFinish(
  w: FileWriter, uid: number, gid: number, chown: boolean, mode: number,
  atimeS: number, atimeNs: number, mtimeS: number, mtimeNs: number,
): Status;

/** Block until everything queued is done. @returns the first failure, or null. */
export declare function writerWait(w: FileWriter): WriterFailure | null;

/**
 * Finish what is queued (nothing more after a failure), close the current file and stop the
 * thread. Any later call on `w` throws. @returns the first failure, or null.
 */
export declare function writerClose(w: FileWriter): WriterFailure | null;

// ---------------------------------------------------------------------------
// SHA-256 on the threadpool (digest.c): a stream's digest without spending the JS thread on it.

/** A SHA-256 context. */
export interface StreamDigest {
  readonly __streamDigest: unique symbol;
}

export declare function digestOpen(): StreamDigest;

/**
 * Hash `chunk` (or each of `chunks`, in order) on the threadpool; `callback(ok)` runs when done.
 * One update at a time: the next only after the previous callback. Chunks (and the array) are
 * referenced, not copied: they must not change until then. @throws Error if an update is already running or the digest is finished.
 */
export declare function digestUpdate(d: StreamDigest, chunk: Buffer | readonly Buffer[], callback: (ok: boolean) => void): void;

/** The digest as lowercase hex; no update may be running. Ends the digest. */
export declare function digestFinish(d: StreamDigest): string;

// ---------------------------------------------------------------------------
// Mounts

/**
 * umount2(path, flags); `flags` from {@link MNT_FORCE}, {@link MNT_DETACH},
 * {@link UMOUNT_NOFOLLOW}.
 * @returns 0 or -errno (-EINVAL if `path` is not a mount point).
 */
export declare function umount2(path: string, flags: number): Status;

// ---------------------------------------------------------------------------
// Constants (Linux values; the O_* ones are those of the build architecture)

/** -100: "relative to the current directory" as a dirfd. */
export declare const AT_FDCWD: number;
/** 0x200: {@link unlinkAt} flag to remove a directory. */
export declare const AT_REMOVEDIR: number;
/** 0x100 */
export declare const AT_SYMLINK_NOFOLLOW: number;
/** 0x1000 */
export declare const AT_EMPTY_PATH: number;
/** 1: {@link renameAt2} fails with -EEXIST rather than replace. */
export declare const RENAME_NOREPLACE: number;
/** 2: {@link renameAt2} atomically swaps the two paths. */
export declare const RENAME_EXCHANGE: number;
/** 4: {@link renameAt2} leaves a whiteout (char device 0:0) at the old path. */
export declare const RENAME_WHITEOUT: number;
/** (1 << 30) - 1: set this time to now. */
export declare const UTIME_NOW: number;
/** (1 << 30) - 2: leave this time unchanged. */
export declare const UTIME_OMIT: number;
/** 1 */
export declare const XATTR_CREATE: number;
/** 2 */
export declare const XATTR_REPLACE: number;
/** 1 */
export declare const MNT_FORCE: number;
/** 2: lazy unmount. */
export declare const MNT_DETACH: number;
/** 8 */
export declare const UMOUNT_NOFOLLOW: number;
/** O_PATH (0x200000 on x86-64 and arm64). */
export declare const O_PATH: number;
/** O_NOFOLLOW, as `fs.constants.O_NOFOLLOW`. */
export declare const O_NOFOLLOW: number;
/** O_DIRECTORY, as `fs.constants.O_DIRECTORY`. */
export declare const O_DIRECTORY: number;
/** 0 */
export declare const DT_UNKNOWN: number;
/** 1 */
export declare const DT_FIFO: number;
/** 2 */
export declare const DT_CHR: number;
/** 4 */
export declare const DT_DIR: number;
/** 6 */
export declare const DT_BLK: number;
/** 8 */
export declare const DT_REG: number;
/** 10 */
export declare const DT_LNK: number;
/** 12 */
export declare const DT_SOCK: number;
